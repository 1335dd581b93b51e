"""``np.unique`` of 1-D integer arrays by sorting, ``np.nonzero`` of 2-D masks, and
``np.isin`` against a few values.

numpy 2.3+ finds the distinct values of a plain ``np.unique(a)`` (and of
``return_index=True``) with a hash table that is 50 to 500 times slower than
a sort on the id arrays this package handles (1.6 ms for 5,000 token ids,
0.5 s for 200,000 transitions), which made it the largest single cost of a
cold JSON mask. These return what ``np.unique`` returns, sorted, from one
(stable) sort. And ``np.nonzero`` of a 2-D mask (every transition of a
table) takes 7 times as long as a flat one (86 against 13 µs at 64 x 256). And
``np.isin`` sorts whatever it is given: 10 µs for a few hundred ids against the
end-of-generation ids, where a comparison per value takes 1.5 (a cold JSON mask
asks it a few times).
"""

from __future__ import annotations

import numpy as np


def unique(values: np.ndarray) -> np.ndarray:
    """The distinct values of a 1-D array, sorted (``np.unique(values)``)."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def nonzero_2d(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero(mask)`` of a 2-D array: the rows and columns of its true entries, in
    row-major order, from one flat search."""
    flat = np.flatnonzero(mask)
    return np.divmod(flat, mask.shape[1])


def unique_first_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(values, return_index=True, return_inverse=True)`` for a 1-D array: the
    distinct values (sorted), the index of each one's first occurrence, and for every
    element the index of its value among the distinct ones."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.empty(ordered.size, dtype=bool)
    if ordered.size:
        starts[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    inverse = np.empty(ordered.size, dtype=np.intp)
    inverse[order] = np.cumsum(starts) - 1
    return ordered[starts], order[starts], inverse


ISIN_FEW = 16
"""Up to this many candidates, :func:`isin_few` compares with each; above, ``np.isin``."""


def isin_few(values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """``np.isin(values, candidates)`` (a bool per value), one comparison per candidate where
    there are at most :data:`ISIN_FEW` of them (end-of-generation ids, a state's exception
    bytes)."""
    if candidates.size > ISIN_FEW:
        return np.isin(values, candidates)
    found = np.zeros(values.shape, dtype=bool)
    for candidate in candidates.tolist():
        found |= values == candidate
    return found

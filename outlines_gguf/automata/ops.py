"""Products of byte automata: intersection and difference.

Used where a constraint is the combination of several (``allOf`` parts that
cannot be merged, a string with both a ``pattern`` and a ``format``, keys
that match a pattern but are not declared properties). The product is explored
from the start state only, so just the reachable pairs are built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from outlines_gguf import fast_unique
from outlines_gguf.automata.budget import spend
from outlines_gguf.automata.dfa import ByteDFA, minimize
from outlines_gguf.errors import DFAProductTooLargeError

MAX_PRODUCT_STATES = 50_000
PRODUCT_STATE_WORK = 400
"""Work units (see ``automata.budget.MAX_COMPILE_WORK``) charged per product state (about 0.1 ms each)."""


def _product(
    dfas: Sequence[ByteDFA], accept: Callable[[np.ndarray], Any], all_alive: bool
) -> ByteDFA | None:
    """Reachable product; ``all_alive``: a dead component kills the pair (intersection).
    ``accept`` maps the components' accepting flags, a (k, m) bool array, to the m products'.

    Breadth first, a whole level at a time: a product state is its components' states in
    one int64 (mixed radix, -1 as the extra digit 0), so the next level's states are one
    ``unique`` over the level's rows rather than a Python step per state."""
    radix = np.cumprod([1] + [d.n_states + 1 for d in dfas[:-1]], dtype=object)
    if int(radix[-1]) * (dfas[-1].n_states + 1) >= 2**62:
        raise DFAProductTooLargeError("a product of automata this large")
    weights = np.array([int(r) for r in radix], dtype=np.int64)
    # each table with a dead row last, so a dead component (-1) indexes it
    tables = [np.concatenate([d.transitions, np.full((1, 256), -1, dtype=np.int32)]) for d in dfas]
    finals = [np.concatenate([d.accepting, [False]]) for d in dfas]
    keys = np.zeros(1, dtype=np.int64)  # the start: every component in its state 0 (digit 1)
    keys += weights.sum()
    known = keys.copy()  # every product state found so far, in the order of its id
    known_sorted, known_order = keys.copy(), np.zeros(1, dtype=np.int64)
    rows: list[np.ndarray] = []
    frontier = keys
    while frontier.size:
        spend(PRODUCT_STATE_WORK * int(frontier.size))
        digits = [(frontier // w) % (d.n_states + 1) - 1 for w, d in zip(weights, dfas, strict=True)]
        comps = np.stack([t[np.where(c >= 0, c, len(t) - 1)] for t, c in zip(tables, digits, strict=True)])
        dead = (comps < 0).any(axis=0) if all_alive else (comps < 0).all(axis=0)  # (F, 256)
        target = ((comps.astype(np.int64) + 1) * weights[:, None, None]).sum(axis=0)
        target[dead] = -1
        found = fast_unique.unique(target[target >= 0])
        at = np.minimum(np.searchsorted(known_sorted, found), known_sorted.size - 1)
        fresh = found[known_sorted[at] != found]
        if known.size + fresh.size > MAX_PRODUCT_STATES:
            raise DFAProductTooLargeError(f"more than {MAX_PRODUCT_STATES} product states")
        ids = np.arange(known.size, known.size + fresh.size)
        known = np.concatenate([known, fresh])
        known_sorted = np.concatenate([known_sorted, fresh])
        known_order = np.concatenate([known_order, ids])
        order = np.argsort(known_sorted, kind="stable")
        known_sorted, known_order = known_sorted[order], known_order[order]
        live = target >= 0
        row = np.full(target.shape, -1, dtype=np.int32)
        row[live] = known_order[np.searchsorted(known_sorted, target[live])]
        rows.append(row)
        frontier = fresh
    table = np.concatenate(rows)
    digits = [(known // w) % (d.n_states + 1) - 1 for w, d in zip(weights, dfas, strict=True)]
    flags = np.stack([f[np.where(c >= 0, c, f.size - 1)] for f, c in zip(finals, digits, strict=True)])
    return minimize(table, np.asarray(accept(flags), dtype=bool))


def intersect(a: ByteDFA, b: ByteDFA) -> ByteDFA | None:
    """Strings both accept (None if there are none)."""
    return _product([a, b], lambda f: f.all(axis=0), all_alive=True)


def difference(a: ByteDFA, b: ByteDFA) -> ByteDFA | None:
    """Strings ``a`` accepts and ``b`` does not (None if there are none)."""
    return _product([a, b], lambda f: f[0] & ~f[1], all_alive=False)

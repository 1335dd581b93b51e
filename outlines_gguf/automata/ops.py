"""Products of byte automata: intersection and difference.

Used where a constraint is the combination of several (``allOf`` parts that
cannot be merged, a string with both a ``pattern`` and a ``format``, keys
that match a pattern but are not declared properties). The product is explored
from the start state only, so just the reachable pairs are built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from outlines_gguf.automata.budget import spend
from outlines_gguf.automata.dfa import ByteDFA, StateNumbers, minimize
from outlines_gguf.errors import DFAProductTooLargeError

MAX_PRODUCT_STATES = 50_000
PRODUCT_STATE_WORK = 400
"""Work units (see ``automata.budget.MAX_COMPILE_WORK``) charged per product state (about 0.1 ms each)."""


def _product(
    dfas: Sequence[ByteDFA], accept: Callable[[np.ndarray], bool], all_alive: bool
) -> ByteDFA | None:
    """Reachable product; ``all_alive``: a dead component kills the pair (intersection)."""
    states: StateNumbers[tuple[int, ...]] = StateNumbers(
        (0,) * len(dfas),
        MAX_PRODUCT_STATES,
        lambda: DFAProductTooLargeError(f"more than {MAX_PRODUCT_STATES} product states"),
    )
    rows: list[np.ndarray] = []
    accepting: list[bool] = []
    dead_row = np.full(256, -1, dtype=np.int32)
    while len(rows) < len(states):
        combo = states.found[len(rows)]
        spend(PRODUCT_STATE_WORK)
        comps = np.stack([d.transitions[s] if s >= 0 else dead_row for d, s in zip(dfas, combo, strict=True)])
        finals = np.array([s >= 0 and bool(d.accepting[s]) for d, s in zip(dfas, combo, strict=True)])
        accepting.append(accept(finals))
        dead = (comps < 0).any(axis=0) if all_alive else (comps < 0).all(axis=0)
        row = np.full(256, -1, dtype=np.int32)
        live_bytes = np.flatnonzero(~dead)
        if live_bytes.size:
            cols, inverse = np.unique(comps[:, live_bytes].T, axis=0, return_inverse=True)
            ids = np.empty(len(cols), dtype=np.int32)
            for j, col in enumerate(cols):
                ids[j] = states.number(tuple(int(x) for x in col))
            row[live_bytes] = ids[inverse.reshape(-1)]
        rows.append(row)
    return minimize(np.stack(rows), np.array(accepting, dtype=bool))


def intersect(a: ByteDFA, b: ByteDFA) -> ByteDFA | None:
    """Strings both accept (None if there are none)."""
    return _product([a, b], lambda f: bool(f.all()), all_alive=True)


def difference(a: ByteDFA, b: ByteDFA) -> ByteDFA | None:
    """Strings ``a`` accepts and ``b`` does not (None if there are none)."""
    return _product([a, b], lambda f: bool(f[0] and not f[1]), all_alive=False)

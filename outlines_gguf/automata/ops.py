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
from outlines_gguf.automata.dfa import ByteDFA, minimize, reaching
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


def difference_soon_dead(a: ByteDFA, b: ByteDFA) -> ByteDFA | None:
    """``difference(a, b)`` for a ``b`` that dies after a few bytes on most of ``a``'s texts
    (a finite set of texts, say), without exploring ``a`` again (None if nothing is left).

    The product's pairs are built only while ``b`` is alive, following ``b``'s few edges;
    where ``b`` dies the text goes on in ``a``'s own state, so the result is those pairs, then
    ``a``'s table as it is (its states are live already). ``difference`` walks the whole
    product and minimizes it: for a unique array's next item (every JSON value but the few
    written), 23 ms an item on an automaton of any JSON value, where this is a copy of it."""
    ta, tb = a.transitions, b.transitions
    flat_a = ta.reshape(-1)
    rows_b, bytes_b = np.nonzero(tb >= 0)  # b's edges, per state: few (it dies soon)
    starts_b = np.searchsorted(rows_b, np.arange(b.n_states + 1)).tolist()
    bytes_list, targets_b = bytes_b.tolist(), tb[rows_b, bytes_b].tolist()
    known: dict[tuple[int, int], int] = {(0, 0): 0}
    pairs: list[tuple[int, int]] = [(0, 0)]
    edges: list[tuple[int, int, int]] = []  # (pair, byte, pair): where both read on
    i = 0
    while i < len(pairs):
        x, y = pairs[i]
        for j in range(starts_b[y], starts_b[y + 1]):
            byte = bytes_list[j]
            tx = int(flat_a[x * 256 + byte])
            if tx < 0:
                continue
            key = (tx, targets_b[j])
            k = known.get(key)
            if k is None:
                if len(pairs) >= MAX_PRODUCT_STATES:
                    raise DFAProductTooLargeError(f"more than {MAX_PRODUCT_STATES} product states")
                k = known[key] = len(pairs)
                pairs.append(key)
            edges.append((i, byte, k))
        i += 1
    spend(PRODUCT_STATE_WORK * len(pairs))
    pairs_x = np.array([x for x, _ in pairs], dtype=np.int64)
    pairs_y = np.array([y for _, y in pairs], dtype=np.int64)
    table = ta[pairs_x].astype(np.int64)  # a's targets as they are, pairs as -2 - pair
    if edges:
        src, on, dst = np.array(edges, dtype=np.int64).T
        table[src, on] = -2 - dst
    finals = a.accepting[pairs_x] & ~b.accepting[pairs_y]
    # a pair is live if it accepts, reads on into a state of a (all live), or into a live pair
    among = np.where(table <= -2, -2 - table, -1)
    live = reaching(among, finals | (table >= 0).any(axis=1))
    if not live[0]:
        return None
    kept = np.flatnonzero(live)
    n_pairs = kept.size
    new_pair = np.full(table.shape[0], -1, dtype=np.int64)
    new_pair[kept] = np.arange(n_pairs)
    pair_rows = table[kept]
    pair_rows = np.where(pair_rows >= 0, pair_rows + n_pairs, new_pair[np.maximum(-2 - pair_rows, 0)])
    pair_rows[table[kept] == -1] = -1
    shifted = np.where(ta >= 0, ta + n_pairs, -1)
    out = np.concatenate([pair_rows, shifted]).astype(np.int32)
    return ByteDFA(out, np.concatenate([finals[kept], a.accepting]))

"""Byte-level DFAs: :class:`ByteDFA` and the helpers that prune, minimize and group its columns."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from outlines_gguf import fast_unique
from outlines_gguf.automata.budget import MAX_DFA_STATES, spend


@dataclass(frozen=True)
class ByteDFA:
    """A deterministic automaton over bytes with only live states.

    ``transitions[s, b]`` is the next state or -1 (dead); every state can
    still reach an accepting state. State 0 is the start.
    """

    transitions: np.ndarray  # (n_states, 256) int32
    accepting: np.ndarray  # (n_states,) bool

    @property
    def n_states(self) -> int:
        return int(self.accepting.size)

    def run(self, data: bytes, state: int = 0) -> int:
        """The state after reading ``data`` (-1 if the automaton died)."""
        table = self.transitions
        for b in data:
            state = int(table[state, b])
            if state < 0:
                return -1
        return state

    def matches(self, data: bytes) -> bool:
        state = self.run(data)
        return state >= 0 and bool(self.accepting[state])


def reaching(
    table: np.ndarray, targets: np.ndarray, extra: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Per state: some path of transitions (and ``extra`` edges, (sources, destinations))
    leads from it to a state of ``targets`` (a bool per state). One search backwards over
    the distinct edges, linear in them (a fixpoint over the table costs a pass per step of
    the longest path)."""
    n = table.shape[0]
    src, byte = np.nonzero(table >= 0)
    dst = table[src, byte].astype(np.int64)
    if extra is not None:
        src = np.concatenate([src, extra[0]])
        dst = np.concatenate([dst, extra[1].astype(np.int64)])
    pairs = fast_unique.unique(dst * n + src)
    rev_src = (pairs % n).tolist()
    starts = np.searchsorted(pairs // n, np.arange(n + 1)).tolist()
    live = targets.tolist()
    stack = [i for i, a in enumerate(live) if a]
    while stack:
        s = stack.pop()
        for p in rev_src[starts[s] : starts[s + 1]]:
            if not live[p]:
                live[p] = True
                stack.append(p)
    return np.array(live, dtype=bool)


def _prune_dead(table: np.ndarray, accepting: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Keep only states that can reach acceptance; renumber with the start as 0."""
    pruned = prune_dead_keeping_order(table, accepting)
    return None if pruned is None else (pruned[0], pruned[1])


def prune_dead_keeping_order(
    table: np.ndarray, accepting: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``_prune_dead``, and the old number of each state kept (in order: renumbering keeps it)."""
    keep = reaching(table, accepting)
    if not keep[0]:
        return None
    new_id = np.cumsum(keep) - 1
    new_id[~keep] = -1
    kept = table[keep]
    remapped = np.where(kept >= 0, new_id[np.maximum(kept, 0)], -1).astype(np.int32)
    return remapped, accepting[keep], np.flatnonzero(keep)


K = TypeVar("K", bound=Hashable)


class StateNumbers(Generic[K]):
    """The states a construction finds (subsets, product pairs), numbered in the order found.

    ``found[n]`` is state ``n``; the constructions build rows for them in that order (breadth
    first, so the start is 0). Finding more than ``limit`` states raises ``too_many()``.
    """

    def __init__(self, start: K, limit: int, too_many: Callable[[], Exception]) -> None:
        self.index: dict[K, int] = {start: 0}
        self.found: list[K] = [start]
        self.limit = limit
        self.too_many = too_many

    def number(self, key: K) -> int:
        k = self.index.get(key)
        if k is None:
            if len(self.found) >= self.limit:
                raise self.too_many()
            k = self.index[key] = len(self.found)
            self.found.append(key)
        return k

    def __len__(self) -> int:
        return len(self.found)


_ROW_WEIGHTS = np.random.default_rng(20261127).integers(1, 2**62, size=(2, 257), dtype=np.int64)

_COLUMN_WEIGHTS = np.random.default_rng(20261128).integers(1, 2**61, size=(2, MAX_DFA_STATES), dtype=np.int64)


def group_columns(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group equal columns: (first column of each group, group of each column).

    Columns are grouped by two 64-bit hashes and the grouping is verified
    exactly; on a collision (never seen) it falls back to ``np.unique``.
    """
    k = matrix.shape[0]
    if k <= _COLUMN_WEIGHTS.shape[1]:
        with np.errstate(over="ignore"):
            h1 = _COLUMN_WEIGHTS[0, :k] @ (matrix + 1)
            h2 = _COLUMN_WEIGHTS[1, :k] @ (matrix + 1)
        _, first, inverse = fast_unique.unique_first_inverse(h1 ^ (h2 >> 1))
        inverse = inverse.reshape(-1)
        if (matrix[:, first[inverse]] == matrix).all():
            return first, inverse
    _, first, inverse = np.unique(matrix.T, axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def minimize(
    table: np.ndarray, accepting: np.ndarray, byte_class: np.ndarray | None = None
) -> ByteDFA | None:
    """Drop dead states and merge equivalent ones (None if nothing is accepted).

    ``table`` has one column per byte class (``byte_class[b]``; None: one
    column per byte, grouped here), so the work scales with the classes the
    automaton distinguishes, not with 256.
    """
    if byte_class is None:
        first, byte_class = group_columns(table)
        table = table[:, first]
    pruned = _prune_dead(table, accepting)
    if pruned is None:
        return None
    merged, final = _merge_equivalent(*pruned)
    return ByteDFA(np.ascontiguousarray(merged[:, byte_class]), final)


def _merge_equivalent(
    table: np.ndarray, accepting: np.ndarray, rounds: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Merge states with identical rows and finality, repeatedly (sound, cheap).

    Rows are grouped by a 64-bit hash and merged only if they equal their
    group's first row exactly. Classes are numbered by first occurrence, so
    the start state stays 0.
    """
    for _ in range(rounds):
        n = table.shape[0]
        spend(8 * n)
        keyed = np.concatenate([table, accepting[:, None]], axis=1).astype(np.int64)
        width = keyed.shape[1]
        with np.errstate(over="ignore"):
            h = (keyed @ _ROW_WEIGHTS[0, :width]) ^ ((keyed @ _ROW_WEIGHTS[1, :width]) >> 1)
        _, first, inverse = fast_unique.unique_first_inverse(h)
        rep = first[inverse.reshape(-1)]
        collided = ~(keyed == keyed[rep]).all(axis=1)
        rep[collided] = np.flatnonzero(collided)  # a hash collision keeps its own class
        representatives = fast_unique.unique(rep)
        if representatives.size == n:
            break
        new_id = np.searchsorted(representatives, rep)
        kept = table[representatives]
        table = np.where(kept >= 0, new_id[np.maximum(kept, 0)], -1).astype(np.int32)
        accepting = accepting[representatives]
    return table, accepting


def language_size(dfa: ByteDFA, limit: int) -> int | None:
    """How many texts ``dfa`` accepts (at most ``limit``: more are counted as ``limit``), or
    None if infinitely many.

    Every state can reach acceptance (a ByteDFA keeps live states only), so the language is
    infinite exactly when a cycle is reachable; otherwise the texts are counted over the
    acyclic graph, from the end."""
    table = dfa.transitions
    n = table.shape[0]
    order: list[int] = []  # states reachable from the start, each after all it leads to
    state_of = [0] * n  # 0 new, 1 on the path, 2 done
    stack: list[tuple[int, int]] = [(0, 0)]
    targets = [np.unique(row[row >= 0]).tolist() for row in table]
    while stack:
        s, i = stack.pop()
        if i == 0:
            if state_of[s] == 2:
                continue
            state_of[s] = 1
        if i < len(targets[s]):
            stack.append((s, i + 1))
            t = targets[s][i]
            if state_of[t] == 1:
                return None  # a cycle: infinitely many texts
            if state_of[t] == 0:
                stack.append((t, 0))
        else:
            state_of[s] = 2
            order.append(s)
    count = [0] * n
    for s in order:
        row = table[s]
        total = int(dfa.accepting[s])
        for t in row[row >= 0].tolist():
            total += count[t]
        count[s] = min(total, limit)
    return count[0]

"""Byte-level DFAs: :class:`ByteDFA` and the helpers that prune, minimize and group its columns."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeVar, cast

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

    # (an automaton is immutable: what is derived from it is computed once and kept with it,
    # but never pickled; a schema embeds one string automaton hundreds of times)

    def __getstate__(self) -> dict[str, Any]:
        return {"transitions": self.transitions, "accepting": self.accepting}

    @property
    def n_states(self) -> int:
        return int(self.accepting.size)

    def live_bytes(self, state: int) -> list[int]:
        """The bytes ``state`` reads, ascending (kept per state: a sparse trie walk asks for the
        few states it passes through, to look up only their children in a wide trie node)."""
        memo: dict[int, list[int]] | None = self.__dict__.get("_live_bytes")
        if memo is None:
            memo = self.__dict__["_live_bytes"] = {}
        found = memo.get(state)
        if found is None:
            found = memo[state] = np.flatnonzero(self.transitions[state] >= 0).tolist()
        return found

    @cached_property
    def byte_ranges(self) -> list[list[tuple[int, int, int]]]:
        """Per state, its live transitions as runs ``(first byte, last byte, target)``."""
        table = self.transitions
        change = np.ones(table.shape, dtype=bool)
        change[:, 1:] = table[:, 1:] != table[:, :-1]
        rows, starts = fast_unique.nonzero_2d(change)
        ends = np.full(starts.shape, 256, dtype=np.intp)
        same_row = rows[1:] == rows[:-1]
        ends[:-1][same_row] = starts[1:][same_row]
        targets = table[rows, starts]
        live = targets >= 0
        runs: list[list[tuple[int, int, int]]] = [[] for _ in range(table.shape[0])]
        for r, lo, hi, t in zip(
            rows[live].tolist(),
            starts[live].tolist(),
            (ends[live] - 1).tolist(),
            targets[live].tolist(),
            strict=True,
        ):
            runs[r].append((lo, hi, t))
        return runs

    @cached_property
    def longest(self) -> int | None:
        """The length in bytes of the longest text accepted, None if unbounded."""
        table = self.transitions
        n = table.shape[0]
        succ = [sorted(set(row[row >= 0].tolist())) for row in table]
        depth: list[int | None] = [None] * n
        on_path = [False] * n
        stack: list[tuple[int, int]] = [(0, 0)]
        while stack:
            state, i = stack.pop()
            if i == 0:
                on_path[state] = True
            if i < len(succ[state]):
                stack.append((state, i + 1))
                nxt = succ[state][i]
                if on_path[nxt]:
                    return None  # a cycle (every state is live, so it lies on some match)
                if depth[nxt] is None:
                    stack.append((nxt, 0))
                continue
            on_path[state] = False
            depth[state] = max([0, *(1 + cast(int, depth[t]) for t in succ[state])])
        return depth[0]

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
    src, byte = fast_unique.nonzero_2d(table >= 0)
    return reaching_by_edges(table.shape[0], src, table[src, byte].astype(np.int64), targets, extra)


def reaching_by_edges(
    n: int,
    src: np.ndarray,
    dst: np.ndarray,
    targets: np.ndarray,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """:func:`reaching` over the edges ``src[i] -> dst[i]`` (int64) of ``n`` states: for the
    caller that reads a table's edges once and searches them more than once."""
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
    return keep_states(table, accepting, keep)


def keep_states(
    table: np.ndarray, accepting: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The automaton restricted to the states ``keep`` (a bool per state, the start among
    them), renumbered in order: its table, its accepting states, and the old number of each
    state kept."""
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
    table: np.ndarray, accepting: np.ndarray, byte_class: np.ndarray | None = None, merge: bool = True
) -> ByteDFA | None:
    """Drop dead states and merge equivalent ones (None if nothing is accepted).

    ``table`` has one column per byte class (``byte_class[b]``; None: one
    column per byte, grouped here), so the work scales with the classes the
    automaton distinguishes, not with 256. ``merge=False`` only drops dead states (an
    automaton known to be near minimal, where looking for merges costs more than they save).
    """
    if byte_class is None:
        first, byte_class = group_columns(table)
        table = table[:, first]
    pruned = _prune_dead(table, accepting)
    if pruned is None:
        return None
    merged, final = _merge_equivalent(*pruned) if merge else pruned
    return ByteDFA(np.ascontiguousarray(merged[:, byte_class]), final)


def _row_hashes(keyed: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of ``keyed`` (int64, at most 257 columns)."""
    width = keyed.shape[1]
    with np.errstate(over="ignore"):
        return (keyed @ _ROW_WEIGHTS[0, :width]) ^ ((keyed @ _ROW_WEIGHTS[1, :width]) >> 1)


def _equal_rows(keyed: np.ndarray) -> np.ndarray:
    """Per row, the first row equal to it (itself if none before it): grouped by hash and
    checked exactly (a collision keeps its own row)."""
    _, first, inverse = fast_unique.unique_first_inverse(_row_hashes(keyed))
    rep = first[inverse.reshape(-1)]
    collided = ~(keyed == keyed[rep]).all(axis=1)
    rep[collided] = np.flatnonzero(collided)
    return rep


BULK_MERGES = 64
"""A vectorized pass over the whole table goes on while it merges at least this many states
(or a sixteenth of them); fewer, and a worklist finishes (see :func:`_merge_equivalent`)."""


def _merge_equivalent(table: np.ndarray, accepting: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge states with identical rows and finality, until no two are left (sound, cheap).

    Merging two states can make their predecessors' rows equal, and so on back along
    chains of keys. Passes over the whole table merge equal rows while they merge many (a
    trie of 5,000 enum values: whole levels at once); a pass per step of a chain of a few
    merges each cost most of a small schema's compile, so then a worklist finishes: when a
    class absorbs another, only the states with an edge into it are looked at again. The
    result is the least fixpoint of merging equal rows; classes are numbered by their first
    state, so the start state stays 0.
    """
    while True:
        n = table.shape[0]
        spend(8 * n)
        keyed = np.concatenate([table, accepting[:, None]], axis=1).astype(np.int64)
        first_pass = _equal_rows(keyed)
        representatives = fast_unique.unique(first_pass)
        if representatives.size == n:
            return table, accepting
        if n - representatives.size < max(BULK_MERGES, n // 16):
            return _merge_by_worklist(table, accepting, keyed, first_pass)
        new_id = np.searchsorted(representatives, first_pass)
        kept = table[representatives]
        table = np.where(kept >= 0, new_id[np.maximum(kept, 0)], -1).astype(np.int32)
        accepting = accepting[representatives]


def _merge_by_worklist(
    table: np.ndarray, accepting: np.ndarray, keyed: np.ndarray, first_pass: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_merge_equivalent` from a first pass of equal rows (``first_pass``: each state's
    first equal state) on: a second vectorized pass, then the worklist (rows of current
    classes indexed by their hash)."""
    n = table.shape[0]
    parent = first_pass.tolist()
    roots = np.flatnonzero(first_pass == np.arange(n))
    # the rows of the classes with the first merges applied; equal ones join below
    mapped = np.where(keyed[roots, :-1] >= 0, first_pass[np.maximum(keyed[roots, :-1], 0)], -1)
    mapped = np.concatenate([mapped, keyed[roots, -1:]], axis=1)
    second_pass = _equal_rows(mapped)
    # states with an edge into each class (of the first pass), as ranges of one sorted array
    src, column = fast_unique.nonzero_2d(table >= 0)
    pairs = fast_unique.unique(first_pass[table[src, column].astype(np.int64)] * n + src)
    into = (pairs % n).tolist()
    starts = np.searchsorted(pairs // n, np.arange(n + 1)).tolist()
    # a class -> the classes of the first pass it absorbed since (itself not included)
    absorbed: dict[int, list[int]] = {}
    load: dict[int, int] = {}  # a class -> the edges into it (first-pass classes: their range)
    work: list[int] = []
    accepts = accepting.tolist()

    def find(s: int) -> int:
        root = s
        while parent[root] != root:
            root = parent[root]
        while parent[s] != root:
            parent[s], s = root, parent[s]
        return root

    def join(a: int, b: int) -> int:
        """Merge classes ``a`` and ``b``. The rows that name the smaller one change, so the
        states with an edge into it are looked at again (the larger one's rows stay: a chain
        of merges into a class with thousands of predecessors costs its own, not theirs)."""
        if load.get(a, starts[a + 1] - starts[a]) < load.get(b, starts[b + 1] - starts[b]):
            a, b = b, a
        parent[b] = a
        moved = [b, *absorbed.pop(b, ())]
        absorbed.setdefault(a, []).extend(moved)
        before = load.pop(b, starts[b + 1] - starts[b])
        load[a] = load.get(a, starts[a + 1] - starts[a]) + before
        for c in moved:
            work.extend(into[starts[c] : starts[c + 1]])
        return a

    def row(s: int) -> list[int]:
        return [find(t) if t >= 0 else -1 for t in table[s].tolist()] + [accepts[s]]

    roots_list = roots.tolist()
    for i in np.flatnonzero(second_pass != np.arange(roots.size)).tolist():
        join(find(roots_list[int(second_pass[i])]), find(roots_list[i]))
    hashes = _row_hashes(mapped).tolist()
    index = dict(zip(hashes[::-1], roots_list[::-1], strict=True))  # (the first state per hash)
    weights = np.ascontiguousarray(_ROW_WEIGHTS[:, : keyed.shape[1]].T)
    while work:
        s = find(work.pop())
        cells = row(s)
        low, high = (np.array(cells, dtype=np.int64) @ weights).tolist()
        key = low ^ (high >> 1)
        other = index.setdefault(key, s)
        if other == s:
            continue
        o = find(other)
        if o == s:
            continue
        if row(o) == cells:
            index[key] = join(o, s)
        else:  # the entry's row has changed since (or, never seen, a collision): s is current
            index[key] = s
    classes = np.array([find(s) for s in range(n)], dtype=np.int64)
    first = np.full(n, n, dtype=np.int64)
    np.minimum.at(first, classes, np.arange(n))
    classes = first[classes]  # each class named by its first state
    representatives = fast_unique.unique(classes)
    new_id = np.searchsorted(representatives, classes)
    kept = table[representatives]
    merged = np.where(kept >= 0, new_id[np.maximum(kept, 0)], -1).astype(np.int32)
    return merged, accepting[representatives]


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


def texts(dfa: ByteDFA, limit: int) -> list[bytes] | None:
    """Every text ``dfa`` accepts, or None if there are more than ``limit`` (or infinitely
    many). Depth first over the transitions, one edge per byte (the language is finite, so
    every path ends)."""
    size = language_size(dfa, limit + 1)
    if size is None or size > limit:
        return None
    table, accepting = dfa.transitions, dfa.accepting
    out: list[bytes] = []
    stack: list[tuple[int, bytes]] = [(0, b"")]
    while stack:
        state, text = stack.pop()
        if accepting[state]:
            out.append(text)
        row = table[state]
        for byte in np.flatnonzero(row >= 0).tolist():
            stack.append((int(row[byte]), text + bytes([byte])))
    return sorted(out)

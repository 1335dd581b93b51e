"""A prefix tree of a vocabulary's tokens, walked against a byte automaton.

Nodes are numbered level by level (breadth first), so the children of a
node are one contiguous range and a whole level can be advanced with a few
numpy operations. Walking the trie from an automaton state visits only the
prefixes that keep the automaton alive: in a state that allows ten first
bytes, almost every token is discarded after one step.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from outlines_gguf import fast_unique

_NARROW = 64  # a frontier this small, with at most _NARROW_NODES below it,
_NARROW_NODES = 1024  # is finished node by node in Python instead of level by level


def loop_bits(transitions: np.ndarray, states: np.ndarray | None = None) -> np.ndarray:
    """Per state of a table of at most 256 columns (bytes, or byte classes), the labels that
    lead back to it, as 256 bits (four uint64, label ``b`` is bit ``b % 64`` of word ``b // 64``).
    ``states``: the state each row is (default: its index)."""
    n = transitions.shape[0]
    own = np.arange(n) if states is None else states
    back = np.zeros((n, 256), dtype=bool)
    back[:, : transitions.shape[1]] = transitions == own[:, None]
    packed = np.packbits(back, axis=1, bitorder="little")  # (n, 32) bytes, byte b is bit b
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64).reshape(n, 4)


@dataclass(frozen=True)
class Loops:
    """Where a walk may take a whole subtree (the ``loops`` of :meth:`TokenTrie.walk`).

    ``bits``: per state, the bytes leading back to it (:func:`loop_bits`). ``chars``:
    per state, every multi-byte plain-text character leads back to it (None: never
    assumed); ``plain``: per trie node, every token below is plain text but for an
    unfinished last character. A subtree is taken whole in a state if its ASCII bytes
    lead back there, and its other bytes are only those of plain-text characters that
    do too."""

    bits: np.ndarray
    chars: np.ndarray | None = None
    plain: np.ndarray | None = None

    def closed(self, below: np.ndarray, states: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Per (node, state): the node's subtree stays in the state (``below``: its bits)."""
        stray = below & ~self.bits[states]
        closed = ~stray[:, :2].any(axis=1)
        high = stray[:, 2:].any(axis=1)
        if self.chars is not None and self.plain is not None:
            wide = (below[:, 2:].any(axis=1)) & self.chars[states] & self.plain[nodes]
            high &= ~wide
        return closed & ~high


def concat_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate ``range(s, s + c)`` for each pair, vectorized."""
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(counts)
    offsets = np.repeat(starts - (ends - counts), counts)
    return offsets + np.arange(total)


@dataclass(frozen=True)
class TokenTrie:
    """The trie of all emittable tokens of a vocabulary (special ids excluded)."""

    node_byte: np.ndarray  # the byte (or byte class) leading into each node
    parent: np.ndarray  # int64, -1 for level-1 nodes
    level_start: np.ndarray  # int64, level_start[d - 1] = first node at depth d
    first_child: np.ndarray  # int64, index of each node's first child
    n_children: np.ndarray  # int64
    term_start: np.ndarray  # int64, into term_tokens
    term_count: np.ndarray  # int64, number of tokens ending at each node
    term_tokens: np.ndarray  # int32, token ids grouped by the node they end at
    root_children: int  # number of level-1 nodes (they are nodes 0..root_children-1)
    sorted_ids: np.ndarray | None = None  # int32, the tokens in depth-first order (byte order in a byte trie)
    node_row: np.ndarray | None = None  # int64, each node's first token in ``sorted_ids``

    @cached_property
    def _subtree_tokens(self) -> np.ndarray:
        """Number of tokens ending in each node's subtree (itself included): with ``node_row``,
        the subtree's tokens are ``sorted_ids[node_row : node_row + this]`` (a prefix's tokens
        are contiguous in depth-first order)."""
        return self._bottom_up_sum(self.term_count.astype(np.int64))

    @cached_property
    def _subtree_bits(self) -> np.ndarray:
        """Per node, the bytes on the edges strictly below it, as 256 bits (four uint64)."""
        n = self.n_nodes
        own = np.zeros((n, 4), dtype=np.uint64)
        labels = self.node_byte.astype(np.int64)
        own[np.arange(n), labels >> 6] = np.left_shift(np.uint64(1), (labels & 63).astype(np.uint64))
        below = np.zeros((n, 4), dtype=np.uint64)
        starts = [*self.level_start.tolist(), n]
        levels = list(itertools.pairwise(starts))
        for (lo, hi), (_, below_hi) in zip(reversed(levels[:-1]), reversed(levels[1:]), strict=True):
            if below_hi <= hi:
                continue
            parents = np.arange(lo, hi)
            parents = parents[self.n_children[lo:hi] > 0]
            if parents.size == 0:
                continue
            child_bits = own[hi:below_hi] | below[hi:below_hi]
            below[parents] = np.bitwise_or.reduceat(child_bits, self.first_child[parents] - hi, axis=0)
        return below

    def subtree_all(self, flag: np.ndarray) -> np.ndarray:
        """Per node: every token ending in its subtree has ``flag`` (a bool per token id)."""
        bad = np.zeros(self.n_nodes, dtype=np.int64)
        ends = np.repeat(np.arange(self.n_nodes), self.term_count)
        np.add.at(bad, ends, ~flag[self.term_tokens])
        return self._bottom_up_sum(bad) == 0

    def _bottom_up_sum(self, values: np.ndarray) -> np.ndarray:
        """``values`` summed over each node's subtree (a node's children are one contiguous run
        of the next level)."""
        total = values.copy()
        starts = [*self.level_start.tolist(), self.n_nodes]
        levels = list(itertools.pairwise(starts))
        for (lo, hi), (_, below_hi) in zip(reversed(levels[:-1]), reversed(levels[1:]), strict=True):
            if below_hi > hi:  # each child's total into its parent (one bincount a level)
                sums = np.bincount(self.parent[hi:below_hi] - lo, total[hi:below_hi], hi - lo)
                total[lo:hi] += sums.astype(np.int64)
        return total

    @cached_property
    def _subtree_size(self) -> np.ndarray:
        """Number of nodes in each node's subtree (itself included)."""
        return self._bottom_up_sum(np.ones(self.n_nodes, dtype=np.int64))

    @cached_property
    def _lists(self) -> tuple[Sequence[int], ...]:
        """The arrays as sequences of Python ints, for the per-node walk of thin levels:
        memoryviews, made at once (lists of a 152k vocabulary's trie take 30+ ms to build)
        and read almost as fast."""
        return tuple(
            np.ascontiguousarray(a).data  # a memoryview
            for a in (
                self.node_byte,
                self.first_child,
                self.n_children,
                self.term_start,
                self.term_count,
                self.term_tokens,
            )
        )

    def walk_narrow(
        self, flat: np.ndarray, stride: int, nodes: np.ndarray, states: np.ndarray, stops: bool = False
    ) -> tuple[np.ndarray, list[int], list[int]]:
        """Depth-first walk below a narrow frontier: deep levels hold few nodes,
        where one Python step per node beats a dozen numpy calls per level.

        ``nodes`` were entered and are in ``states`` (of the int32 table ``flat``, rows of
        ``stride``). Returns the tokens found, and with ``stops`` the children whose table
        entry is negative (the automaton stops before their byte) with the state each was
        entered from; those are not walked.
        """
        labels, first_child, n_children, term_start, term_count, term_tokens = self._lists
        table = flat.data  # a memoryview
        out: list[int] = []
        stopped: list[int] = []
        stopped_from: list[int] = []
        stack = list(zip(nodes.tolist(), states.tolist(), strict=True))
        pop, push = stack.pop, stack.append
        while stack:
            node, state = pop()
            count = term_count[node]
            if count:
                start = term_start[node]
                out.extend(term_tokens[start : start + count])
            first = first_child[node]
            base = state * stride
            for child in range(first, first + n_children[node]):
                nxt = table[base + labels[child]]
                if nxt >= 0:
                    push((child, nxt))
                elif stops:
                    stopped.append(child)
                    stopped_from.append(state)
        return np.asarray(out, dtype=np.int32), stopped, stopped_from

    def prepare_walks(self) -> None:
        """Compute the lazily built tables a walk uses (subtree sizes, Python lists, and for a
        byte trie the bytes and tokens below each node)."""
        self._subtree_size  # noqa: B018
        self._lists  # noqa: B018
        if self.sorted_ids is not None:
            self._subtree_bits  # noqa: B018
            self._subtree_tokens  # noqa: B018

    @property
    def n_nodes(self) -> int:
        return int(self.node_byte.size)

    @classmethod
    def build(cls, tokens: Sequence[bytes], is_special: np.ndarray) -> TokenTrie:
        return cls.of_ids(tokens, [i for i, t in enumerate(tokens) if t and not is_special[i]])

    @classmethod
    def of_ids(cls, tokens: Sequence[bytes], ids: Sequence[int]) -> TokenTrie:
        """The trie of the tokens ``ids`` (non-empty ones) of the vocabulary ``tokens``: a part of
        the vocabulary without a pass over all of it."""
        ids = sorted((i for i in ids if tokens[i]), key=tokens.__getitem__)
        m = len(ids)
        if m == 0:
            empty = np.empty(0, dtype=np.int64)
            return cls(
                np.empty(0, np.uint8),
                empty,
                np.zeros(1, np.int64),
                empty,
                empty,
                empty,
                empty,
                np.empty(0, np.int32),
                0,
                np.empty(0, np.int32),
                empty,
            )
        lens = np.fromiter((len(tokens[i]) for i in ids), dtype=np.int64, count=m)
        width = int(lens.max())
        matrix = np.frombuffer(b"".join(tokens[i].ljust(width, b"\0") for i in ids), dtype=np.uint8).reshape(
            m, width
        )

        # longest common prefix with the previous (sorted) token
        lcp = np.zeros(m, dtype=np.int64)
        if m > 1:
            differs = matrix[1:] != matrix[:-1]
            first_diff = np.where(differs.any(axis=1), differs.argmax(axis=1), width)
            lcp[1:] = np.minimum(first_diff, np.minimum(lens[1:], lens[:-1]))

        # row i creates the nodes for depths lcp[i]+1 .. lens[i]
        new_per_row = lens - lcp
        rows = np.repeat(np.arange(m), new_per_row)
        depths = concat_ranges(lcp + 1, new_per_row)
        order = np.lexsort((rows, depths))
        rows, depths = rows[order], depths[order]
        node_byte = matrix[rows, depths - 1]

        level_start = np.searchsorted(depths, np.arange(1, width + 2))
        parent = np.full(rows.size, -1, dtype=np.int64)
        for d in range(2, width + 1):
            lo, hi = level_start[d - 1], level_start[d]
            plo, phi = level_start[d - 2], level_start[d - 1]
            parent[lo:hi] = plo + np.searchsorted(rows[plo:phi], rows[lo:hi], side="right") - 1
        node_ids = np.arange(rows.size)
        first_child = np.searchsorted(parent, node_ids, side="left")
        n_children = np.searchsorted(parent, node_ids, side="right") - first_child

        # the node each token ends at: its ancestor at depth len
        terminal = np.empty(m, dtype=np.int64)
        row_ids = np.arange(m)
        for d in np.unique(lens):
            sel = row_ids[lens == d]
            lo, hi = level_start[d - 1], level_start[d]
            terminal[sel] = lo + np.searchsorted(rows[lo:hi], sel, side="right") - 1
        by_node = np.argsort(terminal, kind="stable")
        term_tokens = np.asarray(ids, dtype=np.int32)[by_node]
        term_count = np.bincount(terminal, minlength=rows.size).astype(np.int64)
        term_start = np.cumsum(term_count) - term_count
        return cls(
            node_byte,
            parent,
            level_start[:-1].astype(np.int64),
            first_child,
            n_children,
            term_start,
            term_count,
            term_tokens,
            int(level_start[1]),
            np.asarray(ids, dtype=np.int32),
            rows.astype(np.int64),
        )

    def compress(self, byte_class: np.ndarray) -> TokenTrie:
        """The same tokens as a trie over byte classes.

        Bytes that an automaton never tells apart share a class; tokens whose
        class sequences share a prefix then share a node. Walking the result
        with a class-level transition table gives exactly the same tokens as
        walking this trie with the byte-level table, on far fewer nodes.
        """
        n = self.n_nodes
        if n == 0:  # no emittable token: nothing to merge
            return self
        node_class = byte_class[self.node_byte].astype(np.int64)
        n_classes = int(byte_class.max()) + 1
        new_of = np.empty(n, dtype=np.int64)
        new_parent: list[np.ndarray] = []
        new_label: list[np.ndarray] = []
        starts = [*self.level_start.tolist(), n]
        offset = 0
        new_level_start = []
        for lo, hi in itertools.pairwise(starts):
            if lo >= hi:
                break
            parents = self.parent[lo:hi]
            parent_new = np.where(parents >= 0, new_of[np.maximum(parents, 0)], -1)
            keys = (parent_new + 1) * n_classes + node_class[lo:hi]
            uniq, _, inverse = fast_unique.unique_first_inverse(keys)
            new_of[lo:hi] = offset + inverse.reshape(-1)
            new_level_start.append(offset)
            new_parent.append(uniq // n_classes - 1)
            new_label.append(uniq % n_classes)
            offset += uniq.size
        parent = np.concatenate(new_parent)
        node_ids = np.arange(offset)
        first_child = np.searchsorted(parent, node_ids, side="left")
        n_children = np.searchsorted(parent, node_ids, side="right") - first_child
        token_node = new_of[np.repeat(np.arange(n), self.term_count)]
        by_node = np.argsort(token_node, kind="stable")
        term_count = np.bincount(token_node, minlength=offset).astype(np.int64)
        compressed = TokenTrie(
            np.concatenate(new_label).astype(np.uint8),
            parent,
            np.asarray(new_level_start, dtype=np.int64),
            first_child,
            n_children,
            np.cumsum(term_count) - term_count,
            term_count,
            self.term_tokens[by_node],
            int(new_level_start[1] if len(new_level_start) > 1 else offset),
        )
        return compressed.in_depth_first_order()

    def in_depth_first_order(self) -> TokenTrie:
        """This trie with ``sorted_ids`` and ``node_row``: its tokens in depth-first order (a
        node's own tokens, then its children's subtrees in label order), so that each subtree's
        tokens are one slice and a walk can take a subtree whole (:meth:`take_whole`)."""
        n = self.n_nodes
        subtree = self._subtree_tokens
        row = np.zeros(n, dtype=np.int64)
        starts = [*self.level_start.tolist(), n]
        for lo, hi in itertools.pairwise(starts):
            if lo >= hi:
                break
            before = np.cumsum(subtree[lo:hi]) - subtree[lo:hi]  # the level's earlier subtrees
            parents = self.parent[lo:hi]
            if lo == 0:  # the root's children: one group
                row[lo:hi] = before
                continue
            first = self.first_child[parents] - lo  # each group's first sibling in the level
            row[lo:hi] = row[parents] + self.term_count[parents] + before - before[first]
        ends = np.flatnonzero(self.term_count)
        counts = self.term_count[ends]
        order = np.empty(int(counts.sum()), dtype=np.int32)
        tokens = self.term_tokens[concat_ranges(self.term_start[ends], counts)]
        order[concat_ranges(row[ends], counts)] = tokens
        ordered = dataclasses.replace(self, sorted_ids=order, node_row=row)
        ordered.__dict__["_subtree_tokens"] = subtree  # (the same trie: its cached counts hold)
        return ordered

    def step(
        self, nodes: np.ndarray, states: np.ndarray, found: list[np.ndarray]
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """One level of a walk: append the tokens ending at ``nodes`` to ``found``; return the
        children of ``nodes`` and the state of each one's parent (None when there are none)."""
        counts = self.term_count[nodes]
        ends = counts > 0
        if ends.any():
            found.append(self.term_tokens[concat_ranges(self.term_start[nodes[ends]], counts[ends])])
        counts = self.n_children[nodes]
        inner = counts > 0
        if not inner.any():
            return None, states
        counts = counts[inner]
        return concat_ranges(self.first_child[nodes[inner]], counts), np.repeat(states[inner], counts)

    def take_whole(
        self,
        nodes: np.ndarray,
        states: np.ndarray,
        loops: Loops,
        found: list[np.ndarray] | None,
        keep: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The frontier (``nodes`` reached in ``states``) without the nodes whose subtree stays
        in their state (and is not in ``keep``); the tokens of those subtrees are appended to
        ``found`` (None: not collected)."""
        if self.sorted_ids is None or self.node_row is None:
            return nodes, states
        closed = loops.closed(self._subtree_bits[nodes], states, nodes)
        if keep is not None:
            closed &= ~keep
        if not closed.any():
            return nodes, states
        if found is not None:
            whole = nodes[closed]
            found.append(self.sorted_ids[concat_ranges(self.node_row[whole], self._subtree_tokens[whole])])
        return nodes[~closed], states[~closed]

    def walk(
        self,
        transitions: np.ndarray,
        state: int,
        first_bytes: np.ndarray | None = None,
        loops: Loops | None = None,
    ) -> np.ndarray:
        """All tokens that keep an automaton alive from ``state``.

        ``transitions`` is an ``(n_states, n_labels)`` int32 table (labels are
        bytes, or byte classes for a compressed trie) with -1 for the dead
        state. ``first_bytes`` restricts the walk to tokens starting with one
        of them. ``loops`` (byte tries only): a node reached in a state that
        every byte (or, for the states that allow it, every character) below it
        leads back to is not walked further: its whole subtree is allowed, one
        slice of the tokens in byte order (in a dense state, most of the trie).
        Returns the token ids, unsorted.
        """
        stride = transitions.shape[1]
        flat = np.ascontiguousarray(transitions, dtype=np.int32).reshape(-1)
        nodes = np.arange(self.root_children)
        if first_bytes is not None:
            nodes = nodes[fast_unique.isin_few(self.node_byte[: self.root_children], first_bytes)]
        states = flat[state * stride + self.node_byte[nodes].astype(np.int64)]
        alive = states >= 0
        nodes, states = nodes[alive], states[alive]
        found_tokens: list[np.ndarray] = []
        while nodes.size:
            if nodes.size <= _NARROW and int(self._subtree_size[nodes].sum()) <= _NARROW_NODES:
                found_tokens.append(self.walk_narrow(flat, stride, nodes, states)[0])
                break
            if loops is not None:
                nodes, states = self.take_whole(nodes, states, loops, found_tokens)
                if not nodes.size:
                    break
            children, parents = self.step(nodes, states, found_tokens)
            if children is None:
                break
            child_states = flat[parents.astype(np.int64) * stride + self.node_byte[children]]
            alive = child_states >= 0
            nodes, states = children[alive], child_states[alive]
        if not found_tokens:
            return np.empty(0, dtype=np.int32)
        return np.concatenate(found_tokens)

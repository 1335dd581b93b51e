"""Token masks for a grammar in the general mode (:mod:`~outlines_gguf.grammar.general`).

A guide state is a configuration set. The mask walks the vocabulary's token
trie, compressed to the grammar's byte classes, level by level; each node
carries the id of its configuration in the grammar's lazily built automaton,
so a level is one vectorized table lookup, and only transitions never seen
before are computed (in Python, once per grammar). A token is allowed iff
its configuration is not empty: every item of a configuration can be
completed, so no allowed token leads to a dead end. Masks are cached per
configuration (LRU).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import cast

import numpy as np

from outlines_gguf.grammar.general import ConfigSet, GeneralGrammar
from outlines_gguf.guides.base import FINISHED, TokenMask
from outlines_gguf.guides.grammar import NARROW, NARROW_NODES, GrammarGuide
from outlines_gguf.tokens.trie import Loops, loop_bits


class GeneralCFGGuide(GrammarGuide):
    """A guide over a :class:`~outlines_gguf.grammar.general.GeneralGrammar` (the Guide protocol)."""

    grammar: GeneralGrammar
    _loops_of: object = None  # the automaton (its list of sets) the loop bits below are for
    _loop_bits = np.zeros((0, 4), dtype=np.uint64)
    _loop_known = np.zeros(0, dtype=bool)

    def __getstate__(self) -> dict[str, object]:
        state = super().__getstate__()
        for name in ("_loops_of", "_loop_bits", "_loop_known"):  # (ids of this process's automaton)
            state.pop(name, None)
        return state

    def _new_lock(self) -> threading.RLock:
        return self.grammar.lock  # the grammar's automaton grows as masks are computed

    # -- the Guide protocol -----------------------------------------------------------------

    # A state is FINISHED or a ConfigSet (hence the casts once FINISHED is ruled out).

    def is_final(self, state: Hashable) -> bool:
        if state == FINISHED:
            return True
        with self._lock:
            return self.grammar.is_final(cast(ConfigSet, state))

    # -- masks ------------------------------------------------------------------------------

    def allowed_tokens(self, config: ConfigSet) -> np.ndarray:
        """Every token whose bytes keep ``config`` alive (unsorted)."""
        grammar, trie = self.grammar, self.trie
        grammar.begin()
        start = grammar.intern(config)
        found: list[np.ndarray] = []
        if start < 0:
            return np.empty(0, dtype=np.int32)
        nodes = np.arange(trie.root_children)
        states = grammar.next_ids(
            np.full(nodes.size, start, dtype=np.int64), trie.node_byte[nodes].astype(np.int64)
        )
        alive = states >= 0
        nodes, states = nodes[alive], states[alive]
        sizes = trie._subtree_size
        while nodes.size:
            if nodes.size <= NARROW and int(sizes[nodes].sum()) <= NARROW_NODES:
                found.append(self._walk_narrow(nodes, states))  # (a thin frontier, deep: a run
                break  # of spaces or dashes is a level each, a dozen numpy calls a level)
            nodes, states = trie.take_whole(nodes, states, self._loops(states), found)
            if not nodes.size:
                break
            children, parents = trie.step(nodes, states, found)
            if children is None:
                break
            states = grammar.next_ids(parents.astype(np.int64), trie.node_byte[children].astype(np.int64))
            alive = states >= 0
            nodes, states = children[alive], states[alive]
        return np.concatenate(found) if found else np.empty(0, dtype=np.int32)

    def _loops(self, states: np.ndarray) -> Loops:
        """Per configuration id, the byte classes that lead it back to itself (a string body
        reads on in one configuration: its subtrees are taken whole), for at least ``states``.
        Kept while the grammar's automaton keeps its ids."""
        grammar = self.grammar
        if self._loops_of is not grammar._sets:  # (a new automaton: new ids)
            self._loops_of, self._loop_bits = grammar._sets, np.zeros((0, 4), dtype=np.uint64)
            self._loop_known = np.zeros(0, dtype=bool)
        n = len(grammar._sets)
        if self._loop_bits.shape[0] < n:
            grow = max(n, 2 * self._loop_bits.shape[0])
            bits = np.zeros((grow, 4), dtype=np.uint64)
            bits[: self._loop_bits.shape[0]] = self._loop_bits
            known = np.zeros(grow, dtype=bool)
            known[: self._loop_known.size] = self._loop_known
            self._loop_bits, self._loop_known = bits, known
        todo = np.unique(states[~self._loop_known[states]])
        if todo.size:
            classes = np.arange(grammar.n_classes, dtype=np.int64)
            rows = [grammar.next_ids(np.full(classes.size, sid, dtype=np.int64), classes) for sid in todo]
            self._loop_bits[todo] = loop_bits(np.stack(rows), todo)
            self._loop_known[todo] = True
        return Loops(self._loop_bits)

    def _walk_narrow(self, nodes: np.ndarray, states: np.ndarray) -> np.ndarray:
        """The tokens below entered ``nodes`` (in configuration ids ``states``), node by node."""
        labels, first_child, n_children, term_start, term_count, term_tokens = self.trie._lists
        step = self.grammar.next_id
        out: list[int] = []
        stack = list(zip(nodes.tolist(), states.tolist(), strict=True))
        while stack:
            node, sid = stack.pop()
            count = term_count[node]
            if count:
                start = term_start[node]
                out.extend(term_tokens[start : start + count])
            first = first_child[node]
            for child in range(first, first + n_children[node]):
                nxt = step(sid, labels[child])
                if nxt >= 0:
                    stack.append((child, nxt))
        return np.asarray(out, dtype=np.int32)

    def _compute_mask(self, config: ConfigSet) -> TokenMask:
        return self._mask_of([self.allowed_tokens(config)], self.grammar.is_final(config))

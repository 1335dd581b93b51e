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
from outlines_gguf.guides.grammar import GrammarGuide


class GeneralCFGGuide(GrammarGuide):
    """A guide over a :class:`~outlines_gguf.grammar.general.GeneralGrammar` (the Guide protocol)."""

    grammar: GeneralGrammar

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
        while nodes.size:
            children, parents = trie.step(nodes, states, found)
            if children is None:
                break
            states = grammar.next_ids(parents.astype(np.int64), trie.node_byte[children].astype(np.int64))
            alive = states >= 0
            nodes, states = children[alive], states[alive]
        return np.concatenate(found) if found else np.empty(0, dtype=np.int32)

    def _compute_mask(self, config: ConfigSet) -> TokenMask:
        return self._mask_of([self.allowed_tokens(config)], self.grammar.is_final(config))

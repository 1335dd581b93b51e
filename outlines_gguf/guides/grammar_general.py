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

from collections.abc import Hashable
from functools import cached_property
from typing import cast

import numpy as np

from outlines_gguf.errors import ConstraintViolationError, VocabularyError
from outlines_gguf.grammar.general import ConfigSet, GeneralGrammar
from outlines_gguf.guides.base import FINISHED, LRUCache, TokenMask, bytes_to_read
from outlines_gguf.tokens.trie import TokenTrie
from outlines_gguf.tokens.vocabulary import Vocabulary

MASK_CACHE_SIZE = 1024
"""Masks kept per guide (least recently used are dropped)."""


class GeneralCFGGuide:
    """A guide over a :class:`~outlines_gguf.grammar.general.GeneralGrammar` (the Guide protocol)."""

    def __init__(self, grammar: GeneralGrammar, vocabulary: Vocabulary) -> None:
        if not vocabulary.eog_ids:
            raise VocabularyError("the vocabulary has no end-of-generation token: generation could never end")
        self.grammar = grammar
        self.vocabulary = vocabulary
        self.initial_state: Hashable = grammar.initial_state
        self._masks: LRUCache = LRUCache(MASK_CACHE_SIZE)
        self._lock = grammar.lock  # the grammar's automaton grows as masks are computed

    def __getstate__(self) -> dict[str, object]:
        """Pickles without its lock, mask cache and compressed trie (rebuilt lazily)."""
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state.pop("trie", None)
        state["_masks"] = LRUCache(MASK_CACHE_SIZE)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = self.grammar.lock

    @cached_property
    def trie(self) -> TokenTrie:
        """The vocabulary's trie over the grammar's byte classes (built at the first mask)."""
        return self.vocabulary.class_trie(self.grammar.byte_class)

    # -- the Guide protocol -----------------------------------------------------------------

    # A state is FINISHED or a ConfigSet (hence the casts once FINISHED is ruled out).

    def is_final(self, state: Hashable) -> bool:
        if state == FINISHED:
            return True
        with self._lock:
            return self.grammar.is_final(cast(ConfigSet, state))

    def next_state(self, state: Hashable, token_id: int) -> Hashable:
        """The state after ``token_id``; raises ConstraintViolationError if it is not allowed."""
        data = bytes_to_read(self, state, token_id, "the grammar")
        if data is None:
            return FINISHED
        with self._lock:
            nxt = self.grammar.advance(cast(ConfigSet, state), data)
        if nxt is None:
            raise ConstraintViolationError(f"token {token_id} ({data!r}) does not fit the grammar here")
        return nxt

    def mask(self, state: Hashable) -> TokenMask:
        """The allowed tokens in ``state`` (computed on first use, then cached)."""
        if state == FINISHED:
            raise ConstraintViolationError("generation continued after an end-of-generation token")
        with self._lock:
            mask = self._masks.get(state)
            if mask is None:
                mask = self._compute_mask(cast(ConfigSet, state))
                self._masks.put(state, mask)
            return mask

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
        tokens = self.allowed_tokens(config)
        final = self.grammar.is_final(config)
        if not final and tokens.size == 0:
            raise ConstraintViolationError(
                "no token of this vocabulary can continue the grammar here (the vocabulary lacks "
                "the bytes the grammar needs next)"
            )
        allowed = np.zeros(self.vocabulary.size, dtype=bool)
        allowed[tokens] = True
        if final:
            allowed[self.vocabulary.eog_array] = True
        return TokenMask(allowed, final)

"""Guides: which tokens may come next, state by state, for one vocabulary.

A guide is a small state machine over token ids, built from an automaton
and a :class:`~outlines_gguf.vocabulary.Vocabulary`. It knows nothing of
llama.cpp. Masks are computed lazily for the states generation reaches,
with one vectorized walk of the vocabulary's token trie, and cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Protocol, TypeVar

import numpy as np

from .errors import ConstraintViolationError, VocabularyError
from .regex_dfa import ByteDFA, compile_regex
from .vocabulary import Vocabulary

FINISHED = -2
"""The state a regex guide enters once an end-of-generation token is taken."""

DENSE_MASK = 2048
"""A guide switches to the byte-class trie after a mask with more allowed tokens than this."""


class TokenMask:
    """The allowed token ids of one guide state, ready to be written into scores.

    Holds whichever of the allowed / forbidden id sets is smaller, so writing
    the mask touches as few entries of ``scores`` as possible.
    """

    __slots__ = ("_forbid", "_keep", "allowed_count", "eog_allowed")

    def __init__(self, allowed: np.ndarray, eog_allowed: bool) -> None:
        """``allowed`` is a boolean array over the vocabulary."""
        self.allowed_count = int(np.count_nonzero(allowed))
        self.eog_allowed = eog_allowed
        if self.allowed_count * 2 <= allowed.size:
            self._keep: np.ndarray | None = np.flatnonzero(allowed)
            self._forbid: np.ndarray | None = None
        else:
            self._keep = None
            self._forbid = np.flatnonzero(~allowed)

    def allowed_ids(self, n_vocab: int) -> np.ndarray:
        """The allowed ids, sorted (for inspection and tests)."""
        if self._keep is not None:
            return self._keep.copy()
        mask = np.ones(n_vocab, dtype=bool)
        mask[self._forbid] = False
        return np.flatnonzero(mask)

    def apply(self, scores: np.ndarray) -> None:
        """Set every forbidden entry of ``scores`` (any strided 1-D view) to -inf."""
        if self._keep is not None:
            kept = scores[self._keep]
            scores[:] = -np.inf
            scores[self._keep] = kept
        else:
            scores[self._forbid] = -np.inf


class Guide(Protocol):
    """What a logits processor needs from a constraint."""

    vocabulary: Vocabulary
    initial_state: Hashable

    def mask(self, state: Hashable) -> TokenMask: ...

    def next_state(self, state: Hashable, token_id: int) -> Hashable: ...

    def is_final(self, state: Hashable) -> bool: ...


class RegexGuide:
    """A guide over a byte-level DFA (a regex, or any regular constraint).

    A token is allowed in a state iff its bytes keep the DFA alive; every
    end-of-generation id is allowed exactly in accepting states, and is the
    only choice in accepting states with no way to continue.
    """

    def __init__(self, dfa: ByteDFA, vocabulary: Vocabulary) -> None:
        if not vocabulary.eog_ids:
            raise VocabularyError("the vocabulary has no end-of-generation token: generation could never end")
        self.dfa = dfa
        self.vocabulary = vocabulary
        self.initial_state = 0
        self._masks: dict[int, TokenMask] = {}
        self._lock = threading.Lock()
        self._class_walk: tuple[object, np.ndarray] | None = None

    @classmethod
    def from_regex(cls, pattern: str, vocabulary: Vocabulary) -> RegexGuide:
        """The guide for ``pattern``, shared through a cache keyed by (vocabulary, pattern)."""
        return cached_guide(("regex", pattern), vocabulary, lambda: cls(compile_regex(pattern), vocabulary))

    def is_final(self, state: int) -> bool:
        return state == FINISHED or bool(self.dfa.accepting[state])

    def mask(self, state: int) -> TokenMask:
        """The allowed tokens in ``state`` (computed on first use, then cached)."""
        mask = self._masks.get(state)
        if mask is None:
            mask = self._compute_mask(state)
            with self._lock:
                self._masks[state] = mask
        return mask

    @property
    def n_cached_masks(self) -> int:
        return len(self._masks)

    def _compute_mask(self, state: int) -> TokenMask:
        if state == FINISHED:
            raise ConstraintViolationError("generation continued after an end-of-generation token")
        vocab = self.vocabulary
        tokens = self._allowed_tokens(state)
        final = bool(self.dfa.accepting[state])
        if not final and tokens.size == 0:
            raise ConstraintViolationError(
                f"no token of this vocabulary can continue the constraint from DFA state {state}; "
                "the vocabulary lacks the bytes the constraint needs"
            )
        allowed = np.zeros(vocab.size, dtype=bool)
        allowed[tokens] = True
        if final:
            allowed[vocab.eog_array] = True
        return TokenMask(allowed, final)

    def _allowed_tokens(self, state: int) -> np.ndarray:
        """Tokens whose bytes keep the DFA alive from ``state``.

        Walks the byte trie; once a state turns out dense, later states walk
        the trie compressed to the DFA's byte classes (same result, far
        fewer nodes: a dense state on 152k tokens drops from ~40 ms to ~2 ms).
        """
        if self._class_walk is not None:
            trie, table = self._class_walk
            return trie.walk(table, state)  # type: ignore[attr-defined]
        tokens = self.vocabulary.trie.walk(self.dfa.transitions, state)
        if tokens.size > DENSE_MASK:
            self.use_byte_classes()
        return tokens

    def use_byte_classes(self) -> None:
        """Walk the vocabulary's trie compressed to this DFA's byte classes from now on."""
        table = self.dfa.transitions
        _, representative, byte_class = np.unique(table.T, axis=0, return_index=True, return_inverse=True)
        trie = self.vocabulary.class_trie(byte_class.reshape(-1))
        self._class_walk = (trie, np.ascontiguousarray(table[:, representative]))

    def next_state(self, state: int, token_id: int) -> int:
        """The state after ``token_id``; raises ConstraintViolationError if it is not allowed."""
        vocab = self.vocabulary
        if token_id in vocab.eog_ids:
            if self.is_final(state):
                return FINISHED
            raise ConstraintViolationError(
                f"end-of-generation token {token_id} before the constraint was complete"
            )
        if state == FINISHED:
            raise ConstraintViolationError("a token followed an end-of-generation token")
        if not 0 <= token_id < vocab.size or token_id in vocab.special_ids:
            raise ConstraintViolationError(f"token {token_id} is not allowed inside constrained text")
        nxt = self.dfa.run(vocab.tokens[token_id], state)
        if nxt < 0:
            raise ConstraintViolationError(
                f"token {token_id} ({vocab.tokens[token_id]!r}) does not fit the constraint here"
            )
        return nxt


# -- a shared LRU cache of compiled guides ------------------------------------------------

GUIDE_CACHE_SIZE = 64
"""How many compiled guides are kept per process (least recently used are dropped)."""

_G = TypeVar("_G")
_cache: OrderedDict[tuple[str, Hashable], object] = OrderedDict()
_cache_lock = threading.Lock()


def cached_guide(key: Hashable, vocabulary: Vocabulary, build: Callable[[], _G]) -> _G:
    """Return the guide cached under (vocabulary hash, key), building it on a miss."""
    full_key = (vocabulary.hash, key)
    with _cache_lock:
        guide = _cache.get(full_key)
        if guide is not None:
            _cache.move_to_end(full_key)
            return guide  # type: ignore[return-value]
    guide = build()
    with _cache_lock:
        _cache[full_key] = guide
        while len(_cache) > GUIDE_CACHE_SIZE:
            _cache.popitem(last=False)
    return guide


def clear_guide_cache() -> None:
    """Drop every cached guide (and the masks they hold)."""
    with _cache_lock:
        _cache.clear()

"""Fast-forward: text the constraint forces, taken as tokens without sampling.

After each sampled token, the guide is asked for its *forced bytes*: the
longest bytes every text it still accepts starts with (a JSON key after its
first letters, ``": "``, the rest of ``true``). They are tokenized by the
model's own tokenizer, in the context of the token before them, so the
forced tokens are the ones a trained model would have read there, and the
generation loop evaluates them in one batch (see :mod:`generation`).

Two rules keep forcing from changing what the constraint allows:

* **token healing at the boundary**: a token is forced only if it ends
  strictly inside the forced bytes, or at their end when no allowed token
  starts with its bytes and goes on past them (``"`` before a free string is
  held back: the model may pick ``"The``);
* **every forced token is checked against the guide**; the first that does
  not fit ends the run, and the model samples as usual from there.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from outlines_gguf.errors import ConstraintViolationError
from outlines_gguf.guides.base import ForcingGuide, LRUCache
from outlines_gguf.tokens.vocabulary import Vocabulary


class PrefixIndex:
    """The vocabulary's tokens sorted by their bytes: which tokens extend given bytes."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        tokens = vocabulary.tokens
        special = vocabulary.is_special
        kept = (t for t in range(vocabulary.size) if tokens[t] and not special[t])
        order = sorted(kept, key=tokens.__getitem__)
        self._keys = [tokens[t] for t in order]
        self._ids = np.asarray(order, dtype=np.int64)
        self._lengths = np.asarray([len(k) for k in self._keys], dtype=np.int64)

    def extensions(self, data: bytes) -> np.ndarray:
        """Ids of the tokens whose bytes start with ``data`` and are longer."""
        lo = bisect.bisect_left(self._keys, data)
        upper = _successor(data)
        hi = len(self._keys) if upper is None else bisect.bisect_left(self._keys, upper, lo)
        ids, lengths = self._ids[lo:hi], self._lengths[lo:hi]
        return ids[lengths > len(data)]


def _successor(data: bytes) -> bytes | None:
    """The smallest bytes greater than every string starting with ``data`` (None: no bound)."""
    trimmed = data.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes((trimmed[-1] + 1,))


_indexes: LRUCache = LRUCache(4)
_indexes_lock = threading.Lock()


def prefix_index(vocabulary: Vocabulary) -> PrefixIndex:
    """The :class:`PrefixIndex` of ``vocabulary`` (built once, shared)."""
    with _indexes_lock:
        return _indexes.get_or_make(vocabulary.hash, lambda: PrefixIndex(vocabulary))


PLAN_CACHE_SIZE = 4096
"""Forced runs one planner keeps, by (guide state, context)."""

_MISSING = object()


@dataclass(frozen=True)
class ForcedRun:
    """Tokens to take without sampling, and the guide state after them."""

    tokens: list[int]
    state: Hashable


class FastForward:
    """Plans forced runs for one guide and one model's tokenizer.

    ``tokenize(data)`` is the model's tokenizer without BOS and without
    parsing special tokens (``Llama.tokenize(data, add_bos=False, special=False)``).
    """

    def __init__(self, guide: ForcingGuide, tokenize: Any) -> None:
        self.guide = guide
        self.vocabulary: Vocabulary = guide.vocabulary
        self.tokenize = tokenize
        self._index = prefix_index(self.vocabulary)
        self._plans: LRUCache = LRUCache(PLAN_CACHE_SIZE)
        self._forced: LRUCache = LRUCache(PLAN_CACHE_SIZE)
        self._lock = threading.Lock()

    def plan(self, state: Hashable, context: bytes, max_tokens: int) -> ForcedRun | None:
        """The forced tokens from ``state`` (at most ``max_tokens``), or None if there are none.

        ``context`` is the text just before (the last token's bytes): the
        forced bytes are tokenized after it, as the tokenizer would in the
        whole text, where that tokenization keeps the context's own end.
        Plans are cached by (state, context): JSON comes back to the same
        states, document after document.
        """
        if max_tokens < 1:
            return None
        key = (state, context)
        with self._lock:
            run = self._plans.get(key, _MISSING)
        if run is _MISSING:
            run = self._plan(state, context)
            with self._lock:
                self._plans.put(key, run)
        if run is None or len(run.tokens) <= max_tokens:
            return run
        return self._plan(state, context, max_tokens)

    def forced_bytes(self, state: Hashable) -> bytes:
        """``guide.forced_bytes(state)``, cached by state (whatever the context)."""
        with self._lock:
            forced = self._forced.get(state)
        if forced is None:
            forced = self.guide.forced_bytes(state)
            with self._lock:
                self._forced.put(state, forced)
        return forced

    def _plan(self, state: Hashable, context: bytes, max_tokens: int | None = None) -> ForcedRun | None:
        forced = self.forced_bytes(state)
        if not forced:
            return None
        candidates = self.tokens_for(context, forced)
        if not candidates:
            return None
        tokens = self.vocabulary.tokens
        taken: list[int] = []
        pos = 0
        for token in candidates:
            data = tokens[token]
            if pos + len(data) == len(forced) and self.may_extend(state, data):
                break  # held back: the model may choose a longer token here
            try:
                state = self.guide.next_state(state, token)
            except ConstraintViolationError:
                break
            taken.append(token)
            pos += len(data)
            if max_tokens is not None and len(taken) == max_tokens:
                break
        return ForcedRun(taken, state) if taken else None

    def may_extend(self, state: Hashable, data: bytes) -> bool:
        """Whether some token allowed in ``state`` starts with ``data`` and goes on past it."""
        longer = self._index.extensions(data)
        return bool(longer.size) and self.guide.mask(state).allows_any(longer)

    def tokens_for(self, context: bytes, forced: bytes) -> list[int] | None:
        """The model's tokens for ``forced`` after ``context``, or None if its tokenizer does not
        spell them exactly (a space prefix that cannot be split off, say)."""
        # the context first; then alone; then after a newline, which tokenizers that add a space
        # prefix (SentencePiece) keep apart from the text after it
        for before in dict.fromkeys((context, b"", b"\n")):
            found = self._split(list(self.tokenize(before + forced)), before, forced)
            if found is not None:
                return found
        return None

    def _split(self, ids: list[int], context: bytes, forced: bytes) -> list[int] | None:
        """The tokens of ``ids`` after those spelling ``context`` (after a prefix the tokenizer
        added, like SPM's space), if they spell ``forced`` exactly."""
        tokens = self.vocabulary.tokens
        if any(t < 0 or t >= len(tokens) for t in ids):
            return None
        pieces = [tokens[t] for t in ids]
        joined = b"".join(pieces)
        if not joined.endswith(context + forced):
            return None
        cut = len(joined) - len(forced)
        done = 0
        for i, piece in enumerate(pieces):
            if done == cut:
                return ids[i:]
            done += len(piece)
            if done > cut:
                return None
        return None

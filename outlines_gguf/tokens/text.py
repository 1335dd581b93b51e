"""Plain-text tokens: the part of a vocabulary decided by character count alone.

A token is *plain text* when its bytes are complete UTF-8 characters, none
of them a control character, ``"``, ``\\`` or a line or paragraph separator
(U+2028, U+2029: ECMA-262's ``.`` in a JSON Schema ``pattern`` refuses them,
and with them plain text would not move a pattern's automaton alike, so
every state of a pattern holding ``.`` would walk the whole trie). Inside a JSON string (or any
automaton state where every such character leads to the same next state)
whether a plain-text token fits depends only on how many characters it has,
so the guide takes those tokens as one slice of an array sorted by
character count, and walks a trie of the remaining tokens only.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from outlines_gguf.fast_unique import isin_few
from outlines_gguf.tokens.trie import TokenTrie

PLAIN_RANGES = ((0x20, 0x21), (0x23, 0x5B), (0x5D, 0x2027), (0x202A, 0xD7FF), (0xE000, 0x10FFFF))
"""Code points of plain-text characters (no controls, quote, backslash or U+2028/U+2029)."""

_NOT_PLAIN = frozenset('"\\\u2028\u2029')
"""The characters from the space up that are not plain text."""


def is_plain_char(ch: str) -> bool:
    """``ch`` (one character) is plain text: within :data:`PLAIN_RANGES`."""
    return ch >= " " and ch not in _NOT_PLAIN


def char_count(token: bytes) -> int | None:
    """Number of plain-text characters in ``token``, or None if it is not plain text."""
    try:
        text = token.decode("utf-8")
    except UnicodeDecodeError:
        return None
    for ch in text:
        if not is_plain_char(ch):
            return None
    return len(text)


@lru_cache(maxsize=4096)
def starts_plain_char(tail: bytes) -> bool:
    """``tail`` is the start of a plain-text character's UTF-8, not the whole of it."""
    lead = tail[0]
    width = 2 if 0xC2 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4 if 0xF0 <= lead <= 0xF4 else 0
    if len(tail) >= width:
        return False
    fillers = (0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF)
    for rest in itertools.product(fillers, repeat=width - len(tail)):
        try:
            ch = (tail + bytes(rest)).decode("utf-8")
        except UnicodeDecodeError:
            continue
        if len(ch) == 1 and is_plain_char(ch):
            return True
    return False


def plain_prefix_length(token: bytes) -> int:
    """Bytes of the longest prefix of ``token`` made of whole plain-text characters."""
    i, n = 0, len(token)
    while i < n:
        lead = token[i]
        width = 1 if lead < 0x80 else 2 if 0xC2 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4
        if lead > 0xF4 or 0x80 <= lead < 0xC2 or i + width > n:
            break
        try:
            ch = token[i : i + width].decode("utf-8")
        except UnicodeDecodeError:
            break
        if not is_plain_char(ch):
            break
        i += width
    return i


@dataclass(frozen=True)
class TextTokens:
    """A vocabulary split into plain-text tokens (by count) and a trie of the rest."""

    plain_ids: np.ndarray  # int32, sorted by character count
    plain_counts: np.ndarray  # int64, ascending
    plain_first: np.ndarray  # uint8, first byte of each plain token (same order)
    rest: TokenTrie  # every other emittable token
    rest_bare: TokenTrie  # rest tokens that start with no plain-text character (see walk_rest)
    rest_tails: TokenTrie  # the others, without their plain-text prefix
    rest_partial: np.ndarray  # int32, rest tokens whose tail starts a plain-text character
    other_ids: np.ndarray  # int32, every id that is not plain text (rest, special, empty), ascending
    by_first_ids: np.ndarray  # int32, plain ids sorted by (first byte, character count)
    by_first_counts: np.ndarray  # int64, their character counts
    by_first_start: np.ndarray  # int64, 257 offsets: first byte b's tokens are [start[b], start[b + 1])
    first_byte: np.ndarray  # uint8, every id's first byte (0 for empty tokens)

    @classmethod
    def build(cls, tokens: Sequence[bytes], is_special: np.ndarray) -> TextTokens:
        ids, counts = [], []
        rest_excluded = is_special.copy()
        for i, tok in enumerate(tokens):
            if not tok:  # writes nothing: in no trie, and never plain text
                rest_excluded[i] = True
                continue
            if is_special[i]:
                continue
            n = char_count(tok)
            if n is not None:
                ids.append(i)
                counts.append(n)
                rest_excluded[i] = True
        count_array = np.asarray(counts, dtype=np.int64)
        order = np.argsort(count_array, kind="stable")
        plain_ids = np.asarray(ids, dtype=np.int32)[order]
        plain_counts = count_array[order]
        plain_first = np.array([tokens[i][0] for i in plain_ids.tolist()], dtype=np.uint8)
        bare, tails = [b""] * len(tokens), [b""] * len(tokens)
        partial = []
        for i in np.flatnonzero(~rest_excluded).tolist():
            cut = plain_prefix_length(tokens[i])
            tail = tokens[i][cut:]
            if starts_plain_char(tail):
                partial.append(i)
            elif cut:
                tails[i] = tail
            else:
                bare[i] = tail
        is_plain = np.zeros(len(tokens), dtype=bool)
        is_plain[plain_ids] = True
        by_first = np.lexsort((plain_counts, plain_first))
        return cls(
            plain_ids,
            plain_counts,
            plain_first,
            TokenTrie.build(tokens, rest_excluded),
            TokenTrie.build(bare, rest_excluded),
            TokenTrie.build(tails, rest_excluded),
            np.asarray(partial, dtype=np.int32),
            np.flatnonzero(~is_plain).astype(np.int32),
            plain_ids[by_first],
            plain_counts[by_first],
            np.searchsorted(plain_first[by_first], np.arange(257)).astype(np.int64),
            np.array([t[0] if t else 0 for t in tokens], dtype=np.uint8),
        )

    @property
    def max_count(self) -> int:
        return int(self.plain_counts[-1]) if self.plain_counts.size else 0

    def walk_rest(
        self,
        table: np.ndarray,
        state: int,
        plain_target: int | None = None,
        exceptions: np.ndarray | None = None,
    ) -> np.ndarray:
        """The tokens that are not plain text and keep the automaton alive from ``state``.

        ``plain_target``: the state every plain-text character leads to from
        ``state``, given that every plain-text character leads from it back to
        itself (``state`` itself inside a free JSON string, the inside of the
        string right after its opening quote). Then a token's plain prefix
        only matters by being empty or not: the tails (from the first quote,
        backslash, control character or broken UTF-8 on) of tokens with a
        plain prefix are walked from ``plain_target``, the tokens without one
        from ``state``: two small tries instead of the whole rest. Tails that
        are the start of a plain-text character are alive without a walk.
        ``exceptions``: ASCII first bytes that do not lead to ``plain_target``;
        tokens starting with them are left out (the caller walks them).
        """
        if plain_target is None:
            return self.rest.walk(table, state)
        tails = np.concatenate([self.rest_partial, self.rest_tails.walk(table, plain_target)])
        if exceptions is not None and exceptions.size:
            tails = tails[~isin_few(self.first_byte[tails], exceptions)]
        return np.concatenate([self.rest_bare.walk(table, state), tails])

    def _first_byte_prefix(self, byte: int, n: float) -> tuple[int, int]:
        """The range of ``by_first_ids`` holding the plain tokens that start with ``byte``
        and have at most ``n`` characters."""
        lo, hi = int(self.by_first_start[byte]), int(self.by_first_start[byte + 1])
        if n >= self.max_count:
            return lo, hi
        return lo, lo + int(np.searchsorted(self.by_first_counts[lo:hi], int(n), side="right"))

    def _prefix(self, n: float) -> int:
        """How many plain tokens have at most ``n`` characters (``n`` may be infinite)."""
        if n >= self.max_count:
            return int(self.plain_counts.size)
        return int(np.searchsorted(self.plain_counts, int(n), side="right"))

    def count_up_to(self, n: float, excluded_first: np.ndarray | None = None) -> int:
        """How many ids :meth:`up_to` returns, without building them."""
        k = self._prefix(n)
        for byte in () if excluded_first is None else excluded_first.tolist():
            lo, hi = self._first_byte_prefix(byte, n)
            k -= hi - lo
        return k

    def up_to(self, n: float, excluded_first: np.ndarray | None = None) -> np.ndarray:
        """Plain-text token ids of at most ``n`` characters (not starting with ``excluded_first``)."""
        k = self._prefix(n)
        if excluded_first is None or excluded_first.size == 0:
            return self.plain_ids[:k]
        keep = ~isin_few(self.plain_first[:k], excluded_first)
        return self.plain_ids[:k][keep]

    def not_up_to(self, n: float, excluded_first: np.ndarray | None = None) -> np.ndarray:
        """Every id :meth:`up_to` does not return (plain or not), each once, without
        touching the tokens it does return: the cheap side when those are most of the vocabulary."""
        k = self._prefix(n)
        parts = [self.other_ids, self.plain_ids[k:]]
        for byte in () if excluded_first is None else excluded_first.tolist():
            lo, hi = self._first_byte_prefix(byte, n)
            parts.append(self.by_first_ids[lo:hi])
        return np.concatenate(parts)

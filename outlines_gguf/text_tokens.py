"""Plain-text tokens: the part of a vocabulary decided by character count alone.

A token is *plain text* when its bytes are complete UTF-8 characters, none
of them a control character, ``"`` or ``\\``. Inside a JSON string (or any
automaton state where every such character leads to the same next state)
whether a plain-text token fits depends only on how many characters it has,
so the guide takes those tokens as one slice of an array sorted by
character count, and walks a trie of the remaining tokens only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .token_trie import TokenTrie

PLAIN_RANGES = ((0x20, 0x21), (0x23, 0x5B), (0x5D, 0xD7FF), (0xE000, 0x10FFFF))
"""Code points of plain-text characters (no controls, no quote, no backslash)."""


def char_count(token: bytes) -> int | None:
    """Number of plain-text characters in ``token``, or None if it is not plain text."""
    try:
        text = token.decode("utf-8")
    except UnicodeDecodeError:
        return None
    for ch in text:
        if ch < " " or ch in '"\\':
            return None
    return len(text)


@dataclass(frozen=True)
class TextTokens:
    """A vocabulary split into plain-text tokens (by count) and a trie of the rest."""

    plain_ids: np.ndarray  # int32, sorted by character count
    plain_counts: np.ndarray  # int64, ascending
    plain_first: np.ndarray  # uint8, first byte of each plain token (same order)
    rest: TokenTrie  # every other emittable token

    @classmethod
    def build(cls, tokens: Sequence[bytes], is_special: np.ndarray) -> TextTokens:
        ids, counts = [], []
        rest_excluded = is_special.copy()
        for i, tok in enumerate(tokens):
            if not tok or is_special[i]:
                continue
            n = char_count(tok)
            if n is not None:
                ids.append(i)
                counts.append(n)
                rest_excluded[i] = True
        order = np.argsort(np.asarray(counts, dtype=np.int64), kind="stable")
        plain_ids = np.asarray(ids, dtype=np.int32)[order]
        return cls(
            plain_ids,
            np.asarray(counts, dtype=np.int64)[order],
            np.array([tokens[i][0] for i in plain_ids.tolist()], dtype=np.uint8),
            TokenTrie.build(tokens, rest_excluded),
        )

    @property
    def max_count(self) -> int:
        return int(self.plain_counts[-1]) if self.plain_counts.size else 0

    def up_to(self, n: float, excluded_first: np.ndarray | None = None) -> np.ndarray:
        """Plain-text token ids of at most ``n`` characters (not starting with ``excluded_first``)."""
        k = int(np.searchsorted(self.plain_counts, n, side="right"))
        if excluded_first is None or excluded_first.size == 0:
            return self.plain_ids[:k]
        keep = ~np.isin(self.plain_first[:k], excluded_first)
        return self.plain_ids[:k][keep]

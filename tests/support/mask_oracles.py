"""Brute-force mask oracles for regex guides: a synthetic vocabulary with split UTF-8
characters, an oracle that judges every token with ``re``, and the allowed set by walking every token."""

from __future__ import annotations

import itertools
import re
from functools import cache

import numpy as np
from regex_strategies import ALPHABET

from outlines_gguf import Vocabulary

LETTERS = [*ALPHABET, "z", "\n"]

EOG = 0


def _synthetic_vocabulary() -> Vocabulary:
    pieces: set[bytes] = {bytes([b]) for b in range(128)}
    for n in (1, 2):
        for chars in itertools.product(ALPHABET, repeat=n):
            data = "".join(chars).encode()
            for i in range(len(data)):
                for j in range(i + 1, min(len(data), i + 4) + 1):
                    pieces.add(data[i:j])
    tokens = [b"", b"", *sorted(pieces)]  # 0: EOG, 1: a control token
    return Vocabulary(tokens, eog_ids=[EOG], special_ids=[1], name="synthetic")


VOCAB = _synthetic_vocabulary()


@cache
def _incomplete_utf8(tail: bytes) -> bool:
    """True if ``tail`` is a proper prefix of the UTF-8 encoding of some character."""
    if not tail:
        return True
    lead = tail[0]
    n = 2 if 0xC2 <= lead <= 0xDF else 3 if 0xE0 <= lead <= 0xEF else 4 if 0xF0 <= lead <= 0xF4 else 0
    if n == 0 or len(tail) >= n:
        return False
    for rest in itertools.product(range(0x80, 0xC0), repeat=n - len(tail)):
        try:
            (tail + bytes(rest)).decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


def _split(data: bytes) -> tuple[str, bytes] | None:
    """Split bytes into complete characters and an incomplete tail (None if invalid)."""
    for cut in range(len(data), max(len(data) - 4, -1), -1):
        try:
            head = data[:cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return (head, data[cut:]) if _incomplete_utf8(data[cut:]) else None
    return None


def _normalize(text: str) -> str:
    return "".join(c if c in LETTERS else "z" for c in text)


class Oracle:
    def __init__(self, pattern: str, max_chars: int) -> None:
        self.language = {
            "".join(p)
            for k in range(max_chars + 1)
            for p in itertools.product(LETTERS, repeat=k)
            if re.fullmatch(pattern, "".join(p))
        }
        self.next_chars: dict[str, set[str]] = {}
        for s in self.language:
            for k in range(len(s) + 1):
                self.next_chars.setdefault(s[:k], set()).update(s[k : k + 1])

    def viable(self, data: bytes) -> bool:
        split = _split(data)
        if split is None:
            return False
        head, tail = split
        nxt = self.next_chars.get(_normalize(head))
        if nxt is None:
            return False
        return not tail or any(c == "z" or c.encode().startswith(tail) for c in nxt)

    def complete(self, data: bytes) -> bool:
        split = _split(data)
        return split is not None and not split[1] and _normalize(split[0]) in self.language


_MATRICES: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

def _token_matrix(vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Emittable tokens as a zero-padded byte matrix, longest first (for the brute force)."""
    if vocab.hash not in _MATRICES:
        ids = [i for i, t in enumerate(vocab.tokens) if t and i not in vocab.special_ids]
        ids.sort(key=lambda i: -len(vocab.tokens[i]))
        width = len(vocab.tokens[ids[0]])
        matrix = np.frombuffer(b"".join(vocab.tokens[i].ljust(width, b"\0") for i in ids), np.uint8)
        lengths = np.array([len(vocab.tokens[i]) for i in ids])
        _MATRICES[vocab.hash] = (np.array(ids), matrix.reshape(len(ids), width), lengths)
    return _MATRICES[vocab.hash]


def bruteforce_allowed(vocab: Vocabulary, dfa, state: int) -> np.ndarray:
    """Every token run through the DFA byte by byte (vectorized over tokens, no trie)."""
    ids, matrix, lengths = _token_matrix(vocab)
    current = np.full(ids.size, state, dtype=np.int64)
    for col in range(matrix.shape[1]):
        active = (lengths > col) & (current >= 0)
        if not active.any():
            break
        current[active] = dfa.transitions[current[active], matrix[active, col]]
    allowed = ids[current >= 0]
    if dfa.accepting[state]:
        allowed = np.concatenate([allowed, vocab.eog_array])
    return np.unique(allowed)

"""A brute-force mask oracle for guides that read bytes: every token fed byte by byte."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np


def brute_force_allowed(guide: Any, state: Hashable, vocab: Any) -> np.ndarray:
    """The ids of every token whose bytes ``guide.advance`` reads from ``state`` (tokens in byte
    order, sharing the states of common prefixes), and the end-of-generation ids where ``state``
    is final."""
    allowed: list[int] = []
    stack: list[tuple[bytes, object]] = [(b"", state)]
    for i in sorted(range(vocab.size), key=lambda i: vocab.tokens[i]):
        token = vocab.tokens[i]
        if not token or i in vocab.special_ids:
            continue
        while not token.startswith(stack[-1][0]):
            stack.pop()
        prefix, current = stack[-1]
        for b in token[len(prefix) :]:
            current = guide.advance(current, bytes([b])) if current else current
            prefix += bytes([b])
            stack.append((prefix, current))
        if current:
            allowed.append(i)
    if guide.is_final(state):
        allowed += list(vocab.eog_ids)
    return np.array(sorted(allowed))


def random_walk_text(
    guide: Any, vocab: Any, rng: np.random.Generator, steps: int, stop: float
) -> bytes | None:
    """Random tokens from each mask, ending where end of generation is allowed (with probability
    ``stop``, or when drawn): the text, or None past ``steps`` tokens. Asserts that every mask
    allows a token (no dead end) and that the text ends in a final state."""
    state, text = guide.initial_state, b""
    for _ in range(steps):
        allowed = guide.mask(state).allowed_ids(vocab.size).tolist()
        assert allowed, text
        eog = [t for t in allowed if t in vocab.eog_ids]
        if eog and rng.random() < stop:
            break
        token = int(rng.choice([t for t in allowed if t not in vocab.eog_ids] or eog))
        if token in vocab.eog_ids:
            break
        state = guide.next_state(state, token)
        text += vocab.tokens[token]
    else:
        return None
    assert guide.is_final(state)
    return text

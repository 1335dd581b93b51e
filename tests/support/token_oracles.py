"""Brute-force oracles and strategies for token walks: random transition tables, small
vocabularies, and the one-token-at-a-time walk every trie walk must agree with."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import strategies as st

# ASCII letters, the JSON-special quote and backslash, a control, and the bytes of "é" and "中"
# (so tokens can be plain text, broken UTF-8 or a character split across tokens)
TOKEN_BYTES = b'ab"\\\n\xc3\xa9\xe4\xb8\xad'


def vocabularies(max_size: int = 40, max_len: int = 5) -> st.SearchStrategy[tuple[list[bytes], np.ndarray]]:
    """Small vocabularies over :data:`TOKEN_BYTES`: duplicates, empty tokens and special ids included."""
    token = st.binary(max_size=max_len).map(lambda b: bytes(TOKEN_BYTES[x % len(TOKEN_BYTES)] for x in b))
    special = st.sampled_from([False, False, False, True])
    return st.lists(st.tuples(token, special), max_size=max_size).map(
        lambda pairs: ([t for t, _ in pairs], np.array([s for _, s in pairs], dtype=bool))
    )


def random_table(seed: int, n_states: int, n_labels: int = 256, dead: float = 0.4) -> np.ndarray:
    """An ``(n_states, n_labels)`` int32 transition table, -1 for the dead state."""
    rng = np.random.default_rng(seed)
    table = rng.integers(0, n_states, size=(n_states, n_labels), dtype=np.int32)
    table[rng.random((n_states, n_labels)) < dead] = -1
    return table


def alive_tokens(
    table: np.ndarray,
    state: int,
    tokens: Sequence[bytes],
    excluded: np.ndarray,
    labels: np.ndarray | None = None,
) -> list[int]:
    """Ids of the non-empty, non-excluded tokens whose every byte keeps ``table`` alive from
    ``state``, read one token at a time (``labels``: a byte's column, for class tables)."""
    rows = table.tolist()
    cols = list(range(256)) if labels is None else labels.tolist()
    out = []
    for i, tok in enumerate(tokens):
        if not tok or excluded[i]:
            continue
        s = state
        for b in tok:
            s = rows[s][cols[b]]
            if s < 0:
                break
        else:
            out.append(i)
    return out


def run(table: np.ndarray, state: int, data: bytes) -> int:
    """The state after ``data`` (-1 once dead)."""
    for b in data:
        state = int(table[state, b])
        if state < 0:
            return -1
    return state

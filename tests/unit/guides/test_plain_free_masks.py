"""States that take any plain text, though characters lead to different states (an unanchored
``pattern`` part way through a match), take every plain-text token whole and walk only the
trie of the others (``RegexGuide._takes_any_plain_text``). The set of such states
(``plain_text_free_states``) equals one found by running every plain-text character through
the table, and the masks equal a brute force on the real vocabularies."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from conftest import load_vocab
from hypothesis import given, settings
from hypothesis import strategies as st
from mask_oracles import bruteforce_allowed
from pushdown_oracle import brute_force_allowed

from outlines_gguf import JSONLogitsProcessor, RegexGuide, compile_regex
from outlines_gguf.guides.base import plain_text_free_states
from outlines_gguf.tokens.text import is_plain_char


@lru_cache(maxsize=1)
def _every_plain_character() -> tuple[np.ndarray, np.ndarray]:
    """Every plain-text character's UTF-8, as a zero-padded (n, 4) byte matrix and lengths."""
    chars = [chr(c) for c in range(0x20, 0x110000) if not 0xD800 <= c <= 0xDFFF and is_plain_char(chr(c))]
    encoded = [ch.encode("utf-8") for ch in chars]
    matrix = np.frombuffer(b"".join(e.ljust(4, b"\0") for e in encoded), dtype=np.uint8).reshape(-1, 4)
    return matrix, np.array([len(e) for e in encoded])


def _free_by_running_every_character(table: np.ndarray) -> np.ndarray:
    """The oracle: from each state, the states one plain character leads to (all of them run
    through the table), followed until one dies or no new state turns up."""
    matrix, lengths = _every_plain_character()
    successors: list[set[int] | None] = []
    for state in range(table.shape[0]):
        current = np.full(lengths.size, state, dtype=np.int64)
        for col in range(4):
            active = (lengths > col) & (current >= 0)
            current[active] = table[current[active], matrix[active, col]]
        successors.append(None if (current < 0).any() else set(np.unique(current).tolist()))
    free = np.zeros(table.shape[0], dtype=bool)
    for state in range(table.shape[0]):
        seen, todo, ok = {state}, [state], True
        while todo and ok:
            nxt = successors[todo.pop()]
            if nxt is None:
                ok = False
                break
            for t in nxt - seen:
                seen.add(t)
                todo.append(t)
        free[state] = ok
    return free


UNANCHORED = [
    r".*[a-zA-Z0-9_-]{12}.*",  # (a real schema's unanchored ``[a-zA-Z0-9_-]{162}``, shorter)
    r".*[0-9]{4}-[0-9]{2}.*",
    r'.*(ab|é日)+c.*"',
    r".*[^\u00e9]{3}x.*",  # a 2-byte character leads elsewhere part way through
    r"(.*[0-9]){3}.*",
    r'.*[0-9]{2}a?"',  # after two digits every character is alive, but "aa" is not
    r"x[ -~é]{3}y",  # every ASCII character goes on, of the others only é
]


@pytest.mark.parametrize("pattern", UNANCHORED)
def test_free_states_equal_running_every_character(pattern: str) -> None:
    table = compile_regex(pattern).transitions
    np.testing.assert_array_equal(plain_text_free_states(table), _free_by_running_every_character(table))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_states=st.integers(1, 6), onward=st.booleans())
def test_free_states_equal_running_every_character_on_random_tables(
    seed: int, n_states: int, onward: bool
) -> None:
    """Random tables: some rows with a dead plain byte (an ASCII one, or a range of
    continuation bytes: a multi-byte character dies part way), the others alive everywhere;
    ``onward``: a row leads only to itself and later rows, so late states may be free while
    earlier ones lead to a dead byte."""
    rng = np.random.default_rng(seed)
    rows = [rng.integers(s if onward else 0, n_states, size=256) for s in range(n_states)]
    table = np.array(rows, dtype=np.int32)
    for s in range(n_states):
        if rng.random() < 0.3:
            table[s, int(rng.integers(0x20, 0x80))] = -1
        if rng.random() < 0.2:
            lo = int(rng.integers(0x80, 0xC0))
            table[s, lo : lo + int(rng.integers(1, 8))] = -1
    np.testing.assert_array_equal(plain_text_free_states(table), _free_by_running_every_character(table))


@pytest.mark.parametrize("vocab_name", ["spm32k", "llama3-128k"])
def test_masks_equal_brute_force_where_any_plain_text_fits(vocab_name: str) -> None:
    vocab = load_vocab(vocab_name)
    taken = 0
    for pattern in UNANCHORED:
        dfa = compile_regex(pattern)
        guide = RegexGuide(dfa, vocab)
        for state in range(dfa.n_states):
            taken += guide._plain_split(state) is None and guide._takes_any_plain_text(state)
            expected = bruteforce_allowed(vocab, dfa, state)
            np.testing.assert_array_equal(guide.mask(state).allowed_ids(vocab.size), expected, pattern)
    assert taken >= 20  # (the counting states of the first patterns took the new path)


def test_json_string_masks_equal_brute_force_where_any_plain_text_fits() -> None:
    """Inside a JSON object, the pushdown guide takes the same path (one walk of the tokens that
    are not plain text finds both those that stay and those that close the string)."""
    vocab = load_vocab("spm32k")
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": "[a-z0-9]{6}"},
            "code": {"type": "string", "pattern": "^[a-zA-Z]{3}$"},  # (no state takes any plain text)
            "n": {"type": "integer"},
        },
        "required": ["id"],
    }
    guide = JSONLogitsProcessor(schema, vocab).guide
    document = '{"id": "x-ab12c3d4 é", "code": "aBc", "n": 1}'
    state, taken = guide.initial_state, 0
    for i, ch in enumerate(document):
        if 7 <= i <= 21 or 32 <= i <= 35:  # (inside the strings, and their closing quotes)
            expected = brute_force_allowed(guide, state, vocab)
            np.testing.assert_array_equal(guide.mask(state).allowed_ids(vocab.size), expected, document[:i])
            for _, number, s in state:
                node = guide.schema.node(number)
                taken += node.guide is not None and node.guide._takes_any_plain_text(s)
        state = guide.advance(state, ch.encode())
    assert taken >= 8

"""Masks are exact: equal to a brute-force oracle built on Python's re.

The synthetic vocabulary holds every ASCII byte and every 1-4 byte slice of
the UTF-8 of short strings over a mixed-width alphabet, so tokens end in the
middle of characters. In the random regexes every character outside the
alphabet behaves like "z" (classes name only alphabet letters; "." also
excludes "\\n"), so enumerating strings over alphabet + "z" + "\\n" decides
exactly whether a byte prefix can still be completed to a match.
"""

from __future__ import annotations

import itertools
import json
import re
from functools import cache

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from regex_strategies import ALPHABET, bounded_regexes

from outlines_gguf import RegexGuide, Vocabulary, compile_regex
from outlines_gguf.automata.regex import sre_parse

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


@settings(max_examples=120, deadline=None)
@given(bounded_regexes(), st.booleans(), st.data())
def test_masks_equal_bruteforce_oracle(pattern: str, byte_classes: bool, data: st.DataObject) -> None:
    max_chars = sre_parse.parse(pattern).getwidth()[1]
    assume(max_chars <= 4)
    oracle = Oracle(pattern, max_chars)
    assume(oracle.language)
    guide = RegexGuide(compile_regex(pattern), VOCAB)
    if byte_classes:  # the compressed-trie walk that dense states switch to
        guide.use_byte_classes()
    state, prefix = guide.initial_state, b""
    for _ in range(8):
        allowed = set(guide.mask(state).allowed_ids(VOCAB.size).tolist())
        expected = {
            i for i, tok in enumerate(VOCAB.tokens)
            if i not in VOCAB.special_ids and oracle.viable(prefix + tok)
        }
        if oracle.complete(prefix):
            expected.add(EOG)
        assert allowed == expected, (pattern, prefix, sorted(allowed ^ expected)[:10])
        assert 1 not in allowed  # control tokens never
        token = data.draw(st.sampled_from(sorted(allowed)))
        if token == EOG:
            assert guide.is_final(state)
            return
        state = guide.next_state(state, token)
        prefix += VOCAB.tokens[token]


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


def _oracle_dfas() -> list:
    from outlines_gguf import compile_json_schema

    return [
        compile_regex(r"[0-9]{4}"),
        compile_regex(r"\+?[1-9][0-9]{7,14}"),
        compile_regex(r"[a-zé ]+"),
        compile_regex(r"(?s).{0,40}"),  # plain-text path, bounded chain
        compile_regex(r'"[^"\\]*"x'),  # plain-text path, endless chain
        # a free string whose first letter a-t leads elsewhere (first-character exceptions
        # in front of a plain-text loop: tokens like 's"' must be walked, not taken from the loop)
        compile_regex(r'(?:[^a-t"\\\x00-\x1f][^"\\\x00-\x1f]*|[a-t]![^"\\\x00-\x1f]*)?"x'),
        compile_json_schema(  # JSON: strings, and extra keys (first-character exceptions)
            {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                              "n": {"type": "integer"}}}
        ),
    ]


def test_masks_match_bruteforce_on_real_vocabulary(real_vocab: Vocabulary) -> None:
    """Trie walk, byte-class walk and plain-text shortcut all equal a brute force (32k/128k/152k)."""
    rng = np.random.default_rng(0)
    for dfa in _oracle_dfas():
        plain, classes = RegexGuide(dfa, real_vocab), RegexGuide(dfa, real_vocab)
        classes.use_byte_classes()
        states = sorted({0, *rng.choice(dfa.n_states, size=min(dfa.n_states, 7), replace=False).tolist()})
        for state in states:
            expected = bruteforce_allowed(real_vocab, dfa, state)
            np.testing.assert_array_equal(plain.mask(state).allowed_ids(real_vocab.size), expected)
            np.testing.assert_array_equal(classes.mask(state).allowed_ids(real_vocab.size), expected)


_JSON_ORACLE_CASES = [
    (  # declared keys plus extra keys (first-character exceptions), nested values, escapes, Unicode
        {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "age": {"type": "integer", "minimum": 0},
                "meta": {"type": "object", "properties": {"note": {"type": "string", "maxLength": 20}}},
            },
            "required": ["name"],
        },
        [
            {"name": 'Zoë "Z" \\ café ☃ 😀\n', "tags": ["a b", "", "ünï"], "age": 42, "meta": {"note": "hi"}},
            {"name": "x", "nam": 1, "named": [True, None], "zzz": {"k": "v"}},
        ],
    ),
    (  # patterns, formats and enums: states where plain-text characters do not behave alike
        {
            "type": "object",
            "properties": {
                "id": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                "when": {"type": "string", "format": "date-time"},
                "kind": {"enum": ["alpha", "beta", "alphabet"]},
            },
            "required": ["id", "when", "kind"],
            "additionalProperties": False,
        },
        [{"id": "user_42", "when": "2024-01-31T12:00:00Z", "kind": "alphabet"}],
    ),
]


def test_json_masks_match_bruteforce_along_documents(real_vocab: Vocabulary) -> None:
    """Every state along real documents (key starts, free and bounded strings, string starts,
    escapes, numbers, extra keys): the mask equals a brute force over the whole vocabulary."""
    from outlines_gguf import compile_json_schema

    for schema, documents in _JSON_ORACLE_CASES:
        dfa = compile_json_schema(schema)
        guide = RegexGuide(dfa, real_vocab)
        states: list[int] = []
        for document in documents:
            for text in (json.dumps(document, ensure_ascii=False), json.dumps(document)):
                state = 0
                for byte in text.encode():
                    if state not in states:
                        states.append(state)
                    state = int(dfa.transitions[state, byte])
                    assert state >= 0, text
        for state in states:
            expected = bruteforce_allowed(real_vocab, dfa, state)
            np.testing.assert_array_equal(guide.mask(state).allowed_ids(real_vocab.size), expected)

"""Masks are exact: equal to a brute-force oracle built on Python's re.

The synthetic vocabulary holds every ASCII byte and every 1-4 byte slice of
the UTF-8 of short strings over a mixed-width alphabet, so tokens end in the
middle of characters. In the random regexes every character outside the
alphabet behaves like "z" (classes name only alphabet letters; "." also
excludes "\\n"), so enumerating strings over alphabet + "z" + "\\n" decides
exactly whether a byte prefix can still be completed to a match.
"""

from __future__ import annotations

import json

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from mask_oracles import EOG, VOCAB, Oracle, bruteforce_allowed
from regex_strategies import bounded_regexes

from outlines_gguf import RegexGuide, Vocabulary, compile_regex
from outlines_gguf.automata.translate import sre_parse


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

"""The free string shortcut of the JSON pushdown (json_schema/string_body.py): what each token
does inside a string, found once per vocabulary, checked against running every token through
the string automaton one byte at a time; where it applies; and masks equal to the general
analysis (and to a brute force) along random documents on the real vocabularies."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
from conftest import load_vocab
from pushdown_oracle import brute_force_allowed

from outlines_gguf.json_schema.pushdown import PushdownGuide
from outlines_gguf.json_schema.split import SplitSchema
from outlines_gguf.json_schema.string_body import SPELLINGS, free_string_at, reference, string_body_tokens

VOCABS = ["spm32k", "llama3-128k", "qwen2-152k"]


def _trie_tails(trie) -> dict[int, bytes]:
    """Every token of a trie with the bytes of its path."""
    labels, first_child, n_children, term_start, term_count, term_tokens = (
        np.asarray(a) for a in trie._lists
    )
    found: dict[int, bytes] = {}
    stack = [(node, bytes([int(labels[node])])) for node in range(trie.root_children)]
    while stack:
        node, path = stack.pop()
        for k in range(int(term_start[node]), int(term_start[node] + term_count[node])):
            found[int(term_tokens[k])] = path
        first = int(first_child[node])
        stack.extend((c, path + bytes([int(labels[c])])) for c in range(first, first + int(n_children[node])))
    return found


@pytest.mark.parametrize("vocab_name", VOCABS)
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_each_token_stays_dies_or_closes_as_the_automaton_reads_it(vocab_name, spelling) -> None:
    """Each token run byte by byte through a free string's content automaton: the staying ones
    (with the characters of room they need, one more for a character begun), the closing ones
    (their tail from the quote, their characters before it), the others forbidden."""
    vocab = load_vocab(vocab_name)
    ref = reference(0, spelling)
    table = ref.table.tolist()
    rooms, tails, chars_before = {}, {}, {}
    for i, token in enumerate(vocab.tokens):
        if not token or i in vocab.special_ids:
            continue
        state, chars = 0, 0
        for k, byte in enumerate(token):
            state = table[state][byte]
            if state == ref.closed:
                tails[i], chars_before[i] = token[k:], chars
                break
            if state < 0:
                break
            chars += state == 0  # (back at the start: a character is complete)
        else:
            rooms[i] = chars + (state != 0)
    body = string_body_tokens(vocab, spelling)
    expected = np.array(sorted(set(range(vocab.size)) - (set(rooms) - set(vocab.eog_ids))))
    assert np.array_equal(body.forbidden, expected)
    assert _trie_tails(body.closing) == tails
    assert tails and all(tail.startswith(b'"') for tail in tails.values())
    assert {i: int(body.closing_chars[i]) for i in tails} == chars_before
    assert (np.delete(body.closing_chars, list(tails)) == -1).all()
    assert dict(zip(body.staying_by_room.tolist(), body.staying_room.tolist(), strict=True)) == rooms
    assert np.all(np.diff(body.staying_room) >= 0)


def _state_after(guide: PushdownGuide, text: bytes):
    ((_, number, state),) = guide.advance(guide.initial_state, text)
    return guide.schema.node(number), state


def test_only_the_start_of_a_free_string_is_recognised() -> None:
    schema = {
        "type": "object",
        "properties": {
            "free": {"type": "string"},
            "pattern": {"type": "string", "pattern": "^[a-z]+$"},
            "format": {"type": "string", "format": "date"},
            "short": {"type": "string", "maxLength": 3},
            "enum": {"enum": ["ab", "cd"]},
            "long": {"type": "string", "minLength": 2},
        },
        "required": ["free", "pattern", "format", "short", "enum", "long"],
        "additionalProperties": False,
    }
    guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))
    prefix = b'{"free": "'

    def closes(text: bytes) -> int | None:
        node, state = _state_after(guide, text)
        found = free_string_at(node.dfa.transitions, node.dfa.accepting, node.boundary, state)
        return None if found is None else found[0]

    assert closes(prefix) == 0
    assert closes(prefix + b"ab\\u00e9") == 0  # (inside, after characters and escapes)
    assert closes(prefix + b"ab\\") is None  # (part way through an escape)
    assert closes(b"{") is None
    doc = b'{"free": "x", "pattern": "'
    assert closes(doc) is None
    doc = b'{"free": "x", "pattern": "a", "format": "'
    assert closes(doc) is None
    doc = b'{"free": "x", "pattern": "a", "format": "2020-01-01", "short": "'
    assert closes(doc) is None
    doc = b'{"free": "x", "pattern": "a", "format": "2020-01-01", "short": "a", "enum": "'
    assert closes(doc) is None
    doc = b'{"free": "x", "pattern": "a", "format": "2020-01-01", "short": "a", "enum": "ab", "long": "'
    assert [closes(doc), closes(doc + b"\\n"), closes(doc + b"\\nb"), closes(doc + b"\\nbc")] == [2, 1, 0, 0]


SCHEMAS = [  # (each with a text that walks start from too, ending inside a string value)
    ({"type": "string", "minLength": 3, "maxLength": 300}, b'"ab'),  # (a counted string: a run)
    ({"type": "string", "minLength": 35, "maxLength": 40}, b'"' + b"a" * 30),  # (near its end)
    (
        {
            "type": "object",
            "properties": {
                "a": {"type": "string", "maxLength": 100},
                "b": {"type": ["string", "null"], "minLength": 40},
                "c": {"type": "string", "minLength": 600, "maxLength": 1200},
            },
        },
        b'{"b": "' + b"x" * 30,
    ),
    ({"type": "string"}, b'"'),
    ({"type": "array", "items": {"type": "string"}}, b'["a", "'),
    (  # (extra keys beside declared names: the key automaton's spelling)
        {"type": "object", "properties": {"name": {"type": "string"}, "names": {"type": "integer"}}},
        b'{"name',
    ),
    ({"type": "array", "items": {"type": "string", "minLength": 3}}, b'["abc", "x'),
    ({"type": "object", "additionalProperties": {"type": "string"}}, b'{"k": "'),
    (
        {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "child": {"$ref": "#"},
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
            "required": ["name"],
        },
        b'{"name": "n", "child": {"name": "x", "tags": ["',
    ),
    (
        {
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "required": ["a", "b"],
        },
        b'{"a": "\\\\", "b": "',
    ),
]


@pytest.mark.parametrize("vocab_name", VOCABS)
@pytest.mark.parametrize(
    ("schema", "start"),
    SCHEMAS,
    ids=["run", "run end", "runs", "root", "items", "keys", "counted", "values", "tree", "two"],
)
def test_masks_equal_the_general_analysis_along_random_documents(
    vocab_name, schema, start, monkeypatch
) -> None:
    vocab = load_vocab(vocab_name)
    fast = PushdownGuide(SplitSchema(schema), vocab)
    taken = []

    free = PushdownGuide._free_string

    def counting(self, *args, **kwargs):
        taken.append(kwargs.get("spelling", "value"))
        return free(self, *args, **kwargs)

    monkeypatch.setattr(PushdownGuide, "_free_string", counting)
    general = PushdownGuide(SplitSchema(schema), vocab)
    general._string_body_analysis = lambda node, state: None  # (the general ways only)
    general._run_body_analysis = lambda node, state: None
    rng = np.random.default_rng(7)
    for walk in range(8):
        text = b"" if walk % 2 else start
        state = fast.advance(fast.initial_state, text)
        other = general.advance(general.initial_state, text)  # (its own node numbers)
        for _ in range(60):
            a = fast.mask(state).allowed_ids(vocab.size)
            b = general.mask(other).allowed_ids(vocab.size)
            assert np.array_equal(a, b), (text, set(a.tolist()) ^ set(b.tolist()))
            eog = np.isin(a, vocab.eog_array)
            if eog.any() and (rng.random() < 0.3 or eog.all()):
                jsonschema.validate(json.loads(text), schema)
                break
            token = int(rng.choice(a[~eog]))
            state = fast.next_state(state, token)
            other = general.next_state(other, token)
            text += vocab.tokens[token]
    assert taken
    if schema["type"] == "object":  # (extra keys allowed: their key states take it too)
        assert "key" in taken


def test_masks_inside_strings_equal_a_brute_force() -> None:
    vocab = load_vocab("spm32k")
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "b": {"type": "array"},
            "c": {"type": "string", "minLength": 2},
            "d": {"type": "string", "minLength": 35, "maxLength": 200},  # (a run)
            "e": {"type": "string", "minLength": 3, "maxLength": 40},  # (a run, near its end)
        },
    }
    guide = PushdownGuide(SplitSchema(schema), vocab)
    texts = [b'{"a": "', b'{"a": "x\\n\\u00e9y', b'{"b": [1, "', b'{"zz": "', b'{"c": "', b'{"c": "\\t']
    runs = [b'{"d": "', b'{"d": "' + b"ab" * 15, b'{"d": "' + b"ab" * 30]
    runs += [b'{"e": "a', b'{"e": "' + b"a\\n" * 18]  # (40 characters at most: near the end)
    keys = [b'{"zz', b'{"a', b'{"d', "{\"a\": \"\", \"é".encode()]  # (inside keys, extra or declared)
    for text in [*texts, *runs, *keys]:
        state = guide.advance(guide.initial_state, text)
        assert np.array_equal(
            guide.mask(state).allowed_ids(vocab.size), brute_force_allowed(guide, state, vocab)
        )

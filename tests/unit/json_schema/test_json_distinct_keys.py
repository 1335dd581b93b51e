"""``minProperties`` of 2 or more where undeclared members may be written: their keys are kept
distinct by the guide (``DISTINCT_KEYS_KEY``, ``unique.py``), so each counts towards the
minimum (a key written twice is one member of the parsed object). Judged by ``jsonschema`` on
every combination of keys listed, and by a brute force over the vocabulary."""

from __future__ import annotations

import itertools
import json

import jsonschema
import numpy as np
import pytest
from conftest import load_vocab
from pushdown_oracle import brute_force_allowed, random_walk_text

from outlines_gguf import JSONLogitsProcessor, Vocabulary
from outlines_gguf.json_schema.unique import UniqueItemsGuide

MAP = {"type": "object", "minProperties": 2}
"""A map of any values with at least two entries (``{"type": "object", "minProperties": 2}``
was refused as having no value: extra members counted once)."""

SCHEMAS = [
    MAP,
    {"type": "object", "minProperties": 3, "additionalProperties": {"type": "integer"}},
    {  # a workflow's parallel branches: at least two, each a node
        "type": "object",
        "properties": {"kind": {"const": "fork"}},
        "required": ["kind"],
        "minProperties": 3,
        "maxProperties": 4,
        "additionalProperties": {"type": "object", "properties": {"next": {"type": "string"}}},
    },
    {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "minProperties": 3,
        "patternProperties": {"^x": {"type": "integer"}},
        "additionalProperties": {"type": "boolean"},
    },
    {"type": "object", "minProperties": 2, "propertyNames": {"maxLength": 2}},
]


def _objects(keys: list[str], values: list, most: int) -> list[str]:
    """Every object text of at most ``most`` members with keys from ``keys`` (repeats too: a key
    twice, in JSON text) and values from ``values``."""
    out = []
    for n in range(most + 1):
        for chosen in itertools.product(keys, repeat=n):
            for vals in itertools.product(values, repeat=n) if n <= 2 else [[v] * n for v in values]:
                pairs = zip(chosen, vals, strict=True)
                members = ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(v)}" for k, v in pairs)
                out.append("{" + members + "}")
    return out


@pytest.mark.parametrize("schema", SCHEMAS)
def test_distinct_extra_keys_against_jsonschema(schema: dict) -> None:
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    assert isinstance(processor.guide, UniqueItemsGuide)
    validator = jsonschema.Draft202012Validator(schema)
    keys = ["a", "b", "x1", "y", "kind", "\u00e9"]
    values = [1, "fork", {"next": "n"}, True]
    mixed = [
        '{"kind": "fork", "a": {"next": "n"}, "b": {}}',
        '{"a": {"next": "n"}, "kind": "fork", "a": {}}',
        '{"a": {}, "b": {}, "kind": "fork", "y": {}}',
        '{"a": "s", "x1": 1, "y": true}',
        '{"x1": 1, "b": "s", "x1": 2}',
        '{"y": 1, "\\u0079": 2}',
        '{"y": 1, "z": 2, "\\u0079": 3}',
    ]
    texts = [*_objects(keys, values, 4), *mixed]
    accepted = 0
    for text in texts:
        valid = validator.is_valid(json.loads(text))
        # a key written twice: the parsed object holds it once; never accepted where that
        # leaves the minimum unmet (nor, beside a maximum, at all: counted as written)
        assert not processor.accepts(text) or valid, text
        keys_written = len(json.loads(text))
        if valid and keys_written == text.count('": '):  # (no key written twice)
            assert processor.accepts(text), text
            accepted += 1
    assert accepted


def test_a_map_of_two_entries_or_more() -> None:
    processor = JSONLogitsProcessor(MAP, load_vocab("spm32k"))
    assert processor.accepts('{"a": 1, "b": [2]}')
    assert processor.accepts('{"a": 1, "b": 2, "a": 3}')  # (the minimum reached: past it, as any object)
    assert not processor.accepts('{"a": 1, "a": 2}')
    assert not processor.accepts('{"a": 1, "\\u0061": 2}')  # (one key, two spellings)
    assert not processor.accepts('{"a": 1}')


@pytest.mark.parametrize(
    ("schema", "document"),
    [
        (MAP, '{"a": 1, "ab": 2, "b": {"c": 3}}'),
        (SCHEMAS[2], '{"x": {"next": "a"}, "kind": "fork", "y": {}}'),
        (SCHEMAS[3], '{"x1": 1, "y": true, "a": "s"}'),
    ],
)
def test_distinct_extra_keys_masks_equal_a_brute_force(schema: dict, document: str) -> None:
    vocab = load_vocab("spm32k")
    guide = JSONLogitsProcessor(schema, vocab).guide
    data = document.encode()
    for cut in range(len(data) + 1):
        state = guide.advance(guide.initial_state, data[:cut])  # type: ignore[attr-defined]
        assert state is not None, data[:cut]
        got = guide.mask(state).allowed_ids(vocab.size)
        assert np.array_equal(got, brute_force_allowed(guide, state, vocab)), data[:cut]


def test_a_token_that_writes_a_member_and_repeats_its_key_is_not_allowed() -> None:
    """A vocabulary whose tokens write a whole member and open the next key (``":1,"a"``):
    the pushdown reads such a token against the object before the key was written; the guide
    reads it again and leaves it out where the key repeats (a next_state error otherwise)."""
    pieces = {bytes([b]) for b in range(32, 127)} | {b'":1,"a"', b'":1,"b"', b'":1,"', b'"a', b'": 1, "a'}
    vocab = Vocabulary([b"", *sorted(pieces)], eog_ids=[0], special_ids=[], name="members")
    guide = JSONLogitsProcessor(MAP, vocab).guide
    state = guide.advance(guide.initial_state, b'{"a')  # type: ignore[attr-defined]
    allowed = {vocab.tokens[i] for i in guide.mask(state).allowed_ids(vocab.size)}
    assert b'":1,"b"' in allowed and b'":1,"' in allowed and b'": 1, "a' in allowed
    assert b'":1,"a"' not in allowed  # ("a" twice: one member)
    got = guide.mask(state).allowed_ids(vocab.size)
    assert np.array_equal(got, brute_force_allowed(guide, state, vocab))


def test_a_token_that_opens_a_key_with_no_completion_left_is_not_allowed() -> None:
    """Keys of one character (finitely many): after ``"a"``, a token that writes the member
    and opens the next key as ``"a`` leaves it no key (``"a"`` twice is one member)."""
    pieces = {bytes([b]) for b in range(32, 127)} | {b'":1,"a', b'":1,"b', b'":1,"'}
    vocab = Vocabulary([b"", *sorted(pieces)], eog_ids=[0], special_ids=[], name="members")
    schema = {"type": "object", "minProperties": 2, "propertyNames": {"maxLength": 1}}
    guide = JSONLogitsProcessor(schema, vocab).guide
    state = guide.advance(guide.initial_state, b'{"a')  # type: ignore[attr-defined]
    allowed = {vocab.tokens[i] for i in guide.mask(state).allowed_ids(vocab.size)}
    assert b'":1,"b' in allowed and b'":1,"' in allowed and b'":1,"a' not in allowed
    assert np.array_equal(guide.mask(state).allowed_ids(vocab.size), brute_force_allowed(guide, state, vocab))


def test_random_walks_end_in_objects_of_enough_distinct_keys() -> None:
    vocab = load_vocab("spm32k")
    rng = np.random.default_rng(3)
    for schema in SCHEMAS:
        guide = JSONLogitsProcessor(schema, vocab).guide
        validator = jsonschema.Draft202012Validator(schema)
        for _ in range(4):
            text = random_walk_text(guide, vocab, rng, 300, 0.3)
            if text is not None:
                value = json.loads(text)
                assert validator.is_valid(value), text


def test_a_minimum_written_as_a_float_is_remembered_too() -> None:
    """``2.0`` is 2 to the compiler, so the guide must remember the keys there as well."""
    processor = JSONLogitsProcessor({"type": "object", "minProperties": 2.0}, load_vocab("spm32k"))
    assert processor.accepts('{"a": 1, "b": 2}') and not processor.accepts('{"a": 1, "a": 2}')


def test_a_minimum_from_a_negated_maximum_is_remembered_too() -> None:
    """``not: {maxProperties: 2}`` is a minimum of 3 (the fuzzer: ``{"b": 0, "b": "c", "b":
    "c"}`` was accepted, the schema's text holding no minProperties for the guide to see)."""
    processor = JSONLogitsProcessor({"not": {"maxProperties": 2}}, load_vocab("spm32k"))
    assert not processor.accepts('{"b": 0, "b": "c", "b": "c"}')
    assert processor.accepts('{"a": 0, "b": "c", "c": "c"}')


def test_extra_keys_are_kept_distinct_only_where_the_guide_remembers_them() -> None:
    """A split schema not told that its guide remembers keys counts extra members once (a
    bare pushdown guide would otherwise take a key written twice for two members)."""
    from outlines_gguf.json_schema.pushdown import PushdownGuide
    from outlines_gguf.json_schema.split import SplitSchema

    vocab = load_vocab("spm32k")
    schema = {"type": "object", "properties": {"a": {}}, "minProperties": 2}
    bare = PushdownGuide(SplitSchema(schema), vocab)
    assert bare.advance(bare.initial_state, b'{"x": 1, "x": 2}') is not None  # (still open)
    assert not bare.is_final(bare.advance(bare.initial_state, b'{"x": 1, "x": 2}'))

"""``uniqueItems`` over strings, integers, booleans and null (``json_schema/unique.py``): items
spelled canonically, the guide remembering the ones written per array, judged by ``jsonschema``
and by a brute force over the vocabulary."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
from conftest import load_vocab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pushdown_oracle import brute_force_allowed

from outlines_gguf import JSONLogitsProcessor, SchemaError
from outlines_gguf.compiler import compile_json_schema
from outlines_gguf.json_schema.unique import UniqueItemsGuide

STRINGS = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
SCHEMAS = [
    STRINGS,
    {"type": "array", "items": {"type": "integer", "minimum": 0}, "uniqueItems": True, "maxItems": 5},
    {"type": "array", "items": {"enum": [f"v{i}" for i in range(12)]}, "uniqueItems": True, "minItems": 1},
    {"type": "array", "items": {"type": "string", "pattern": "^[ab]{1,2}$"}, "uniqueItems": True},
    {"type": "array", "items": {"type": ["string", "integer", "boolean", "null"]}, "uniqueItems": True},
    {  # one memory per array instance: the same items again in the next object
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"tags": STRINGS, "ids": {**STRINGS, "items": {"type": "integer"}}},
        },
    },
    {"type": "object", "properties": {"a": STRINGS, "b": STRINGS}, "additionalProperties": False},
]
SCALARS = st.one_of(st.sampled_from(["a", "b", "aa", "ab", "v1", "v11", "x\ny", "é", ""]), st.integers(-2, 3),
                    st.booleans(), st.none())
ARRAYS = st.lists(SCALARS, max_size=6)
DOCUMENTS = st.one_of(
    ARRAYS,
    st.lists(
        st.fixed_dictionaries({}, optional={"tags": ARRAYS, "ids": st.lists(st.integers(0, 3), max_size=4)}),
        max_size=3,
    ),
    st.fixed_dictionaries({}, optional={"a": ARRAYS, "b": ARRAYS}),
)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: json.dumps(s)[:60])
def test_unique_items_against_jsonschema(schema: dict) -> None:
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    assert isinstance(processor.guide, UniqueItemsGuide)
    validator = jsonschema.Draft202012Validator(schema)

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(DOCUMENTS)
    def check(document: object) -> None:
        text = json.dumps(document, ensure_ascii=False)
        assert processor.accepts(text) == validator.is_valid(document), text

    check()


@pytest.mark.parametrize(
    ("schema", "document"),
    [
        (STRINGS, ["ab", "a", "abc", "b"]),
        (SCHEMAS[2], ["v1", "v10", "v11"]),
        # the last value of a finite language: no comma after it (no item is left to write)
        (SCHEMAS[3], ["a", "b", "aa", "ab", "ba", "bb"]),
        (SCHEMAS[5], [{"tags": ["a", "b"]}, {"tags": ["b", "a"], "ids": [1, 10]}]),
    ],
)
def test_unique_items_masks_equal_a_brute_force(schema: dict, document: object) -> None:
    vocab = load_vocab("spm32k")
    guide = JSONLogitsProcessor(schema, vocab).guide
    data = json.dumps(document).encode()
    for cut in range(len(data) + 1):
        state = guide.advance(guide.initial_state, data[:cut])  # type: ignore[attr-defined]
        assert state is not None, data[:cut]
        got = guide.mask(state).allowed_ids(vocab.size)
        assert np.array_equal(got, brute_force_allowed(guide, state, vocab)), data[:cut]


def test_random_walks_end_in_unique_items() -> None:
    # whatever the logits, a generation finishes valid: no item the array cannot finish
    vocab = load_vocab("spm32k")
    rng = np.random.default_rng(0)
    for schema in SCHEMAS[:5]:
        guide = JSONLogitsProcessor(schema, vocab).guide
        validator = jsonschema.Draft202012Validator(schema)
        for _ in range(6):
            state, text = guide.initial_state, b""
            for _ in range(200):
                allowed = guide.mask(state).allowed_ids(vocab.size)
                assert allowed.size, text
                eog = [t for t in allowed.tolist() if t in vocab.eog_ids]
                if eog and rng.random() < 0.3:
                    break
                token = int(rng.choice([t for t in allowed.tolist() if t not in vocab.eog_ids] or eog))
                if token in vocab.eog_ids:
                    break
                state = guide.next_state(state, token)
                text += vocab.tokens[token]
            else:
                continue
            assert guide.is_final(state)
            assert validator.is_valid(json.loads(text)), text


def test_what_unique_items_leave_out() -> None:
    vocab = load_vocab("spm32k")
    processor = JSONLogitsProcessor(STRINGS, vocab)
    assert not processor.accepts('["\\u0041"]')  # one spelling per value: the canonical one
    with pytest.raises(SchemaError, match="no JSON value satisfies"):  # two values, three items
        JSONLogitsProcessor({**SCHEMAS[3], "items": {"enum": ["a", "b"]}, "minItems": 3}, vocab)
    with pytest.raises(SchemaError, match="uniqueItems"):  # numbers with fractions: many spellings
        JSONLogitsProcessor({"type": "array", "items": {"type": "number"}, "uniqueItems": True}, vocab)
    with pytest.raises(SchemaError, match="uniqueItems"):  # the whole-schema DFA engine cannot
        compile_json_schema(STRINGS)

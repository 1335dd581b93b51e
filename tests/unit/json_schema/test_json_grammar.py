"""Recursive JSON Schemas through the grammar engine (JSONLogitsProcessor(engine="grammar"))."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
from pydantic import BaseModel
from sampling import generate

from outlines_gguf import Grammar, JSONLogitsProcessor, SchemaError, Vocabulary
from outlines_gguf.json_schema.lark_grammar import schema_to_lark

TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "label": {"enum": ["a", "b", None]},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["value"],
        }
    },
    "$ref": "#/$defs/node",
}


class Cons(BaseModel):
    head: str
    tail: Cons | None = None


def test_deep_recursion_is_accepted_exactly() -> None:
    grammar = Grammar(schema_to_lark(TREE))
    deep = {"value": 0}
    for i in range(1, 30):  # far deeper than the automaton path's depth limit
        deep = {"value": i, "children": [deep, {"value": -i, "label": None}]}
    for text in (json.dumps(deep), json.dumps(deep, separators=(",", ":"))):
        assert grammar.accepts(text.encode())
    # missing required, wrong type, an extra property, another order
    bad_texts = [
        '{"children": []}', '{"value": 1.5}', '{"value": 1, "extra": 2}', '{"label": "a", "value": 1}'
    ]
    for bad in bad_texts:
        assert not grammar.accepts(bad.encode()), bad
    assert grammar.conflicts == []


@pytest.mark.parametrize("schema", [TREE, Cons], ids=["tree", "pydantic-cons"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_logits_give_valid_documents(real_vocab: Vocabulary, schema, seed: int) -> None:
    processor = JSONLogitsProcessor(schema, real_vocab, engine="grammar")
    guide = processor.guide
    tokens, _ = generate(processor, np.random.default_rng(seed), prompt=[5, 6], max_tokens=60)
    processor.raise_if_failed()
    state = guide.initial_state
    for token in tokens:
        state = guide.next_state(state, token)
    text = real_vocab.decode(tokens)
    if not guide.is_final(state):  # cut at max_tokens: finish it the shortest way
        text += guide.grammar.shortest_completion(state)
    document = json.loads(text)
    if isinstance(schema, dict):
        jsonschema.validate(document, schema)
    else:
        schema.model_validate(document)


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        ({"type": "string", "pattern": "a+"}, "pattern"),
        ({"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}}}, "maxLength"),
        ({"$ref": "#/$defs/missing"}, "does not resolve"),
        ({"type": "object", "additionalProperties": True}, "additionalProperties"),
        ({"type": "widget"}, "widget"),
    ],
)
def test_unsupported_keywords_are_errors_not_silence(schema, needle: str) -> None:
    with pytest.raises(SchemaError, match=needle):
        schema_to_lark(schema)


def test_engine_argument_is_checked() -> None:
    vocab = Vocabulary([b"", b"{", b"}", b"1"], eog_ids=[0], special_ids=[], name="tiny")
    with pytest.raises(ValueError, match="engine"):
        JSONLogitsProcessor({"type": "integer"}, vocab, engine="magic")
    with pytest.raises(SchemaError, match="whitespace_pattern"):
        JSONLogitsProcessor({"type": "integer"}, vocab, whitespace_pattern=" ?", engine="grammar")

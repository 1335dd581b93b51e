"""``$dynamicRef`` and ``$recursiveRef`` resolve through the resources evaluation entered on its
way (the dynamic scope): where every way gives one target, they are that ``$ref``; where ways
differ, the schema is refused naming the keyword (``json_schema/refs.py``). Judged by
``jsonschema``, which follows the dynamic scope at validation time."""

from __future__ import annotations

import json

import jsonschema
import pytest
from conftest import load_vocab

from outlines_gguf import JSONLogitsProcessor, SchemaError

DRAFT2020 = "https://json-schema.org/draft/2020-12/schema"
DRAFT2019 = "https://json-schema.org/draft/2019-09/schema"

# a generic tree whose children are "#node" dynamically: a document that refers to it and
# declares its own "node" anchor makes every level of the tree follow its own rules
TREE = {
    "$id": "tree",
    "$dynamicAnchor": "node",
    "type": "object",
    "properties": {"value": True, "children": {"type": "array", "items": {"$dynamicRef": "#node"}}},
}

CASES = [
    # the anchor is in the same resource: as a $ref
    (
        {
            "$schema": DRAFT2020,
            "type": "array",
            "items": {"$dynamicRef": "#it"},
            "$defs": {"it": {"$dynamicAnchor": "it", "type": "integer"}},
        },
        [[1, 2], [1, "a"], []],
    ),
    # the root declares the anchor too: the outermost resource in scope wins, at every depth
    (
        {
            "$schema": DRAFT2020,
            "$id": "https://example.com/strict",
            "$dynamicAnchor": "node",
            "$ref": "tree",
            "unevaluatedProperties": False,
            "$defs": {"tree": TREE},
        },
        [
            {"value": 1},
            {"value": 1, "extra": 2},
            {"children": [{"value": 2}]},
            {"children": [{"value": 2, "typo": 1}]},
            {"children": [{"children": [{"valeu": 3}]}]},
        ],
    ),
    # no anchor in the root: the tree's own
    (
        {"$schema": DRAFT2020, "$id": "https://example.com/loose", "$ref": "tree", "$defs": {"tree": TREE}},
        [{"children": [{"typo": 1}]}, {"children": [1]}],
    ),
    # an intermediate resource without the anchor changes nothing
    (
        {
            "$schema": DRAFT2020,
            "$id": "https://example.com/root",
            "$ref": "middle",
            "$defs": {
                "s": {"$dynamicAnchor": "it", "type": "string"},
                "middle": {"$id": "middle", "$ref": "list"},
                "list": {
                    "$id": "list",
                    "type": "array",
                    "items": {"$dynamicRef": "#it"},
                    "$defs": {"it": {"$dynamicAnchor": "it"}},
                },
            },
        },
        [["a", "b"], ["a", 1]],
    ),
    # an $anchor of the same name is not a dynamic anchor; a reference whose target is not a
    # $dynamicAnchor (no bookend) or whose fragment is a pointer is a $ref
    (
        {
            "$schema": DRAFT2020,
            "$id": "https://example.com/root",
            "$ref": "list",
            "$defs": {
                "s": {"$anchor": "it", "type": "string"},
                "list": {
                    "$id": "list",
                    "type": "array",
                    "items": {"$dynamicRef": "#it"},
                    "$defs": {"it": {"$dynamicAnchor": "it", "type": "integer"}},
                },
            },
        },
        [[1], ["a"]],
    ),
    (
        {
            "$schema": DRAFT2020,
            "$id": "https://example.com/root",
            "$ref": "list",
            "$defs": {
                "s": {"$dynamicAnchor": "it", "type": "string"},
                "list": {
                    "$id": "list",
                    "type": "array",
                    "items": {"$dynamicRef": "#it"},
                    "$defs": {"it": {"$anchor": "it", "type": "integer"}},
                },
            },
        },
        [[1], ["a"]],
    ),
    (
        {
            "$schema": DRAFT2020,
            "$id": "https://example.com/root",
            "$ref": "list",
            "$defs": {
                "s": {"$dynamicAnchor": "it", "type": "string"},
                "list": {
                    "$id": "list",
                    "type": "array",
                    "items": {"$dynamicRef": "#/$defs/it"},
                    "$defs": {"it": {"$dynamicAnchor": "it", "type": "integer"}},
                },
            },
        },
        [[1], ["a"]],
    ),
    # beside a $ref of its own node: both apply
    (
        {
            "$schema": DRAFT2020,
            "type": "array",
            "items": {"$ref": "#/$defs/pos", "$dynamicRef": "#it"},
            "$defs": {"it": {"$dynamicAnchor": "it", "type": "integer"}, "pos": {"minimum": 0}},
        },
        [[1], [-1], ["a"]],
    ),
    # 2019-09: $recursiveRef goes to the outermost of the resources saying $recursiveAnchor
    (
        {
            "$schema": DRAFT2019,
            "$id": "https://example.com/strict",
            "$recursiveAnchor": True,
            "$ref": "tree",
            "properties": {"value": {"type": "integer"}},
            "$defs": {
                "tree": {
                    "$id": "tree",
                    "$recursiveAnchor": True,
                    "type": "object",
                    "properties": {"kids": {"type": "array", "items": {"$recursiveRef": "#"}}},
                }
            },
        },
        [
            {"value": 1, "kids": [{"value": 2}]},
            {"kids": [{"value": "x"}]},
            {"kids": [{"kids": [{"value": "x"}]}]},
        ],
    ),
    # ... without it in the root: the tree's own
    (
        {
            "$schema": DRAFT2019,
            "$id": "https://example.com/loose",
            "$ref": "tree",
            "properties": {"value": {"type": "integer"}},
            "$defs": {
                "tree": {
                    "$id": "tree",
                    "$recursiveAnchor": True,
                    "type": "object",
                    "properties": {"kids": {"type": "array", "items": {"$recursiveRef": "#"}}},
                }
            },
        },
        [{"value": 1, "kids": [{"value": "x"}]}, {"value": "x"}],
    ),
]


def _validator(schema: dict) -> jsonschema.protocols.Validator:
    cls = (
        jsonschema.Draft201909Validator if schema["$schema"] == DRAFT2019 else jsonschema.Draft202012Validator
    )
    return cls(schema)


@pytest.mark.parametrize(("schema", "values"), CASES, ids=lambda x: json.dumps(x)[:50])
def test_dynamic_references_resolve_as_validators_resolve_them(schema: dict, values: list) -> None:
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    judge = _validator(schema)
    for value in values:
        text = json.dumps(value)
        assert processor.accepts(text) == judge.is_valid(value), text


def test_a_dynamic_reference_whose_target_depends_on_the_way_is_refused() -> None:
    # "node" is declared by two resources, each entered on one branch only: the tree's
    # children follow whichever branch was taken
    schema = {
        "$schema": DRAFT2020,
        "$id": "https://example.com/root",
        "anyOf": [{"$ref": "ints"}, {"$ref": "strings"}],
        "$defs": {
            "ints": {
                "$id": "ints",
                "$ref": "list",
                "$defs": {"n": {"$dynamicAnchor": "it", "type": "integer"}},
            },
            "strings": {
                "$id": "strings",
                "$ref": "list",
                "$defs": {"s": {"$dynamicAnchor": "it", "type": "string"}},
            },
            "list": {
                "$id": "list",
                "type": "array",
                "items": {"$dynamicRef": "#it"},
                "$defs": {"it": {"$dynamicAnchor": "it"}},
            },
        },
    }
    with pytest.raises(SchemaError, match=r"\$dynamicRef"):
        JSONLogitsProcessor(schema, load_vocab("spm32k"))
    assert _validator(schema).is_valid([1, 2]) and not _validator(schema).is_valid([1, "a"])


def test_one_dict_met_at_two_places_resolves_at_both() -> None:
    """A schema built in Python may hold one dict in two places; its ``$dynamicRef`` is rewritten
    at each (the copy made for that shared it, and the second rewrite raised a KeyError)."""
    shared = {"$dynamicRef": "#meta"}
    schema = {
        "type": "object",
        "properties": {"a": shared, "b": {"type": "array", "items": shared}},
        "$defs": {"m": {"$dynamicAnchor": "meta", "type": "string"}},
    }
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    assert processor.accepts('{"a": "x", "b": ["y"]}')
    assert not processor.accepts('{"b": [1]}')
    assert shared == {"$dynamicRef": "#meta"}  # (the caller's schema is left as it was)

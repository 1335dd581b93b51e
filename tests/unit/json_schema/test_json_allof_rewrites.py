"""``allOf`` parts that merge or distribute instead of being intersected as automata.

Real configuration schemas (GitHub workflows, Dependabot) put ``not: {required: [a, b]}``,
``oneOf`` and ``if``/``then``/``else`` beside other parts, ``patternProperties`` beside
properties another part declares, and ``items`` in two parts. Intersected as automata these
passed the state limit or refused a ``uniqueItems`` the split engine enforces; rewritten as
unions of schemas that merge, they compile as nodes. Judged by ``jsonschema`` on every
combination of keys.
"""

from __future__ import annotations

import itertools
import json

import jsonschema
import pytest
from conftest import load_vocab

from outlines_gguf import JSONLogitsProcessor
from outlines_gguf.json_schema.algebra import _beyond, _merge_all

FILTERS = ("branches", "branches-ignore", "tags", "tags-ignore", "paths", "paths-ignore")

EVENT = {
    "$defs": {
        "filter": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "ref": {
            "properties": {name: {"$ref": "#/$defs/filter"} for name in FILTERS},
            "oneOf": [
                {
                    "type": "object",
                    "allOf": [
                        {"not": {"required": ["branches", "branches-ignore"]}},
                        {"not": {"required": ["tags", "tags-ignore"]}},
                        {"not": {"required": ["paths", "paths-ignore"]}},
                    ],
                },
                {"type": "null"},
            ],
        },
    },
    "type": "object",
    "properties": {
        "push": {"$ref": "#/$defs/ref"},
        "pull_request": {
            "$ref": "#/$defs/ref",
            "properties": {"types": {"type": "array", "items": {"enum": ["opened", "closed"]}}},
            "patternProperties": {"^(branche|tag|path)s(-ignore)?$": {"type": "array"}},
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
"""GitHub's workflow ``on`` events, as SchemaStore writes them: the object branch of the
``oneOf`` intersected as automata with the six filters took more than 20,000 states."""


def _judge(schema: dict, documents: list) -> None:
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    processor.guide.schema.compile_all()  # type: ignore[attr-defined]  # every node within the limits
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)(schema)
    for document in documents:
        assert processor.accepts(json.dumps(document)) == validator.is_valid(document), document


def test_not_required_pairs_beside_references_distribute() -> None:
    documents: list = []
    for event in ("push", "pull_request"):
        documents.append({event: None})
        for n in range(4):
            for names in itertools.combinations((*FILTERS, "types"), n):
                documents.append({event: {key: ["opened"] for key in names}})
        documents += [{event: {"branches": []}}, {event: {"other": ["x"]}}, {event: 1}]
    _judge(EVENT, documents)


def test_patterns_exempt_names_another_part_declares() -> None:
    """A part closed by ``additionalProperties: false`` whose pattern matches a name another
    part declares: that name is allowed (the pattern's schema applies); a name no pattern
    matches is not."""
    schema = {
        "type": "object",
        "allOf": [
            {"properties": {"bx": {"type": "integer"}, "cx": {"type": "integer"}}},
            {"patternProperties": {"^b": {"minimum": 2}}, "additionalProperties": False},
        ],
    }
    values = (1, 2, "s")
    documents = [{}]
    for key in ("bx", "cx", "by", "z"):
        documents += [{key: v} for v in values]
    documents += [{"bx": 2, "by": 3}, {"bx": 2, "cx": 2}]
    _judge(schema, documents)


def test_item_schemas_of_two_parts_merge() -> None:
    """``items`` (a schema, no prefix) in two parts applies to every item in both: merged
    as an allOf, so the items keep what the split engine enforces alone (uniqueItems)."""
    item = {
        "type": "object",
        "properties": {
            "kind": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        },
        "additionalProperties": False,
    }
    schema = {
        "$defs": {"item": item},
        "type": "array",
        "allOf": [
            {"items": {"$ref": "#/$defs/item"}},
            {"items": {"properties": {"kind": {"enum": ["a", "b"]}}}},
        ],
    }
    documents = [
        [],
        [{"kind": "a"}],
        [{"kind": "c"}],
        [{"kind": "b", "tags": ["x", "y"]}],
        [{"kind": "b", "tags": ["x", "x"]}],
        [{"tags": []}, {"kind": 1}],
        [{"other": 1}],
    ]
    _judge(schema, documents)


@pytest.mark.parametrize("prefix", [[{"minimum": 3}], []])
def test_items_beside_a_prefix_in_another_part_do_not_merge(prefix: list) -> None:
    """A part's ``prefixItems`` limits only its own ``items``: ``[3, 5]`` fails the outer
    ``items`` (the issue's soundness case), merged or not."""
    schema = {"allOf": [{"prefixItems": prefix}], "items": {"minimum": 5}}
    _judge(schema, [[3, 5], [5, 5], [5], [3], []])


def test_conditionals_and_dependencies_beside_other_parts_expand() -> None:
    """``if``/``then``/``else`` and ``dependentRequired`` in an ``allOf`` beside a part with a
    ``uniqueItems`` the split engine enforces: expanded into unions of merged schemas, not
    refused as automata (as in Dependabot's configuration schema)."""
    schema = {
        "type": "object",
        "properties": {
            "beta": {"type": "boolean"},
            "ecosystem": {"type": "string"},
            "assignees": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        },
        "allOf": [
            {
                "if": {"properties": {"beta": {"const": True}}, "required": ["beta"]},
                "then": {},
                "else": {"properties": {"ecosystem": {"enum": ["npm", "pip"]}}},
            },
            {"dependentRequired": {"assignees": ["ecosystem"]}},
        ],
    }
    documents = []
    for beta in (None, True, False):
        for ecosystem in (None, "npm", "cargo"):
            for assignees in (None, ["a", "b"], ["a", "a"]):
                doc = {"beta": beta, "ecosystem": ecosystem, "assignees": assignees}
                documents.append({k: v for k, v in doc.items() if v is not None})
    _judge(schema, documents)


def test_contains_in_one_part_merges_with_the_items_of_another() -> None:
    # a oneOf whose branches differ in what their array items hold makes each branch "items X
    # and not items Y", i.e. allOf[{items: X}, {contains: not Y}]: contains reads every item
    # whatever the items say, so the parts merge (GitHub's package inventories went to the
    # whole-DFA intersection and past its work budget). Two parts with contains do not merge
    item = {
        "type": "object",
        "properties": {"sum": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["n"],
    }
    schema = {
        "type": "array",
        "allOf": [{"items": item}, {"contains": {"properties": {"n": {"minimum": 5}}}, "minContains": 2}],
    }
    assert _merge_all([{"items": item}, {"contains": {}, "maxContains": 1}]) is not None
    assert _merge_all([{"contains": {"type": "integer"}}, {"contains": {"type": "string"}}]) is None
    values = [{"n": 1}, {"n": 7}, {"n": 9, "sum": "a"}, {"sum": "x"}, 3]
    documents = [list(combo) for k in range(4) for combo in itertools.product(values, repeat=k)]
    _judge(schema, documents)
    two = {"type": "array", "allOf": [{"contains": {"type": "integer"}}, {"contains": {"type": "string"}}]}
    _judge(two, [list(c) for k in range(4) for c in itertools.product([1, "a", None], repeat=k)])


def test_property_names_merge_with_the_properties_of_another_part() -> None:
    """``propertyNames`` reads every key, whatever the properties beside it: it merges. Before,
    the parts were intersected as whole automata, whose objects take undeclared keys only after
    the declared ones (``{"a": 1, "b": 2}`` was rejected)."""
    schema = {
        "allOf": [
            {"type": "object", "propertyNames": {"enum": ["a", "b", "c"]}},
            {"type": "object", "required": ["b"], "properties": {"b": {"type": "integer"}}},
            {"propertyNames": {"maxLength": 1}},
        ]
    }
    documents: list = []
    for n in range(3):
        for keys in itertools.permutations(("a", "b", "c", "dd"), n + 1):
            documents.append({key: 1 for key in keys})
    documents += [{"b": "s"}, {"a": 1}]
    _judge(schema, documents)


CHANNEL = (
    r"^(?:stable|beta|nightly|\d+(?:\.\d+){1,2})(?:-\d{4}(?:-\d{2}){2})?(?:-\D[^-]*(?:(?:-(?:[^-]+)){1,3}))?$"
)

TOOLCHAIN = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "minProperties": 1,
    "properties": {
        "channel": {"type": "string", "pattern": CHANNEL},
        "components": {"type": "array", "items": {"enum": ["rustc", "cargo", "clippy"]}},
        "targets": {"type": "array", "items": {"type": "string"}},
        "profile": {"enum": ["minimal", "default", "complete"]},
        "path": {"type": "string"},
    },
    "oneOf": [
        {"not": {"properties": {"path": {"type": "string"}}, "required": ["path"]}},
        {"required": ["path"]},
    ],
    "dependencies": {
        "path": {"not": {"properties": {"channel": {"type": "string"}}, "required": ["channel"]}},
        "channel": {"not": {"properties": {"path": {"type": "string"}}, "required": ["path"]}},
        "profile": {
            "anyOf": [
                {"properties": {"channel": {"type": "string"}}, "required": ["channel"]},
                {"properties": {"components": {"type": "array"}}, "required": ["components"]},
                {"properties": {"targets": {"type": "array"}}, "required": ["targets"]},
            ]
        },
    },
}
"""rust-toolchain.toml's ``toolchain`` (SchemaStore): three dependencies and a oneOf, each a
union once rewritten. Most of the combinations contradict one another (``path`` required
beside ``path: false``); counted as alternatives, they spent the spreading budget and the
rest was intersected as automata (with the channel pattern: past the work budget)."""


def test_contradicting_alternatives_cost_no_spreading_budget() -> None:
    values = {
        "channel": ["stable", "1.63.0-x86_64-pc-windows-msvc", "x"],
        "components": [["cargo"]],
        "targets": [["wasm32"]],
        "profile": ["minimal"],
        "path": ["/opt/rust"],
    }
    documents: list = []
    for n in range(4):
        for keys in itertools.combinations(values, n):
            for chosen in itertools.product(*(values[k] for k in keys)):
                documents.append(dict(zip(keys, chosen, strict=True)))
    _judge(TOOLCHAIN, documents)


HAS_B = {"properties": {"b": True}, "required": ["b"]}
SIBLING_CASES = [
    # an anyOf distributed over the keywords beside it: a branch's properties are not siblings
    # of the outer additionalProperties (``{"b": 1}`` was accepted)
    {"allOf": [{"anyOf": [HAS_B, {"not": HAS_B}], "additionalProperties": False}]},
    {"anyOf": [HAS_B, {"not": HAS_B}], "additionalProperties": False},
    {"allOf": [{"anyOf": [{"prefixItems": [{"minimum": 3}]}, {"maxItems": 0}], "items": {"minimum": 5}}]},
    {"allOf": [{"anyOf": [{"contains": {"const": 1}}, {"maxItems": 0}], "maxContains": 1}]},
    {"allOf": [{"anyOf": [{"if": {"required": ["b"]}}, {"maxProperties": 0}], "then": {"required": ["c"]}}]},
    # an if without then or else, in an allOf: non-objects satisfy it (they were refused as empty)
    {"anyOf": [{"allOf": [{"if": HAS_B, "additionalProperties": False, "minProperties": 2}]}]},
    {"allOf": [{"if": HAS_B, "additionalProperties": False}]},
]
SIBLING_DOCUMENTS = [False, "x", 2, {}, {"a": 1}, {"b": 1}, {"b": 1, "c": 2}, [], [3, 5], [5, 5], [1], [1, 1]]


@pytest.mark.parametrize("schema", SIBLING_CASES, ids=[json.dumps(s)[:60] for s in SIBLING_CASES])
def test_alternatives_keep_keywords_apart_from_siblings_they_depend_on(schema: dict) -> None:
    _judge(schema, SIBLING_DOCUMENTS)


NAMES = ("base", "height", "length", "radius", "width")


def _dimensions(absent: list[str], required: list[str]) -> dict:
    return {"properties": {name: {"not": {}} for name in absent}, "required": required}


SHAPES = {
    "type": "object",
    "properties": {
        "shape": {"type": "string"},
        "dimensions": {
            "type": "object",
            "properties": {name: {"type": "number"} for name in NAMES},
            # (as a real schema wrote it: each branch describes a "dimensions" inside "dimensions")
            "oneOf": [
                {"properties": {"dimensions": _dimensions(["base", "height", "length", "width"], ["radius"]),
                                "shape": {"const": "circle"}}},
                {"properties": {"dimensions": _dimensions(["base", "height", "radius"], ["length", "width"]),
                                "shape": {"const": "rectangle"}}},
                {"properties": {"dimensions": _dimensions(["length", "radius", "width"], ["base", "height"]),
                                "shape": {"const": "triangle"}}},
            ],
        },
    },
    "required": ["shape", "dimensions"],
}
"""A Glaive function schema whose oneOf branches exclude each other through a nested object:
branch 1 and not branch 0 and not branch 2 spread into unions of "some key present" and "some
key absent" over five keys in any order (more than 20,000 states when generation reached
it), though the branch's own properties imply every one of them but "is an object"."""


def test_alternatives_the_other_parts_imply_reduce_to_their_type() -> None:
    inner = [{}, {"radius": 1}, {"length": 1, "width": 2}, {"base": 1, "height": 2}, {"radius": 1, "base": 1},
             {"length": 1}, "x", 3, None]
    documents: list = [{"shape": "x", "dimensions": {}}]
    for dims in inner:
        for shape in ("circle", "rectangle", "triangle", "other", None):
            value = {"dimensions": dims} if shape is None else {"dimensions": dims, "shape": shape}
            documents.append({"shape": "s", "dimensions": value})
    _judge(SHAPES, documents)


NO_B = {"properties": {"b": False}}
POSITIVE_B = {"properties": {"b": {"minimum": 1}}}


@pytest.mark.parametrize(
    ("facts", "option", "expected"),
    [
        ({"required": ["a"]}, {"properties": {"a": {}}, "required": ["a"]}, True),
        ({"required": ["a"]}, {"type": ["object"], "required": ["a"]}, {"type": ["object"]}),
        ({"properties": {"b": {"not": {}}}}, {"properties": {"b": False}}, True),
        ({"properties": {"b": {"type": "string"}}}, {"properties": {"b": {"type": "string"}}}, True),
        # not implied: kept as they are
        ({"required": ["a"]}, {"required": ["a", "b"]}, {"required": ["a", "b"]}),
        ({"properties": {"b": {"type": "string"}}}, NO_B, NO_B),
        ({"properties": {"b": False}}, POSITIVE_B, POSITIVE_B),
        ({}, {"minProperties": 1}, {"minProperties": 1}),
    ],
)
def test_what_an_option_adds_to_the_other_parts(facts: dict, option: dict, expected: object) -> None:
    assert _beyond(facts, option) == expected


WIDE = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(30)}}
CLOSED = {
    "type": "object",
    "properties": {"kind": {"enum": ["closed"]}, **{f"p{i}": {"type": "string"} for i in range(1, 5)}},
    "required": ["kind"],
    "additionalProperties": False,
}
OTHER = {"type": "object", "properties": {"kind": {"enum": ["other"]}}, "required": ["kind"]}
REF_BESIDE_TYPE = {
    "$defs": {"wide": WIDE, "other": OTHER, "closed": CLOSED},
    "allOf": [
        {"$ref": "#/$defs/closed"},
        {"type": "object", "anyOf": [{"$ref": "#/$defs/wide"}, {"$ref": "#/$defs/other"}]},
    ],
}
"""A closed object and a union of references beside a ``type`` (the Washington Post's content
schemas): ``{type, $ref}`` was not inlined, so the parts did not merge, and intersected as
automata they lost every document of the wide branch (``{"kind": "closed", "p1": "x"}`` was
rejected; with the real schema's 44 members, more than 200,000 NFA states)."""


def test_a_ref_beside_other_keywords_merges_with_the_other_parts() -> None:
    documents = [{"kind": "closed"}, {"kind": "closed", "p1": "x"}, {"kind": "closed", "p1": 1}]
    documents += [{"kind": "other"}, {"kind": "closed", "p9": "x"}, {"p1": "x"}, [], "closed"]
    _judge(REF_BESIDE_TYPE, documents)


TREE = {
    "type": "object",
    "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}, "name": {"type": "string"}},
    "patternProperties": {"^[a-z]*": {"type": "array", "items": {"$ref": "#"}}},
    "additionalProperties": False,
}
"""A recursive object whose pattern also matches a declared name: ``kids`` holds both schemas,
its items ``#`` and ``#`` merged, their ``kids`` both again: the parts doubled at every level
(eight levels down a piece passed the size limits while generating)."""


def test_parts_a_merge_repeats_are_taken_once_through_recursion() -> None:
    processor = JSONLogitsProcessor(TREE, load_vocab("spm32k"))
    deep: dict = {}
    for _ in range(12):
        deep = {"kids": [deep, {"x": []}]}
    assert processor.accepts(json.dumps(deep))
    assert processor.guide.schema.n_compiled <= 8  # type: ignore[attr-defined]  # (not a node per level)
    assert not processor.accepts(json.dumps({"kids": [{"name": 1}]}))
    assert not processor.accepts(json.dumps({"name": []}))  # (the pattern matches "name" too)

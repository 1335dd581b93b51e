"""Unions of wide objects: each branch a node of its own, its members laid out one set of written
members at a time (``union_branch``), instead of one automaton whose states multiply the
branches' sets of members (OpenAPI 3.0's ``Parameter`` needed more than 20,000 states).

Judge: ``jsonschema`` on every combination of the members that tell the branches apart.
"""

from __future__ import annotations

import itertools
import json
import random

import jsonschema
from conftest import load_vocab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outlines_gguf import JSONLogitsProcessor
from outlines_gguf.errors import ConstraintTooComplexError, SchemaError

# OpenAPI 3.0's Parameter object, as its official schema writes it (locations by "in", schema
# XOR content, example XOR examples, extensions by pattern)
PARAMETER = {
    "$ref": "#/definitions/Parameter",
    "definitions": {
        "Parameter": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "in": {"type": "string"},
                "description": {"type": "string"},
                "required": {"type": "boolean", "default": False},
                "deprecated": {"type": "boolean", "default": False},
                "allowEmptyValue": {"type": "boolean", "default": False},
                "style": {"type": "string"},
                "explode": {"type": "boolean"},
                "allowReserved": {"type": "boolean", "default": False},
                "schema": {"type": "object"},
                "content": {"type": "object", "minProperties": 1, "maxProperties": 1},
                "example": {},
                "examples": {"type": "object"},
            },
            "patternProperties": {"^x-": {}},
            "additionalProperties": False,
            "required": ["name", "in"],
            "allOf": [
                {"$ref": "#/definitions/ExampleXORExamples"},
                {"$ref": "#/definitions/SchemaXORContent"},
            ],
            "oneOf": [
                {"$ref": "#/definitions/PathParameter"},
                {"$ref": "#/definitions/QueryParameter"},
                {"$ref": "#/definitions/HeaderParameter"},
                {"$ref": "#/definitions/CookieParameter"},
            ],
        },
        "ExampleXORExamples": {"not": {"required": ["example", "examples"]}},
        "SchemaXORContent": {
            "not": {"required": ["schema", "content"]},
            "oneOf": [
                {"required": ["schema"]},
                {
                    "required": ["content"],
                    "allOf": [
                        {"not": {"required": ["style"]}},
                        {"not": {"required": ["explode"]}},
                        {"not": {"required": ["allowReserved"]}},
                        {"not": {"required": ["example"]}},
                        {"not": {"required": ["examples"]}},
                    ],
                },
            ],
        },
        "PathParameter": {
            "required": ["required"],
            "properties": {
                "in": {"enum": ["path"]},
                "style": {"enum": ["matrix", "label", "simple"]},
                "required": {"enum": [True]},
            },
        },
        "QueryParameter": {
            "properties": {
                "in": {"enum": ["query"]},
                "style": {"enum": ["form", "spaceDelimited", "pipeDelimited", "deepObject"]},
            }
        },
        "HeaderParameter": {"properties": {"in": {"enum": ["header"]}, "style": {"enum": ["simple"]}}},
        "CookieParameter": {"properties": {"in": {"enum": ["cookie"]}, "style": {"enum": ["form"]}}},
    },
}


def _documents() -> list[dict]:
    docs = []
    options = {
        "in": ["path", "query", "header", "cookie", "body"],
        "style": [None, "simple", "form", "matrix"],
        "required": [None, True, False],
        "body": ["schema", "content", "both", "neither"],
        "example": [None, "example", "examples", "both"],
        "extra": [None, "x-a", "y"],
    }
    for choice in itertools.product(*options.values()):
        where, style, required, body, example, extra = choice
        doc: dict = {"name": "id", "in": where}
        if style is not None:
            doc["style"] = style
        if required is not None:
            doc["required"] = required
        if body in ("schema", "both"):
            doc["schema"] = {"type": "string"}
        if body in ("content", "both"):
            doc["content"] = {"application/json": {}}
        if example in ("example", "both"):
            doc["example"] = 1
        if example in ("examples", "both"):
            doc["examples"] = {}
        if extra is not None:
            doc[extra] = 0
        docs.append(doc)
    return docs


def test_a_union_of_wide_objects_is_exact_without_a_product_of_their_members() -> None:
    processor = JSONLogitsProcessor(PARAMETER, load_vocab("spm32k"))
    validator = jsonschema.Draft7Validator(PARAMETER)
    docs = _documents()
    wrong = []
    for doc in docs:
        for text in (json.dumps(doc), json.dumps(dict(reversed(list(doc.items()))))):  # (any order)
            if processor.accepts(text) != validator.is_valid(doc):
                wrong.append(text)
    assert not wrong, wrong[:5]
    assert sum(validator.is_valid(d) for d in docs) > 50  # (the combinations reach every branch)


WIDE_KEYS = [f"k{i}" for i in range(9)]
WIDE_VALUES: list = [0, 1, "x", "y", True, None, {}]
WIDE_VALUE_SCHEMAS = [
    {"type": "integer"},
    {"type": "string"},
    {"enum": [0, "x"]},
    {"const": 1},
    {"type": ["boolean", "null"]},
    {"type": "object"},
    {},
]


@st.composite
def wide_branches(draw: st.DrawFn) -> dict:
    """An object of 8 or 9 declared members (wide: a node of its own), closed or open to
    ``x-`` keys, with required members, a discriminator, sometimes a pair that may not come
    together."""
    keys = draw(st.lists(st.sampled_from(WIDE_KEYS), min_size=8, max_size=9, unique=True))
    properties = {k: draw(st.sampled_from(WIDE_VALUE_SCHEMAS)) for k in keys}
    if "k0" in properties and draw(st.booleans()):
        properties["k0"] = {"const": draw(st.sampled_from([0, 1, "x"]))}
    branch: dict = {"type": "object", "properties": properties}
    if draw(st.booleans()):
        branch["additionalProperties"] = False
        if draw(st.booleans()):
            branch["patternProperties"] = {"^x-": {}}
    branch["required"] = draw(st.lists(st.sampled_from(keys), max_size=2, unique=True))
    if draw(st.integers(0, 2)) == 0:
        branch["not"] = {
            "required": draw(st.lists(st.sampled_from(keys), min_size=2, max_size=2, unique=True))
        }
    return branch


def _wide_documents(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    docs: list[dict] = [{}]
    for _ in range(n):
        keys = rng.sample([*WIDE_KEYS, "x-a", "z"], rng.randint(1, 5))
        docs.append({k: rng.choice(WIDE_VALUES) for k in keys})
    return docs


WIDE_DOCUMENTS = _wide_documents(0, 300)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(wide_branches(), min_size=2, max_size=4),
    st.sampled_from(["anyOf", "oneOf"]),
    st.sampled_from([None, {"required": ["k1"]}, {"anyOf": [{"required": ["k2"]}, {"required": ["k3"]}]}]),
)
def test_random_unions_of_wide_objects_are_exact_or_refused(
    branches: list, key: str, beside: dict | None
) -> None:
    """Each branch a node of its own, whatever surrounds the union (an ``allOf`` spread over
    it): every document accepted is valid, every valid one accepted unless a valid subset was
    taken (and said); a refusal names the oneOf or a size limit."""
    schema: dict = {key: branches}
    if beside is not None:
        schema = {"allOf": [beside, schema]}
    try:
        processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
        processor.guide.schema.compile_all()  # type: ignore[attr-defined]
    except SchemaError as exc:
        assert "oneOf" in str(exc) or "no JSON value" in str(exc), exc
        return
    except ConstraintTooComplexError:
        return
    validator = jsonschema.Draft202012Validator(schema)
    exact = not processor.guide.schema.subsets  # type: ignore[attr-defined]
    for document in WIDE_DOCUMENTS:
        valid = validator.is_valid(document)
        if exact or not valid:
            assert processor.accepts(json.dumps(document)) == valid, (json.dumps(schema), document)

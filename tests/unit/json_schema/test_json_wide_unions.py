"""Unions of wide objects: each branch a node of its own, its members laid out one set of written
members at a time (``union_branch``), instead of one automaton whose states multiply the
branches' sets of members (OpenAPI 3.0's ``Parameter`` needed more than 20,000 states).

Judge: ``jsonschema`` on every combination of the members that tell the branches apart.
"""

from __future__ import annotations

import itertools
import json

import jsonschema
from conftest import load_vocab

from outlines_gguf import JSONLogitsProcessor

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

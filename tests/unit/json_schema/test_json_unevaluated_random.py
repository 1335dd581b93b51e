"""``unevaluatedProperties`` beside value-dependent keywords (``if``/``then``/``else``, ``oneOf``,
``anyOf``, ``dependentSchemas``), random, judged by ``jsonschema`` on every small document.

Three rewrites meet them (``json_schema/unevaluated.py``): exclusive branches, each static (up
to 16); a static rewrite where those keywords can only evaluate names the rest evaluates
anyway; and, past the branches, one closing conditional per set of conditions under which a
name is evaluated ("name present and no condition holds: the name is unevaluated"). Whichever
applies, a schema compiled must accept exactly the valid documents, and what generation writes
must be valid; a refusal must name the keyword. OpenAPI 3.1's ``parameter`` and security schemes
are the real-world shapes."""

from __future__ import annotations

import itertools
import json
from unittest import mock

import jsonschema
import numpy as np
from conftest import load_vocab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pushdown_oracle import random_walk_text

from outlines_gguf import JSONLogitsProcessor
from outlines_gguf.errors import ConstraintTooComplexError, SchemaError
from outlines_gguf.json_schema import unevaluated

KEYS = ("kind", "a", "b", "c", "x-e")
KINDS = ("p", "q", "r")
VALUES: dict[str, list] = {"kind": list(KINDS), "a": [1, "s"], "b": [2], "c": [True], "x-e": [0]}
VALUE_SCHEMAS: list = [{}, {"type": "integer"}, {"type": "string"}]


def _kind_is(kind: str) -> dict:
    return {"properties": {"kind": {"const": kind}}, "required": ["kind"]}


def _names(draw: st.DrawFn) -> dict:
    names = draw(st.lists(st.sampled_from(KEYS[1:4]), min_size=1, max_size=2, unique=True))
    return {n: draw(st.sampled_from(VALUE_SCHEMAS)) for n in names}


@st.composite
def dynamic_parts(draw: st.DrawFn) -> dict:
    """One value-dependent keyword, as an allOf part."""
    kind = draw(st.sampled_from(["if", "if-else", "oneOf", "anyOf", "dependent"]))
    if kind.startswith("if"):
        part: dict = {"if": _kind_is(draw(st.sampled_from(KINDS))), "then": {"properties": _names(draw)}}
        if kind == "if-else":
            part["else"] = {"properties": _names(draw)}
        return part
    if kind == "dependent":
        return {"dependentSchemas": {draw(st.sampled_from(KEYS[1:4])): {"properties": _names(draw)}}}
    branches = [
        {"properties": _names(draw), "required": [draw(st.sampled_from(KEYS[1:4]))]} for _ in range(2)
    ]
    return {kind: branches}


@st.composite
def schemas(draw: st.DrawFn) -> dict:
    schema: dict = {
        "type": "object",
        "properties": {"kind": {"enum": list(KINDS)}},
        "allOf": draw(st.lists(dynamic_parts(), min_size=1, max_size=5)),
        "unevaluatedProperties": draw(st.sampled_from([False, False, {"type": "integer"}])),
    }
    if draw(st.booleans()):
        schema["patternProperties"] = {"^x-": True}
    if draw(st.booleans()):
        schema["properties"]["a"] = True
    return schema


DOCUMENTS: list = [1, "x"]
for n in range(4):
    for keys in itertools.combinations(KEYS, n):
        for values in itertools.product(*(VALUES[k] for k in keys)):
            DOCUMENTS.append(dict(zip(keys, values, strict=True)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schemas())
def test_unevaluated_beside_value_dependent_keywords_is_exact(schema: dict) -> None:
    _judge(schema)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schemas())
def test_without_branches_the_closing_conditionals_are_exact(schema: dict) -> None:
    """The same schemas with no exclusive branches at all: the static rewrite where the
    value-dependent parts do not matter, the closing conditionals elsewhere."""
    with mock.patch.object(unevaluated, "MAX_BRANCHES", 1):
        _judge(schema)


def _judge(schema: dict) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    vocab = load_vocab("spm32k")
    try:
        processor = JSONLogitsProcessor(schema, vocab)
    except SchemaError as exc:
        assert "unevaluatedProperties" in str(exc) or "no JSON value" in str(exc), exc
        if "no JSON value" in str(exc):
            assert not any(validator.is_valid(d) for d in DOCUMENTS), json.dumps(schema)
        return
    except ConstraintTooComplexError:
        return
    for document in DOCUMENTS:
        assert processor.accepts(json.dumps(document)) == validator.is_valid(document), (
            json.dumps(schema),
            document,
        )
    rng = np.random.default_rng(0)
    for _ in range(2):
        text = random_walk_text(processor.guide, vocab, rng, steps=60, stop=0.3)
        if text is not None:
            assert validator.is_valid(json.loads(text)), (json.dumps(schema), text)


SECURITY_SCHEME = {
    "type": "object",
    "properties": {"type": {"enum": ["apiKey", "http", "oauth2", "openIdConnect", "mutualTLS"]}},
    "required": ["type"],
    "allOf": [
        {"$ref": "#/$defs/apikey"},
        {"$ref": "#/$defs/http"},
        {"$ref": "#/$defs/bearer"},
        {"$ref": "#/$defs/oauth2"},
        {"$ref": "#/$defs/oidc"},
    ],
    "unevaluatedProperties": False,
    "$defs": {
        "apikey": {
            "if": {"properties": {"type": {"const": "apiKey"}}, "required": ["type"]},
            "then": {"properties": {"name": {"type": "string"}, "in": {"enum": ["query", "header"]}},
                     "required": ["name", "in"]},
        },
        "http": {
            "if": {"properties": {"type": {"const": "http"}}, "required": ["type"]},
            "then": {"properties": {"scheme": {"type": "string"}}, "required": ["scheme"]},
        },
        "bearer": {
            "if": {"properties": {"type": {"const": "http"}, "scheme": {"const": "bearer"}},
                   "required": ["type", "scheme"]},
            "then": {"properties": {"bearerFormat": {"type": "string"}}},
        },
        "oauth2": {
            "if": {"properties": {"type": {"const": "oauth2"}}, "required": ["type"]},
            "then": {"properties": {"flows": {"type": "object"}}, "required": ["flows"]},
        },
        "oidc": {
            "if": {"properties": {"type": {"const": "openIdConnect"}}, "required": ["type"]},
            "then": {
                "properties": {"openIdConnectUrl": {"type": "string"}},
                "required": ["openIdConnectUrl"],
            },
        },
    },
}
"""OpenAPI 3.1's security scheme (``$defs/security-scheme``), ``description`` and extensions
left out: more value-dependent parts than exclusive branches split out."""


def test_openapi_security_schemes_close_each_kind_to_its_names() -> None:
    processor = JSONLogitsProcessor(SECURITY_SCHEME, load_vocab("spm32k"))
    validator = jsonschema.Draft202012Validator(SECURITY_SCHEME)
    documents = [
        {"type": "apiKey", "name": "k", "in": "query"},
        {"type": "apiKey", "name": "k", "in": "query", "scheme": "basic"},  # (http's name)
        {"type": "http", "scheme": "basic"},
        {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        {"type": "http", "scheme": "basic", "bearerFormat": "JWT"},  # (bearer's name, not bearer)
        {"type": "oauth2", "flows": {}},
        {"type": "oauth2", "flows": {}, "openIdConnectUrl": "u"},
        {"type": "openIdConnect", "openIdConnectUrl": "u"},
        {"type": "mutualTLS"},
        {"type": "mutualTLS", "name": "k"},
    ]
    verdicts = [validator.is_valid(d) for d in documents]
    assert verdicts == [True, False, True, True, False, True, False, True, True, False]
    for document, valid in zip(documents, verdicts, strict=True):
        assert processor.accepts(json.dumps(document)) == valid, document


PARAMETER = {
    "$defs": {
        "parameter": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "in": {"enum": ["query", "header", "path"]},
                "required": {"type": "boolean"},
                "schema": {"type": "object"},
                "content": {"type": "object"},
            },
            "required": ["name", "in"],
            "oneOf": [{"required": ["schema"]}, {"required": ["content"]}],
            "dependentSchemas": {
                "schema": {
                    "properties": {"style": {"type": "string"}, "explode": {"type": "boolean"}},
                    "allOf": [
                        {"$ref": "#/$defs/parameter/dependentSchemas/schema/$defs/styles-for-path"},
                        {"$ref": "#/$defs/parameter/dependentSchemas/schema/$defs/styles-for-query"},
                    ],
                    "$defs": {
                        "styles-for-path": {
                            "if": {"properties": {"in": {"const": "path"}}, "required": ["in"]},
                            "then": {
                                "properties": {
                                    "style": {"enum": ["simple", "label"]},
                                    "required": {"const": True},
                                },
                                "required": ["required"],
                            },
                        },
                        "styles-for-query": {
                            "if": {"properties": {"in": {"const": "query"}}, "required": ["in"]},
                            "then": {"properties": {"style": {"enum": ["form", "deepObject"]}}},
                        },
                    },
                },
            },
            "unevaluatedProperties": False,
        }
    },
    "$ref": "#/$defs/parameter",
}
"""OpenAPI 3.1's parameter, shortened: its references point inside it (into its dependentSchemas'
own ``$defs``), which a rewrite into branches would move; they are inlined first, and its
``in`` conditionals only name properties it declares (so they need no branch)."""


def test_openapi_parameters_evaluate_styles_only_beside_a_schema() -> None:
    processor = JSONLogitsProcessor(PARAMETER, load_vocab("spm32k"))
    validator = jsonschema.Draft202012Validator(PARAMETER)
    base = {"name": "id", "in": "query"}
    documents = [
        {**base, "schema": {}},
        {**base, "schema": {}, "style": "form"},
        {**base, "schema": {}, "style": "simple"},  # (not a query style)
        {**base, "content": {}},
        {**base, "content": {}, "style": "form"},  # (style evaluated only beside a schema)
        {**base, "schema": {}, "content": {}},
        {"name": "id", "in": "path", "schema": {}, "required": True, "style": "label"},
        {"name": "id", "in": "path", "schema": {}},
        {**base, "schema": {}, "extra": 1},
    ]
    verdicts = [validator.is_valid(d) for d in documents]
    assert verdicts == [True, True, False, True, False, False, True, False, False]
    for document, valid in zip(documents, verdicts, strict=True):
        assert processor.accepts(json.dumps(document)) == valid, document

"""``not`` of ``patternProperties``, ``propertyNames`` and ``additionalProperties``: "some member
whose key ... and whose value ...", an existential the object's automaton enforces by
remembering which of them a member met (``SOME_MEMBER_KEY``).

Swagger 2.0's ``responses`` (a status code or ``default``, not only ``x-`` extensions) and the
handwritten schemas of JSONSchemaBench that nest such negations were refused. Random schemas are
judged by ``jsonschema`` on every small document: nothing invalid is accepted, and everything
valid is, when written with the declared members in their declared order (the order such an
object is written in, a valid subset it reports)."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

import jsonschema
import numpy as np
import pytest
from conftest import load_vocab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pushdown_oracle import random_walk_text

from outlines_gguf import JSONLogitsProcessor
from outlines_gguf.errors import ConstraintTooComplexError, SchemaError

ANY_EXTENSION = {"description": "Any property starting with x- is valid.", "additionalProperties": True}
RESPONSES = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "patternProperties": {
        "^([0-9]{3})$|^(default)$": {
            "type": "object",
            "properties": {"description": {"type": "string"}},
            "required": ["description"],
            "additionalProperties": False,
        },
        "^x-": ANY_EXTENSION,
    },
    "not": {"type": "object", "additionalProperties": False, "patternProperties": {"^x-": ANY_EXTENSION}},
}
"""Swagger 2.0's responses object (SchemaStore's swagger-2.0.json), its response simplified."""


def _judged_value(text: bytes) -> Any:
    """The value of a generated text for ``jsonschema``, or None where reading a number as a
    float changes whether it is an integer (``-2403797577962499781194.769``: its float has no
    fraction), which would mislead the judge."""

    def misread(value: Any) -> bool:
        if isinstance(value, Decimal):
            return (value == value.to_integral_value()) != float(value).is_integer()
        if isinstance(value, dict):
            return any(misread(v) for v in value.values())
        return isinstance(value, list) and any(misread(v) for v in value)

    return None if misread(json.loads(text, parse_float=Decimal)) else json.loads(text)


def _processor(schema: dict) -> JSONLogitsProcessor:
    return JSONLogitsProcessor(schema, load_vocab("spm32k"))


def test_swagger_responses_need_a_status_code() -> None:
    processor = _processor(RESPONSES)
    ok = {"description": "ok"}
    assert processor.accepts(json.dumps({"200": ok}))
    assert processor.accepts(json.dumps({"x-a": 1, "default": ok}))
    assert processor.accepts(json.dumps({"404": ok, "x-b": [1], "200": ok}))
    assert not processor.accepts(json.dumps({"x-a": 1}))
    assert not processor.accepts(json.dumps({"x-a": 1, "x-b": 2}))
    assert not processor.accepts("{}")
    vocab = load_vocab("spm32k")
    validator = jsonschema.Draft7Validator(RESPONSES)
    rng = np.random.default_rng(0)
    for _ in range(10):
        text = random_walk_text(processor.guide, vocab, rng, steps=150, stop=0.5)
        value = None if text is None else _judged_value(text)
        if value is not None:
            assert validator.is_valid(value), text


def test_one_member_may_meet_several_requirements() -> None:
    """Under ``maxProperties: 1`` one member must meet both: a key with ``a1`` and ``b2`` in it,
    whose value is a string with ``A`` and ``B`` (JSONSchemaBench's Handwritten object3)."""
    schema = {
        "type": "object",
        "allOf": [
            {"not": {"patternProperties": {"a1": {"not": {"type": "string", "pattern": "A"}}}}},
            {"not": {"patternProperties": {"b2": {"not": {"type": "string", "pattern": "B"}}}}},
            {"propertyNames": {"pattern": "^....$"}},
            {"maxProperties": 1},
        ],
    }
    processor = _processor(schema)
    assert processor.accepts('{"a1b2": "AB"}')
    assert processor.accepts('{"b2a1": "xBxA"}')
    assert not processor.accepts('{"a1b2": "A"}')
    assert not processor.accepts('{"a1xx": "AB"}')


def test_a_declared_member_can_be_the_witness() -> None:
    schema = {
        "type": "object",
        "properties": {"ab": {"type": ["integer", "string"]}, "b": {"type": "integer"}},
        "not": {"patternProperties": {"^a": {"type": "integer"}}},
    }
    processor = _processor(schema)
    assert processor.accepts('{"ab": "s"}')
    assert processor.accepts('{"ab": 1, "b": 2, "ax": null}')
    assert not processor.accepts('{"ab": 1}')
    assert not processor.accepts('{"b": 2, "ax": 3}')


def test_too_many_requirements_name_the_not() -> None:
    schema = {"type": "object", "not": {"anyOf": [{"propertyNames": {"pattern": c}} for c in "abcde"]}}
    with pytest.raises(SchemaError, match=r"at most 4 members.*'not'") as caught:
        _processor(schema)
    assert "#/not" in str(caught.value)
    # lenient keeps four ("some key without a", ... "without d") and leaves out the fifth
    lenient = JSONLogitsProcessor(schema, load_vocab("spm32k"), lenient=True)
    assert lenient.accepts('{"a": 1, "b": 2}')
    assert not lenient.accepts('{"a": 1}')
    assert lenient.accepts('{"e": 1}')  # (every key has an e: only the fifth refuses it)


# -- random schemas, judged -------------------------------------------------------------------

KEYS = ("a", "ab", "b", "x1")
VALUES: list = [1, "s", True]
PATTERNS = ("^a", "b$", "^x", "1")
VALUE_SCHEMAS: list = [
    {"type": "integer"},
    {"type": "string"},
    {"const": 1},
    {},
    False,
    {"not": {"type": "integer"}},
]
NAME_SCHEMAS: list = [{"pattern": "^a"}, {"enum": ["a", "b"]}, {"maxLength": 1}, {"not": {"pattern": "1"}}]


@st.composite
def negated(draw: st.DrawFn) -> dict:
    """An object keyword whose negation is "some member ...", or two of them (an anyOf)."""
    kind = draw(st.sampled_from(["patterns", "names", "additional", "union"]))
    if kind == "patterns":
        patterns = draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2, unique=True))
        return {"patternProperties": {p: draw(st.sampled_from(VALUE_SCHEMAS)) for p in patterns}}
    if kind == "names":
        return {"propertyNames": draw(st.sampled_from(NAME_SCHEMAS))}
    if kind == "additional":
        part: dict = {"additionalProperties": draw(st.sampled_from([False, *VALUE_SCHEMAS]))}
        if draw(st.booleans()):
            names = draw(st.lists(st.sampled_from(KEYS), max_size=2, unique=True))
            part["properties"] = dict.fromkeys(names, True)
        if draw(st.booleans()):
            part["patternProperties"] = {draw(st.sampled_from(PATTERNS)): {}}
        return part
    return {"anyOf": [draw(negated()), draw(negated())]}


@st.composite
def schemas(draw: st.DrawFn) -> dict:
    schema: dict = {"type": "object", "not": draw(negated())}
    declared = draw(st.lists(st.sampled_from(KEYS), max_size=2, unique=True))
    if declared:
        schema["properties"] = {k: draw(st.sampled_from(VALUE_SCHEMAS[:4])) for k in declared}
    if draw(st.booleans()):
        pattern = draw(st.sampled_from(PATTERNS))
        schema["patternProperties"] = {pattern: draw(st.sampled_from(VALUE_SCHEMAS[:4]))}
    if draw(st.integers(0, 3)) == 0:
        schema["additionalProperties"] = draw(st.sampled_from([False, {"type": "integer"}]))
    if draw(st.integers(0, 3)) == 0:
        schema["propertyNames"] = draw(st.sampled_from(NAME_SCHEMAS))
    if draw(st.integers(0, 3)) == 0:
        schema["maxProperties"] = draw(st.integers(1, 2))
    if draw(st.integers(0, 4)) == 0:
        schema["minProperties"] = 1
    return schema


def _documents(declared: list[str]) -> list:
    """Every object of at most two keys, each with each value, declared members first in their
    declared order (and other types)."""
    out: list = [1, "x", None, []]
    for n in range(3):
        for keys in itertools.combinations(KEYS, n):
            ordered = sorted(keys, key=lambda k: (declared.index(k) if k in declared else len(declared), k))
            for values in itertools.product(VALUES, repeat=n):
                out.append(dict(zip(ordered, values, strict=True)))
    return out


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schemas())
def test_not_of_object_keywords_is_exact(schema: dict) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    documents = _documents(list(schema.get("properties", {})))
    try:
        processor = _processor(schema)
    except SchemaError as exc:
        assert "no JSON value" in str(exc) or "at most" in str(exc), exc
        if "no JSON value" in str(exc) and "subsets" not in str(exc):  # (truly none)
            assert not any(validator.is_valid(d) for d in documents), json.dumps(schema)
        return
    except ConstraintTooComplexError:
        return
    taken = processor.guide.schema.subsets  # type: ignore[attr-defined]
    exact = not {s for s in taken if not s.endswith("/properties")}  # (declared order: written so)
    for document in documents:
        valid = validator.is_valid(document)
        if exact or not valid:
            assert processor.accepts(json.dumps(document)) == valid, (json.dumps(schema), document)
        if isinstance(document, dict) and len(document) > 1 and (not taken or not valid):
            # (in another order: an object of at most 3 declared members takes any order)
            backwards = dict(reversed(list(document.items())))
            assert processor.accepts(json.dumps(backwards)) == valid, (json.dumps(schema), backwards)
    rng = np.random.default_rng(0)
    for _ in range(2):  # what generation writes is valid, and never reaches a dead end
        text = random_walk_text(processor.guide, load_vocab("spm32k"), rng, steps=80, stop=0.3)
        value = None if text is None else _judged_value(text)
        if value is not None:
            assert validator.is_valid(value), (json.dumps(schema), text)


def test_unique_items_spell_such_objects_canonically() -> None:
    """Inside a unique array's items (one automaton, spelled canonically) the requirement holds
    too, and equal items are still refused."""
    item = {"type": "object", "not": {"propertyNames": {"pattern": "^a"}}}
    processor = _processor({"type": "array", "uniqueItems": True, "items": item})
    assert processor.accepts('[{"b": 1}, {"c": 1}]')
    assert not processor.accepts('[{"b": 1}, {"b": 1}]')
    assert not processor.accepts('[{"a": 1}]')
    assert not processor.accepts("[{}]")

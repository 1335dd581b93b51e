"""JSON Schema keywords made exact by negation, value checks and decimal automata.

Judged by ``jsonschema`` on random values: every text an engine accepts is valid (both the
whole-schema DFA and the pushdown engine), and, for these schemas (explicit types, keys in
declared order, numbers without exponents: the shapes generation writes), every valid value is
accepted by the pushdown engine (the DFA engine nests free-form values two levels at most).
``multipleOf`` with a decimal step is judged by exact decimal arithmetic, as JSON Schema
defines it (``jsonschema`` divides floats: it calls 0.07 no multiple of 0.01).
"""

from __future__ import annotations

import itertools
import json
import re
from fractions import Fraction

import jsonschema
import numpy as np
import pytest
from conftest import load_vocab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outlines_gguf import SchemaError
from outlines_gguf.compiler import compile_json_schema
from outlines_gguf.json_schema.numbers import (
    exact_value,
    multiple_of_dfa,
    not_multiple_of_dfa,
    numbers_except_dfa,
)
from outlines_gguf.json_schema.pushdown import PushdownGuide
from outlines_gguf.json_schema.split import SplitSchema
from outlines_gguf.json_schema.validate import Validator, json_equal

KEYS = ("a", "b", "c")
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-20, 20),
    # exact binary fractions (floats agree with decimals), never integral: 7.0 is an integer
    # that generation writes as 7 only
    st.integers(-80, 80).filter(lambda n: n % 4).map(lambda n: n / 4),
    st.text(alphabet="ab1 ", max_size=4),
)


def _objects(children: st.SearchStrategy) -> st.SearchStrategy:
    """Objects with keys in the declared (sorted) order, as generation writes them."""
    return st.dictionaries(st.sampled_from(KEYS), children, max_size=3).map(lambda d: dict(sorted(d.items())))


VALUES = st.recursive(
    SCALARS, lambda children: st.lists(children, max_size=3) | _objects(children), max_leaves=6
)

PROPS = {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}}
EXACT_SCHEMAS = [
    # not of keywords
    {"not": {"type": "string"}},
    {"type": "string", "not": {"pattern": "^a"}},
    {"type": "string", "not": {"pattern": "1$", "minLength": 2}},
    {"type": "integer", "not": {"multipleOf": 3}},
    {"type": "number", "not": {"multipleOf": 0.5}},
    {"not": {"enum": [1, "a", None, [1, 2], {"a": 1}]}},
    {"not": {"const": {"a": [True, 0.5]}}},
    {"type": "object", "properties": PROPS, "not": {"required": ["a", "b"]}},
    {"type": "object", "properties": PROPS, "not": {"properties": {"a": {"minimum": 0}}, "required": ["a"]}},
    {"type": "array", "items": {"type": "integer"}, "not": {"anyOf": [{"minItems": 3}, {"maxItems": 0}]}},
    {"type": ["integer", "string"], "not": {"oneOf": [{"type": "integer"}, {"minimum": 2}]}},
    {"type": "object", "properties": PROPS, "not": {"if": {"required": ["a"]}, "then": {"required": ["b"]}}},
    {"type": "object", "properties": PROPS, "not": {"dependentRequired": {"a": ["c"]}}},
    {"type": "string", "not": {"$ref": "#/$defs/s"}, "$defs": {"s": {"enum": ["a", "b"]}}},
    # oneOf whose branches overlap only at {}: closed objects of disjoint keys (appveyor)
    {
        "oneOf": [
            {"type": "string"},
            *(
                {"type": "object", "properties": {k: {"type": t}}, "additionalProperties": False}
                for k, t in (
                    ("a", "integer"),
                    ("b", "string"),
                    ("c", "boolean"),
                    ("d", "null"),
                    ("e", "array"),
                )
            ),
        ]
    },
    # oneOf whose branches overlap
    {"type": "integer", "oneOf": [{"multipleOf": 2}, {"multipleOf": 3}]},
    {"type": "string", "oneOf": [{"minLength": 2}, {"pattern": "^a"}]},
    {
        "type": "object",
        "properties": PROPS,
        "oneOf": [
            {"properties": {"a": {"minimum": 0}}, "required": ["a"]},
            {"properties": {"b": {"const": "a"}}, "required": ["b"]},
        ],
    },
    {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 2}, {"type": "null"}]},
    # contains, and the negations written with it
    {"type": "array", "contains": {"type": "integer", "minimum": 2}},
    {
        "type": "array",
        "items": {"type": "integer"},
        "contains": {"minimum": 2},
        "minContains": 2,
        "maxContains": 3,
    },
    {"type": "array", "contains": {"const": "a"}, "maxContains": 1, "minItems": 2},
    # beside a prefix: the count of items written tells each one's schema
    {
        "type": "array",
        "prefixItems": [{"type": "string"}, True],
        "contains": {"type": "integer"},
        "maxItems": 3,
    },
    {"prefixItems": [{"const": 1}], "items": {"type": "boolean"}, "contains": {"const": 1}, "maxContains": 1},
    {"type": "array", "not": {"contains": {"type": "string"}}},
    {"type": "array", "not": {"items": {"type": "integer"}}},
    {"type": "array", "not": {"prefixItems": [{"type": "integer"}, {"const": "a"}]}},
    # keywords whose schemas every value passes negate to nothing
    {
        "not": {
            "required": ["a"],
            "patternProperties": {"^x": True},
            "additionalProperties": {},
            "items": True,
        }
    },
    {"not": {"prefixItems": [True, {"type": "boolean"}], "maxItems": 2}},
    {"type": "array", "maxItems": 2, "not": {"contains": {"type": "integer"}, "minContains": 2}},
    # decimal multipleOf, with bounds
    {"type": "number", "multipleOf": 0.25, "minimum": -3, "exclusiveMaximum": 4},
    {"type": "integer", "multipleOf": 1.5},
    # enum (or const) beside keywords the compiler cannot otherwise combine with it
    {"enum": [1, 2.5, "ab", [1], {"a": 1}, None], "not": {"oneOf": [{"type": "number"}, {"maxItems": 0}]}},
    {"allOf": [{"enum": ["a", "ab", "b1", 3]}, {"not": {"pattern": "b"}}, {"oneOf": [{"minLength": 2}, {}]}]},
    {"enum": [[1, 1], [1, 2], [1, 2.5, 1.0]], "uniqueItems": True},
    # keywords of a type the enum has no value of constrain nothing, negated or not (a11yrc's
    # string items with uniqueItems)
    {"not": {"enum": ["a", "ab", 3], "uniqueItems": True, "minProperties": 2}},
    {"type": "array", "items": {"not": {"type": "string", "enum": ["a", "b1"], "maxItems": 0}}},
    # oneOf of closed objects, which the empty object (and more) satisfies twice: a branch is
    # negated among the other's values, where "a key it takes as additional" is one of the
    # other's keys (GitHub's {"key"} or {"keys"}; Snowplow's database settings)
    {
        "type": "object",
        "oneOf": [
            {"additionalProperties": False, "properties": {"a": {"type": "integer"}}},
            {"additionalProperties": False, "properties": {"b": {}}},
        ],
    },
    {
        "oneOf": [
            {"type": "object", "additionalProperties": False, "properties": {"a": {"const": 1}, "b": {}}},
            {"type": "object", "additionalProperties": False, "properties": {"a": {"const": 2}, "c": {}}},
        ]
    },
    {
        "additionalProperties": True,  # (beside closed branches: constrains nothing)
        "oneOf": [
            {"additionalProperties": False, "properties": {"a": {}, "b": {"type": "null"}}},
            {"additionalProperties": False, "properties": {"b": {"type": "null"}, "c": {}}, "type": "object"},
        ],
    },
    # allOf of an open part with patternProperties and parts declaring keys the pattern
    # matches (or not): the patterns apply to every key they match, declared or not, so the
    # parts merge (package.json's core properties beside its bundle and jspm parts)
    {
        "allOf": [
            {
                "type": "object",
                "properties": {"a": {"type": "integer"}},
                "patternProperties": {"^[bc]": {"type": "string"}},
            },
            {"properties": {"b": {"minLength": 1}}},
            {"anyOf": [{"properties": {"c": {"const": "a"}}}, {"not": {"required": ["c"]}}]},
        ]
    },
    {
        "allOf": [
            {"patternProperties": {"^[ab]$": {"type": "integer"}}, "additionalProperties": {"type": "null"}},
            {"properties": {"a": {"minimum": 0}, "b": {}}},
        ]
    },
    # a part closed to the keys another part declares: merged, those keys take its
    # additionalProperties too (a key declared false is absent whatever the patterns say)
    {
        "allOf": [
            {"properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
            {"properties": {"b": {"minLength": 1}, "c": {"type": "integer"}}},
        ]
    },
    {
        "allOf": [
            {"properties": {"a": {}}, "additionalProperties": False},
            {"type": "object", "properties": {"b": True}, "not": {"required": ["c"]}},
        ]
    },
    # a part's patterns that a closed part has too exempt no other keys: they merge
    {
        "allOf": [
            {"patternProperties": {"^[ab]": {"type": "integer"}}, "additionalProperties": False},
            {"patternProperties": {"^[ab]": {"minimum": 0}}, "anyOf": [{"required": ["a"]}]},
        ]
    },
    {
        "allOf": [
            {
                "properties": {"a": {}},
                "patternProperties": {"^b": {"type": "null"}},
                "additionalProperties": False,
            },
            {"properties": {"c": False}},
        ]
    },
]
"""Schemas both engines enforce exactly on the values above."""


def _pushdown_accepts(guide: PushdownGuide, text: bytes) -> bool:
    state = guide.advance(guide.initial_state, text)  # type: ignore[arg-type]
    return bool(state) and guide.is_final(state)


def _valid(schema: dict, value: object) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(value)


@pytest.mark.parametrize("engine", ["dfa", "pushdown"])
@pytest.mark.parametrize("schema", EXACT_SCHEMAS, ids=lambda s: json.dumps(s)[:60])
def test_exact_against_jsonschema(engine: str, schema: dict) -> None:
    dfa = compile_json_schema(schema) if engine == "dfa" else None
    guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(VALUES)
    def check(value: object) -> None:
        text = json.dumps(value).encode()
        accepted = dfa.matches(text) if dfa is not None else _pushdown_accepts(guide, text)
        if dfa is None or accepted:  # the DFA engine nests free-form values 2 levels at most
            assert accepted == _valid(schema, value), (value, accepted)

    check()
    # the values each schema is about, besides the random ones
    picked = (1, 2, 3, 6, 0.5, 2.5, "a", "ab", "b1", "", None, True, [1], [1, 1], {"a": 1})
    for value in picked:
        text = json.dumps(value).encode()
        accepted = dfa.matches(text) if dfa is not None else _pushdown_accepts(guide, text)
        assert accepted == _valid(schema, value), (value, accepted)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([*EXACT_SCHEMAS, {"type": "object", "properties": PROPS, "minProperties": 2}]), VALUES)
def test_validator_agrees_with_jsonschema(schema: dict, value: object) -> None:
    assert Validator(schema).is_valid(schema, value) == _valid(schema, value)


def test_json_equality() -> None:
    assert json_equal(1, 1.0) and json_equal({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not json_equal(True, 1) and not json_equal([1], [1, 1]) and not json_equal({"a": 1}, {"b": 1})


@st.composite
def _plain_number_texts(draw: st.DrawFn) -> str:
    sign = draw(st.sampled_from(["", "-"]))
    whole = str(draw(st.integers(0, 10**6)))
    if draw(st.booleans()):
        return sign + whole
    return sign + whole + "." + draw(st.text(alphabet="0123456789", min_size=1, max_size=5))


NUMBER_LISTS = st.lists(st.integers(-50, 50).map(lambda n: n / 8) | st.integers(-9, 9), max_size=4)
STEPS = [0.01, 0.5, 1.5, 5, 7, 0.0001, 2.5, 0.3, 12, 1]


@settings(max_examples=400, deadline=None)
@given(_plain_number_texts(), st.sampled_from(STEPS))
def test_decimal_multiples_against_exact_arithmetic(text: str, step: float) -> None:
    multiple = (Fraction(text) / exact_value(step)).denominator == 1
    assert multiple_of_dfa(step).matches(text.encode()) == multiple
    assert not_multiple_of_dfa(step).matches(text.encode()) == (not multiple)


@settings(max_examples=300, deadline=None)
@given(_plain_number_texts(), NUMBER_LISTS)
def test_numbers_except_values(text: str, values: list) -> None:
    listed = any(Fraction(text) == exact_value(v) for v in values)
    assert numbers_except_dfa(values).matches(text.encode()) == (not listed)


def test_jsonschema_float_division_is_not_the_judge() -> None:
    """0.07 is a multiple of 0.01 (7 hundredths); jsonschema divides floats and says it is not."""
    schema = {"type": "number", "multipleOf": 0.01}
    assert compile_json_schema(schema).matches(b"0.07")
    assert Validator(schema).is_valid(schema, 0.07)
    assert not compile_json_schema(schema).matches(b"0.071")


def test_anchor_references_resolve_to_their_schema() -> None:
    """``$ref: "#name"`` names the subschema with that anchor (or draft-4 ``id``), not the root."""
    schema = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "definitions": {"d": {"id": "#drive", "type": "object", "properties": {"n": {"type": "integer"}}}},
        "type": "object",
        "properties": {"x": {"$ref": "#drive"}},
    }
    dfa = compile_json_schema(schema)
    assert dfa.matches(b'{"x": {"n": 1}}')
    assert not dfa.matches(b'{"x": {"n": "1"}}')
    assert not Validator(schema).is_valid(schema, {"x": {"n": 1.0}})  # draft 4: 1.0 is no integer


@pytest.mark.parametrize(
    ("schema", "match"),
    [
        ({"not": {"format": "email"}}, "keyword 'not'"),
        ({"oneOf": [{"type": "object"}, {"additionalProperties": {"format": "email"}}]}, "oneOf branches"),
        ({"not": {"prefixItems": [True], "items": {"type": "string"}}}, "keyword 'not'"),
        ({"type": "array", "contains": {"format": "email"}}, "keyword 'contains'"),
    ],
)
def test_what_cannot_be_negated_is_refused_with_the_keyword(schema: dict, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        compile_json_schema(schema)
    with pytest.raises(SchemaError, match=match):
        SplitSchema(schema)


def test_small_objects_take_their_keys_in_any_order() -> None:
    """Up to ANY_ORDER_MAX declared properties may come in any order (each once), with extra
    keys anywhere between them; the pushdown engine (default) only."""
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}},
        "required": ["a", "c"],
    }
    guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))
    values = {"a": 1, "b": "s", "c": True, "z": [1]}
    for n in range(5):
        for keys in itertools.permutations(values, n):
            doc = {k: values[k] for k in keys}
            assert _pushdown_accepts(guide, json.dumps(doc).encode()) == _valid(schema, doc), doc
            wrong = {**doc, "a": "1"} if "a" in doc else {**doc, "c": 0}
            assert not _pushdown_accepts(guide, json.dumps(wrong).encode()), wrong
    repeated = b'{"a": 1, "c": true, "a": 2}'  # a key twice: never written
    assert not _pushdown_accepts(guide, repeated)


def test_lenient_keeps_oneof_exact_where_it_can() -> None:
    """lenient=True treats a oneOf as anyOf only where exclusion cannot be written."""
    exact = compile_json_schema({"oneOf": [{"type": "integer"}, {"minimum": 2}]}, lenient=True)
    assert exact.matches(b"1") and exact.matches(b"2.5") and not exact.matches(b"3")
    emails = {"oneOf": [{"type": "string", "format": "email"}, {"type": "string"}]}
    union = compile_json_schema(emails, lenient=True)
    assert union.matches(b'"a@b.cd"') and union.matches(b'"x"')


COLORS = {
    "$defs": {
        "resource": {"oneOf": [{"$ref": "#/$defs/definition"}, {"$ref": "#/$defs/selector"}]},
        "definition": {
            "oneOf": [
                {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
                {"type": "string", "pattern": "^#[0-9a-f]{3}$"},
                {"enum": ["red", "blue"]},
            ]
        },
        "selector": {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {
                        "ios": {"$ref": "#/$defs/resource"},
                        "android": {"$ref": "#/$defs/resource"},
                    },
                    "required": ["ios", "android"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "patternProperties": {"^[0-9]x$": {"$ref": "#/$defs/resource"}},
                    "additionalProperties": False,
                    "minProperties": 1,
                },
                {
                    "type": "object",
                    "patternProperties": {"^[a-z]{2,3}$": {"$ref": "#/$defs/resource"}},
                    "additionalProperties": False,
                    "minProperties": 1,
                    "not": {"required": ["ios"]},
                },
            ]
        },
    },
    "$ref": "#/$defs/resource",
}


def test_oneof_branches_told_apart_through_references_and_forbidden_keys() -> None:
    """``oneOf`` branches that are references to definitions of different types (an array, a
    string or an enum against objects), and object branches that one requires a key the other
    forbids (closed by patternProperties, or ``not: {required: [key]}``), are exclusive as they
    stand: the schema compiles, and exactly."""
    guide = PushdownGuide(SplitSchema(COLORS), load_vocab("spm32k"))
    docs = [
        "red", "#0af", [1, 2], [1, 2, 3, 4], "green",
        {"ios": "red", "android": [1]}, {"ios": "red"}, {"2x": "blue", "3x": {"en": "red"}},
        {"en": "red"}, {"en": "red", "ios": "red"}, {"ios": "red", "android": "red", "de": "red"},
        {"2x": {"ios": {"1x": "red"}, "android": "#fff"}}, {}, {"x": "red"},
    ]  # fmt: skip
    verdicts = [_valid(COLORS, doc) for doc in docs]
    assert 4 < sum(verdicts) < len(docs) - 4
    for doc, valid in zip(docs, verdicts, strict=True):
        assert _pushdown_accepts(guide, json.dumps(doc).encode()) == valid, doc


def _conditionals(kinds: int, independent: int) -> dict:
    """An object configured by ``kind`` (one conditional per value, as configuration schemas
    chain them) and by ``independent`` boolean flags, each with a conditional of its own."""
    props: dict = {"kind": {"enum": [f"k{i}" for i in range(kinds)]}, "n": {"type": "integer"}}
    props.update({f"p{i}": {"type": "string"} for i in range(kinds)})
    props.update({f"f{i}": {"type": "boolean"} for i in range(independent)})
    chain = [
        {"if": {"properties": {"kind": {"const": f"k{i}"}}}, "then": {"required": [f"p{i}"]}}
        for i in range(kinds)
    ]
    chain += [
        {
            "if": {"properties": {f"f{i}": {"const": True}}, "required": [f"f{i}"]},
            "then": {"properties": {"n": {"minimum": 10 * i}}},
            "else": {"properties": {"n": {"maximum": 10 * i + 5}}},
        }
        for i in range(independent)
    ]
    return {"type": "object", "properties": props, "required": ["kind", "n"], "allOf": chain}


@pytest.mark.parametrize(("kinds", "independent"), [(3, 0), (12, 0), (4, 3)])
def test_chains_of_conditionals_are_exact_and_small(kinds: int, independent: int) -> None:
    """An allOf of conditionals expands into the consistent choices of their branches (k + 1
    for k conditionals on one discriminator, not 2^k), exactly: judged by jsonschema."""
    schema = _conditionals(kinds, independent)
    guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))
    rng = np.random.default_rng(kinds * 10 + independent)
    verdicts = []
    for _ in range(60):
        kind = int(rng.integers(kinds))
        doc: dict = {"kind": f"k{kind}", "n": int(rng.integers(-5, 40))}
        for i in rng.choice(kinds, size=int(rng.integers(0, 3)), replace=False):
            doc[f"p{int(i)}"] = "s"
        if rng.random() < 0.5:
            doc[f"p{kind}"] = "s"
        for i in range(independent):
            if rng.random() < 0.7:
                doc[f"f{i}"] = bool(rng.random() < 0.5)
        valid = _valid(schema, doc)
        verdicts.append(valid)
        assert _pushdown_accepts(guide, json.dumps(doc).encode()) == valid, doc
    assert 5 < sum(verdicts) < 55


TYPELESS_ONE_OFS = [
    # object branches without "type": every non-object matches both, so none is valid
    {
        "oneOf": [
            {"properties": {"p": {"enum": ["mastercard"]}}, "required": ["p"], "additionalProperties": False},
            {"properties": {"p": {"enum": ["visa"]}, "c": {"type": "integer"}}, "required": ["p", "c"]},
        ]
    },
    {
        "oneOf": [
            {"properties": {"first": {"type": "string"}}, "required": ["first"]},
            {"properties": {"vehicle": {"type": "string"}}, "additionalProperties": False},
        ]
    },
    # a string branch and an object branch without types: strings match both unless too long
    {"oneOf": [{"maxLength": 3}, {"required": ["a"]}]},
    # branches that are references to closed objects, each requiring a key the other lacks,
    # with a closed object beside (kustomization's patches: the negation is not attempted)
    {
        "$defs": {
            "byPath": {
                "required": ["first"],
                "properties": {"first": {"type": "string"}, "a": {"$ref": "#/$defs/target"}},
                "additionalProperties": False,
            },
            "byName": {
                "required": ["vehicle"],
                "properties": {"vehicle": {"type": "string"}, "a": {"$ref": "#/$defs/target"}},
                "additionalProperties": False,
            },
            "target": {
                "type": "object",
                "properties": {k: {"type": "string"} for k in ("group", "kind", "name", "version")},
                "additionalProperties": False,
            },
        },
        "oneOf": [{"$ref": "#/$defs/byPath"}, {"$ref": "#/$defs/byName"}],
    },
]
ANY_VALUES = [
    None, True, 0, 2.5, "", "abcdef", [], [1], {}, {"p": "visa", "c": 3}, {"p": "mastercard"},
    {"p": "mastercard", "x": 1}, {"first": "a"}, {"first": "a", "vehicle": "b"}, {"vehicle": "v"},
    {"a": 1}, {"first": 1},
]  # fmt: skip


@pytest.mark.parametrize("schema", TYPELESS_ONE_OFS, ids=lambda s: json.dumps(s)[:50])
def test_typeless_one_of_is_decided_one_type_at_a_time(schema: dict) -> None:
    """oneOf branches that do not name their type overlap on the types their keywords pass
    by; taken one type at a time they are exact (judged by jsonschema on values of every type)."""
    guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))
    verdicts = [_valid(schema, value) for value in ANY_VALUES]
    assert 1 < sum(verdicts) < len(verdicts) - 1
    for value, valid in zip(ANY_VALUES, verdicts, strict=True):
        assert _pushdown_accepts(guide, json.dumps(value).encode()) == valid, value


# GeoJSON's shape (schemastore): a oneOf whose branches refine a required "type" property
# declared beside it, each branch also taking a shared base through allOf and $ref.
GEOMETRY = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"type": "string", "enum": ["Point", "Line", "Collection"]}},
    "definitions": {
        "position": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 3},
        "base": {"properties": {"type": {"enum": ["Point", "Line"]}, "bbox": {"type": "array"}}},
    },
    "oneOf": [
        {
            "required": ["coordinates"],
            "properties": {"type": {"enum": ["Point"]}, "coordinates": {"$ref": "#/definitions/position"}},
            "allOf": [{"$ref": "#/definitions/base"}],
        },
        {
            "required": ["coordinates"],
            "properties": {
                "type": {"enum": ["Line"]},
                "coordinates": {"type": "array", "items": {"$ref": "#/definitions/position"}, "minItems": 2},
            },
            "allOf": [{"allOf": [{"$ref": "#/definitions/base"}]}],
        },
        {"properties": {"type": {"const": "Collection"}, "items": {"type": "array"}}},
    ],
}


@pytest.mark.parametrize(
    "value",
    [
        {"type": "Point", "coordinates": [1, 2]},
        {"type": "Point", "coordinates": [[1, 2], [3, 4]]},
        {"type": "Line", "coordinates": [[1, 2], [3, 4]]},
        {"type": "Line", "coordinates": [[1, 2]]},
        {"type": "Collection", "items": []},
        {"type": "Collection", "coordinates": 5},
        {"type": "Other", "coordinates": [1, 2]},
        {"coordinates": [1, 2]},
        {"type": "Point"},
        [],
    ],
)
def test_oneof_discriminated_through_nested_allof_and_refs(value: object) -> None:
    # branches merged with their allOf parts (nested, after $ref) and the declared property
    # (the enums intersected): disjoint by "type", so exact without negating a branch
    guide = PushdownGuide(SplitSchema(GEOMETRY), load_vocab("spm32k"))
    assert _pushdown_accepts(guide, json.dumps(value).encode()) == _valid(GEOMETRY, value)


def test_subschemas_of_a_negation_are_read_negated_by_the_scan() -> None:
    # (GeoJSON's crs) a "not" deep inside a "not" holds a schema read as it is (a format
    # nothing negates): the scan used to read it as a plain subschema, doubt whether its "not"
    # could be enforced, and compile every node up front
    link = {"type": "object", "required": ["href"], "properties": {"href": {"format": "uri"}}}
    crs = {"not": {"anyOf": [{"properties": {"type": {"enum": ["link"]}, "properties": {"not": link}}}]}}
    members = {"crs": crs, "next": {"$ref": "#"}, "kids": {"items": {"$ref": "#"}}}
    tree = {"type": "object", "properties": members}
    split = SplitSchema(tree)
    assert split.n_compiled <= 3 < split.n_registered  # (all 17 nodes, before)
    guide = PushdownGuide(split, load_vocab("spm32k"))
    for value in (
        {"crs": {"type": "link", "properties": {"href": "http://a.b/c"}}},
        {"crs": {"type": "link", "properties": {"href": 5}}},
        {"crs": {"type": "name", "properties": {}}},
        {"next": {"kids": [{"crs": {"type": "link", "properties": {}}}]}},
    ):
        assert _pushdown_accepts(guide, json.dumps(value).encode()) == _valid(tree, value), value


ANCHORED_ALTERNATIVES = [
    r"^$|(^(?:\S+\s+){0,3}\S+$)",  # (a GitHub schema's word count, {0,99} there)
    r"^a|b",  # anchored on one side of the alternation only: a search on the other
    r"a|b$",
    r"(^a$)|(^b+$)",
    r"^(?:ab|b)$|^c",
    r"(?:^a)",
    r"^a\$",  # an escaped dollar is a character
]


@pytest.mark.parametrize("pattern", ANCHORED_ALTERNATIVES)
def test_patterns_with_anchors_in_alternatives_are_searched_exactly(pattern: str) -> None:
    # a pattern anchored at both ends through its groups and alternatives is compiled as a
    # full match (no search around it to turn its anchors into assertions); one anchored only
    # in some alternatives is searched (the anchors then assert), where a textual test of the
    # first and last character read "^a|b" as "^a" or "b..." (rejecting "xb", "ax")
    schema = {"type": "string", "pattern": pattern}
    guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))
    for text in ("", "a", "b", "ab", "ba", "xb", "ax", "bb", "c", "cx", "xc", "a$", "a b", " a", "a b c d e"):
        accepted = _pushdown_accepts(guide, json.dumps(text).encode())
        assert accepted == bool(re.search(pattern, text)), (pattern, text)


FORMAT_ONEOFS = [
    {"type": "string", "oneOf": [{"format": "uri"}, {"enum": ["."]}]},  # (schemastore's package.json)
    {"oneOf": [{"type": "string", "format": "uri"}, {"type": "string", "pattern": "^@"}]},  # (chart.json)
    {"oneOf": [{"format": "uuid"}, {"pattern": "^\\$[A-Z0-9-_]+"}]},  # (Snowplow sp_209's apikey)
    {"oneOf": [{"type": "string"}, {"format": "uuid"}]},
    {"anyOf": [{"type": "integer"}, {"oneOf": [{"format": "email"}, {"maxLength": 3}]}]},
]
FORMAT_VALUES = [
    ".",
    "@x",
    "@",
    "http://a.b/c",
    "mailto:a@b.c",
    "$ABC",
    "123e4567-e89b-12d3-a456-426614174000",
    "a@b.co",
    "ab",
    "abcd",
    "",
    3,
    3.5,
    None,
    True,
    [],
    {},
    ["."],
]


@pytest.mark.parametrize("schema", FORMAT_ONEOFS, ids=lambda s: json.dumps(s)[:60])
def test_oneof_branches_told_apart_by_a_format_are_valid_either_way(schema: dict) -> None:
    """Excluding a branch whose negation needs its ``format`` reads the format as the
    annotation it is by default (``negate_formats_unread``), while each branch still enforces
    its own: every value accepted is valid for a validator that asserts formats and for one
    that does not."""
    guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))
    asserting = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    annotating = jsonschema.Draft202012Validator(schema)
    accepted = 0
    for value in FORMAT_VALUES:
        if _pushdown_accepts(guide, json.dumps(value).encode()):
            accepted += 1
            assert asserting.is_valid(value) and annotating.is_valid(value), value
    assert accepted  # (not refused, not empty)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.text(alphabet="@.:/$ABab-0123", max_size=12))
    def check(text: str) -> None:
        if _pushdown_accepts(guide, json.dumps(text).encode()):
            assert asserting.is_valid(text) and annotating.is_valid(text), text

    check()


def test_branches_told_apart_by_formats_alone_are_refused() -> None:
    # read as annotations, "an email or a host name" has no valid value: refused, not emptied
    with pytest.raises(SchemaError, match="oneOf branches 0 and 1"):
        email, host = {"type": "string", "format": "email"}, {"type": "string", "format": "hostname"}
        SplitSchema({"oneOf": [email, host]})

"""JSON Schema compilation: accepted texts validate, rejected ones do not, errors are clear."""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import uuid

import jsonschema
import numpy as np
import pytest
import regex
from conftest import load_vocab
from hypothesis import given, settings
from hypothesis import strategies as st

from outlines_gguf import ConstraintTooComplexError, SchemaError, compile_json_schema
from outlines_gguf.automata.regex import regex_to_dfa
from outlines_gguf.json_schema.leaves import STRING_FORMATS, integer_range, number_range
from outlines_gguf.json_schema.pushdown import PushdownGuide
from outlines_gguf.json_schema.split import SplitSchema

CASES = [
    ({"type": "integer", "minimum": 3, "maximum": 120}, ["3", "120", "45"], ["2", "121", "-1", "4.5", "03"]),
    ({"type": "integer", "exclusiveMinimum": -5, "exclusiveMaximum": 5}, ["-4", "4", "0"], ["-5", "5"]),
    ({"type": "number", "minimum": 0, "maximum": 1}, ["0", "0.5", "1", "1.0"], ["-0.1", "1.01", "2"]),
    ({"type": "number", "exclusiveMaximum": 10}, ["9.999", "-3e5"[:2]], ["10", "10.0", "10.5"]),
    (
        {"type": ["string", "null"], "maxLength": 3},
        ['"abc"', '""', "null", r'"a\"b"'],
        ['"abcd"', "abc", "1"],
    ),
    ({"type": "string", "minLength": 2}, ['"ab"', '"éé"', r'"\n\t"', r'"\u00e9x"'], ['"a"', '"\\"']),
    (  # beyond U+FFFF: raw, or an escaped surrogate pair (one character); never a lone surrogate
        {"type": "string", "maxLength": 1},
        ['"😀"', r'"\ud83d\ude00"', r'"\uD83D\uDE00"'],
        [r'"\ud83d"', r'"\ude00\ud83d"', r'"\ud83d\ude00x"', r'"\ude00"'],
    ),
    (
        {"type": "object", "properties": {"a": {"type": "integer"}}, "required": []},
        ["{}", '{"a": 1}', '{"b": true}', '{"a": 1, "zz": [1, 2]}'],
        ['{"a": "x"}', '{"a": 1, "a": 2}', '{"b":1,"a":1}'],
    ),
    (
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}},
            "required": ["b"],
            "additionalProperties": False,
        },
        ['{"b": true}', '{"a": 1, "b": false}', '{"a":1,"b":false}'],
        ["{}", '{"a": 1}', '{"b": true, "c": 1}'],
    ),
    ({"enum": ["red", "green", 1, None, {"k": [1]}]}, ['"red"', "1", "null", '{"k": [1]}'], ['"blue"', "2"]),
    ({"const": {"a": [1, "x"]}}, ['{"a": [1, "x"]}', '{"a":[1,"x"]}'], ['{"a": [1]}']),
    (
        {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3},
        ["[true]", "[true, false, true]", "[true,false]"],
        ["[]", "[true, true, true, true]", "[1]"],
    ),
    (
        {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
        ["[]", "[1]", '[1, "a"]'],
        ['[1, "a", 2]', '["a"]'],
    ),
    (
        {"type": "array", "prefixItems": [{"const": 1}], "items": {"type": "null"}, "minItems": 2},
        ["[1, null]", "[1, null, null]"],
        ["[1]", "[1, 1]"],
    ),
    (
        {"type": "string", "format": "date"},
        ['"2024-02-29"', '"1999-12-31"'],
        ['"2023-02-29"', '"2023-13-01"'],
    ),
    ({"type": "string", "format": "uuid"}, ['"123e4567-e89b-12d3-a456-426614174000"'], ['"123e4567"']),
    ({"type": "string", "format": "ipv4"}, ['"192.168.0.1"'], ['"256.1.1.1"', '"1.2.3"']),
    ({"type": "string", "pattern": "^a.c$"}, ['"abc"', r'"a\"c"'], ['"ab"', '"xabc"']),
    ({"type": "string", "pattern": "[0-9]{3}"}, ['"ab123cd"', '"123"'], ['"12"']),
    ({"type": "string", "pattern": "^[a-z]+$", "maxLength": 3}, ['"abc"'], ['"abcd"', '"AB"']),
    ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, ["-1", '"x"'], ["1.5", "null"]),
    (
        {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}},
                    "required": ["kind"],
                },
                {"type": "object", "properties": {"kind": {"const": "b"}}, "required": ["kind"]},
            ]
        },
        ['{"kind": "a", "x": 1}', '{"kind": "b"}'],
        ['{"kind": "c"}'],
    ),
    ({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 1}]}, ["1", '"a"'], ['"ab"']),
    (
        {"allOf": [{"type": "string", "minLength": 2}, {"type": "string", "pattern": "^[a-z]+$"}]},
        ['"ab"'],
        ['"a"', '"AB"'],
    ),
    (
        {
            "allOf": [
                {"properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"properties": {"b": {"type": "string"}}, "required": ["b"]},
            ]
        },
        ['{"a": 1, "b": "x"}', '{"a": 1, "b": "x", "c": 0}'],
        ['{"a": 1}', '{"a": 1, "b": 2}'],
    ),
    (
        {
            "allOf": [
                {"properties": {"a": {"type": "integer"}, "b": {}}, "additionalProperties": False},
                {"properties": {"b": {"type": "string"}}, "required": ["b"]},
            ]
        },
        ['{"a": 1, "b": "x"}', '{"b": "x"}'],
        ['{"a": 1, "b": "x", "c": 0}', '{"a": 1}'],
    ),
    (
        {
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {"v": {"type": "integer"}, "next": {"$ref": "#/$defs/node"}},
                    "required": ["v"],
                    "additionalProperties": False,
                }
            },
            "$ref": "#/$defs/node",
        },
        ['{"v": 1, "next": {"v": 2}}', '{"v": 1}'],
        ['{"next": {"v": 2}}'],
    ),
    ({}, ["1", '"x"', '[1, {"a": null}]', "true"], ["[1,]", "{a: 1}"]),
    (
        {"type": "object", "minProperties": 1, "maxProperties": 2},
        ['{"a": 1}', '{"a": 1, "b": 2}'],
        ["{}", '{"a": 1, "b": 2, "c": 3}'],
    ),
    ({"type": "integer", "multipleOf": 7}, ["0", "14", "-21"], ["15"]),
    ({"type": "integer", "multipleOf": 3, "minimum": 0, "maximum": 1000}, ["0", "999"], ["1000", "-3"]),
    ({"not": {"type": "string"}}, ["1", "null"], ['"a"']),
    ({"not": {"minimum": 3}}, ["2", "2.5", "-7"], ["3", "4.5", '"x"', "null"]),
    (
        {"type": "object", "not": {"required": ["a", "b"]}},
        ['{"a": 1}', "{}", '{"b": 2}'],
        ['{"a": 1, "b": 2}'],
    ),
    ({"not": {"anyOf": [{"type": "string"}, {"type": "null"}]}}, ["1", "[]"], ['"x"', "null"]),
    ({"type": "array", "not": {"maxItems": 1}}, ["[1, 2]"], ["[1]", "[]"]),
    ({"not": {"not": {"type": "boolean"}}}, ["true"], ["1"]),
    (
        {"type": "object", "properties": {"a": {}}, "not": {"properties": {"a": {"type": "integer"}}}},
        ['{"a": "x"}', '{"a": null}'],
        ['{"a": 1}', "{}"],
    ),
    (
        {"type": "object", "patternProperties": {"^x-": {"type": "integer"}}, "additionalProperties": False},
        ['{"x-a": 1}', "{}"],
        ['{"y": 1}', '{"x-a": "s"}'],
    ),
    (True, ["null"], []),
    # const and enum together: a value must be both (the enum is not left out)
    (
        {"type": "object", "properties": {"c": {"const": "a", "enum": ["b"]}}},
        ["{}"],
        ['{"c": "a"}', '{"c": "b"}'],
    ),
    ({"const": 5, "enum": [5.0, 1]}, ["5"], ["1"]),
    ({"anyOf": [{"const": 5, "enum": []}, {"type": "string"}]}, ['"x"'], ["5"]),
    ({"const": [1], "enum": [[1], [2]]}, ["[1]"], ["[2]", "[]"]),
]


@pytest.mark.parametrize(("schema", "good", "bad"), CASES, ids=[json.dumps(c[0])[:50] for c in CASES])
def test_language(schema, good: list[str], bad: list[str]) -> None:
    dfa = compile_json_schema(schema)
    for text in good:
        jsonschema.validate(json.loads(text), schema if schema is not True else {})
        assert dfa.matches(text.encode()), text
    for text in bad:
        assert not dfa.matches(text.encode()), text


BOTH_LISTED = CASES[-4:]


@pytest.mark.parametrize(("schema", "good", "bad"), BOTH_LISTED, ids=[json.dumps(c[0]) for c in BOTH_LISTED])
def test_language_of_the_pushdown_engine(schema, good: list[str], bad: list[str]) -> None:
    guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))
    for text in good:
        state = guide.advance(guide.initial_state, text.encode())
        assert state and guide.is_final(state), text
    for text in bad:
        state = guide.advance(guide.initial_state, text.encode())
        assert not (state and guide.is_final(state)), text


def test_whitespace_default_and_override() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}}}}
    dfa = compile_json_schema(schema)
    assert dfa.matches(json.dumps({"a": [1, 2]}).encode())
    assert dfa.matches(json.dumps({"a": [1, 2]}, separators=(",", ":")).encode())
    assert not dfa.matches(b'{"a":  [1]}')  # bounded: one space at most
    spaced = compile_json_schema(schema, whitespace_pattern=r"[ \n]{0,2}")
    assert spaced.matches(b'{ "a" :\n[ 1 , 2 ] }')
    assert not spaced.matches(b'{   "a": [1]}')


def test_pydantic_models_keep_field_order_and_no_extras() -> None:
    from typing import Literal

    from pydantic import BaseModel, Field

    class Item(BaseModel):
        name: str = Field(max_length=5)
        kind: Literal["a", "b"]
        count: int = Field(ge=0, le=9)

    dfa = compile_json_schema(Item)
    assert dfa.matches(b'{"name": "x", "kind": "a", "count": 3}')
    assert not dfa.matches(b'{"kind": "a", "name": "x", "count": 3}')
    assert not dfa.matches(b'{"name": "x", "kind": "a", "count": 3, "extra": 1}')
    assert not dfa.matches(b'{"name": "x", "kind": "c", "count": 3}')


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ('{"type": "object"', "not valid JSON"),
        ({"enum": [{1, 2}]}, "not plain JSON"),  # (a Python set: no JSON value)
        ({"type": "strnig"}, "#/type: unknown type 'strnig'"),
        (
            {"properties": {"a": {"$ref": "#/$defs/missing"}}},
            "#/properties/a: \\$ref '#/\\$defs/missing' points to nothing",
        ),
        (
            # beside a oneOf of more branches than are split out, what is evaluated depends
            # on the value
            {
                "properties": {
                    "a": {
                        "oneOf": [{"required": [f"k{i}"], "properties": {f"k{i}": True}} for i in range(17)],
                        "unevaluatedProperties": False,
                    }
                }
            },
            "#/properties/a: keyword 'unevaluatedProperties' cannot be enforced: what it leaves out "
            "depends on the value",
        ),
        ({"type": "array", "contains": {"format": "email"}}, "#/contains: keyword 'contains'"),
        ({"type": "array", "uniqueItems": True}, "'uniqueItems' can only be enforced"),
        ({"not": {"format": "email"}}, "'not' can only be enforced"),
        ({"$ref": "http://example.com/schema"}, "only local \\$ref"),
        ({"type": "string", "minLength": -1}, "minLength must be a non-negative integer"),
        ({"type": "integer", "minimum": 5, "maximum": 1}, "no JSON value satisfies this schema"),
        # additionalProperties beside allOf does not see the properties inside it
        (
            {
                "type": "object",
                "allOf": [{"properties": {"a": {}}, "required": ["a"]}],
                "additionalProperties": False,
            },
            "no JSON value satisfies this schema",
        ),
        (42, "must be a Pydantic model, a dict or a JSON string"),
        # both branches accept "a@b.cd", and "not an email" cannot be written (formats are
        # enforced as valid subsets), so "exactly one" cannot be made exact
        (
            {"oneOf": [{"type": "string", "format": "email"}, {"type": "string", "format": "hostname"}]},
            "oneOf branches 0 and 1 may both",
        ),
    ],
)
def test_bad_schemas_fail_clearly(schema, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        compile_json_schema(schema)


def test_lenient_ignores_what_it_cannot_enforce() -> None:
    dfa = compile_json_schema(
        {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, lenient=True
    )
    assert dfa.matches(b"[1, 1]")


def test_limits_are_errors_not_hangs() -> None:
    with pytest.raises(ConstraintTooComplexError):
        compile_json_schema({"type": "string", "minLength": 100000})
    with pytest.raises(ConstraintTooComplexError):
        compile_json_schema({"type": "array", "items": {"type": "string", "minLength": 30}, "minItems": 9000})


def test_large_upper_bounds_generate_a_valid_subset() -> None:
    dfa = compile_json_schema({"type": "string", "maxLength": 100000})
    assert dfa.matches(b'"' + b"x" * 256 + b'"') and not dfa.matches(b'"' + b"x" * 257 + b'"')
    dfa = compile_json_schema({"type": "string", "minLength": 300, "maxLength": 100000})
    assert dfa.matches(b'"' + b"x" * 300 + b'"') and not dfa.matches(b'"' + b"x" * 299 + b'"')
    dfa = compile_json_schema({"type": "array", "items": {"type": "integer"}, "maxItems": 10000})
    assert dfa.matches(json.dumps(list(range(64))).encode())


def test_recursion_depth_is_explicit() -> None:
    schema = {"$defs": {"t": {"type": "array", "items": {"$ref": "#/$defs/t"}}}, "$ref": "#/$defs/t"}
    shallow = compile_json_schema(schema, max_depth=2)
    assert shallow.matches(b"[[]]") and not shallow.matches(b"[[[[]]]]")
    assert compile_json_schema(schema, max_depth=4).matches(b"[[[[]]]]")


def test_integer_ranges_are_exact() -> None:
    for lo, hi in [(0, 0), (-7, 7), (13, 987), (None, -12), (99, None), (-1000, -10), (None, None)]:
        pattern = integer_range(lo, hi)
        assert pattern is not None
        for x in range(-1100, 1100):
            inside = (lo is None or x >= lo) and (hi is None or x <= hi)
            assert bool(re.fullmatch(pattern, str(x))) == inside, (lo, hi, x)


def test_number_ranges_are_sound_and_exact_for_integer_bounds() -> None:
    for lo, hi, lx, hx in [
        (0, 1, False, False),
        (-2, 3, True, True),
        (None, 0, False, True),
        (1.5, 2.5, False, False),
    ]:
        pattern = number_range(lo, hi, lx, hx)
        assert pattern is not None
        for k in range(-400, 400):
            text = f"{k / 100:.2f}"
            x = float(text)
            inside = (lo is None or (x > lo if lx else x >= lo)) and (
                hi is None or (x < hi if hx else x <= hi)
            )
            matched = bool(re.fullmatch(pattern, text))
            assert not matched or inside, (lo, hi, text)  # never outside the bounds
            if inside and isinstance(lo, (int, type(None))) and isinstance(hi, (int, type(None))) and k:
                assert matched, (lo, hi, text)  # exact when the bounds are integers


def test_format_regexes_produce_parseable_values() -> None:
    samples = {
        "date-time": "2024-02-29T23:59:59.123+05:30",
        "time": "08:00:00Z",
        "duration": "P1Y2M3DT4H5M6S",
        "email": "a.b@example.co",
        "ipv6": "2001:db8::8a2e:370:7334",
        "hostname": "a-b.example.com",
        "uri": "https://example.com/a?b=c#d",
    }
    for name, text in samples.items():
        assert re.fullmatch(STRING_FORMATS[name], text), name
    datetime.datetime.fromisoformat("2024-02-29T23:59:59.123+05:30")
    ipaddress.IPv6Address(samples["ipv6"])
    uuid.UUID("123e4567-e89b-12d3-a456-426614174000")


def _rfc3339_duration(text: str) -> bool:
    """RFC 3339 appendix A's ``duration``, read by hand: units in order and without a gap
    (Y M D, then T and H M S), or weeks alone."""
    if re.fullmatch(r"P[0-9]+W", text):
        return True
    match = re.fullmatch(r"P((?:[0-9]+[YMD])*)(?:T((?:[0-9]+[HMS])+))?", text)
    if match is None:
        return False

    def run(part: str, order: str) -> bool:
        units = "".join(re.findall(r"[A-Z]", part))
        return units in {order[i:j] for i in range(len(order)) for j in range(i + 1, len(order) + 1)}

    date, time = match.group(1), match.group(2)
    if not date and time is None:
        return False
    return (not date or run(date, "YMD")) and (time is None or run(time, "HMS"))


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from("YMDW"), max_size=3),
    st.one_of(st.none(), st.lists(st.sampled_from("HMS"), max_size=3)),
)
def test_duration_format_is_rfc3339(date: list[str], time: list[str] | None) -> None:
    text = (
        "P" + "".join(f"1{u}" for u in date) + ("" if time is None else "T" + "".join(f"2{u}" for u in time))
    )
    assert bool(re.fullmatch(STRING_FORMATS["duration"], text)) == _rfc3339_duration(text), text


def _format_samples(name: str, count: int = 2000) -> list[str]:
    """Random strings the format's automaton accepts: each step picks a next *state* uniformly,
    then a byte leading there, so that structure (brackets, escapes) is sampled, not mostly
    the many bytes of non-ASCII characters."""
    dfa = regex_to_dfa(STRING_FORMATS[name])
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        state, text = 0, bytearray()
        for _ in range(80):
            if dfa.accepting[state] and rng.random() < 0.15:
                out.append(text.decode())
                break
            row = dfa.transitions[state]
            targets = np.unique(row[row >= 0])
            if targets.size == 0:
                break
            target = rng.choice(targets)
            text.append(int(rng.choice(np.flatnonzero(row == target))))
            state = int(target)
    return out


def test_every_regex_the_regex_format_admits_compiles() -> None:
    """``format: regex`` is a valid subset: whatever it admits, both regex engines compile."""
    samples = _format_samples("regex")
    assert len(samples) > 100
    for text in samples:
        re.compile(text)
        regex.compile(text)


def test_every_uri_template_the_format_admits_is_well_formed() -> None:
    """RFC 6570: braces balance and never nest, expressions hold comma-separated variables,
    and literals are never a space, a quote or a noncharacter."""
    samples = _format_samples("uri-template")
    assert len(samples) > 100
    for text in samples:
        outside = re.split(r"\{[^{}]*\}", text)
        assert not any(c in "{}" for part in outside for c in part), text
        literal = "".join(outside)
        assert not any(c in " \"'<>\\^`|" or ord(c) < 0x20 or (ord(c) & 0xFFFE) == 0xFFFE for c in literal)
        for expression in re.findall(r"\{([^{}]*)\}", text):
            names = expression.lstrip("+#./;?&=,!@|")
            variable = r"(?:[\w%.]+)(?::[1-9][0-9]{0,3}|\*)?"
            assert names and all(re.fullmatch(variable, v, re.ASCII) for v in names.split(",")), text

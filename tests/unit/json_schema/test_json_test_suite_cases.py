"""Cases from the official JSON-Schema-Test-Suite that the engines once got wrong.

``benchmarks/json_test_suite.py`` runs the whole suite (third-party data, not in this repository);
each case here is a group's schema and tests copied by hand, checked on both engines: every
instance the suite calls invalid is refused, every valid one accepted (where listed).
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Callable, Iterator
from decimal import Decimal

import jsonschema
import pytest
from conftest import load_vocab

from outlines_gguf import JSONLogitsProcessor, SchemaError
from outlines_gguf.compiler import compile_json_schema
from outlines_gguf.json_schema.leaves import number_range
from outlines_gguf.json_schema.pushdown import PushdownGuide
from outlines_gguf.json_schema.split import SplitSchema

# (schema, [(data, valid), ...])
CASES: list[tuple[dict, list[tuple[object, bool]]]] = [
    # format.json, minLength.json, minimum.json, properties.json, contains.json: a keyword
    # constrains only values of its own type, so without "type" the others are all valid
    (
        {"format": "email"},
        [("a@b.cd", True), ("nope", False), (12, True), (1.5, True), (None, True), ([], True), ({}, True)],
    ),
    ({"minLength": 3}, [("abc", True), ("ab", False), (5, True), (True, True), ([1], True)]),
    ({"maximum": 3}, [(3, True), (3.5, False), ("7", True), ({"a": 9}, True)]),
    (
        {"properties": {"a": {"type": "integer"}}},
        [({"a": 1}, True), ({"a": "x"}, False), ("x", True), (2, True)],
    ),
    ({"contains": {"const": 1}}, [([1], True), ([2], False), ("x", True), ({"a": 2}, True)]),
    ({"minItems": 1, "maxLength": 2}, [([0], True), ([], False), ("ab", True), ("abc", False), (7, True)]),
    # ... and a negation of such a keyword is of its type only
    ({"not": {"minLength": 3}}, [("ab", True), ("abc", False), (5, False), (None, False)]),
    ({"not": {"minimum": 3}}, [(2, True), (3, False), ("x", False)]),
    # const.json, enum.json: numbers are compared by value (1.0 is 1, -0.0 is 0)
    ({"const": 1}, [(1, True), (1.0, True), (True, False), (1.5, False), ("1", False)]),
    ({"enum": [0, "a"]}, [(0.0, True), (-0.0, True), (False, False), ("a", True)]),
    ({"const": 1.5}, [(1.5, True), (1.25, False), (15, False)]),
    ({"enum": [[0]]}, [([0.0], True), ([False], False)]),
    ({"not": {"const": 1}}, [(1.0, False), (2, True), ("1", True)]),
    # optional/ecmascript-regex.json: Unicode property and control escapes
    (
        {"type": "string", "pattern": "^\\p{Lu}\\p{Ll}+$"},
        [("\u00c9lan", True), ("\u00e9lan", False), ("E", False)],
    ),
    (
        {"type": "object", "patternProperties": {"^\\p{digit}+$": True}, "additionalProperties": False},
        [({"\u09ea\u09e8": 1}, True), ({"42": 1}, True), ({"-%#": 1}, False)],
    ),
    ({"type": "string", "pattern": "^\\cC$"}, [("\u0003", True), ("\\cC", False)]),
    # allOf parts without "type" do not make each other empty
    (
        {"allOf": [{"minLength": 3}, {"maxLength": 2}]},
        [(5, True), (None, True), ("ab", False), ("abc", False)],
    ),
    ({"allOf": [{"minLength": 3}, {"type": "integer"}]}, [(4, True), ("abcd", False), (1.5, False)]),
    # additionalProperties.json: "dependentSchemas with additionalProperties" (a name only
    # dependentSchemas mentions is still additional, so false forbids it)
    (
        {
            "properties": {"foo2": {}},
            "dependentSchemas": {"foo": {}, "foo2": {"properties": {"bar": {}}}},
            "additionalProperties": False,
        },
        [
            ({"foo": ""}, False),
            ({"bar": ""}, False),
            ({"foo2": "", "bar": ""}, False),
            ({"foo2": ""}, True),
            ({}, True),
        ],
    ),
    # a required name that properties does not declare is additional
    (
        {
            "type": "object",
            "properties": {"a": {}},
            "required": ["b"],
            "additionalProperties": {"type": "string"},
        },
        [({"b": 1}, False), ({"b": "x"}, True), ({"a": 1, "b": "x"}, True), ({"a": 1}, False)],
    ),
    # properties.json: "properties, patternProperties, additionalProperties interaction" (a
    # declared key that a pattern matches is governed by both)
    (
        {
            "properties": {"foo": {"type": "array", "maxItems": 3}, "bar": {"type": "array"}},
            "patternProperties": {"f.o": {"minItems": 2}},
            "additionalProperties": {"type": "integer"},
        },
        [
            ({"foo": [1, 2]}, True),
            ({"foo": [1, 2, 3, 4]}, False),
            ({"foo": []}, False),
            ({"fxo": [1, 2]}, True),
            ({"fxo": []}, False),
            ({"bar": []}, True),
            ({"quux": 3}, True),
            ({"quux": "foo"}, False),
        ],
    ),
    # optional/ecmascript-regex.json: "\S matches everything but whitespace" (ECMA-262's \s has
    # U+FEFF, Python's does not)
    ({"type": "string", "pattern": "^\\S$"}, [("\ufeff", False), ("\u00a0", False), ("x", True)]),
    # optional/format/email.json: dots in the local part
    (
        {"format": "email"},
        [
            (".test@example.com", False),
            ("test.@example.com", False),
            ("te..st@example.com", False),
            ("te.s.t@example.com", True),
            ("te~st@example.com", True),
            ("joe.bloggs@example.com", True),
        ],
    ),
    # optional/format/idn-hostname.json: "--" in the 3rd and 4th places (Punycode unchecked)
    (
        {"format": "idn-hostname"},
        [("xn--X", False), ("XN--aa---o47jg78q", False), ("ab-c.d-e", True), ("a--b", True)],
    ),
    # optional/format/iri.json: a port is digits (an IPv6 host needs brackets)
    (
        {"format": "iri"},
        [
            ("http://2001:0db8:85a3:0000:0000:8a2e:0370:7334", False),
            ("http://[2001:0db8:85a3:0000:0000:8a2e:0370:7334]", True),
            ("http://foo.bar:8080/?baz=qux#quux", True),
            ("http://-.~_!$&'()*+,;=:%40:80%2f::::::@example.com", True),
            ("mailto:John.Doe@example.com", True),
            ("http:// shouldfail.com", False),
        ],
    ),
    ({"format": "uri"}, [("http://2001:0db8:85a3:0000:0000:8a2e:0370:7334", False), ("urn:a:b", True)]),
    # optional/format/uri-reference.json, iri-reference.json: relative references, IRIs
    (
        {"format": "uri-reference"},
        [
            ("http://foo.bar/?baz=qux#quux", True),
            ("//foo.bar/?baz=qux#quux", True),
            ("/abc", True),
            ("\\\\WINDOWS\\fileshare", False),
            ("abc", True),
            ("#fragment", True),
            ("#frag\\ment", False),
            ("../a/./b?q", True),
            ("", True),
            ("a:b", True),  # a scheme "a"
            ("a b", False),
            ("ƒøø", False),
        ],
    ),
    (
        {"format": "iri-reference"},
        [
            ("http://ƒøø.ßår/?∂éœ=πîx#πîüx", True),
            ("//ƒøø.ßår/?∂éœ=πîx#πîüx", True),
            ("/âππ", True),
            ("\\\\WINDOWS\\filëßåré", False),
            ("âππ", True),
            ("#ƒrägmênt", True),
            ("#ƒräg\\mênt", False),
            ("?\ue000", True),  # iprivate, in a query only
            ("#\ue000", False),
        ],
    ),
    (
        {"format": "iri"},
        [
            ("http://ƒøø.ßår/?∂éœ=πîx#πîüx", True),
            ("/âππ", False),
            ("http://a/\ufffe", False),
        ],
    ),
    # Python-syntax global flags leading a pattern (jsonschema checks with re.search)
    (
        {"pattern": "(?i)^[a-z]+$"},
        [("abc", True), ("ABC", True), ("aB1", False), ("x\nabc", False)],
    ),
    ({"pattern": "(?m)^abc$"}, [("abc", True), ("x\nabc", True), ("abc\nx", True), ("xabc", False)]),
    # patternProperties.json: "multiple simultaneous patternProperties are validated" (a key
    # matching both patterns is governed by both schemas: the key sets split by what they match)
    (
        {"type": "object", "patternProperties": {"a*": {"type": "integer"}, "aaa*": {"maximum": 20}}},
        [
            ({"a": 21}, True),
            ({"aaaa": 18}, True),
            ({"a": "bar"}, False),
            ({"aaaa": 31}, False),
            ({"aaa": "foo", "aaaa": 31}, False),
        ],
    ),
    # minimum.json, exclusiveMinimum.json: decimal bounds are exact (they were rounded inward)
    ({"minimum": 1.1}, [(1.1, True), (1.2, True), (0.6, False), (1.09, False), (1, False), (2, True)]),
    ({"exclusiveMinimum": 1.1}, [(1.2, True), (1.1, False), (1.11, True), (0.6, False)]),
    ({"type": "number", "minimum": 0, "maximum": 0.5}, [(0.3, True), (0.5, True), (0.51, False), (0, True)]),
    # const.json: an object is the same value whatever order its members are listed in
    (
        {"const": {"foo": "bar", "baz": "bax"}},
        [
            ({"baz": "bax", "foo": "bar"}, True),
            ({"foo": "bar", "baz": "bax"}, True),
            ({"foo": "bar"}, False),
            ({"foo": "bar", "baz": "bax", "x": 1}, False),
        ],
    ),
    (
        {"enum": [{"a": {"x": 1, "y": [1, {"p": 1, "q": 2}]}, "b": 2}, 3]},
        [
            ({"b": 2, "a": {"y": [1, {"q": 2, "p": 1}], "x": 1}}, True),
            ({"b": 2, "a": {"y": [{"q": 2, "p": 1}, 1], "x": 1}}, False),
            (3, True),
        ],
    ),
    # optional/format/idn-hostname.json: Hangul (and CJK, kana) labels, ideographic full stops
    (
        {"format": "idn-hostname"},
        [
            ("\uc2e4\ub840.\ud14c\uc2a4\ud2b8", True),
            ("a\u3002b", True),
            ("a\uff0eb", True),
            ("\u4e2d\u6587.example", True),
            ("\u302e\uc2e4\ub840.\ud14c\uc2a4\ud2b8", False),
            ("\uc2e4" * 40, False),
            ("\u3002", False),
            ("-hello", False),
            ("\u30fb", False),
        ],
    ),
    # maxItems below minItems beside contains: no array (the cap on maxItems once raised it)
    ({"minItems": 1, "maxItems": 0, "contains": {}}, [([1], False), ([], False), ("x", True)]),
    (
        {"allOf": [{"items": {"type": "integer"}, "minItems": 1}, {"maxItems": 0}, {"contains": {}}]},
        [([1], False), ([], False), (1, True)],
    ),
    # optional/format/idn-email.json
    (
        {"format": "idn-email"},
        [
            ("\uc2e4\ub840@\uc2e4\ub840.\ud14c\uc2a4\ud2b8", True),
            ("joe.bloggs@example.com", True),
            ("2962", False),
        ],
    ),
    # optional/format/time.json, date-time.json: "t"/"z" in lower case; a leap second in UTC
    (
        {"format": "time"},
        [
            ("08:30:06z", True),
            ("23:59:60Z", True),
            ("23:59:60+00:00", True),
            ("23:59:60.5-00:00", True),
            ("22:59:60Z", False),
            ("23:58:60Z", False),
            ("23:59:61Z", False),
            ("00:60:00Z", False),
            ("01:02:03+00:60", False),
        ],
    ),
    (
        {"format": "date-time"},
        [
            ("1963-06-19t08:30:06.283185z", True),
            ("1998-12-31T23:59:60Z", True),
            ("1998-12-31T23:58:60Z", False),
            ("1998-12-31 08:30:06Z", False),
        ],
    ),
    # optional/format/email.json: a quoted local part; an IPv4 address literal
    (
        {"format": "email"},
        [
            ('"joe bloggs"@example.com', True),
            ('"joe..bloggs"@example.com', True),
            ('"joe@bloggs"@example.com', True),
            ('"a\\"b"@example.com', True),
            ("joe.bloggs@[127.0.0.1]", True),
            ("joe.bloggs@[127.0.0.300]", False),
            ('"joe"bloggs"@example.com', False),
            ("te..st@example.com", False),
            ("joe.bloggs@invalid=domain.com", False),
        ],
    ),
]


def _pushdown_accepts(guide: PushdownGuide, text: bytes) -> bool:
    state = guide.advance(guide.initial_state, text)  # type: ignore[arg-type]
    return bool(state) and guide.is_final(state)


@pytest.mark.parametrize("engine", ["dfa", "pushdown"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: json.dumps(c[0])[:60])
def test_suite_case(engine: str, case: tuple[dict, list[tuple[object, bool]]]) -> None:
    schema, tests = case
    if engine == "dfa":
        dfa = compile_json_schema(schema)
        accepts = dfa.matches
    else:
        guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))

        def accepts(text: bytes) -> bool:
            return _pushdown_accepts(guide, text)

    for data, valid in tests:
        assert accepts(json.dumps(data, ensure_ascii=False).encode()) == valid, (data, valid)
        if not valid:  # nor with \u escapes
            assert not accepts(json.dumps(data).encode()), data


def test_required_name_that_additional_properties_forbids_is_no_value() -> None:
    schema = {
        "type": "object",
        "properties": {"foo2": {}},
        "required": ["foo"],
        "additionalProperties": False,
    }
    with pytest.raises(SchemaError, match="no JSON value"):
        SplitSchema(schema)
    # without "type", any value that is not an object satisfies it
    SplitSchema({k: v for k, v in schema.items() if k != "type"})


def test_number_ranges_are_exact_for_decimal_bounds() -> None:
    """Every number written without an exponent (never -0) is matched exactly when it is within
    the bounds, compared as decimals."""
    bounds = [None, -2, -1.5, -1.1, -0.25, 0, 0.05, 0.25, 0.5, 1, 1.1, 1.15, 1.105, 2, 10.01]
    rng = random.Random(0)
    texts = {f"{k / 100:.{d}f}" for k in range(-300, 1200, 7) for d in (0, 1, 2, 3)}
    texts |= {f"{rng.uniform(-3, 12):.{rng.randint(0, 5)}f}" for _ in range(300)}
    texts = {t for t in texts if not (t.startswith("-") and Decimal(t) == 0)}
    for case, pattern, inside in _bounded_cases(bounds):
        for text in texts:
            matched = pattern is not None and re.fullmatch(pattern, text) is not None
            assert matched == inside(Decimal(text)), (case, text)


def test_number_ranges_take_long_fractions_and_scientific_notation_exactly() -> None:
    """Numbers as ``json.dumps`` writes floats: many fraction digits (``9.999999999999998``), and
    normalized scientific notation (``1e-05``, ``1.5e+16``, any case and exponent sign or leading
    zeros): matched exactly when within the bounds. Other exponent spellings (``15e-1``) are
    never matched outside them."""
    bounds = [None, -1e16, -10, -1.5, -0.25, 0, 1e-05, 0.05, 0.25, 0.5, 1, 1.1, 1.5, 10, 10.01, 1234.5, 1e16]
    rng = random.Random(1)
    texts = {repr(rng.uniform(-2, 12)) for _ in range(200)}  # 15-17 significant digits
    texts |= {f"{rng.uniform(1, 9.4):.{rng.randint(0, 4)}f}e{e}" for e in range(-7, 19) for _ in range(6)}
    texts |= {f"-{t}" for t in list(texts) if not t.startswith("-")}
    texts |= {"1e-05", "1E-5", "1e-0005", "5e-324", "1e+16", "1.0e16", "1.000e+16", "1.1e0", "1.1e-0", "1e1",
              "1.001e1", "1.2345e3", "1.2345e+03", "9.99e-1", "5e-2", "5.0e-2", "4.9999e-2", "1.5e1"}
    unnormalized = {"15e-1", "0.5e1", "0e0", "0.0e1", "10e0", "123e-5", "-15e-1", "0.01e2"}
    for case, pattern, inside in _bounded_cases(bounds):
        for text in texts | unnormalized:
            matched = pattern is not None and re.fullmatch(pattern, text) is not None
            if text in unnormalized or case[:2] == (None, None):
                assert not matched or inside(Decimal(text)), (case, text)
            else:
                assert matched == inside(Decimal(text)), (case, text)


def _bounded_cases(bounds: list) -> Iterator[tuple[tuple, str | None, Callable[[Decimal], bool]]]:
    """Each pair of bounds with each pair of exclusivity flags: the flags and bounds, the number
    regex, and whether a decimal lies within them (compared as the decimals the schema wrote)."""
    for lo, hi, lx, hx in itertools.product(bounds, bounds, (False, True), (False, True)):
        if (lo is None and lx) or (hi is None and hx):
            continue
        low = None if lo is None else Decimal(repr(float(lo)))
        high = None if hi is None else Decimal(repr(float(hi)))

        def inside(x: Decimal, low=low, high=high, lx=lx, hx=hx) -> bool:
            return (low is None or (x > low if lx else x >= low)) and (
                high is None or (x < high if hx else x <= high)
            )

        yield (lo, hi, lx, hx), number_range(lo, hi, lx, hx), inside


# $ref as a URI reference against the base URI of its resource ($id), with percent-encoded
# pointers and anchors; both engines through JSONLogitsProcessor (which resolves them)
REF_CASES: list[tuple[dict, list[tuple[object, bool]]]] = [
    # ref.json: "refs with relative uris and defs"
    (
        {
            "$id": "http://example.com/schema-relative-uri-defs1.json",
            "properties": {
                "foo": {
                    "$id": "schema-relative-uri-defs2.json",
                    "$defs": {"inner": {"properties": {"bar": {"type": "string"}}}},
                    "$ref": "#/$defs/inner",
                }
            },
            "$ref": "schema-relative-uri-defs2.json",
        },
        [
            ({"foo": {"bar": 1}, "bar": "a"}, False),
            ({"foo": {"bar": "a"}, "bar": 1}, False),
            ({"foo": {"bar": "a"}, "bar": "a"}, True),
        ],
    ),
    # ref.json: "$id must be resolved against nearest parent, not just immediate parent"
    (
        {
            "$id": "http://example.com/a.json",
            "$defs": {
                "x": {
                    "$id": "http://example.com/b/c.json",
                    "not": {"$defs": {"y": {"$id": "d.json", "type": "number"}}},
                }
            },
            "allOf": [{"$ref": "http://example.com/b/d.json"}],
        },
        [(1, True), ("a", False)],
    ),
    # ref.json: "escaped pointer ref" (percent-encoded)
    (
        {
            "$defs": {"percent%field": {"type": "integer"}},
            "properties": {"percent": {"$ref": "#/$defs/percent%25field"}},
        },
        [({"percent": 1}, True), ({"percent": "a"}, False)],
    ),
    # anchor.json: "same $anchor with different base uri"
    (
        {
            "$id": "http://localhost:1234/draft2020-12/foobar",
            "$defs": {
                "A": {
                    "$id": "child1",
                    "allOf": [
                        {"$id": "child2", "$anchor": "my_anchor", "type": "number"},
                        {"$anchor": "my_anchor", "type": "string"},
                    ],
                }
            },
            "$ref": "child1#my_anchor",
        },
        [("a", True), (1, False)],
    ),
    # draft7 ref.json: "$ref prevents a sibling $id from changing the base uri" (draft 7 only)
    (
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$id": "http://localhost:1234/sibling_id/base/",
            "definitions": {
                "foo": {"$id": "http://localhost:1234/sibling_id/foo.json", "type": "string"},
                "base_foo": {"$id": "foo.json", "type": "number"},
            },
            "allOf": [{"$id": "http://localhost:1234/sibling_id/", "$ref": "foo.json"}],
        },
        [("a", False), (1, True)],
    ),
    # draft4/ref.json: draft 4 spells the identifier "id", and references resolve against it
    (
        {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "id": "http://localhost:1234/tree",
            "type": "object",
            "properties": {"nodes": {"type": "array", "items": {"$ref": "node"}}},
            "required": ["nodes"],
            "definitions": {
                "node": {
                    "id": "http://localhost:1234/node",
                    "type": "object",
                    "properties": {"value": {"type": "number"}, "subtree": {"$ref": "tree"}},
                    "required": ["value"],
                }
            },
        },
        [
            ({"nodes": [{"value": 1, "subtree": {"nodes": [{"value": 2}]}}]}, True),
            ({"nodes": [{"value": 1, "subtree": {"nodes": [{"value": "x"}]}}]}, False),
            ({"nodes": [{"subtree": {"nodes": []}}]}, False),
        ],
    ),
    # draft4/optional/id.json: an "id" inside an enum identifies nothing
    (
        {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "definitions": {
                "id_in_enum": {"enum": [{"id": "https://localhost:1234/my_identifier.json", "type": "null"}]},
                "real_id_in_schema": {"id": "https://localhost:1234/my_identifier.json", "type": "string"},
            },
            "anyOf": [
                {"$ref": "#/definitions/id_in_enum"},
                {"$ref": "https://localhost:1234/my_identifier.json"},
            ],
        },
        [
            ({"id": "https://localhost:1234/my_identifier.json", "type": "null"}, True),
            ("a string to match #/definitions/id_in_enum", True),
            (1, False),
        ],
    ),
]


# unevaluatedProperties/unevaluatedItems where what is evaluated is static (json_schema/unevaluated.py)
UNEVALUATED_CASES: list[tuple[dict, list[tuple[object, bool]]]] = [
    # unevaluatedProperties.json: "unevaluatedProperties with nested properties"
    (
        {
            "type": "object",
            "properties": {"foo": {"type": "string"}},
            "allOf": [{"properties": {"bar": {"type": "string"}}}],
            "unevaluatedProperties": False,
        },
        [({"foo": "foo", "bar": "bar"}, True), ({"foo": "foo", "bar": "bar", "baz": "baz"}, False)],
    ),
    # "unevaluatedProperties with $ref"
    (
        {
            "type": "object",
            "$ref": "#/$defs/bar",
            "properties": {"foo": {"type": "string"}},
            "unevaluatedProperties": False,
            "$defs": {"bar": {"properties": {"bar": {"type": "string"}}}},
        },
        [({"foo": "foo", "bar": "bar"}, True), ({"foo": "foo", "bar": "bar", "baz": "baz"}, False)],
    ),
    # "unevaluatedProperties can't see inside cousins"
    (
        {"type": "object", "allOf": [{"properties": {"foo": True}}, {"unevaluatedProperties": False}]},
        [({"foo": 1}, False)],
    ),
    # "nested unevaluatedProperties, outer false, inner true, properties inside"
    (
        {
            "type": "object",
            "allOf": [{"properties": {"foo": {"type": "string"}}, "unevaluatedProperties": True}],
            "unevaluatedProperties": False,
        },
        [({"foo": "foo"}, True), ({"foo": "foo", "bar": "bar"}, True)],
    ),
    # unevaluatedItems.json: "unevaluatedItems with nested tuple"
    (
        {
            "type": "array",
            "prefixItems": [{"type": "string"}],
            "allOf": [{"prefixItems": [True, {"type": "number"}]}],
            "unevaluatedItems": False,
        },
        [(["foo", 42], True), (["foo", 42, True], False)],
    ),
    # "unevaluatedProperties with if/then/else": (if, then) or (not if, else), each static
    (
        {
            "type": "object",
            "if": {"properties": {"foo": {"const": "then"}}, "required": ["foo"]},
            "then": {"properties": {"bar": {"type": "string"}}, "required": ["bar"]},
            "else": {"properties": {"baz": {"type": "string"}}, "required": ["baz"]},
            "unevaluatedProperties": False,
        },
        [
            ({"foo": "then", "bar": "bar"}, True),
            ({"foo": "then", "bar": "bar", "baz": "baz"}, False),
            ({"baz": "baz"}, True),
            ({"foo": "else", "baz": "baz"}, False),
        ],
    ),
    # "unevaluatedProperties with oneOf": branch i and not the others
    (
        {
            "type": "object",
            "properties": {"foo": {"type": "string"}},
            "oneOf": [
                {"properties": {"bar": {"const": "bar"}}, "required": ["bar"]},
                {"properties": {"baz": {"const": "baz"}}, "required": ["baz"]},
            ],
            "unevaluatedProperties": False,
        },
        [({"foo": "foo", "bar": "bar"}, True), ({"foo": "foo", "bar": "bar", "quux": "quux"}, False)],
    ),
    # "unevaluatedProperties with anyOf": every set of branches, all passing (a value is
    # accepted by the set of its passing branches, whose names it may use together)
    (
        {
            "type": "object",
            "properties": {"foo": {"type": "string"}},
            "anyOf": [
                {"properties": {"bar": {"const": "bar"}}, "required": ["bar"]},
                {"properties": {"baz": {"const": "baz"}}, "required": ["baz"]},
                {"properties": {"quux": {"const": "quux"}}, "required": ["quux"]},
            ],
            "unevaluatedProperties": False,
        },
        [
            ({"foo": "foo", "bar": "bar"}, True),
            ({"foo": "foo", "bar": "bar", "baz": "not-baz"}, False),
            ({"foo": "foo", "bar": "bar", "baz": "baz", "quux": "not-quux"}, False),
            ({"foo": "foo", "bar": "bar", "baz": "baz"}, True),
        ],
    ),
    # beside dependentSchemas: (the name present, its schema) or (the name absent)
    (
        {
            "properties": {"foo": {"type": "string"}},
            "dependentSchemas": {"foo": {"properties": {"bar": {"const": "bar"}}, "required": ["bar"]}},
            "unevaluatedProperties": False,
        },
        [({"foo": "foo", "bar": "bar"}, True), ({"bar": "bar"}, False), ({}, True), ({"foo": "foo"}, False)],
    ),
    # a oneOf in an allOf part (through $refs) is lifted beside the others; the definitions stay
    # where the references find them
    (
        {
            "$defs": {
                "one": {"properties": {"a": True}},
                "two": {"required": ["x"], "properties": {"x": True}},
            },
            "allOf": [
                {"$ref": "#/$defs/one"},
                {"properties": {"b": True}},
                {"oneOf": [{"$ref": "#/$defs/two"}, {"required": ["y"], "properties": {"y": True}}]},
            ],
            "unevaluatedProperties": False,
        },
        [
            ({"x": 1, "a": 1, "b": 1}, True),
            ({"y": 1}, True),
            ({"x": 1, "y": 1}, False),
            ({"x": 1, "z": 1}, False),
            ({"a": 1}, False),
        ],
    ),
    # a oneOf nested through $refs, whose branches evaluate by patterns, by a nested
    # unevaluatedProperties: true (every name), or by nothing of their own
    (
        {
            "$defs": {
                "one": {
                    "oneOf": [
                        {"$ref": "#/$defs/two"},
                        {"required": ["xx"], "patternProperties": {"x": True}},
                        {"required": ["all"], "unevaluatedProperties": True},
                    ]
                },
                "two": {"oneOf": [{"required": ["c"], "properties": {"c": True}}, {"required": ["d"]}]},
            },
            "oneOf": [{"$ref": "#/$defs/one"}, {"required": ["a"], "properties": {"a": True}}],
            "unevaluatedProperties": False,
        },
        [
            ({"c": 1}, True),
            ({"c": 1, "z": 1}, False),
            ({"d": 1}, False),
            ({"xx": 1, "xy": 2}, True),
            ({"xx": 1, "y": 2}, False),
            ({"all": 1, "q": 2}, True),
            ({"a": 1}, True),
            ({"a": 1, "c": 1}, False),
        ],
    ),
    # contains evaluates the items it matches; a 2019-09 items array is a prefix, and
    # additionalItems beside it evaluates the rest
    (
        {
            "type": "array",
            "prefixItems": [{"type": "integer"}],
            "contains": {"type": "string"},
            "unevaluatedItems": False,
        },
        [([1, "a", "b"], True), ([1, "a", True], False), ([1], False), (["a"], False)],
    ),
    (
        {
            "$schema": "https://json-schema.org/draft/2019-09/schema",
            "items": [{"type": "integer"}],
            "allOf": [{"items": [True, {"type": "string"}]}],
            "unevaluatedItems": {"type": "boolean"},
        },
        [([1, "a", True], True), ([1, "a", 2], False), ([1], True)],
    ),
    # an if inside a $ref target: its annotations count where it passes
    (
        {
            "$ref": "#/$defs/cond",
            "$defs": {
                "cond": {
                    "if": {"properties": {"k": {"const": 1}}, "required": ["k"]},
                    "then": {"properties": {"v": {"type": "integer"}}},
                }
            },
            "unevaluatedProperties": False,
        },
        [({"k": 1, "v": 2}, True), ({"k": 2}, False), ({"k": 1, "w": 2}, False), ({}, True)],
    ),
    # allOf parts merge beside a not (not a and not b: not (a or b)); the values of each kind
    (
        {
            "type": "object",
            "properties": {"foo": {"type": "string"}, "bar": True},
            "allOf": [{"properties": {"bar": {"const": "bar"}}, "required": ["bar"]}],
            "not": {"properties": {"baz": {"const": "baz"}}, "required": ["baz"]},
            "additionalProperties": False,
        },
        [({"foo": "foo", "bar": "bar"}, True), ({"bar": "bar"}, True), ({"foo": "foo"}, False)],
    ),
    # "unevaluatedItems with uniform items"
    ({"type": "array", "items": {"type": "string"}, "unevaluatedItems": False}, [(["foo", "bar"], True)]),
]


@pytest.mark.parametrize("engine", ["dfa", "pushdown"])
@pytest.mark.parametrize("case", REF_CASES + UNEVALUATED_CASES, ids=lambda c: json.dumps(c[0])[:60])
def test_suite_case_through_the_processor(engine: str, case: tuple[dict, list[tuple[object, bool]]]) -> None:
    schema, tests = case
    given = json.dumps(schema)
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"), engine=engine)
    for data, valid in tests:
        if valid and engine == "dfa":  # the whole-schema DFA takes keys in declared order only
            continue
        assert processor.accepts(json.dumps(data)) == valid, (data, valid)
    assert json.dumps(schema) == given  # the rewrites work on a copy


def test_unevaluated_properties_see_no_annotations_through_not() -> None:
    """unevaluatedProperties.json "unevaluatedProperties with not": bar is required (through
    not-not) but never evaluated, so nothing is valid."""
    schema = {
        "type": "object",
        "properties": {"foo": {"type": "string"}},
        "not": {"not": {"properties": {"bar": {"const": "bar"}}, "required": ["bar"]}},
        "unevaluatedProperties": False,
    }
    with pytest.raises(SchemaError, match="no JSON value"):
        JSONLogitsProcessor(schema, load_vocab("spm32k"))


def _discriminated(kinds: int) -> dict:
    """An object whose ``type`` picks which member it needs, one ``if``/``then`` per kind, closed
    by ``unevaluatedProperties`` (OpenAPI 3.1's security schemes, devcontainer.json)."""
    names = [f"t{i}" for i in range(kinds)]
    pairs = [
        {"if": {"properties": {"type": {"const": n}}, "required": ["type"]},
         "then": {"properties": {f"p{i}": {"type": "string"}}, "required": [f"p{i}"]}}
        for i, n in enumerate(names)
    ]
    return {
        "type": "object",
        "properties": {"type": {"enum": names}, "description": {"type": "string"}},
        "required": ["type"],
        "allOf": pairs,
        "unevaluatedProperties": False,
    }


@pytest.mark.parametrize("kinds", [2, 6])
def test_discriminated_conditions_beside_unevaluated_properties(kinds: int) -> None:
    """Each if/then splits the object in two (the condition and its negation); the
    combinations where two conditions hold are empty and left out, so n kinds make n + 1
    branches, not 2^n (five or more were refused: a share of the branch budget per branch)."""
    schema = _discriminated(kinds)
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    validator = jsonschema.Draft202012Validator(schema)
    documents: list = [{}, {"type": "t9"}, []]
    for i in range(kinds):
        for extra in ({}, {f"p{i}": "x"}, {f"p{(i + 1) % kinds}": "x"}, {f"p{i}": "x", "description": "d"},
                      {f"p{i}": "x", "other": 1}, {f"p{i}": 1}):
            documents.append({"type": f"t{i}", **extra})
    for document in documents:
        assert processor.accepts(json.dumps(document)) == validator.is_valid(document), document

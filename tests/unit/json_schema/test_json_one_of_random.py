"""Random ``oneOf``s of small objects, judged by ``jsonschema`` on every document of a small universe.

Branches are objects over the keys ``a``, ``b``, ``c``: closed or not, a ``propertyNames``
list, required keys, property values from a few schemas (listed values, types, bounds, a
closed object inside), sometimes a ``not`` around one. Whatever the compiler makes of them
("branch i and not branch j" read among i's values, disjointness proofs, outside keys,
absorbed conjunctions), a schema it accepts must accept exactly the documents that match
one branch: every object of at most three of the keys, each with each of a few values.
Schemas it refuses must be refused with a ``SchemaError`` naming the oneOf; where it takes a
valid subset (and says so), it must accept no document that does not match.
"""

from __future__ import annotations

import itertools
import json

import jsonschema
from conftest import load_vocab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outlines_gguf import JSONLogitsProcessor
from outlines_gguf.errors import ConstraintTooComplexError, SchemaError

KEYS = ("a", "b", "c")
VALUES: list = [1, 7, "x", True, {}, {"k": 1}, {"k": 1, "z": 2}]

INNER = {"type": "object", "properties": {"k": {"type": "integer"}}, "additionalProperties": False}
TREE = {"$ref": "#/$defs/tree"}
"""A recursive definition: its negation is only written in part (``negate_subset``)."""
DEFS = {"tree": {"type": "object", "properties": {"k": {"$ref": "#/$defs/tree"}}, "required": ["k"]}}

VALUE_SCHEMAS = st.sampled_from(
    [
        {"type": "integer"},
        {"type": "integer", "maximum": 3},
        {"type": "string"},
        {"enum": [1, "x"]},
        {"const": 7},
        {"type": "boolean"},
        INNER,
        {"type": "object"},
        {"not": {"type": "integer"}},
        TREE,
        {},
    ]
)


@st.composite
def branches(draw: st.DrawFn) -> dict:
    keys = draw(st.lists(st.sampled_from(KEYS), max_size=3, unique=True))
    branch: dict = {"type": "object", "properties": {k: draw(VALUE_SCHEMAS) for k in keys}}
    shape = draw(st.sampled_from(["open", "closed", "names"]))
    if shape == "closed":
        branch["additionalProperties"] = False
    elif shape == "names":
        branch["propertyNames"] = {"enum": draw(st.lists(st.sampled_from(KEYS), min_size=1, unique=True))}
    if keys and draw(st.booleans()):
        branch["required"] = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=2, unique=True))
    if draw(st.integers(0, 5)) == 0:
        branch = {"not": branch}
    return branch


def _documents() -> list[dict]:
    out: list[dict] = []
    for n in range(4):
        for keys in itertools.combinations(KEYS, n):
            for values in itertools.product(VALUES, repeat=n):
                out.append(dict(zip(keys, values, strict=True)))
    return out


DOCUMENTS = _documents()


def _judge(schema: dict, documents: list[dict]) -> None:
    """A schema refused names the oneOf (or is a size limit); of one compiled, every document
    accepted is valid, and every valid one is accepted unless the schema says where it took
    a valid subset (``SplitSchema.subsets``: a oneOf branch whose negation could only be
    written in part)."""
    try:
        processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
        processor.guide.schema.compile_all()  # type: ignore[attr-defined]
    except SchemaError as exc:
        assert "oneOf" in str(exc) or "no JSON value" in str(exc)
        return
    except ConstraintTooComplexError:
        return  # (a size limit, named as such)
    validator = jsonschema.Draft202012Validator(schema)
    exact = not processor.guide.schema.subsets  # type: ignore[attr-defined]
    for document in documents:
        text = json.dumps(document)
        valid = validator.is_valid(document)
        if exact or not valid:
            assert processor.accepts(text) == valid, (json.dumps(schema), text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(branches(), min_size=2, max_size=3))
def test_one_of_is_exact_or_refused(one_of: list) -> None:
    _judge({"oneOf": one_of, "$defs": DEFS}, DOCUMENTS)


ITEM_SCHEMAS = [
    {"type": "integer"},
    {"type": "string"},
    {"enum": [1, "x"]},
    INNER,
    {"type": "object", "required": ["k"]},
    {},
]
ARRAY_VALUES: list = [[], [1], ["x"], [1, "x"], [{"k": 1}], [{}], [{"k": "x"}], 1, "x"]


@st.composite
def array_branches(draw: st.DrawFn) -> dict:
    """Objects whose ``a`` is an array of items of one schema (what some oneOfs tell apart by
    their items alone: an empty array matches every branch), ``b`` sometimes a discriminator."""
    array: dict = {"type": "array", "items": draw(st.sampled_from(ITEM_SCHEMAS))}
    if draw(st.integers(0, 3)) == 0:
        array["minItems"] = 1
    if draw(st.integers(0, 3)) == 0:
        del array["type"]
    branch: dict = {"type": "object", "properties": {"a": array}}
    if draw(st.booleans()):
        branch["properties"]["b"] = {"const": draw(st.sampled_from([1, 7, "x"]))}
    branch["required"] = draw(st.lists(st.sampled_from(list(branch["properties"])), max_size=2, unique=True))
    return branch


def _array_documents() -> list[dict]:
    out: list[dict] = [{}]
    for a in ARRAY_VALUES:
        out.append({"a": a})
        out += [{"a": a, "b": b} for b in (1, 7, "x")]
    return out


ARRAY_DOCUMENTS = _array_documents()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(array_branches(), min_size=2, max_size=3))
def test_one_of_over_array_items_is_exact_or_refused(one_of: list) -> None:
    _judge({"oneOf": one_of}, ARRAY_DOCUMENTS)

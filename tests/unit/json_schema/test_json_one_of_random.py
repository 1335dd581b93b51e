"""Random ``oneOf``s of small objects, judged by ``jsonschema`` on every document of a small universe.

Branches are objects over the keys ``a``, ``b``, ``c``: closed or not, a ``propertyNames``
list, required keys, property values from a few schemas (listed values, types, bounds, a
closed object inside), sometimes a ``not`` around one. Whatever the compiler makes of them
("branch i and not branch j" read among i's values, disjointness proofs, outside keys,
absorbed conjunctions), a schema it accepts must accept exactly the documents that match
one branch: every object of at most three of the keys, each with each of a few values.
Schemas it refuses must be refused with a ``SchemaError`` naming the oneOf.
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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(branches(), min_size=2, max_size=3))
def test_one_of_is_exact_or_refused(one_of: list) -> None:
    schema = {"oneOf": one_of}
    try:
        processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
        processor.guide.schema.compile_all()  # type: ignore[attr-defined]
    except SchemaError as exc:
        assert "oneOf" in str(exc) or "no JSON value" in str(exc)
        return
    except ConstraintTooComplexError:
        return  # (a size limit, named as such)
    validator = jsonschema.Draft202012Validator(schema)
    for document in DOCUMENTS:
        text = json.dumps(document)
        assert processor.accepts(text) == validator.is_valid(document), (json.dumps(schema), text)

"""A key written twice is one member of the parsed object: ``minProperties`` must not count it twice.

JSON texts may repeat a key (``{"x": 1, "x": 2}`` parses to ``{"x": 2}``), and the keys of extra
members (``additionalProperties``, ``patternProperties``) cannot be kept distinct by an automaton.
The default engine's guide remembers them below the minimum (``test_json_distinct_keys``), so
each counts; the whole-schema DFA engine counts extra members once towards ``minProperties``.
Where their keys are a short list (``propertyNames``, finite patterns), they become members of
their own, written at most once (exact either way). Texts are judged by ``jsonschema`` on what
``json.loads`` makes of them, duplicates included.
"""

from __future__ import annotations

import itertools
import json

import jsonschema
import pytest
from conftest import load_vocab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outlines_gguf import JSONLogitsProcessor
from outlines_gguf.compiler import compile_json_schema
from outlines_gguf.errors import SchemaError

KEYS = ("a", "b", "x", "y", "z")
VALUES = (1, "s")
FINITE_PATTERN = "^(x|y)$"


def _texts(max_members: int) -> list[str]:
    """Every object text of at most ``max_members`` members over KEYS and VALUES, repeats included."""
    members = [f"{json.dumps(k)}:{json.dumps(v)}" for k in KEYS for v in VALUES]
    out = []
    for n in range(max_members + 1):
        for chosen in itertools.product(members, repeat=n):
            out.append("{" + ",".join(chosen) + "}")
    return out


TEXTS = _texts(3)


def _keys_of(text: str) -> list[str]:
    return [k for k, _ in json.loads(text, object_pairs_hook=lambda pairs: pairs)]


@pytest.mark.parametrize(
    ("schema", "accepted", "rejected"),
    [
        (  # declared members count as written, distinct extra ones too, a repeated key not twice
            {"type": "object", "properties": {"a": {"type": "integer"}}, "minProperties": 2},
            ['{"a": 1, "x": 2}', '{"x": 1, "a": 2, "y": 3}', '{"x": 1, "y": 2}'],
            ['{"a": 1, "a": 2}', '{"x": 1, "x": 2}', '{"a": 1}'],
        ),
        (  # listed keys are members of their own: exact, in any order
            {"type": "object", "propertyNames": {"enum": ["a", "b"]}, "minProperties": 2},
            ['{"a": 1, "b": 2}', '{"b": 1, "a": 2}'],
            ['{"a": 1, "a": 2}', '{"b": 1}', '{"a": 1, "c": 2}'],
        ),
        (
            {
                "type": "object",
                "patternProperties": {FINITE_PATTERN: {"type": "integer"}},
                "additionalProperties": False,
                "minProperties": 2,
            },
            ['{"x": 1, "y": 2}', '{"y": 1, "x": 2}'],
            ['{"x": 1, "x": 2}', '{"y": "s", "x": 2}', '{"x": 1}'],
        ),
        (  # the maximum counts every member written
            {"type": "object", "properties": {"a": {}}, "minProperties": 2, "maxProperties": 3},
            ['{"x": 1, "y": 2, "a": 3}', '{"a": 1, "x": 2}', '{"x": 1, "y": 2, "z": 3}'],
            ['{"x": 1, "y": 2, "z": 3, "a": 4}', '{"x": 1, "x": 2, "x": 3, "a": 4}'],
        ),
    ],
)
def test_repeated_keys_do_not_count_twice(schema: dict, accepted: list[str], rejected: list[str]) -> None:
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    for text in accepted:
        assert processor.accepts(text), text
    for text in rejected:
        assert not processor.accepts(text), text


def test_a_minimum_only_distinct_extra_keys_reach() -> None:
    """Reached by the default engine (the guide keeps the keys distinct); the whole-schema DFA
    engine, which cannot, refuses it as a subset that leaves no object."""
    schema = {"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 2}
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    assert processor.accepts('{"x": 1, "y": 2}') and not processor.accepts('{"x": 1, "x": 2}')
    assert processor.guide.schema.subsets == set()  # type: ignore[attr-defined]
    with pytest.raises(SchemaError, match="#/minProperties are enforced as valid subsets"):
        compile_json_schema(schema)
    # as one branch, the same
    either = {"anyOf": [schema, {"type": "string"}]}
    processor = JSONLogitsProcessor(either, load_vocab("spm32k"))
    assert processor.guide.schema.subsets == set()  # type: ignore[attr-defined]
    assert processor.accepts('"s"') and processor.accepts('{"x": 1, "y": 2}')
    assert not processor.accepts('{"x": 1, "x": 2}')


@st.composite
def objects(draw: st.DrawFn) -> dict:
    declared = draw(st.lists(st.sampled_from(("a", "b")), max_size=2, unique=True))
    schema: dict = {
        "type": "object",
        "properties": {k: draw(st.sampled_from([{}, {"type": "integer"}])) for k in declared},
        "minProperties": draw(st.integers(0, 3)),
    }
    extra = draw(st.sampled_from(["open", "closed", "integer"]))
    if extra != "open":
        schema["additionalProperties"] = False if extra == "closed" else {"type": "integer"}
    pattern = draw(st.sampled_from([None, FINITE_PATTERN, "^x"]))
    if pattern is not None:
        schema["patternProperties"] = {pattern: draw(st.sampled_from([{}, {"type": "string"}]))}
    if draw(st.booleans()):
        schema["propertyNames"] = {"enum": draw(st.lists(st.sampled_from(KEYS), min_size=1, unique=True))}
    if draw(st.booleans()):
        schema["maxProperties"] = draw(st.integers(1, 4))
    return schema


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objects())
def test_counted_objects_accept_no_text_whose_parsed_object_is_invalid(schema: dict) -> None:
    """Sound on every text (repeated keys included) for both engines; the default engine
    exact on texts without repeats (extra keys listed or not)."""
    try:
        processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    except SchemaError as exc:
        assert "no JSON value" in str(exc), exc
        return
    try:
        dfa = compile_json_schema(schema)
    except SchemaError as exc:  # (a minimum only distinct extra keys reach: a subset leaving none)
        assert "minProperties are enforced as valid subsets" in str(exc), exc
        dfa = None
    validator = jsonschema.Draft202012Validator(schema)
    for text in TEXTS:
        valid = validator.is_valid(json.loads(text))
        accepted = processor.accepts(text)
        if accepted or (dfa is not None and dfa.matches(text.encode())):
            assert valid, (json.dumps(schema), text)
        keys = _keys_of(text)
        if not valid or len(set(keys)) < len(keys):
            continue
        assert accepted, (json.dumps(schema), text)

"""Definitions used by reference compile when generation reaches them, and a value that no
document can complete is still never started (the cheap satisfiability check only skips what
is certainly satisfiable)."""

from __future__ import annotations

import json
import pickle
from unittest import mock

import jsonschema
import pytest
from conftest import load_vocab

from outlines_gguf.errors import ConstraintTooComplexError
from outlines_gguf.json_schema.loading import prepare_schema
from outlines_gguf.json_schema.pushdown import PushdownGuide
from outlines_gguf.json_schema.split import SplitSchema, _surely_satisfiable, split_schema


def _defs(n: int) -> dict:
    leaf = {
        "type": "object",
        "properties": {"a": {"type": "integer", "minimum": 0}, "b": {"const": "x"}, "c": {"type": "string"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "definitions": {f"d{i}": leaf for i in range(n)},
        "properties": {f"p{i}": {"$ref": f"#/definitions/d{i % n}"} for i in range(8)},
    }


def test_references_compile_when_reached() -> None:
    split = SplitSchema(_defs(8))
    assert split.n_compiled <= 2  # the root (and its extra member), no definition yet
    guide = PushdownGuide(split, load_vocab("spm32k"))
    doc = {"p3": {"a": 1, "b": "x"}}
    state = guide.advance(guide.initial_state, json.dumps(doc).encode())
    assert state and guide.is_final(state)
    # the root, its 8 members in any order (the object's own node, and the rest of it after
    # p3: a node per set of members written), its extra member, p3's definition and the two
    # values it calls (a small object takes its members in any order, values as calls):
    # never the other 7 definitions
    assert split.n_compiled <= 7
    compiled = {split._schemas[n][1] for n in split._nodes}
    assert not any(f"/p{i}" in p for p in compiled for i in range(8) if i != 3), compiled


@pytest.mark.parametrize(
    "target",
    [
        {"type": "integer", "minimum": 5, "maximum": 4},
        {"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2},
        {"const": 3, "type": "string"},
        {"type": "string", "format": "date", "minLength": 11},
        {"$ref": "#/definitions/empty"},
    ],
)
def test_an_empty_reference_is_never_started(target: dict) -> None:
    schema = {
        "definitions": {"bad": target, "empty": {"enum": []}},
        "type": "object",
        "properties": {
            "p": {"type": "object", "properties": {"q": {"$ref": "#/definitions/bad"}}, "required": ["q"]}
        },
        "additionalProperties": False,
    }
    assert not _surely_satisfiable(schema["properties"]["p"], schema)
    vocab = load_vocab("spm32k")
    guide = PushdownGuide(SplitSchema(schema), vocab)
    assert guide.is_final(guide.advance(guide.initial_state, b"{}"))
    opened = guide.advance(guide.initial_state, b'{"')
    assert not opened  # "p" cannot be completed, so its key is never begun


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "integer", "minimum": 0, "maximum": 2}, True),
        ({"type": "integer", "minimum": 0.5, "maximum": 1.5}, False),  # (1 fits, but: compile to know)
        ({"type": "number", "exclusiveMinimum": True, "minimum": 1}, False),
        ({"type": "string", "format": "email"}, True),
        ({"type": "string", "minLength": 300, "maxLength": 5000}, True),
        ({"type": "string", "minLength": 5, "maxLength": 4}, False),
        ({"const": None, "type": ["null", "string"]}, True),
    ],
)
def test_surely_satisfiable_is_cautious(schema: dict, expected: bool) -> None:
    assert _surely_satisfiable(schema) == expected


def test_no_node_number_holds_the_call_byte() -> None:
    # a call is 0xFF and three number bytes; node 255 used to be "0xFF 0x00 0x00 0xFF", whose
    # last byte read as another call (IndexError, or a call to a wrong node)
    items = [{"type": "object", "properties": {f"k{i}": {}}, "required": [f"k{i}"]} for i in range(300)]
    schema = {"type": "object", "properties": {"a": {"type": "array", "prefixItems": items, "items": False}}}
    split = SplitSchema(schema)
    split.compile_all()
    callees = {c for node in split._nodes.values() for pairs in node.calls.values() for c, _ in pairs}
    assert len(callees) > 256 and max(callees) < split.n_registered and 255 not in callees
    guide = PushdownGuide(split, load_vocab("spm32k"))
    doc = {"a": [{f"k{i}": i} for i in range(300)]}
    state = guide.advance(guide.initial_state, json.dumps(doc).encode())
    assert state and guide.is_final(state)


def test_leaves_that_differ_only_in_annotations_share_one_node() -> None:
    """``description``, ``title``, ``examples`` and unknown keywords do not change a value's
    language: such leaves are one node, compiled (and their masks computed) once."""
    notes = [
        {"description": "the first"},
        {"title": "Second", "examples": ["x"]},
        {"markdownDescription": "*third*", "$comment": "c"},
        {},
    ]
    schema = {
        "type": "object",
        "properties": {f"p{i}": {"type": "string", "maxLength": 7, **note} for i, note in enumerate(notes)},
    }
    schema["properties"]["p4"] = {"type": "string", "maxLength": 8, "description": "the first"}
    split = SplitSchema(schema)
    split.compile_all()
    schemas = [split._schemas[n][0] for n in split._nodes]
    strings = [s for s in schemas if isinstance(s, dict) and s.get("type") == "string"]
    assert sorted(s["maxLength"] for s in strings) == [7, 8]  # (a keyword that constrains: apart)
    guide = PushdownGuide(split, load_vocab("spm32k"))
    text = json.dumps({"p2": "abcdefg", "p0": "a"}).encode()
    state = guide.advance(guide.initial_state, text)
    assert state and guide.is_final(state)
    assert not guide.advance(guide.initial_state, json.dumps({"p3": "abcdefgh"}).encode())


RECURSIVE_THROUGH_ONE_OF = {
    # oneOf made exclusive: each branch meets the other's negation, and the compiler builds a new
    # allOf of the ``$ref`` and that negation at every level; equal by content, they are one node
    "$defs": {
        "node": {
            "oneOf": [
                {"properties": {"kids": {"items": {"$ref": "#/$defs/node"}}}, "unevaluatedProperties": False},
                {"additionalProperties": {"contains": {"type": "integer"}}},
            ]
        }
    },
    "$ref": "#/$defs/node",
}


def test_a_recursion_through_built_subschemas_compiles_to_finitely_many_nodes() -> None:
    split = split_schema(prepare_schema(RECURSIVE_THROUGH_ONE_OF)[0], None, False, None)
    split.compile_all()  # (unrolled into a new node per level before: it never finished)
    assert split.n_compiled <= 20
    guide = PushdownGuide(split, load_vocab("spm32k"))
    validator = jsonschema.Draft202012Validator(RECURSIVE_THROUGH_ONE_OF)

    def accepted(doc: object) -> bool:
        state = guide.advance(guide.initial_state, json.dumps(doc).encode())
        return bool(state and guide.is_final(state))

    deep = [{"kids": [{"kids": [{"kids": [{"kids": []}]}]}]}, {"kids": [{"kids": [{"x": [2]}]}]}]
    assert all(validator.is_valid(doc) and accepted(doc) for doc in [{"kids": []}, *deep])
    # (the exclusive oneOf is enforced as a valid subset here: some valid documents are refused)
    for doc in [
        {"kids": [{"kids": [{}]}]},
        {"kids": [{"kids": [{"kids": [[]]}]}]},
        {"kids": [{"kids": [{"kids": [1]}]}]},
    ]:
        assert not accepted(doc) or validator.is_valid(doc), doc


def test_a_step_that_compiles_many_pieces_is_refused_past_the_schema_budget() -> None:
    """Each piece has its own budget, and one step's pieces together the schema's: a schema whose
    pieces keep coming is refused with an error, not compiled for minutes."""
    import outlines_gguf.json_schema.split as split_module

    def item(i: int) -> dict:  # (distinct: equal subschemas would share one piece)
        return {
            "type": "object",
            "properties": {"a": {"type": "integer", "minimum": i}, "b": {"const": f"x{i}"}},
        }

    schema = {
        "type": "object",
        "properties": {f"p{i}": {"type": "array", "items": item(i)} for i in range(30)},
    }
    SplitSchema(schema).compile_all()
    with mock.patch.object(split_module, "MAX_SCHEMA_WORK", 200_000):
        split = SplitSchema(schema)
        with pytest.raises(
            ConstraintTooComplexError, match=r"JSON schema is too complex.*all its pieces together"
        ):
            split.compile_all()


def test_a_split_schema_pickled_half_compiled_goes_on_with_its_nodes_found_by_content() -> None:
    """What is keyed by object ids is made again from the objects after unpickling (another
    process gives them other ids): the recursion still closes, and the documents still read."""
    split = split_schema(prepare_schema(RECURSIVE_THROUGH_ONE_OF)[0], None, False, None)
    copy = pickle.loads(pickle.dumps(split))
    copy.compile_all()
    assert copy.n_compiled <= 20
    guide = PushdownGuide(copy, load_vocab("spm32k"))
    validator = jsonschema.Draft202012Validator(RECURSIVE_THROUGH_ONE_OF)
    for doc in [{"kids": []}, {"kids": [{"kids": [{"kids": [{"kids": []}]}]}]}, {"kids": [{}]}]:
        state = guide.advance(guide.initial_state, json.dumps(doc).encode())
        accepted = bool(state and guide.is_final(state))
        assert accepted == validator.is_valid(doc) or (not accepted and copy.subsets), doc


@pytest.mark.parametrize("whitespace", [None, r"[ \n]{0,2}"])
def test_extra_members_of_any_value_share_one_automaton_whose_calls_are_each_schemas_own(
    whitespace: str | None,
) -> None:
    """``: value`` of an extra member of any value is built once per process and compiler
    settings (``_any_value_member``): its call is retargeted to each schema's own node for any
    value, whatever number that node has there (here a different one in each schema)."""
    from outlines_gguf import JSONLogitsProcessor
    from outlines_gguf.json_schema.split import STAND_IN_CALLS

    vocab = load_vocab("spm32k")
    small = {"type": "object", "properties": {"a": {"type": "integer"}}}
    nested = {"type": "object", "properties": {"c": {"type": "array"}}}
    wide = {"type": "object", "properties": {"b": nested, "d": {"type": "array"}}}
    doc = {"a": 1, "x": {"y": [1, {"z": None}], "w": "v"}, "b": {"c": [[]]}, "d": [{}]}
    for schema in (small, wide, small):
        kept = {k: v for k, v in doc.items() if k not in ("b", "d") or k in schema["properties"]}
        processor = JSONLogitsProcessor(schema, vocab, whitespace_pattern=whitespace)
        split = processor.guide.schema  # type: ignore[attr-defined]
        split.compile_all()
        callees = {c for n in split._nodes.values() for pairs in n.calls.values() for c, _ in pairs}
        assert callees and max(callees) < STAND_IN_CALLS
        assert processor.accepts(json.dumps(kept))
        assert processor.accepts(json.dumps({"x": [{"y": {}}], "a": 2}))
        wrong = {"a": "1", "x": 1} if schema is small else {"b": 1, "x": 1}
        assert not processor.accepts(json.dumps(wrong))
        assert not processor.accepts('{"x": {"y": [1,]}}')

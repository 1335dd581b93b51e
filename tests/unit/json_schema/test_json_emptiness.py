"""Which values can be finished is decided lazily and exactly: before a mask can lead into a
value, the value's node is proven finishable (one accepting path, through callees already
proven or certainly satisfiable, suffices) or refuted, compiling as few nodes as that takes. A
cycle of calls with no way out finishes nothing (a least fixpoint), so a value that no
document can complete is never begun."""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import jsonschema
import numpy as np
import pytest
from conftest import load_vocab
from pushdown_oracle import random_walk_text

from outlines_gguf import JSONLogitsProcessor, SchemaError
from outlines_gguf.json_schema.pushdown import PushdownGuide
from outlines_gguf.json_schema.split import SplitSchema, _surely_satisfiable

LOOP = {"type": "object", "properties": {"next": {"$ref": "#/$defs/loop"}}, "required": ["next"]}
"""An object that must hold another one like it: no finite document."""


def test_recursion_with_no_way_out_is_refused() -> None:
    with pytest.raises(SchemaError, match="no JSON value satisfies"):
        SplitSchema({**LOOP, "properties": {"next": {"$ref": "#"}}})
    mutual = {
        "$defs": {
            "a": {"type": "array", "items": {"$ref": "#/$defs/b"}, "minItems": 1},
            "b": {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}, "required": ["a"]},
        },
        "$ref": "#/$defs/a",
    }
    with pytest.raises(SchemaError, match="no JSON value satisfies"):
        SplitSchema(mutual)


def test_a_value_with_no_finite_document_is_never_begun() -> None:
    vocab = load_vocab("spm32k")
    schema = {
        "$defs": {"loop": LOOP},
        "type": "object",
        "properties": {"p": {"$ref": "#/$defs/loop"}, "q": {"type": "integer"}},
        "additionalProperties": False,
    }
    guide = PushdownGuide(SplitSchema(schema), vocab)
    assert guide.is_final(guide.advance(guide.initial_state, b"{}"))
    assert guide.advance(guide.initial_state, b'{"q": 1}')
    assert not guide.advance(guide.initial_state, b'{"p')  # "p" cannot be completed
    # with a way out (null ends the chain), the same recursion nests to any depth
    way_out = {**LOOP, "properties": {"next": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/loop"}]}}}
    finite = {**schema, "$defs": {"loop": way_out}}
    processor = JSONLogitsProcessor(finite, vocab)
    deep = json.dumps({"p": json.loads('{"next": ' * 30 + "null" + "}" * 30)})
    assert processor.accepts(deep)


def test_a_union_is_proven_by_one_branch_not_compiled_whole() -> None:
    # twelve alternatives of a job, each needing a value that must be compiled to be known
    # (a pattern), with nested values of their own: the first mask compiles one branch's way
    # to acceptance, not all twelve (the old activation compiled every branch and, through
    # each, everything they needed)
    def job(i: int) -> dict:
        nested = {
            "type": "object",
            "properties": {"r": {"type": "string", "pattern": f"^r{i}+$"}},
            "required": ["r"],
        }
        return {
            "type": "object",
            "properties": {"s": {"type": "string", "pattern": f"^s{i}+$"}, "t": nested},
            "required": ["s", "t"],
        }

    schema = {"type": "object", "properties": {"job": {"anyOf": [job(i) for i in range(12)]}}}
    split = SplitSchema(schema)
    guide = PushdownGuide(split, load_vocab("spm32k"))
    guide.mask(guide.initial_state)
    compiled = [split._schemas[n][1] for n in split._nodes]
    branches = {p.split("/anyOf/")[1].split("/")[0] for p in compiled if "/anyOf/" in p}
    assert len(branches) <= 2, compiled
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    assert processor.accepts('{"job": {"s": "s7", "t": {"r": "r77"}}}')
    assert not processor.accepts('{"job": {"s": "s7", "t": {"r": "r6"}}}')


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"anyOf": [{"enum": []}, {"type": "string"}]}, True),
        ({"anyOf": [{"enum": []}, {"type": "integer", "minimum": 3, "maximum": 2}]}, False),
        ({"type": "integer", "anyOf": [{"type": "string"}]}, False),  # no string is an integer
        ({"type": "number", "anyOf": [{"type": "integer", "minimum": 0, "maximum": 9}]}, True),
        ({"anyOf": [{"type": "string"}], "oneOf": [{"type": "string"}]}, False),
        ({"oneOf": [{"type": "string"}, {"type": "array"}]}, True),
        ({"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 2}]}, False),  # may overlap
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, False),
        ({"oneOf": [{"type": "integer"}, {}]}, False),
        ({"oneOf": [{"type": "object", "required": ["a"]}, {"$ref": "#/$defs/text"}]}, True),
        ({"type": "array", "minItems": 2, "items": {"type": "integer"}}, True),
        ({"type": "array", "minItems": 2, "maxItems": 1}, False),
        ({"type": "array", "minItems": 2, "uniqueItems": True, "items": {"enum": [1]}}, False),
        ({"type": "array", "minItems": 1, "items": {"enum": []}}, False),
        ({"type": "array", "maxItems": 3, "items": {"enum": []}}, True),  # the empty array
        ({"type": "array", "minItems": 1, "items": [{"type": "string"}]}, False),  # (compile to know)
    ],
)
def test_surely_satisfiable_unions_and_item_counts(schema: dict, expected: bool) -> None:
    root = {"$defs": {"text": {"type": "string"}}, "properties": {"x": schema}}
    split = SplitSchema(root)
    assert _surely_satisfiable(schema, root, types=split._possible_types) == expected
    if expected:  # what is certain is true: some value validates, and the compiled node accepts one
        assert split.node(split.register(schema, "#/properties/x")).free_accept or _finishable(split, schema)


def _finishable(split: SplitSchema, schema: dict) -> bool:
    number = split.register(schema, "#/properties/x")
    split.node(number)
    return number in split._productive


_LEAVES: list[Any] = [
    {"type": "integer", "minimum": 0, "maximum": 9},
    {"type": "string", "pattern": "^a+$"},
    {"type": "string", "maxLength": 3},
    {"enum": []},  # empty
    {"type": "integer", "minimum": 5, "maximum": 4},  # empty
    {"type": "boolean"},
    {"type": "null"},
]


def _random_schema(rng: np.random.Generator, names: list[str], depth: int = 0, ref: bool = False) -> Any:
    """Objects, arrays, unions and references to definitions (themselves random, some with
    no finite document), over leaves some of which are empty. References stand only where a
    value is nested (``ref``), so that no definition is a cycle of references and unions."""
    r = rng.random()
    if ref and r < 0.2:
        return {"$ref": f"#/$defs/{names[int(rng.integers(len(names)))]}"}
    if depth >= 3 or r < 0.4:
        return _LEAVES[int(rng.integers(len(_LEAVES)))]
    if r < 0.6:
        keys = ["a", "b", "c"][: int(rng.integers(1, 4))]
        props = {k: _random_schema(rng, names, depth + 1, True) for k in keys}
        required = [k for k in keys if rng.random() < 0.5]
        return {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    if r < 0.75:
        array: dict = {"type": "array", "items": _random_schema(rng, names, depth + 1, True), "maxItems": 3}
        if rng.random() < 0.6:
            array["minItems"] = int(rng.integers(1, 3))
        return array
    key = "anyOf" if rng.random() < 0.6 else "oneOf"
    return {key: [_random_schema(rng, names, depth + 1) for _ in range(int(rng.integers(1, 4)))]}


def _exact_productive(split: SplitSchema) -> set[int]:
    """The least fixpoint over every node compiled (all reachable ones are), by a forward
    search of each node's states: text edges, and a call to a productive callee as an edge to
    its return state."""
    nodes = split._nodes
    productive: set[int] = set()

    def finishes(number: int) -> bool:
        node = nodes[number]
        table, accepting = node.dfa.transitions, node.dfa.accepting
        seen, queue = {0}, deque([0])
        while queue:
            state = queue.popleft()
            if accepting[state]:
                return True
            nexts = set(table[state][table[state] >= 0].tolist())
            nexts |= {ret for callee, ret in node.calls.get(state, ()) if callee in productive}
            for n in nexts - seen:
                seen.add(n)
                queue.append(n)
        return False

    changed = True
    while changed:
        changed = False
        for number in nodes:
            if number not in productive and all(n in productive for n in nodes[number].needs):
                if finishes(number):
                    productive.add(number)
                    changed = True
    return productive


def test_random_schemas_decide_emptiness_as_the_whole_fixpoint_does() -> None:
    # whatever the logits, no mask is empty and a finished text is valid; every decision taken
    # lazily agrees with the least fixpoint over the whole schema compiled
    vocab = load_vocab("spm32k")
    rng = np.random.default_rng(7)
    refused = walked = 0
    for _ in range(60):
        names = ["d0", "d1", "d2"]
        defs = {name: _random_schema(rng, names, 1) for name in names}
        schema = {"$defs": defs, **_random_schema(rng, names)}
        try:
            split = SplitSchema(schema)
        except SchemaError as exc:
            if "oneOf" in str(exc):
                continue  # (a oneOf that cannot be made exclusive: refused, as designed)
            assert "no JSON value satisfies" in str(exc), exc
            assert _satisfiable_oracle(schema) in (False, None), schema
            refused += 1
            continue
        assert _satisfiable_oracle(schema) in (True, None), schema
        guide = PushdownGuide(split, vocab)
        validator = jsonschema.Draft202012Validator(schema)
        for _ in range(3):
            text = random_walk_text(guide, vocab, rng, 80, 0.4)
            if text is not None:
                walked += 1
                assert validator.is_valid(json.loads(text)), (schema, text)
        proven, refuted = set(split._productive), set(split._unproductive)
        split.compile_all()
        exact = _exact_productive(split)
        assert proven <= exact, schema
        assert not refuted & exact, schema
    assert refused and walked > 60


def _satisfiable_oracle(schema: dict) -> bool | None:
    """Whether some value satisfies a schema of ``_random_schema``'s kinds, straight from the
    keywords (the definitions by a least fixpoint); None where a ``oneOf`` is involved."""
    if "oneOf" in json.dumps(schema):
        return None
    defs = schema["$defs"]
    known = dict.fromkeys(defs, False)

    def sat(s: Any) -> bool:
        if "$ref" in s:
            return known[s["$ref"].rsplit("/", 1)[1]]
        if "anyOf" in s:
            return any(sat(b) for b in s["anyOf"])
        if s.get("type") == "object":
            return all(sat(s["properties"][k]) for k in s["required"])
        if s.get("type") == "array":
            return s.get("minItems", 0) == 0 or sat(s["items"])
        return s not in ({"enum": []}, {"type": "integer", "minimum": 5, "maximum": 4})

    changed = True
    while changed:
        changed = False
        for name, definition in defs.items():
            if not known[name] and sat(definition):
                known[name] = changed = True
    return sat({k: v for k, v in schema.items() if k != "$defs"})


@pytest.mark.parametrize("never", [{"not": {}}, False, {"allOf": [{"type": "number"}, {"type": "boolean"}]}])
def test_a_node_compiled_after_its_callee_was_refuted_does_not_call_it(never: Any) -> None:
    """Found by ``benchmarks/soundness_fuzz.py``: the items of ``kids`` are the same object as
    the root, compiled later, after the root's compile had refuted ``v``'s value; the cut of the
    calls to it only saw the nodes compiled then, so inside an item ``{"v": `` was allowed, a
    dead end. Every node is cut as it is first used."""
    node = {"properties": {"v": never, "kids": {"items": {"$ref": "#/$defs/node"}}}}
    schema = {"$defs": {"node": node}, "$ref": "#/$defs/node"}
    guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))
    for prefix in ('{"v": ', '{"kids": [{"v": ', '{"kids": [{}, {"kids": [{"v": '):
        assert not guide.advance(guide.initial_state, prefix.encode()), prefix
    assert guide.advance(guide.initial_state, b'{"kids": [{"kids": []}, {"w": 1}]}')

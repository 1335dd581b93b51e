"""The JSON pushdown engine (json_pushdown): exact masks, unbounded recursion, per-node compiles.

Masks are checked against the whole-schema DFA engine (itself checked against a brute force in
test_json_generation/test_guide_oracle) on schemas both engines compile exactly, at every state
along real documents; recursion beyond any fixed depth is checked on documents the DFA engine
cannot express; random-logit generations are judged by ``jsonschema``.
"""

from __future__ import annotations

import json
import re

import jsonschema
import numpy as np
import pytest
from conftest import load_vocab
from sampling import closing_bias, generate

from outlines_gguf import ConstraintViolationError, JSONLogitsProcessor, SchemaError
from outlines_gguf.compiler import compile_json_schema
from outlines_gguf.json_schema import objects as json_schema_objects
from outlines_gguf.json_schema.pushdown import PushdownGuide
from outlines_gguf.json_schema.split import SplitSchema

REFUSED = r"does not fit|no allowed token"
"""What refusing a text looks like: next_state raises, or no allowed token continues it."""

NESTED = {
    "type": "object",
    "properties": {
        "a": {
            "type": "object",
            "properties": {
                "b": {"type": "integer", "minimum": -5},
                "c": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"x": {"type": "string", "maxLength": 5}},
                        "required": ["x"],
                    },
                },
            },
            "required": ["b"],
        },
        "d": {"type": "boolean"},
        "e": {"anyOf": [{"type": "array", "items": {"type": "number"}}, {"type": "null"}]},
    },
    "required": ["a"],
}
NESTED_DOCS = [
    {"a": {"b": 1, "c": [{"x": "hi"}, {"x": ""}]}, "d": True, "e": [1.5, -2]},
    {"a": {"b": -3}, "e": None},
    {"a": {"b": 0, "c": []}, "e": []},
]
UNION = {
    "type": "array",
    "items": {
        "anyOf": [
            {"type": "object", "properties": {"k": {"const": 1}}, "required": ["k"]},
            {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
        ]
    },
}
UNION_DOCS = [[{"k": 1}, [1, 2, 3], []], []]
SHARED = {
    "$defs": {
        "p": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
        }
    },
    "type": "object",
    "properties": {"x": {"$ref": "#/$defs/p"}, "y": {"$ref": "#/$defs/p"}},
}
SHARED_DOCS = [{"x": {"name": 'a"b', "tags": ["q", "r"]}, "y": {}}]
WIDE = {  # more properties than MEMBER_CHUNK: written as runs of members, each a node
    "type": "object",
    "properties": {f"f{i}": {"type": "integer"} if i % 2 else {"type": "string"} for i in range(40)},
    "required": ["f17"],
}
WIDE_DOCS = [{"f17": 1}, {"f0": "a", "f3": 4, "f17": 5, "f39": 6}, {"f16": "x", "f17": 0, "f18": "y"}]
SCALARS = {  # a long string among other types: the string branch is a call to a counted node
    "type": "object",
    "properties": {
        "v": {"anyOf": [{"type": "string", "maxLength": 40}, {"type": "boolean"}, {"type": "number"}]},
        "w": {"oneOf": [{"type": "null"}, {"type": "string", "minLength": 35}, {"type": "integer"}]},
    },
}
SCALARS_DOCS = [{"v": "x" * 40, "w": None}, {"v": True, "w": "y" * 36}, {"v": -1.5, "w": 7}, {"v": ""}]
TEXTS = {  # texts whose plain characters are counted and the rest walked: enums, formats, patterns
    "type": "object",
    "properties": {
        "kind": {"enum": ["alpha", "alphabet", "beta", "b\"quoted\"", "naïve", "tab\there"]},
        "when": {"type": "string", "format": "date-time"},
        "mail": {"type": "string", "format": "email"},
        "code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]+$"},
        "fixed": {"const": "the same words"},
        "tag": {"type": "string", "enum": ["x", "xy", "xyz"]},
    },
}
TEXTS_DOCS = [
    {"kind": "alphabet", "when": "2024-02-29T23:59:60Z", "mail": "a.b@example.org", "code": "AB-0012"},
    {"kind": 'b"quoted"', "fixed": "the same words", "tag": "xy"},
    {"kind": "beta", "when": "1999-12-31T00:00:00.5+02:00", "tag": "xyz"},  # (naïve: one spelling, raw)
    {"kind": "tab\there", "code": "ZZ-9"},
]
TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "v": {"type": "integer"},
                "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["v"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}


def _texts(doc: object) -> list[bytes]:
    return [json.dumps(doc).encode(), json.dumps(doc, separators=(",", ":")).encode()]


def _walk(guide, data: bytes, vocab, rng: np.random.Generator, check=None) -> object:
    """Feed ``data`` token by token (a random allowed token that is a prefix of the rest);
    ``check(state, position)`` runs before every token. Returns the last state."""
    state, pos = guide.initial_state, 0
    while pos < len(data):
        if check is not None:
            check(state, pos)
        allowed = guide.mask(state).allowed_ids(vocab.size).tolist()
        fits = [i for i in allowed if vocab.tokens[i] and data.startswith(vocab.tokens[i], pos)]
        assert fits, f"no allowed token continues {data[:pos]!r} with {data[pos : pos + 10]!r}"
        token = fits[int(rng.integers(len(fits)))]
        state = guide.next_state(state, token)
        pos += len(vocab.tokens[token])
    return state


def _accepts(guide, data: bytes, vocab, rng: np.random.Generator) -> bool:
    """The whole of ``data`` is a complete value for the guide."""
    try:
        return bool(guide.is_final(_walk(guide, data, vocab, rng)))
    except Exception as exc:
        assert re.search(REFUSED, str(exc)), exc
        return False


@pytest.mark.parametrize("vocab_name", ["spm32k", "llama3-128k", "qwen2-152k"])
@pytest.mark.parametrize(
    ("schema", "docs"),
    [
        (NESTED, NESTED_DOCS),
        (UNION, UNION_DOCS),
        (SHARED, SHARED_DOCS),
        (WIDE, WIDE_DOCS),
        (SCALARS, SCALARS_DOCS),
        (TEXTS, TEXTS_DOCS),
    ],
    ids=["nested", "union", "shared", "wide", "scalars", "texts"],
)
def test_masks_equal_the_whole_schema_dfa_along_documents(vocab_name, schema, docs, monkeypatch) -> None:
    """Where the whole-schema DFA is exact (no recursion, no free-form nesting), both engines
    allow exactly the same tokens at every state along valid documents (keys in declared order
    in both: the pushdown engine's any-order small objects are checked in test_json_coverage)."""
    vocab = load_vocab(vocab_name)
    old = JSONLogitsProcessor(schema, vocab, engine="dfa", extra_properties=False).guide
    monkeypatch.setattr(json_schema_objects, "ANY_ORDER_MAX", 1)
    new = PushdownGuide(SplitSchema(schema, extra_properties=False), vocab)
    rng = np.random.default_rng(0)
    for doc in docs:
        for data in _texts(doc):
            trail = [old.initial_state]

            def check(state, pos, data=data, trail=trail) -> None:
                a = old.mask(trail[-1]).allowed_ids(vocab.size)
                b = new.mask(state).allowed_ids(vocab.size)
                assert np.array_equal(a, b), (data[:pos], set(a.tolist()) ^ set(b.tolist()))

            state = new.initial_state
            pos = 0
            while True:
                check(state, pos)
                if pos >= len(data):
                    break
                allowed = new.mask(state).allowed_ids(vocab.size).tolist()
                fits = [i for i in allowed if vocab.tokens[i] and data.startswith(vocab.tokens[i], pos)]
                token = fits[int(rng.integers(len(fits)))]
                state = new.next_state(state, token)
                trail.append(old.next_state(trail[-1], token))
                pos += len(vocab.tokens[token])
            assert new.is_final(state) and old.is_final(trail[-1])


def test_recursion_has_no_depth_limit() -> None:
    vocab = load_vocab("llama3-128k")
    guide = JSONLogitsProcessor(TREE, vocab).guide
    doc: dict = {"v": 0}
    for depth in range(1, 40):
        doc = {"v": depth, "kids": [doc, {"v": -depth}]}
    state = _walk(guide, json.dumps(doc).encode(), vocab, np.random.default_rng(1))
    assert guide.is_final(state)
    # the whole-schema DFA cuts the recursion at its depth limit
    assert not compile_json_schema(TREE).matches(json.dumps(doc).encode())
    # and a wrong leaf deep inside is still refused
    bad = json.dumps(doc).replace('"v": 3,', '"v": "3",').encode()
    with pytest.raises(Exception, match=REFUSED):
        _walk(guide, bad, vocab, np.random.default_rng(1))


def test_free_form_values_nest_to_any_depth() -> None:
    vocab = load_vocab("qwen2-152k")
    guide = JSONLogitsProcessor({"type": "object", "properties": {"a": {}}}, vocab).guide
    deep = {"a": [[[[[[{"b": {"c": [1, {"d": None}]}}]]]]]], "extra": {"x": [True, "s"]}}
    assert guide.is_final(_walk(guide, json.dumps(deep).encode(), vocab, np.random.default_rng(2)))


def test_shared_definitions_compile_once() -> None:
    defs = {f"d{i}": {"type": "object", "properties": {"n": {"type": "integer"}}} for i in range(5)}
    schema = {
        "$defs": defs,
        "type": "object",
        "properties": {f"p{j}": {"$ref": f"#/$defs/d{j % 5}"} for j in range(200)},
    }
    split = SplitSchema(schema)
    assert split.n_compiled <= 3  # the members' values compile when generation reaches them
    split.compile_all()
    # one node per definition (not per use)
    assert sum(1 for key in split._numbers if key[0] == "ref") == 5
    # besides: the root and its object's own node (its 200 members in any order: the rest of
    # it after each one), one extra-member node per object (root and definitions), and at most
    # two for free-form values (everything compiled)
    assert split.n_registered <= 5 + 2 + 200 + 6 + 2


@pytest.mark.parametrize("vocab_name", ["spm32k", "qwen2-152k"])
@pytest.mark.parametrize(
    "schema", [NESTED, UNION, SHARED, TREE, WIDE], ids=["nested", "union", "shared", "tree", "wide"]
)
def test_random_generations_validate(vocab_name, schema) -> None:
    """Random logits (favouring closing tokens) through the processor: every generation that
    ends validates. Without extra properties, so that random text finishes in 160 tokens."""
    vocab = load_vocab(vocab_name)
    rng = np.random.default_rng(3)
    bias = closing_bias(vocab)
    done = 0
    for _ in range(12):
        processor = JSONLogitsProcessor(schema, vocab, extra_properties=False)
        ids, ended = generate(processor, rng, [1], max_tokens=160, bias=bias)
        assert processor.error is None
        if ended:
            jsonschema.validate(json.loads(vocab.decode(ids)), schema)
            done += 1
    assert done >= 3


def test_extra_keys_may_come_between_declared_ones() -> None:
    """Where the schema allows undeclared keys they may come anywhere, nested to any depth, and
    never as a declared name (whose own schema would then be skipped)."""
    schema = {
        **WIDE,
        "properties": {
            **WIDE["properties"],
            "n": {"type": "object", "properties": {"k": {"type": "integer"}}},
        },
    }
    vocab = load_vocab("llama3-128k")
    guide = JSONLogitsProcessor(schema, vocab).guide
    rng = np.random.default_rng(5)
    doc = b'{"zz": [1, {"q": null}], "f0": "a", "x": {}, "f17": 2, "n": {"k": 1, "extra": "e"}, "y": 3}'
    assert guide.is_final(_walk(guide, doc, vocab, rng))
    for bad in (b'{"f17": 1, "f1": "str"}', b'{"f17": 1, "n": {"k": "s"}}', b'{"zz": 1}'):
        assert not _accepts(guide, bad, vocab, rng), bad


def test_allof_keeps_sibling_keywords_beside_their_siblings() -> None:
    """``items`` next to an allOf that holds ``prefixItems`` applies to every element."""
    schema = {"allOf": [{"prefixItems": [{"minimum": 3}]}], "items": {"minimum": 5}}
    for engine in ("dfa", "pushdown"):
        guide = JSONLogitsProcessor(schema, load_vocab("spm32k"), engine=engine).guide
        vocab = guide.vocabulary
        with pytest.raises(Exception, match=REFUSED):
            _walk(guide, b"[3, 5]", vocab, np.random.default_rng(0))
        assert guide.is_final(_walk(guide, b"[5, 5]", vocab, np.random.default_rng(0)))
    dfa = compile_json_schema(
        {"allOf": [{"properties": {"a": {}}, "additionalProperties": False}], "patternProperties": {"^x": {}}}
    )
    assert dfa.matches(b'{"a": 1}') and not dfa.matches(b'{"x": 1}')


def test_pattern_properties_with_additional_properties() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "patternProperties": {"^x": {"type": "boolean"}},
        "additionalProperties": {"type": "string"},
    }
    for engine in ("dfa", "pushdown"):
        guide = JSONLogitsProcessor(schema, load_vocab("spm32k"), engine=engine).guide
        vocab = guide.vocabulary
        good = b'{"a": 1, "zz": "q", "xa": false}'
        assert guide.is_final(_walk(guide, good, vocab, np.random.default_rng(0)))
        for bad in (b'{"x1": "s"}', b'{"y": 1}', b'{"\\u0061": "s"}'):
            with pytest.raises(Exception, match=REFUSED):
                _walk(guide, bad, vocab, np.random.default_rng(0))


def test_an_unsatisfiable_nested_value_is_never_started() -> None:
    impossible = {"type": "object", "properties": {"x": False}, "required": ["x"]}
    vocab = load_vocab("spm32k")
    guide = JSONLogitsProcessor(
        {"type": "object", "properties": {"a": impossible, "b": {"type": "integer"}}}, vocab
    ).guide
    rng = np.random.default_rng(4)
    with pytest.raises(Exception, match=REFUSED):
        _walk(guide, b'{"a": {', vocab, rng)
    assert guide.is_final(_walk(guide, b'{"b": 2}', vocab, rng))
    with pytest.raises(SchemaError, match="no JSON value"):
        JSONLogitsProcessor({"type": "array", "items": impossible, "minItems": 1}, vocab)


def test_a_self_reference_that_writes_nothing_adds_nothing() -> None:
    """X = X | integer means integers: the reference is followed to the depth limit, which loses
    nothing because it writes nothing."""
    vocab = load_vocab("spm32k")
    guide = JSONLogitsProcessor({"anyOf": [{"$ref": "#"}, {"type": "integer"}]}, vocab).guide
    assert guide.is_final(_walk(guide, b"-12", vocab, np.random.default_rng(0)))
    with pytest.raises(Exception, match=REFUSED):
        _walk(guide, b'"a"', vocab, np.random.default_rng(0))


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 2, "maxLength": 7},
        {"type": ["string", "null"], "maxLength": 5},
        {"type": "string", "pattern": "^[a-zé]+$", "maxLength": 6},
        {"type": "string", "pattern": "b", "minLength": 3, "maxLength": 9},
        {"type": "string", "pattern": "^a", "minLength": 4},
        {"type": "string", "format": "date", "maxLength": 300},
    ],
)
def test_string_leaves_built_directly_count_characters(schema) -> None:
    """String leaves are built as layers of the one-character automaton (over a pattern's):
    lengths count characters however they are written (UTF-8, escapes, surrogate pairs)."""
    dfa = SplitSchema(schema).node(0).dfa
    rng = np.random.default_rng(6)
    alphabet = ["a", "b", "é", "日", "😀", '"', "\\", "\n", "z", "-", "1", "2"]
    checked = 0
    for _ in range(600):
        text = "".join(rng.choice(alphabet) for _ in range(int(rng.integers(0, 11))))
        if schema.get("format") == "date":
            text = rng.choice(["2024-02-29", "2023-02-29", "2024-13-01", text])
        for ascii_only in (True, False):
            data = json.dumps(text, ensure_ascii=ascii_only).encode()
            try:
                jsonschema.validate(text, schema, format_checker=jsonschema.FormatChecker())
                valid = True
            except jsonschema.ValidationError:
                valid = False
            if dfa.matches(data):
                assert valid, (schema, text)
            elif valid and not (ascii_only and "pattern" in schema) and not text.endswith("\n"):
                # (a pattern is matched on characters as written: é, not \u00e9; and "$" is the
                # end of the string, not also the place before a final newline as in Python's re)
                pytest.fail(f"{schema}: {data!r} is valid but refused")
            checked += 1
    assert dfa.matches(b"null") == ("null" in schema["type"])
    assert checked == 1200


def test_a_big_enum_is_one_trie_node() -> None:
    words = [f"value_{i:04d}_{'x' * (i % 7)}" for i in range(5000)]
    schema = {"type": "object", "properties": {"code": {"enum": words}}, "required": ["code"]}
    vocab = load_vocab("qwen2-152k")
    guide = JSONLogitsProcessor(schema, vocab).guide
    rng = np.random.default_rng(7)
    for word in (words[0], words[4321], words[-1]):
        assert _accepts(guide, json.dumps({"code": word}).encode(), vocab, rng)
    assert not _accepts(guide, b'{"code": "value_5000_"}', vocab, rng)
    assert not _accepts(guide, b'{"code": "value_0001_"}', vocab, rng)  # a prefix of value_0001_x


def test_oneof_over_required_sets_means_exactly_one() -> None:
    """``oneOf: [{required: [a]}, {required: [b]}]`` (a common way to say "exactly one of"):
    each branch forbids what makes the others hold."""
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "c": {"type": "integer"}},
        "oneOf": [{"required": ["a"]}, {"required": ["b", "c"]}],
        "additionalProperties": False,
        "x-unknown-keyword": {"ignored": True},
    }
    vocab = load_vocab("spm32k")
    for engine in ("dfa", "pushdown"):
        guide = JSONLogitsProcessor(schema, vocab, engine=engine).guide
        rng = np.random.default_rng(8)
        docs = ({"a": 1}, {"a": 1, "b": 2}, {"b": 1, "c": 2}, {"a": 1, "c": 2}, {"b": 1}, {})
        for doc in (*docs, {"a": 1, "b": 1, "c": 1}):
            valid = jsonschema.Draft202012Validator(schema).is_valid(doc)
            assert _accepts(guide, json.dumps(doc).encode(), vocab, rng) == valid, (engine, doc)


def test_property_names_limit_every_key() -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "integer"}, "NO": {"type": "integer"}},
        "propertyNames": {"pattern": "^[a-z]+$", "maxLength": 4},
    }
    vocab = load_vocab("spm32k")
    for engine in ("dfa", "pushdown"):
        guide = JSONLogitsProcessor(schema, vocab, engine=engine).guide
        rng = np.random.default_rng(9)
        for doc in ({"ok": 1}, {"ok": 1, "abc": [1]}, {"NO": 1}, {"abcde": 1}, {"ab1": 2}, {"x": {"Y": 1}}):
            valid = jsonschema.Draft202012Validator(schema).is_valid(doc)
            assert _accepts(guide, json.dumps(doc).encode(), vocab, rng) == valid, (engine, doc)
    with pytest.raises(SchemaError, match="no JSON value"):
        JSONLogitsProcessor({**schema, "required": ["NO"]}, vocab)


@pytest.mark.parametrize(
    "deps",
    [
        {"dependentRequired": {"card": ["billing"], "gift": ["to", "billing"]}},
        {"dependencies": {"card": ["billing"], "to": {"required": ["gift"]}}},
        {"dependentSchemas": {"card": {"properties": {"billing": {"maxLength": 3}}}}},
    ],
)
def test_dependencies_are_exact(deps) -> None:
    schema = {
        "type": "object",
        "properties": {k: {"type": "string"} for k in ("card", "billing", "gift", "to")},
        "additionalProperties": False,
        **deps,
    }
    vocab = load_vocab("spm32k")
    docs = [  # (keys in declared order: the order generation writes them in)
        *({}, {"card": "a"}, {"card": "a", "billing": "b"}, {"billing": "long"}),
        *({"card": "a", "billing": "long"}, {"gift": "g", "to": "t"}),
        *({"billing": "b", "gift": "g", "to": "t"}, {"to": "t"}),
    ]
    for engine in ("dfa", "pushdown"):
        guide = JSONLogitsProcessor(schema, vocab, engine=engine).guide
        rng = np.random.default_rng(10)
        for doc in docs:
            valid = jsonschema.Draft7Validator(schema).is_valid(doc) and jsonschema.Draft202012Validator(
                schema
            ).is_valid(doc)
            assert _accepts(guide, json.dumps(doc).encode(), vocab, rng) == valid, (engine, doc)


def test_if_then_else_is_exact() -> None:
    schema = {
        "type": "object",
        "properties": {"kind": {"enum": ["a", "b"]}, "size": {"type": "integer"}},
        "required": ["kind", "size"],
        "additionalProperties": False,
        "if": {"properties": {"kind": {"const": "a"}}},
        "then": {"properties": {"size": {"maximum": 3}}},
        "else": {"properties": {"size": {"minimum": 10}}},
    }
    vocab = load_vocab("spm32k")
    docs = [{"kind": k, "size": n} for k in ("a", "b") for n in (1, 5, 12)]
    for engine in ("dfa", "pushdown"):
        guide = JSONLogitsProcessor(schema, vocab, engine=engine).guide
        rng = np.random.default_rng(11)
        for doc in docs:
            valid = jsonschema.Draft202012Validator(schema).is_valid(doc)
            assert _accepts(guide, json.dumps(doc).encode(), vocab, rng) == valid, (engine, doc)


def test_a_property_that_must_be_absent_is_no_member_to_order() -> None:
    # MaskBench Glaiveai2K---calculate_area_3c2d01ed: "dependencies" on an undeclared "shape"
    # writes a branch where "shape" is false; counted as a member, it made the object's three
    # real members four, past ANY_ORDER_MAX, so their order was fixed and a valid document in
    # another order was refused
    dimensions = {
        "dependencies": {"shape": ["rectangle", "circle"]},
        "properties": {k: {"type": "number"} for k in ("length", "radius", "width")},
        "required": ["length", "width", "radius"],
        "type": "object",
    }
    schema = {
        "properties": {"dimensions": dimensions, "shape": {"type": "string"}},
        "required": ["shape", "dimensions"],
        "type": "object",
    }
    vocab = load_vocab("spm32k")
    guide = JSONLogitsProcessor(schema, vocab).guide
    rng = np.random.default_rng(12)
    docs = [
        {"shape": "rectangle", "dimensions": {"length": 10, "width": 5, "radius": 0}},
        {"shape": "rectangle", "dimensions": {"width": 5, "radius": 0, "length": 10}},
        {"shape": "x", "dimensions": {"width": 5, "radius": 0}},
        {"shape": "x", "dimensions": {"width": 5, "radius": 0, "length": 1, "shape": "y"}},
    ]
    for doc in docs:
        valid = jsonschema.Draft7Validator(schema).is_valid(doc)
        assert _accepts(guide, json.dumps(doc).encode(), vocab, rng) == valid, doc
    assert [jsonschema.Draft7Validator(schema).is_valid(d) for d in docs] == [True, True, False, False]


def test_unique_items_from_a_few_values() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tags": {
                "type": "array",
                "items": {"enum": ["a", "b", 1, None]},
                "uniqueItems": True,
                "minItems": 1,
            },
            "flags": {"type": "array", "items": {"type": "boolean"}, "uniqueItems": True},
        },
        "additionalProperties": False,
    }
    vocab = load_vocab("spm32k")
    docs = [
        {"tags": ["a"]},
        {"tags": ["a", "a"]},
        {"tags": []},
        {"tags": [1, "b", None, "a"]},
        {"tags": ["b", 1, "b"]},
        {"flags": [True, False]},
        {"flags": [False, False]},
        {"flags": []},
    ]
    for engine in ("dfa", "pushdown"):
        guide = JSONLogitsProcessor(schema, vocab, engine=engine).guide
        rng = np.random.default_rng(12)
        for doc in docs:
            valid = jsonschema.Draft202012Validator(schema).is_valid(doc)
            assert _accepts(guide, json.dumps(doc).encode(), vocab, rng) == valid, (engine, doc)
    strings = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
    with pytest.raises(SchemaError, match="uniqueItems"):  # (the pushdown remembers them: unique.py)
        JSONLogitsProcessor(strings, vocab, engine="dfa")


def test_allof_with_a_union_is_spread_into_mergeable_branches() -> None:
    """Each part's own automaton would write the keys in its own order (and their product could
    be empty); spread into a union of merged schemas, one order serves them all."""
    schema = {
        "type": "object",
        "properties": {"path": {"type": "string"}, "tags": {"type": "array"}, "ids": {"type": "array"}},
        "additionalProperties": False,
        "allOf": [{"required": ["path"]}, {"anyOf": [{"required": ["tags"]}, {"required": ["ids"]}]}],
    }
    vocab = load_vocab("spm32k")
    docs = [{"path": "p", "tags": []}, {"path": "p", "ids": [1]}, {"path": "p"}, {"tags": []}]
    for engine in ("dfa", "pushdown"):
        guide = JSONLogitsProcessor(schema, vocab, engine=engine).guide
        rng = np.random.default_rng(13)
        for doc in docs:
            valid = jsonschema.Draft202012Validator(schema).is_valid(doc)
            assert _accepts(guide, json.dumps(doc).encode(), vocab, rng) == valid, (engine, doc)


def _random_schema(rng: np.random.Generator) -> dict:
    """A small object schema mixing the keywords the pushdown engine rewrites."""
    leaves = [
        {"type": "integer", "maximum": 5},
        {"type": "string", "maxLength": 2},
        {"enum": ["a", "b"]},
        {"type": "boolean"},
        {"type": ["string", "null"]},
    ]
    names = ["k", "m", "n", "p"][: int(rng.integers(2, 5))]
    props = {n: leaves[int(rng.integers(len(leaves)))] for n in names}
    schema: dict = {"type": "object", "properties": props}
    if rng.random() < 0.5:
        schema["additionalProperties"] = False
    pick = lambda: names[int(rng.integers(len(names)))]  # noqa: E731
    extras = [
        lambda: {"required": [pick()]},
        lambda: {"dependentRequired": {pick(): [pick()]}},
        lambda: {"oneOf": [{"required": [pick()]}, {"required": [pick()]}]},
        lambda: {"allOf": [{"anyOf": [{"required": [pick()]}, {"required": [pick()]}]}]},
        lambda: {
            "if": {"properties": {pick(): {"const": "a"}}},
            "then": {"required": [pick()]},
            "else": {"properties": {pick(): {"type": "boolean"}}},
        },
        lambda: {"propertyNames": {"pattern": "^[kmz]$"}},
        lambda: {"minProperties": 1, "maxProperties": 2},
    ]
    for i in rng.choice(len(extras), size=int(rng.integers(1, 3)), replace=False):
        schema.update(extras[int(i)]())
    return schema


@pytest.mark.parametrize("engine", ["pushdown", "dfa"])
def test_random_schemas_never_accept_invalid_documents(engine: str) -> None:
    """Soundness on random schemas: every document of a pool (keys in any order, extra keys,
    wrong types) that the guide accepts is valid for jsonschema."""
    vocab = load_vocab("spm32k")
    rng = np.random.default_rng(14)
    values = [1, 9, "a", "b", "xyz", True, None, [], {}]
    checked = accepted = 0
    for _ in range(150):
        schema = _random_schema(rng)
        try:
            guide = JSONLogitsProcessor(schema, vocab, engine=engine).guide
        except SchemaError:
            continue
        validator = jsonschema.Draft202012Validator(schema)
        for _ in range(40):
            keys = list(rng.choice(["k", "m", "n", "p", "z"], size=int(rng.integers(0, 4)), replace=False))
            doc = {str(k): values[int(rng.integers(len(values)))] for k in keys}
            data = json.dumps(doc).encode()
            if engine == "dfa":
                end = guide.dfa.run(data)
                ok = end >= 0 and guide.is_final(end)
            else:
                state = guide.advance(guide.initial_state, data)
                ok = bool(state) and guide.is_final(state)
            if ok:
                accepted += 1
                assert validator.is_valid(doc), (schema, doc)
            checked += 1
    assert checked > 1000 and accepted > 50


def test_two_callers_entering_one_node_both_go_on() -> None:
    """Both branches of a union (``dependentRequired`` expanded: ``wd`` absent, or present)
    call the node of ``with`` from their own states, and that node enters its object from its
    start. Each caller's path of calls is its own: the guard against left recursion must not
    take the second caller's call for the first one's made again. (It did, and which branch
    survived depended on the order of a set of configurations: GitHub workflow steps with a
    ``with`` map were rejected or not from one run to the next.)"""
    scalar = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
    schema = {
        "$defs": {"env": {"type": "object", "additionalProperties": scalar, "minProperties": 1}},
        "type": "object",
        "properties": {
            "uses": {"type": "string"},
            "wd": {"type": "string"},
            "with": {
                "$ref": "#/$defs/env",
                "properties": {"args": {"type": "string"}, "entry": {"type": "string"}},
            },
            "tm": {"type": "string"},
        },
        "dependentRequired": {"wd": []},
        "additionalProperties": False,
    }
    guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))
    state = guide.advance(guide.initial_state, b'{"uses": "a", "with": ')
    configs = sorted(state, key=repr)
    forward, backward = guide.closure(configs), guide.closure(configs[::-1])
    assert set(forward) == set(backward)
    validator = jsonschema.Draft202012Validator(schema)
    for doc in (
        {"uses": "a", "with": {"nv": "x"}},
        {"uses": "a", "wd": "b", "with": {"nv": "x"}},
        {"wd": "b", "with": {"nv": 1}, "tm": "c"},
        {"with": {}},
    ):
        text = json.dumps(doc).encode()
        end = guide.advance(guide.initial_state, text)
        assert (bool(end) and guide.is_final(end)) == validator.is_valid(doc), doc


def test_transitions_are_remembered_and_refusals_are_not() -> None:
    """``next_state`` keeps the transitions it has read (generation meets the same states
    again); a token that does not fit is refused every time it is offered."""
    vocab = load_vocab("spm32k")
    guide = PushdownGuide(SplitSchema({"type": "object", "properties": {"n": {"type": "integer"}}}), vocab)
    ids = [vocab.tokens.index(t) for t in (b"{", b'"', b"n", b'"', b":")]
    states = []
    for _ in range(2):
        state = guide.initial_state
        for token in ids:
            state = guide.next_state(state, token)
        states.append(state)
    assert states[0] == states[1] == guide.advance(guide.initial_state, b'{"n":')
    letter = vocab.tokens.index(b"x")
    for _ in range(2):
        with pytest.raises(ConstraintViolationError):
            guide.next_state(states[0], letter)


def test_closures_are_remembered_for_the_schema_version() -> None:
    """The closure of one configuration is computed once per schema version (a cold mask asks
    for the same ones again and again), and again once calls were cut (the version moved)."""
    vocab = load_vocab("spm32k")
    schema = {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "array"}}}}
    guide = PushdownGuide(SplitSchema(schema), vocab)
    (config,) = guide.advance(guide.initial_state, b"[")
    first = guide.closure([config])
    assert len(first) > 1  # (the item's node, called from the array's)
    assert guide.closure([config]) is first
    assert guide.closure(frozenset([config])) is first
    guide.schema.version += 1  # (as a cut does)
    again = guide.closure([config])
    assert again is not first and again == first


def test_a_long_string_in_a_union_is_a_counted_node() -> None:
    """``anyOf: [{type: string, maxLength: 1024}, {type: boolean}, ...]`` at the top of an
    automaton: the string branch is a call to a counted node (masks shared between character
    counts), not a thousand layers inline; the lengths are still exact."""
    schema = {"anyOf": [{"type": "string", "maxLength": 1024}, {"type": "boolean"}, {"type": "null"}]}
    split = SplitSchema(schema)
    root = split.node(0)
    assert root.dfa.n_states < 50 and any(root.calls.values())
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    texts = [('"' + "a" * 1024 + '"', True), ('"' + "a" * 1025 + '"', False), ("true", True), ("1", False)]
    for text, ok in texts:
        assert processor.accepts(text) == ok, text[:20]

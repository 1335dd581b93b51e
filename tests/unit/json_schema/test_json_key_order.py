"""Objects whose declared members come in any order (split mode): up to ANY_ORDER_MAX members,
a node per set of members written, compiled when generation reaches it.

Acceptance is judged by ``jsonschema`` over permutations of the members (extra keys among
them); masks equal a brute force where tokens cross from one set's node into the next; only the
sets a document passes through are compiled; a required member no value can satisfy makes the
object impossible before anything is written.
"""

from __future__ import annotations

import itertools
import json
import random
import re

import jsonschema
import numpy as np
import pytest
from conftest import load_vocab
from pushdown_oracle import brute_force_allowed

from outlines_gguf import JSONLogitsProcessor, SchemaError
from outlines_gguf.automata.dfa import reaching
from outlines_gguf.guides.base import RegexGuide
from outlines_gguf.json_schema.keywords import WRITTEN_KEY
from outlines_gguf.json_schema.objects import ANY_ORDER_MAX, EAGER_ORDER_MAX
from outlines_gguf.json_schema.pushdown import PushdownGuide
from outlines_gguf.json_schema.split import SplitSchema

PROPS = {
    "a": {"type": "integer"},
    "b": {"type": "string", "maxLength": 3},
    "c": {"type": "boolean"},
    "d": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
    "e": {"type": "null"},
    "f": {"enum": [1, "two"]},
}
SCHEMA = {"type": "object", "properties": PROPS, "required": ["a", "c", "f"]}
VALUES = {"a": 1, "b": "s", "c": True, "d": {"x": 2}, "e": None, "f": "two", "z": [1, {}]}
WRONG = {"a": "1", "b": "long", "c": 0, "d": {"y": 1}, "e": 0, "f": 2, "z": None}


def _accepts(guide: PushdownGuide, text: bytes) -> bool:
    try:
        state = guide.advance(guide.initial_state, text)  # type: ignore[arg-type]
    except Exception:
        return False
    return bool(state) and guide.is_final(state)


def _valid(schema: dict, doc: object) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(doc)


def _rest_nodes(split: SplitSchema) -> int:
    """Nodes compiled for a set of members written (not an object's own node: None written)."""
    return sum(
        isinstance(split._schemas[n][0], dict) and split._schemas[n][0].get(WRITTEN_KEY) is not None
        for n in split._nodes
    )


def test_more_members_than_the_eager_limit_take_any_order() -> None:
    assert EAGER_ORDER_MAX < len(PROPS) <= ANY_ORDER_MAX
    guide = PushdownGuide(SplitSchema(SCHEMA), load_vocab("spm32k"))
    rng = random.Random(0)
    checked = valid = 0
    for n in range(len(VALUES) + 1):
        orders = list(itertools.permutations(VALUES, n))
        for keys in rng.sample(orders, min(len(orders), 40)):
            doc = {k: VALUES[k] for k in keys}
            expected = _valid(SCHEMA, doc)
            assert _accepts(guide, json.dumps(doc).encode()) == expected, doc
            checked, valid = checked + 1, valid + expected
            for k in keys:  # one wrong value anywhere: refused
                bad = {**doc, k: WRONG[k]}
                if not _valid(SCHEMA, bad):
                    assert not _accepts(guide, json.dumps(bad).encode()), bad
    assert valid > 50 and checked - valid > 50
    for text in (b'{"a": 1, "c": true, "a": 2, "f": 1}', b'{"f": 1, "c": true, "a": 1, "c": false}'):
        assert not _accepts(guide, text)  # a declared key twice is never written


def test_only_the_sets_a_document_passes_through_are_compiled() -> None:
    assert ANY_ORDER_MAX >= 64
    props = {f"k{i}": {"type": "integer"} for i in range(64)}
    schema = {"type": "object", "properties": props, "required": list(props)[::2]}
    split = SplitSchema(schema)
    guide = PushdownGuide(split, load_vocab("spm32k"))
    keys = list(props)[::-1]
    doc = {k: i for i, k in enumerate(keys)}
    assert _accepts(guide, json.dumps(doc).encode())
    assert _rest_nodes(split) == len(keys)  # one per member written, of 2^64 sets
    split.compile_all()  # every value and the extra member, not the 2^16 sets
    assert _rest_nodes(split) == len(keys)
    missing = {k: doc[k] for k in keys if k != "k0"}  # a required member left out
    assert not _accepts(guide, json.dumps(missing).encode())


def test_a_required_member_nothing_satisfies_makes_the_object_impossible() -> None:
    never = {"type": "string", "pattern": "^(?!a)a$"}  # compiles to nothing
    props = {**PROPS, "g": never}
    with pytest.raises(SchemaError, match="no JSON value"):
        SplitSchema({"type": "object", "properties": props, "required": ["a", "g"]})
    inner = {"type": "object", "properties": props, "required": ["g"]}
    outer = {
        "type": "object",
        "properties": {"o": inner, "p": {"type": "integer"}},
        "additionalProperties": False,
    }
    vocab = load_vocab("spm32k")
    guide = PushdownGuide(SplitSchema(outer), vocab)
    assert _accepts(guide, b'{"p": 1}')
    state = guide.advance(guide.initial_state, b'{"')  # type: ignore[arg-type]
    allowed = guide.mask(state).allowed_ids(vocab.size)
    assert vocab.tokens.index(b"p") in allowed and vocab.tokens.index(b"o") not in allowed
    optional = PushdownGuide(SplitSchema({"type": "object", "properties": props, "required": ["a"]}), vocab)
    assert _accepts(optional, b'{"c": true, "a": 1}')
    assert not _accepts(optional, b'{"c": true, "g": "a", "a": 1}')


@pytest.mark.parametrize("vocab_name", ["spm32k"])
def test_masks_equal_a_brute_force_across_member_sets(vocab_name: str) -> None:
    """At every byte of documents in two orders (extra keys among the members), the mask equals
    every token fed byte by byte: tokens such as ``},`` and ``, "`` cross from the node of one
    set of members written into the next."""
    vocab = load_vocab(vocab_name)
    guide = PushdownGuide(SplitSchema(SCHEMA), vocab)
    docs = [
        {"f": 1, "z": [1], "d": {"x": 2}, "c": False, "a": -3},
        {"a": 10, "c": True, "b": "xy", "zz": {}, "e": None, "f": "two"},
    ]
    for doc in docs:
        assert _valid(SCHEMA, doc)
        data = json.dumps(doc).encode()
        for cut in range(len(data) + 1):
            state = guide.advance(guide.initial_state, data[:cut])  # type: ignore[arg-type]
            got = guide.mask(state).allowed_ids(vocab.size)
            assert np.array_equal(got, brute_force_allowed(guide, state, vocab)), data[:cut]


def test_an_impossible_object_is_only_one_branch_of_a_union() -> None:
    # dependencies expand into a union of objects, most of them impossible ("base" required
    # and absent); the required values an object waits for belong to its own node, not to
    # the union that holds it (the union was taken for impossible)
    dimensions = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"base": {"type": "number"}, "height": {"type": "number"}},
        "required": ["base", "height"],
        "dependencies": {"base": ["triangle"], "height": ["triangle", "rectangle"]},
    }
    guide = PushdownGuide(SplitSchema(dimensions), load_vocab("spm32k"))
    docs = [
        {"base": 1, "height": 2, "triangle": 0, "rectangle": 0},
        {"rectangle": 0, "height": 2, "triangle": 0, "base": 1},
        {"base": 1, "height": 2, "triangle": 0},
        {"base": 1, "height": 2},
    ]
    verdicts = [jsonschema.Draft7Validator(dimensions).is_valid(d) for d in docs]
    assert verdicts == [True, True, False, False]
    for doc, valid in zip(docs, verdicts, strict=True):
        assert _accepts(guide, json.dumps(doc).encode()) == valid, doc


def test_objects_with_the_same_members_keep_their_own_requirements() -> None:
    # anyOf of required sets: two objects with one members dict that require different keys;
    # their nodes per set of members written were once shared (keyed by the members alone), so
    # the second object's documents were judged by the first one's "required"
    schema = {"type": "object", "properties": PROPS, "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}
    guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))
    values = {k: VALUES[k] for k in ("a", "b", "c", "e")}
    verdicts = []
    for n in range(len(values) + 1):
        for keys in itertools.permutations(values, n):
            doc = {k: values[k] for k in keys}
            verdicts.append(_valid(schema, doc))
            assert _accepts(guide, json.dumps(doc).encode()) == verdicts[-1], doc
    assert 10 < sum(verdicts) < len(verdicts) - 4


@pytest.mark.parametrize("closed", [False, True])
@pytest.mark.parametrize(("low", "high"), [(1, None), (2, None), (0, 2), (2, 3), (3, 3), (1, 4)])
def test_counted_members_come_in_any_order(low: int, high: int | None, closed: bool) -> None:
    """maxProperties and minProperties count declared and extra members alike (the keys of
    extra members kept distinct by the guide over this one, ``test_json_distinct_keys``: here
    texts without a repeated key); the members come in any order, and a mask never opens a
    member after which the counts cannot be met."""
    schema: dict = {"type": "object", "properties": PROPS, "required": ["c"], "minProperties": low}
    if high is not None:
        schema["maxProperties"] = high
    if closed:
        schema["additionalProperties"] = False
    vocab = load_vocab("spm32k")
    guide = PushdownGuide(SplitSchema(schema, remember_keys=True), vocab)
    values = {**{k: VALUES[k] for k in ("a", "c", "e", "f", "z")}, "y": 2}
    verdicts = []
    rng = random.Random(low * 10 + (high or 0))
    for n in range(len(values) + 1):
        orders = list(itertools.permutations(values, n))
        for keys in rng.sample(orders, min(len(orders), 30)):
            doc = {k: values[k] for k in keys}
            verdicts.append(_valid(schema, doc))
            assert _accepts(guide, json.dumps(doc).encode()) == verdicts[-1], doc
    assert 5 < sum(verdicts) < len(verdicts) - 5
    # no dead ends: random walks that always take an allowed token finish the object
    generator = np.random.default_rng(low)
    for _ in range(3):
        state = guide.initial_state
        text = b""
        for _ in range(200):
            if guide.is_final(state) and generator.random() < 0.3:
                break
            allowed = guide.mask(state).allowed_ids(vocab.size)
            allowed = allowed[~np.isin(allowed, list(vocab.eog_ids))]
            if not allowed.size:  # only the end: the object is complete
                assert guide.is_final(state), text
                break
            token = int(generator.choice(allowed))
            text += vocab.tokens[token]
            state = guide.next_state(state, token)
        if guide.is_final(state):
            assert _valid(schema, json.loads(text)), text


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"error": {"type": "string"}}},  # (a direct key automaton)
        {"properties": {'a"b': {"type": "integer"}}, "additionalProperties": {"type": "integer"}},
        {  # keys outside patterns (a control character's key must hold a string)
            "properties": {'a"b': {"type": "integer"}},
            "patternProperties": {"^x": {"type": "integer"}, "\u0016": {"type": "string"}},
            "additionalProperties": {"type": "integer"},
        },
    ],
)
def test_extra_keys_take_the_escapes_of_characters_no_name_holds(schema: dict) -> None:
    # (GitHub schemas' instances with keys such as 'error\\": null, // or ...': valid, rejected;
    # generated documents with keys such as "\\u0016a", as json.dumps writes control characters)
    # an escape of a character no declared name holds makes the key another one; the other
    # escapes could spell a name's character, so extra keys leave them out (a valid subset), as
    # do escapes of characters written raw (a string spells each such character one way)
    vocab = load_vocab("spm32k")
    validator = jsonschema.Draft202012Validator(schema)
    held = {ch for name in schema["properties"] for ch in name}
    keys = ['error\\"x', "err\\\\", 'a\\"b', "a\\nb", "\\u0065rror", "error", "x\\/y", "\\t"]
    keys += ["\\u0016a", "a\\u001Fb", "a\\u001fb", "\\u0022x", "x\\u002Fy", "\\u005c", "\\u000A", "\\u000a"]

    def spelled_one_way(key: str) -> bool:
        """Whether every escape in ``key`` is of a character written escaped that no name holds."""
        for match in re.finditer(r'\\(u[0-9a-fA-F]{4}|["\\/bfnrt])', key):
            char = json.loads(f'"{match.group()}"')
            if char in held or not (ord(char) < 0x20 or char in '"\\/'):
                return False
        return True

    for engine in ("pushdown", "dfa"):
        processor = JSONLogitsProcessor(schema, vocab, engine=engine)
        for key in keys:
            text = '{"' + key + '": 1}'
            accepted = processor.accepts(text)
            assert not accepted or validator.is_valid(json.loads(text)), (engine, key)
            if spelled_one_way(key):
                assert accepted == validator.is_valid(json.loads(text)), (engine, key)
    guide = JSONLogitsProcessor(schema, vocab).guide
    for prefix in (b'{"', b'{"err', b'{"error\\', b'{"x\\"', b'{"a\\'):
        state = guide.advance(guide.initial_state, prefix)  # type: ignore[attr-defined]
        if state:
            got = guide.mask(state).allowed_ids(vocab.size)
            assert np.array_equal(got, brute_force_allowed(guide, state, vocab)), prefix


def test_a_declared_name_spelled_with_escapes_is_still_the_declared_member() -> None:
    """A key that matches a pattern and spells a declared name another way (``"a\\/b"`` is
    ``"a/b"``) is that member: its value must satisfy the property's schema too. Every spelling
    a key automaton reads is taken out of the pattern's keys (one was: invalid ``{"a\\/b": 1}``
    was accepted); the same for overlapping patterns and keys outside every pattern."""
    vocab = load_vocab("spm32k")
    schemas = [
        {"properties": {"a/b": {"type": "string"}, 'q"': {"type": "string"}},
         "patternProperties": {"^a": {"type": "integer"}, "^q": {"type": "integer"}}},
        {"properties": {"a/b": {"type": "string"}},
         "patternProperties": {"^a": {"type": "integer"}, "b$": {"type": "integer"}}},
        {"properties": {"a/b": {"type": "string"}}, "patternProperties": {"^z": {"type": "integer"}},
         "additionalProperties": {"type": "integer"}},
    ]
    keys = ["a\\/b", "a\\u002fb", "a\\u002Fb", "a/b", "a/c", "a\\/c", 'q\\"', "q\\u0022", "zb", "z\\/b"]
    for schema in schemas:
        validator = jsonschema.Draft202012Validator(schema)
        for engine in ("pushdown", "dfa"):
            processor = JSONLogitsProcessor(schema, vocab, engine=engine)
            for key in keys:
                for value in ("1", '"s"'):
                    text = '{"' + key + '": ' + value + "}"
                    if processor.accepts(text):
                        assert validator.is_valid(json.loads(text)), (engine, schema, text)


def test_a_configuration_sized_object_takes_its_keys_in_any_order() -> None:
    # 150 declared keys (Hugo's configuration declares about 100): a document lists a few
    # dozen in its own order, extra keys between them; judged by jsonschema, and a declared
    # key written twice is refused
    rng = np.random.default_rng(3)
    kinds = [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "array", "items": {}}]
    names = [f"{w}{i}" for i, w in enumerate(rng.choice(["base", "build", "cache", "theme", "lang"], 150))]
    props = {n: kinds[int(rng.integers(len(kinds)))] for n in names}
    schema = {"type": "object", "properties": props, "required": names[-3:]}
    assert 64 < len(props) <= ANY_ORDER_MAX
    samples = {"string": "x", "integer": 7, "boolean": False, "array": [1, "a"]}
    guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))
    for trial in range(4):
        keys = list(rng.choice(names[:-3], 25, replace=False)) + names[-3:]
        rng.shuffle(keys)
        doc = {str(k): samples[props[str(k)]["type"]] for k in keys}
        if trial % 2:
            doc["undeclared"] = None
        assert _valid(schema, doc) and _accepts(guide, json.dumps(doc).encode()), doc
        twice = json.dumps(doc)[:-1] + f', "{keys[0]}": ' + json.dumps(doc[str(keys[0])]) + "}"
        assert not _accepts(guide, twice.encode())
        missing = {k: v for k, v in doc.items() if k != names[-1]}
        assert not _valid(schema, missing) and not _accepts(guide, json.dumps(missing).encode())


def test_allof_parts_intersected_as_automata_keep_every_key_order() -> None:
    """allOf parts that cannot merge (one's patterns would exempt keys from the other's
    ``additionalProperties``) are intersected as automata. Each part's automaton took its
    declared members in order, extra keys after them, so the product lost every document
    whose keys came otherwise (17 of these; found by ``test_json_one_of_random.py``). Small
    objects of such parts now take their members in any order, extra keys anywhere."""
    schema = {
        "type": "object",
        "allOf": [
            {
                "properties": {"b": {"type": "integer"}},
                "required": ["b"],
                "patternProperties": {"^x": {"type": "string"}},
            },
            {"properties": {"a": {}}, "additionalProperties": {"type": "integer"}},
        ],
    }
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    validator = jsonschema.Draft202012Validator(schema)
    values = {"a": [1, "s"], "b": [2, "t"], "xy": ["u", 3], "z": [4]}
    for n in range(4):
        for keys in itertools.permutations(values, n):
            for chosen in itertools.product(*(values[k] for k in keys)):
                document = dict(zip(keys, chosen, strict=True))
                assert processor.accepts(json.dumps(document)) == validator.is_valid(document), document


def test_rest_nodes_take_their_templates_tables_exactly(monkeypatch) -> None:
    """A rest node's guide takes its template's plain-text steps and trie loops with the rows
    its cuts change computed again (``RegexGuide.share_steps``): equal to computing them on its
    own table, at every state, where member names share multi-byte characters part way."""
    vocab = load_vocab("llama3-128k")
    names = ["café", "cafè", "caf", "naïve", "日本", "日本語", "z"]
    schema = {"type": "object", "properties": {name: {"type": "string"} for name in names}}
    guide = PushdownGuide(SplitSchema(schema), vocab)
    taken: list[bool] = []
    share = RegexGuide.share_steps

    def sharing(self, *args) -> bool:
        taken.append(share(self, *args))
        return taken[-1]

    monkeypatch.setattr(RegexGuide, "share_steps", sharing)
    rng = random.Random(3)
    for _ in range(3):
        order = rng.sample(names, len(names))
        text = ("{" + ", ".join(f'"{name}": "é{i}"' for i, name in enumerate(order)) + "}").encode()
        for end in range(1, len(text)):  # (every prefix: the analyses of every state on the way)
            guide.mask(guide.advance(guide.initial_state, text[:end]))
    checked = 0
    for node in list(guide.schema._nodes.values()):
        if node.cut_from is None or node.guide is None:
            continue
        fresh = RegexGuide(node.dfa, vocab)
        live = np.flatnonzero(reaching(node.dfa.transitions, node.dfa.accepting | node.boundary))
        for s in live.tolist():  # (a dead state is never reached: its row is never read)
            mine, theirs = node.guide._plain_step(s), fresh._plain_step(s)
            assert (mine is None) == (theirs is None), s
            assert mine is None or (mine[0] == theirs[0] and np.array_equal(mine[1], theirs[1])), s
        assert np.array_equal(node.guide._loops.bits[live], fresh._loops.bits[live])
        assert np.array_equal(node.guide._loops.chars[live], fresh._loops.chars[live])
        checked += 1
    assert checked and all(taken)

"""``uniqueItems`` (``json_schema/unique.py``): items spelled canonically, the guide remembering
the ones written per array, judged by ``jsonschema`` and by a brute force over the vocabulary."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
from conftest import load_vocab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pushdown_oracle import brute_force_allowed, random_walk_text

from outlines_gguf import JSONLogitsProcessor, SchemaError
from outlines_gguf.automata.regex import regex_to_dfa
from outlines_gguf.compiler import compile_json_schema
from outlines_gguf.json_schema.keywords import FREE_FORM_DEPTH
from outlines_gguf.json_schema.strings import literal_trie_dfa
from outlines_gguf.json_schema.unique import UniqueItemsGuide, _other_completion

STRINGS = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
SCHEMAS = [
    STRINGS,
    {"type": "array", "items": {"type": "integer", "minimum": 0}, "uniqueItems": True, "maxItems": 5},
    {"type": "array", "items": {"enum": [f"v{i}" for i in range(12)]}, "uniqueItems": True, "minItems": 1},
    {"type": "array", "items": {"type": "string", "pattern": "^[ab]{1,2}$"}, "uniqueItems": True},
    {"type": "array", "items": {"type": ["string", "integer", "boolean", "null"]}, "uniqueItems": True},
    {  # one memory per array instance: the same items again in the next object
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"tags": STRINGS, "ids": {**STRINGS, "items": {"type": "integer"}}},
        },
    },
    {"type": "object", "properties": {"a": STRINGS, "b": STRINGS}, "additionalProperties": False},
    # any items: numbers with fractions, arrays, objects (one member order: sorted; an extra
    # member only alone)
    {"type": "array", "uniqueItems": True},
    {"type": "array", "items": {"type": "number"}, "uniqueItems": True},
    {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"b": {"type": "integer"}, "a": {}},
            "additionalProperties": False,
        },
        "uniqueItems": True,
    },
    # a prefix: one memory for every position
    {
        "type": "array",
        "prefixItems": [{"type": "boolean"}, {"type": ["boolean", "integer"]}],
        "uniqueItems": True,
    },
    {
        "type": "array",
        "prefixItems": [{"type": "integer"}],
        "items": {"enum": [1, 2, 3]},
        "uniqueItems": True,
    },
]
SCALARS = st.one_of(
    st.sampled_from(["a", "b", "aa", "ab", "v1", "v11", "x\ny", "é", ""]),
    st.integers(-2, 3),
    st.sampled_from([1, 10, 12, 100, 120, -1, -10, 0.5, 0.55, 1.5, 10.25]),  # (an item's prefix, an item)
    st.booleans(),
    st.none(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2)
    ),
    max_leaves=4,
)
ARRAYS = st.lists(SCALARS, max_size=6) | st.lists(VALUES, max_size=4)
DOCUMENTS = st.one_of(
    ARRAYS,
    st.lists(
        st.fixed_dictionaries({}, optional={"tags": ARRAYS, "ids": st.lists(st.integers(0, 3), max_size=4)}),
        max_size=3,
    ),
    st.fixed_dictionaries({}, optional={"a": ARRAYS, "b": ARRAYS}),
)


def _spelled(value: object, declared: frozenset[str] = frozenset()) -> bool:
    """Whether an item has a spelling in a unique array: no number with a zero fraction, no
    object with an undeclared member beside others."""
    if isinstance(value, float):
        return value != int(value)
    if isinstance(value, list):
        return all(_spelled(v) for v in value)
    if isinstance(value, dict):
        extra = [k for k in value if k not in declared]
        return (not extra or len(value) == 1) and all(_spelled(v) for v in value.values())
    return True


def _depth(value: object) -> int:
    if isinstance(value, (list, dict)):
        inside = value if isinstance(value, list) else list(value.values())
        return 1 + max((_depth(v) for v in inside), default=0)
    return 0


def _one_spelling(document: object, schema: dict) -> bool:
    """... and free-form values nest FREE_FORM_DEPTH levels at most, as everywhere."""
    if schema.get("uniqueItems") and isinstance(document, list):
        items = schema.get("items", {})
        declared = frozenset(items.get("properties", {})) if isinstance(items, dict) else frozenset()
        return all(_spelled(v, declared) and _depth(v) <= FREE_FORM_DEPTH for v in document)
    return True  # (the other schemas' unique arrays hold scalars)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: json.dumps(s)[:60])
def test_unique_items_against_jsonschema(schema: dict) -> None:
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    assert isinstance(processor.guide, UniqueItemsGuide)
    validator = jsonschema.Draft202012Validator(schema)

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(DOCUMENTS)
    def check(document: object) -> None:
        text = json.dumps(document, ensure_ascii=False, sort_keys=True)
        accepted = processor.accepts(text)
        assert not accepted or validator.is_valid(document), text  # never an invalid one
        if validator.is_valid(document) and _one_spelling(document, schema):
            assert accepted, text

    check()


@pytest.mark.parametrize(
    ("schema", "document"),
    [
        (STRINGS, ["ab", "a", "abc", "b"]),
        (SCHEMAS[2], ["v1", "v10", "v11"]),
        # the last value of a finite language: no comma after it (no item is left to write)
        (SCHEMAS[3], ["a", "b", "aa", "ab", "ba", "bb"]),
        (SCHEMAS[5], [{"tags": ["a", "b"]}, {"tags": ["b", "a"], "ids": [1, 10]}]),
        # an item whose prefix is an item written: "1" then "12", "0.5" then "0.55"
        (SCHEMAS[1], [12, 1, 123]),
        (SCHEMAS[8], [0.5, 1, 0.55, 12]),
        (SCHEMAS[7], [{"a": 1}, [1, 2], {"b": {"a": 1}}, [1], {}]),
        (SCHEMAS[9], [{"a": "x", "b": 1}, {"a": "x"}, {"a": "x", "b": 12}]),
        (SCHEMAS[10], [True, False, "a", 1]),
        (SCHEMAS[11], [2, 1, 3]),
    ],
)
def test_unique_items_masks_equal_a_brute_force(schema: dict, document: object) -> None:
    vocab = load_vocab("spm32k")
    guide = JSONLogitsProcessor(schema, vocab).guide
    data = json.dumps(document).encode()  # (items spaced as json.dumps spaces them)
    for cut in range(len(data) + 1):
        state = guide.advance(guide.initial_state, data[:cut])  # type: ignore[attr-defined]
        assert state is not None, data[:cut]
        got = guide.mask(state).allowed_ids(vocab.size)
        assert np.array_equal(got, brute_force_allowed(guide, state, vocab)), data[:cut]


MIXED = {
    "type": "array",
    "items": {
        "anyOf": [
            {"enum": ["a", "b"]},
            {"properties": {"b": {"type": "null"}}, "additionalProperties": False},
        ]
    },
    "uniqueItems": True,
}


def test_a_token_that_ends_an_item_and_starts_the_next_leaves_that_one_a_value() -> None:
    # after {"b": null} and {}, no object is left: "},{" ending the second item may not start a
    # third (the pushdown reads it against the frame the second item found, which still has {})
    vocab = load_vocab("spm32k")
    guide = JSONLogitsProcessor(MIXED, vocab).guide
    joined = vocab.tokens.index(b"},{")
    state = guide.advance(guide.initial_state, b'[{"b": null},{')  # type: ignore[attr-defined]
    assert joined not in guide.mask(state).allowed_ids(vocab.size)
    assert np.array_equal(guide.mask(state).allowed_ids(vocab.size), brute_force_allowed(guide, state, vocab))


def test_random_walks_end_in_unique_items() -> None:
    # whatever the logits, a generation finishes valid: no item the array cannot finish
    vocab = load_vocab("spm32k")
    rng = np.random.default_rng(0)
    for schema in [*SCHEMAS[:5], *SCHEMAS[7:]]:
        guide = JSONLogitsProcessor(schema, vocab).guide
        validator = jsonschema.Draft202012Validator(schema)
        for _ in range(3):
            text = random_walk_text(guide, vocab, rng, 200, 0.3)
            if text is not None:
                assert validator.is_valid(json.loads(text)), text


def test_what_unique_items_leave_out() -> None:
    vocab = load_vocab("spm32k")
    processor = JSONLogitsProcessor(STRINGS, vocab)
    assert not processor.accepts('["\\u0041"]')  # one spelling per value: the canonical one
    with pytest.raises(SchemaError, match="no JSON value satisfies"):  # two values, three items
        JSONLogitsProcessor({**SCHEMAS[3], "items": {"enum": ["a", "b"]}, "minItems": 3}, vocab)
    unique_any = JSONLogitsProcessor({"uniqueItems": True}, vocab)
    assert unique_any.accepts('[{"a": 1}, {"a": 2}, {"b": 1}, {}]')
    assert not unique_any.accepts('[{"a":1}]')  # one spelling: json.dumps's spaces
    assert not unique_any.accepts('[{"a": 1, "b": 2}]')  # free-form objects: a member at most
    assert not unique_any.accepts("[1.0]") and not unique_any.accepts("[1e2]")  # numbers: one spelling
    scalars = {"type": ["integer", "string"]}
    declared = {"properties": {"b": scalars, "a": scalars}, "additionalProperties": {"type": "integer"}}
    objects = JSONLogitsProcessor({"items": declared, "uniqueItems": True}, vocab)
    assert objects.accepts('[{"a": 1, "b": 2},{"b": 1}]')
    assert objects.accepts('[{"b": 2, "a": 1}]')  # a small object's members in any order
    assert not objects.accepts('[{"a": 1, "b": 2}, {"b": 2, "a": 1}]')  # ... but one value once
    assert not objects.accepts('[{"a": 1, "c": 1}]')  # no extra member where members are declared
    nesting = {"items": {"properties": {"b": {}, "a": {}}}, "uniqueItems": True}  # members may hold objects:
    assert not JSONLogitsProcessor(nesting, vocab).accepts('[{"b": 2, "a": 1}]')  # sorted
    # a listed object, spelled in any member order as the declared ones are, is one value
    listed = [{"b": 1, "a": 1}, *({"a": i} for i in range(9))]
    mixed = {
        "items": {"anyOf": [{"enum": listed}, {"properties": {"a": scalars, "b": scalars}}]},
        "uniqueItems": True,
    }
    either = JSONLogitsProcessor(mixed, vocab)
    assert either.accepts('[{"a": 1, "b": 1}, {"a": 2}]')
    assert either.accepts('[{"b": 1, "a": 1}]') and not either.accepts('[{"b": 1, "a": 1}, {"a": 1, "b": 1}]')
    assert not either.accepts('[{"a": 1, "b": 1}, {"a": 1, "b": 1}]')
    with pytest.raises(SchemaError, match="uniqueItems"):  # a required position may run out of values
        JSONLogitsProcessor(
            {"prefixItems": [{"enum": [1, 2]}] * 3, "minItems": 3, "uniqueItems": True}, vocab
        )
    with pytest.raises(SchemaError, match="uniqueItems"):
        JSONLogitsProcessor({"contains": {"type": "string"}, "uniqueItems": True}, vocab)
    with pytest.raises(SchemaError, match="uniqueItems"):  # the whole-schema DFA engine cannot
        compile_json_schema(STRINGS)


def _random_item(rng: np.random.Generator, depth: int = 0) -> dict:
    """An items schema: scalars of few or many values, closed and open objects, arrays, unions."""
    r = rng.random()
    if depth < 2 and r < 0.3:
        names = list(rng.choice(["a", "b", "c"], size=int(rng.integers(1, 4)), replace=False))
        schema: dict = {"type": "object", "properties": {n: _random_item(rng, depth + 1) for n in names}}
        if rng.random() < 0.5:
            schema["additionalProperties"] = [False, True, {"type": "integer"}][int(rng.integers(3))]
        return schema
    if depth < 2 and r < 0.45:
        return {"type": "array", "items": _random_item(rng, depth + 1), "maxItems": 3}
    if depth < 2 and r < 0.55:
        return {"anyOf": [_random_item(rng, depth + 1), _random_item(rng, depth + 1)]}
    leaves = [
        {"type": "integer", "minimum": -3, "maximum": 30},
        {"type": "boolean"},
        {"enum": ["a", "b", 1, None]},
        {"type": "string", "maxLength": 2},
        {"type": "number"},
        {"const": {"k": 1}},
        {},
    ]
    return leaves[int(rng.integers(len(leaves)))]


def test_random_unique_arrays_walk_to_valid_documents() -> None:
    # generated schemas (a prefix, counts, nested unions): whatever the tokens chosen, every
    # mask leads on (no error in next_state, no dead end) and a finished text is valid
    vocab = load_vocab("spm32k")
    rng = np.random.default_rng(4)  # (a seed whose walks met the token of test_a_token_that_ends...)
    for _ in range(30):
        schema: dict = {"type": "array", "uniqueItems": True, "items": _random_item(rng)}
        if rng.random() < 0.3:
            schema["prefixItems"] = [_random_item(rng)]
        if rng.random() < 0.3:
            schema["minItems"] = int(rng.integers(1, 3))
        try:
            guide = JSONLogitsProcessor(schema, vocab).guide
        except SchemaError:
            continue
        validator = jsonschema.Draft202012Validator(schema)
        for _ in range(2):
            text = random_walk_text(guide, vocab, rng, 100, 0.35)
            if text is not None:
                assert validator.is_valid(json.loads(text)), (schema, text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=st.sampled_from(["ab?c*", "(ab|a)(c|)", "a{1,3}b?", "(a|b)(a|b)", "abc", "a(b|c)d?", "[ab]+"]),
    data=st.data(),
)
def test_another_completion_exactly_as_enumeration_says(pattern: str, data: st.DataObject) -> None:
    # whether an item can still end as a text other than the one just completed: by the
    # automaton's shape, equal to enumerating the completions (short patterns: a bounded search
    # finds one where there is one)
    dfa = regex_to_dfa(pattern)
    begun = data.draw(st.text("abcd", max_size=4)).encode()
    state = dfa.run(begun)
    if state < 0:
        return
    rest = data.draw(st.text("abcd", max_size=5)).encode()
    completions, frontier = set(), [(state, b"")]
    for _ in range(len(rest) + dfa.n_states + 1):
        step = []
        for s, text in frontier:
            if dfa.accepting[s]:
                completions.add(text)
            step += [
                (int(t), text + bytes((b,))) for b, t in enumerate(dfa.transitions[s].tolist()) if t >= 0
            ]
        frontier = step
    assert _other_completion(dfa, state, begun, literal_trie_dfa([begun + rest])) == bool(
        completions - {rest}
    )


SECTIONS = {  # source maps' "sections": objects written in whatever member order
    "type": "array",
    "uniqueItems": True,
    "items": {
        "type": "object",
        "properties": {
            "offset": {
                "type": "object",
                "properties": {"line": {"type": "integer"}, "column": {"type": "integer"}},
                "required": ["line", "column"],
            },
            "url": {"type": "string"},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
        },
        "required": ["offset"],
        "additionalProperties": False,
    },
}


def test_object_items_in_any_member_order_are_one_value_each() -> None:
    # the members of small objects that hold no object or array (offset's; a pair's) come in
    # any order, those of the section (which holds offset) sorted; an item equal in value to
    # one before it, whatever its order, is never completed. Judged by jsonschema
    vocab = load_vocab("spm32k")
    pairs = {
        "type": "array",
        "uniqueItems": True,
        "items": {
            "type": "object",
            "properties": {"name": {"enum": ["a", "b"]}, "value": {"type": "integer"}},
        },
    }
    rng = np.random.default_rng(5)
    for schema in (SECTIONS, pairs):
        processor = JSONLogitsProcessor(schema, vocab)
        validator = jsonschema.Draft202012Validator(schema)
        checked = rejected = 0
        for _ in range(40):
            items = [
                _random_section(rng) if schema is SECTIONS else _random_pair(rng)
                for _ in range(rng.integers(1, 4))
            ]
            if rng.random() < 0.4:  # a copy of the first item, its small objects' members reordered
                copy = _reordered(items[0], schema is pairs)
                items.insert(int(rng.integers(1, len(items) + 1)), copy)
            text = json.dumps(items)
            valid = validator.is_valid(json.loads(text))
            assert processor.accepts(text) == valid, text
            checked += 1
            rejected += not valid
        assert rejected > 5 and checked - rejected > 5
    processor = JSONLogitsProcessor(SECTIONS, vocab)
    # the mask after a permuted copy of the first item has begun: the closing value is left out
    guide = processor.guide
    state = guide.advance(
        guide.initial_state, b'[{"offset": {"line": 0, "column": 1}}, {"offset": {"column": 1, "line": '
    )
    allowed = guide.mask(state).allowed_ids(vocab.size)
    assert np.array_equal(allowed, brute_force_allowed(guide, state, vocab))
    assert not guide.advance(state, b"0}}")
    assert guide.advance(state, b"1}}") and guide.advance(state, b"0}, ")


def _random_section(rng: np.random.Generator) -> dict:
    offset = {"line": int(rng.integers(2)), "column": int(rng.integers(2))}
    item: dict = {"offset": dict(sorted(offset.items(), key=lambda _: rng.random()))}
    if rng.random() < 0.5:
        item["url"] = str(rng.choice(["a.map", "b.map"]))
    if rng.random() < 0.3:
        item["tags"] = list(rng.choice(["a", "b"], int(rng.integers(3))))
    return dict(sorted(item.items()))  # (a section holds an object: its members sorted)


def _random_pair(rng: np.random.Generator) -> dict:
    pair = {"name": str(rng.choice(["a", "b"])), "value": int(rng.integers(2))}
    return dict(sorted(pair.items(), key=lambda _: rng.random()))


def _reordered(item: dict, whole: bool) -> dict:
    """``item`` with the members of its small objects reversed (``whole``: its own too)."""
    inner = {k: (dict(reversed(v.items())) if isinstance(v, dict) else v) for k, v in item.items()}
    return dict(reversed(inner.items())) if whole else inner


@pytest.mark.parametrize("items", [{"type": "number"}, {"type": "string"}, {"type": "integer", "minimum": 5}])
def test_an_item_being_written_does_not_compile_the_next_item_per_byte(items: dict) -> None:
    """While an item is written, the array's frame leaves out its text so far, byte by byte;
    the next item's node (the items without that text) is not compiled until a next item
    begins: it surely has values where the items have infinitely many. (It was compiled per
    byte, a DFA difference each: a 160-digit number took seconds.)"""
    schema = {"type": "array", "items": items, "uniqueItems": True}
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    split = processor.guide.schema  # type: ignore[attr-defined]

    def item_nodes() -> int:
        return sum(1 for node in split._nodes.values() if node.unique_item)

    body, other = ('"' + "x" * 60 + '"', '"y"') if items["type"] == "string" else ("7" * 60, "8")
    assert processor.accepts("[7]" if items["type"] != "string" else '["x"]')
    before = item_nodes()
    assert processor.accepts(f"[{body}]")
    assert item_nodes() <= before + 1
    assert processor.accepts(f"[{body}, {other}]")
    assert not processor.accepts(f"[{body}, {body}]")


def _random_walks_are_valid(processor: JSONLogitsProcessor, schema: dict, seed: int, steps: int) -> None:
    """Six random walks through the masks; those that end are valid documents."""
    validator = jsonschema.Draft202012Validator(schema)
    rng = np.random.default_rng(seed)
    for _ in range(6):
        text = random_walk_text(processor.guide, processor.vocabulary, rng, steps, 0.3)
        if text is not None:
            assert validator.is_valid(json.loads(text)), text


def test_a_unique_array_inside_a_unique_item_holds_one_item() -> None:
    """size-limit's configuration (SchemaStore): an array of unique sections, each with an
    ``entry`` that is a string or an array of unique strings. A section is one automaton of
    its canonical spellings, which cannot remember the strings of its own ``entry``: that
    array holds at most one item there (a valid subset), where the whole schema was refused."""
    vocab = load_vocab("spm32k")
    strings = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
    entry = {"oneOf": [{"type": "string"}, strings]}
    section = {"type": "object", "properties": {"path": {"type": "string"}, "entry": entry}}
    schema = {"type": "array", "items": section, "uniqueItems": True}
    processor = JSONLogitsProcessor(schema, vocab)
    assert processor.accepts('[{"entry": ["a"], "path": "x"}, {"entry": "a", "path": "x"}, {"entry": []}]')
    assert not processor.accepts('[{"path": "x"}, {"path": "x"}]')  # the sections stay unique
    assert not processor.accepts('[{"entry": ["a", "b"]}]')  # (valid: left out of the subset)
    _random_walks_are_valid(processor, schema, seed=1, steps=200)
    at_least_two = {**strings, "minItems": 2}
    # one automaton of a section cannot remember two strings: the sections are not compared then,
    # and hold one section (a valid subset) whose entry is remembered as anywhere else
    inner = {**schema, "items": {**section, "properties": {"entry": at_least_two}}}
    one = JSONLogitsProcessor(inner, vocab)
    assert one.accepts('[{"entry": ["a", "b"]}]')
    assert not one.accepts('[{"entry": ["a", "a"]}]')
    assert not one.accepts('[{"path": "x"}, {"path": "y"}]')  # (valid: left out of the subset)
    with pytest.raises(SchemaError, match="uniqueItems"):  # where one section would not do
        JSONLogitsProcessor({**inner, "minItems": 2}, vocab)
    assert JSONLogitsProcessor(strings, vocab).accepts('["a", "b"]')  # (not inside: as ever)


def _wide_kinds(n_members: int, n_kinds: int) -> dict:
    """Items of ``n_kinds`` closed objects, each told apart by a constant member and holding
    ``n_members`` free-form ones: their canonical spellings, as one automaton, pass the size
    limits (Swagger 2.0's ``parameters``: a dozen kinds of parameter object)."""
    kinds = []
    for k in range(n_kinds):
        members: dict = {f"p{i}": {} for i in range(n_members)}
        members[f"k{k}"] = {"const": k}
        closed = {"type": "object", "properties": members, "additionalProperties": False}
        kinds.append({**closed, "required": [f"k{k}"]})
    return {"anyOf": kinds}


def test_unique_items_too_large_to_compare_hold_one_item() -> None:
    vocab = load_vocab("spm32k")
    schema = {"type": "object", "properties": {"parameters": {"type": "array", "uniqueItems": True}}}
    schema["properties"]["parameters"]["items"] = _wide_kinds(10, 6)
    processor = JSONLogitsProcessor(schema, vocab)
    processor.guide.schema.compile_all()  # type: ignore[attr-defined]  # (built when reached)
    assert "#/properties/parameters/uniqueItems" in processor.guide.schema.subsets  # type: ignore[attr-defined]
    assert processor.accepts('{"parameters": []}')
    assert processor.accepts('{"parameters": [{"k0": 0, "p1": {"a": [1]}}]}')
    assert not processor.accepts('{"parameters": [{"k0": 0}, {"k1": 1}]}')  # (valid: left out of the subset)
    assert not processor.accepts('{"parameters": [{"k9": 0}]}')
    _random_walks_are_valid(processor, schema, seed=2, steps=300)
    at_least_two = {**schema["properties"]["parameters"], "minItems": 2}
    with pytest.raises(SchemaError, match="uniqueItems' cannot be enforced"):  # one item would not do
        JSONLogitsProcessor({"type": "object", "properties": {"parameters": at_least_two}}, vocab)
    lenient = JSONLogitsProcessor(schema, vocab, lenient=True)  # (lenient ignores the keyword)
    assert lenient.accepts('{"parameters": [{"k0": 0}, {"k0": 0}]}')


def _item_automata_built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the unique item automata built from now on (a list that fills as they are)."""
    from outlines_gguf.json_schema.arrays import _ArrayRules

    built: list[str] = []
    original = _ArrayRules.unique_item_dfa

    def counting(self, items, path):  # type: ignore[no-untyped-def]
        built.append(path)
        return original(self, items, path)

    monkeypatch.setattr(_ArrayRules, "unique_item_dfa", counting)
    return built


def test_the_items_automaton_is_built_once_per_array(monkeypatch: pytest.MonkeyPatch) -> None:
    """Built once, when generation first reaches the array (tsconfig's ``lib``: 47 ms each
    time), not again however many nodes compile it."""
    built = _item_automata_built(monkeypatch)
    names = {"anyOf": [{"enum": ["ES5", "ES2015", "DOM"]}, {"pattern": "^[Ee][Ss]20[0-9]{2}$"}]}
    schema = {"type": "object", "properties": {"lib": {"type": "array", "uniqueItems": True, "items": names}}}
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    processor.guide.schema.compile_all()  # type: ignore[attr-defined]
    assert len(built) == 1, built
    assert processor.accepts('{"lib": ["ES5", "es2020", "DOM"]}')
    assert not processor.accepts('{"lib": ["ES5", "ES5"]}')


def test_the_few_values_of_unique_items_count_json_equal_ones_once() -> None:
    from outlines_gguf.json_schema.algebra import _unique_domain
    from outlines_gguf.json_schema.keywords import MAX_UNIQUE_VALUES

    assert _unique_domain({"items": {"enum": [1, 1.0, "a", "a", True]}}) == [1, "a", True]
    many = [f"icon-{i}" for i in range(1200)]  # (a workflow template's icons: not a few values)
    assert _unique_domain({"items": {"enum": many}}) is None
    assert _unique_domain({"items": {"enum": many[:MAX_UNIQUE_VALUES] * 3}}) == many[:MAX_UNIQUE_VALUES]


def test_equal_items_are_built_once_and_fail_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenAPI's path items and operations hold equal parameter lists (two objects, one
    content): their item automaton, a second to fail, is tried once (when generation first
    reaches one of them, not at construction)."""
    import copy

    built = _item_automata_built(monkeypatch)
    parameters = {"type": "array", "uniqueItems": True, "items": _wide_kinds(10, 6)}
    schema = {"type": "object", "properties": {"get": parameters, "put": copy.deepcopy(parameters)}}
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    assert not built
    processor.guide.schema.compile_all()  # type: ignore[attr-defined]
    assert len(built) == 1, built
    subsets = processor.guide.schema.subsets  # type: ignore[attr-defined]
    assert {"#/properties/get/uniqueItems", "#/properties/put/uniqueItems"} <= subsets
    assert processor.accepts('{"get": [{"k0": 0}], "put": [{"k1": 1}]}')
    assert not processor.accepts('{"put": [{"k1": 1}, {"k2": 2}]}')


def test_unique_items_merged_from_parts_too_large_to_compare_hold_one_item() -> None:
    """``uniqueItems`` in one allOf part, ``items`` in another: the scan meets neither array
    whole, compiling meets the merged one; its items' automaton passes the limits there (a
    ConstraintTooComplexError before), read as the scan reads it: at most one item."""
    vocab = load_vocab("spm32k")
    merged = {"allOf": [{"type": "array", "uniqueItems": True}, {"items": _wide_kinds(10, 6)}]}
    schema = {"type": "object", "properties": {"p": merged}}
    processor = JSONLogitsProcessor(schema, vocab)
    processor.guide.schema.compile_all()  # type: ignore[attr-defined]
    assert "#/properties/p/uniqueItems" in processor.guide.schema.subsets  # type: ignore[attr-defined]
    assert processor.accepts('{"p": [{"k0": 0}]}')
    assert not processor.accepts('{"p": [{"k0": 0}, {"k1": 1}]}')  # (valid: left out of the subset)
    with pytest.raises(SchemaError, match="uniqueItems' cannot be enforced"):
        JSONLogitsProcessor({"type": "object", "properties": {"p": {**merged, "minItems": 2}}}, vocab)
    lenient = JSONLogitsProcessor(schema, vocab, lenient=True)
    assert lenient.accepts('{"p": [{"k0": 0}, {"k0": 0}]}')  # (lenient ignores the keyword)

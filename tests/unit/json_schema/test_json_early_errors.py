"""A keyword the split engine cannot enforce is an error when the schema is loaded, however deep
it sits (nodes compile lazily, when generation reaches them: an error found then would end a
generation halfway), and an enforceable one deep inside still compiles lazily and works."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from conftest import load_vocab

from outlines_gguf import JSONLogitsProcessor, RegexError, SchemaError
from outlines_gguf.json_schema.algebra import _safely_disjoint
from outlines_gguf.json_schema.pushdown import PushdownGuide
from outlines_gguf.json_schema.split import SplitSchema

# Objects with "a" match both branches, and "some member whose array repeats an item" cannot
# be written, so "exactly one" cannot be made exact; nor can it be a valid subset: without that
# part, no object with "a" would be left. (Snowplow sp_209's apikey, a uuid format or a
# pattern, was the example here; a branch's format is now read as an annotation to exclude it,
# and "some property name longer than 3" is written as SOME_MEMBER_KEY.)
UNENFORCEABLE = {
    "oneOf": [
        {"type": "object", "additionalProperties": {"type": "array", "uniqueItems": True}},
        {"type": "object", "required": ["a"]},
    ]
}

# Overlapping (5 is both), but the branches negate: exactly one is "below 0 or above 10".
ENFORCEABLE = {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "integer", "maximum": 10}]}


def _behind_properties(leaf: Any) -> tuple[dict, str]:
    inner = {"type": "object", "properties": {"b": {"type": "object", "properties": {"c": leaf}}}}
    schema = {"type": "object", "properties": {"a": inner}}
    return schema, "#/properties/a/properties/b/properties/c"


def _behind_items(leaf: Any) -> tuple[dict, str]:
    inner = {"type": "array", "items": {"type": "array", "items": leaf}}
    schema = {"type": "object", "properties": {"a": inner}}
    return schema, "#/properties/a/items/items"


def _behind_ref(leaf: Any) -> tuple[dict, str]:
    schema = {
        "$defs": {"key": leaf, "holder": {"type": "object", "properties": {"k": {"$ref": "#/$defs/key"}}}},
        "type": "object",
        "properties": {"a": {"type": "array", "items": {"$ref": "#/$defs/holder"}}},
    }
    return schema, "/properties/k/$ref"


def _behind_anyof_items(leaf: Any) -> tuple[dict, str]:  # the shape of Snowplow sp_209
    branch = {
        "type": "object",
        "properties": {"action": {"enum": ["push"]}, "apikey": leaf},
        "required": ["action"],
    }
    other = {"type": "object", "properties": {"action": {"enum": ["s3cp"]}}, "required": ["action"]}
    actions = {"type": ["array", "null"], "items": {"anyOf": [branch, other], "type": "object"}}
    schema = {"type": "object", "properties": {"actions": actions}, "additionalProperties": False}
    return schema, "#/properties/actions/items/anyOf/0/properties/apikey"


PLACES = [_behind_properties, _behind_items, _behind_ref, _behind_anyof_items]


@pytest.mark.parametrize("place", PLACES, ids=lambda p: p.__name__)
def test_a_deep_unenforceable_oneof_fails_at_construction(place: Any) -> None:
    schema, path = place(UNENFORCEABLE)
    with pytest.raises(SchemaError, match="oneOf branches") as caught:
        SplitSchema(schema)
    assert path in str(caught.value) and path in caught.value.path
    assert "lenient=True" in str(caught.value)


def test_the_processor_refuses_it_when_made() -> None:
    # (Snowplow sp_209: the processor used to be made, and generation ended at "apikey")
    schema, path = _behind_anyof_items(UNENFORCEABLE)
    with pytest.raises(SchemaError, match="oneOf branches") as caught:
        JSONLogitsProcessor(schema, load_vocab("spm32k"))
    assert caught.value.path == path
    JSONLogitsProcessor(schema, load_vocab("spm32k"), lenient=True)


@pytest.mark.parametrize("place", PLACES, ids=lambda p: p.__name__)
def test_lenient_reads_a_deep_unenforceable_oneof_as_anyof(place: Any) -> None:
    schema, _ = place(UNENFORCEABLE)
    split = SplitSchema(schema, lenient=True)
    assert split.n_compiled <= 3  # still lazy
    split.compile_all()  # and nothing left to fail later


def _documents(place: Any, leaf: Any, value: Any) -> Any:
    """A document of ``place``'s schema with ``value`` at the leaf."""
    if place is _behind_properties:
        return {"a": {"b": {"c": value}}}
    if place is _behind_items:
        return {"a": [[value, value], []]}
    if place is _behind_ref:
        return {"a": [{"k": value}, {}]}
    return {"actions": [{"action": "push", "apikey": value}, {"action": "s3cp"}]}


def _accepts(guide: PushdownGuide, text: bytes) -> bool:
    state = guide.advance(guide.initial_state, text)
    return bool(state) and guide.is_final(state)


@pytest.mark.parametrize("place", PLACES, ids=lambda p: p.__name__)
def test_a_deep_enforceable_oneof_compiles_lazily_and_works(place: Any) -> None:
    schema, _ = place(ENFORCEABLE)
    split = SplitSchema(schema)
    assert split.n_compiled <= 3  # the scan decided the oneOf without compiling down to it
    guide = PushdownGuide(split, load_vocab("spm32k"))
    for value in (-5, 0, 5, 10, 11, "x"):
        doc = _documents(place, ENFORCEABLE, value)
        valid = jsonschema.Draft202012Validator(schema).is_valid(doc)
        assert _accepts(guide, json.dumps(doc).encode()) == valid, (value, valid)
        assert valid == (value in (-5, 11))


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        ({"not": {"format": "email"}}, "keyword 'not' can only be enforced"),
        ({"type": "array", "contains": {"format": "email"}}, "keyword 'contains'"),
        (  # more overlapping patterns than MAX_OVERLAPPING_PATTERNS (fewer are split into regions)
            {"type": "object", "patternProperties": {"^a": {}, "b$": {}, "c": {}, "d": {}, "e": {}}},
            "patternProperties '\\^a' and 'b\\$' overlap",
        ),
        ({"if": {"format": "email"}, "then": {"maxLength": 3}}, "if: the condition cannot be negated"),
        ({"type": "array", "items": {"$dynamicRef": "#node"}}, r"keyword '\$dynamicRef' cannot be enforced"),
        (
            {"properties": {"x": {"contains": {"type": "string"}, "uniqueItems": True}}},
            "'uniqueItems' can only be enforced",
        ),
        # (schemastore's pre-commit-config: a sibling file's definition; used to fail at the first
        # mask that reached it, ending the generation there)
        ({"type": "array", "items": {"$ref": "hooks.json#/definitions/stages"}}, r"only local \$ref"),
        (
            {"oneOf": [{"type": "string", "format": "email"}, {"type": "string", "format": "hostname"}]},
            "oneOf branches 0 and 1",
        ),
        # (schemastore's a11yrc: a property named "$ref" with a string for its schema, met when
        # generation reached the object)
        ({"type": "object", "properties": {"$ref": "#/$defs/key"}}, "must be an object or a boolean"),
        ({"type": "array", "items": [{}, 3]}, "a schema must be an object or a boolean"),
    ],
)
def test_other_deep_unenforceable_keywords_fail_at_construction(leaf: dict, message: str) -> None:
    for place in PLACES:
        schema, path = place(leaf)
        with pytest.raises(SchemaError, match=message) as caught:
            SplitSchema(schema)
        assert path in caught.value.path


def test_if_that_cannot_be_negated_fails_at_construction_even_lenient() -> None:
    # compiling refuses it whatever lenient says: the scan must agree
    schema, _ = _behind_items({"if": {"format": "email"}, "then": {"maxLength": 3}})
    with pytest.raises(SchemaError, match="if: the condition cannot be negated"):
        SplitSchema(schema, lenient=True)


def test_a_oneof_never_compiled_is_not_refused() -> None:
    # the enum's values are checked by the validator, so the oneOf inside is never compiled,
    # and the scan decides nothing below an enum
    leaf = {"enum": [{"k": {"a": 1}}, {"k": {"a": [1]}}], "properties": {"k": UNENFORCEABLE}}
    schema, _ = _behind_items(leaf)
    split = SplitSchema(schema)
    assert split.n_compiled <= 3  # (not compiled at once, as a doubtful decision would)
    guide = PushdownGuide(split, load_vocab("spm32k"))
    assert _accepts(guide, b'{"a": [[{"k": {"a": 1}}]]}')  # (a member that is no array: branch 1 only)
    assert not _accepts(guide, b'{"a": [[{"k": {"a": [1]}}]]}')  # {"a": [1]} passes both branches


@pytest.mark.parametrize(
    "leaf",
    [
        {"not": {"not": {"format": "email"}}},  # not of not: the schema itself (formats compile)
        {"allOf": [{"enum": [{"aaaa": 18}]}, {"not": {"not": {"patternProperties": {"a*": {}, "aa*": {}}}}}]},
    ],
)
def test_what_is_negated_or_listed_is_not_decided_as_compiled(leaf: dict) -> None:
    schema, _ = _behind_items(leaf)
    split = SplitSchema(schema)
    assert split.n_compiled <= 3  # no doubtful decision, so nothing compiled at once
    split.compile_all()


def test_many_enforceable_oneofs_stay_lazy() -> None:
    def item(i: int) -> dict:
        leaf = {"oneOf": [{"type": "string"}, {"type": "integer", "minimum": i}, {"type": "null"}]}
        return {"type": "object", "properties": {"v": leaf, "w": {"$ref": "#/$defs/d0"}}}

    defs = {f"d{i}": item(i) for i in range(200)}
    props = {f"p{i}": {"$ref": f"#/$defs/d{i}"} for i in range(200)}
    split = SplitSchema({"$defs": defs, "type": "object", "properties": props})
    assert split.n_compiled <= 3  # decided by the scan: nothing compiled down to them


@pytest.mark.parametrize(
    ("a", "b", "disjoint"),
    [
        (["x", "y"], ["z"], True),
        (["x", "y"], ["y"], False),
        ([1], [1.0], False),  # JSON equality: 1 is 1.0
        ([True], [1], True),  # and true is not 1
        ([None, False], [0, ""], True),
        ([{"k": [1]}], [{"k": [1.0]}], False),  # arrays and objects: compared one by one
        ([{"k": 1}, "s"], [{"k": 2}], True),
    ],
)
def test_enums_are_disjoint_by_json_equality(a: list, b: list, disjoint: bool) -> None:
    # (the scan checks every oneOf, so two enums of hundreds of values are compared by hashing)
    assert _safely_disjoint({"enum": a}, {"enum": b}) == disjoint
    assert _safely_disjoint({"enum": b}, {"enum": a}) == disjoint


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(?<=a+)b", "lookbehind"),
        ("\\p{Greek}+", "is not supported"),  # scripts: Python has no table of them
        ("(a)\\1", "backreference"),
        ("[", "unterminated character set"),
        ("a(?i)b|c", "global flags"),  # (past the start, before an alternation)
    ],
)
def test_a_deep_pattern_the_regex_compiler_refuses_fails_at_construction(pattern: str, message: str) -> None:
    for place in PLACES:
        for leaf in ({"type": "string", "pattern": pattern}, {"patternProperties": {pattern: {}}}):
            schema, _ = place(leaf)
            with pytest.raises(RegexError, match=message):
                SplitSchema(schema)


def test_deep_patterns_the_regex_compiler_takes_stay_lazy() -> None:
    for pattern in ("^[a-z]+(?=x)", "\\bfoo\\b", "^(?:[0-9]{3}-)?[0-9]{4}$", "(?<=ab)c"):
        schema, _ = _behind_items({"type": "string", "pattern": pattern})
        split = SplitSchema(schema)
        assert split.n_compiled <= 3
        split.compile_all()


def test_negating_a_recursive_definition_is_a_valid_subset_not_a_recursion() -> None:
    # (a competency framework from GitHub) each branch of the oneOf requires its own key, both
    # may be present, and excluding one means negating a tree that holds itself: negation
    # followed $refs without noticing the cycle and ran out of stack ("nested too deeply");
    # then it was refused; now "some kid is not a tree" is left out of the exclusion
    tree = {
        "type": "object",
        "oneOf": [
            {"properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}, "required": ["kids"]},
            {"properties": {"leaves": {"type": "array"}}, "required": ["leaves"]},
        ],
    }
    split = SplitSchema(tree)
    assert split.subsets
    guide = PushdownGuide(split, load_vocab("spm32k"))
    for document, valid, kept in [
        ({"kids": []}, True, True),
        ({"leaves": []}, True, True),
        ({"kids": [{"leaves": [1]}]}, True, True),
        ({"kids": [], "leaves": []}, False, False),
        ({"kids": [{}], "leaves": []}, True, False),  # valid (no kid is a tree), left out
        ({}, False, False),
    ]:
        assert jsonschema.Draft202012Validator(tree).is_valid(document) == valid
        state = guide.advance(guide.initial_state, json.dumps(document).encode())  # type: ignore[arg-type]
        assert (bool(state) and guide.is_final(state)) == kept, document
    SplitSchema(tree, lenient=True)
    with pytest.raises(SchemaError, match="'not' can only be enforced"):
        nested = {"properties": {"t": {"$ref": "#/$defs/t"}}}
        SplitSchema({"$defs": {"t": nested}, "not": {"$ref": "#/$defs/t"}})


SELF_REQUIRING = [
    {"$ref": "#/$defs/A", "$defs": {"A": {"oneOf": [{"$ref": "#/$defs/A"}], "minimum": 2}}},
    {
        "$ref": "#/$defs/A",
        "$defs": {"A": {"allOf": [{"$ref": "#/$defs/B"}]}, "B": {"anyOf": [{"$ref": "#/$defs/A"}]}},
    },
    {
        "type": "object",
        "properties": {"x": {"$ref": "#/$defs/A"}},
        "$defs": {"A": {"allOf": [{"$ref": "#/$defs/A"}]}},
    },
    # every branch of a oneOf is evaluated (exactly one must hold), as are not and if
    {"$ref": "#/$defs/A", "$defs": {"A": {"oneOf": [{"$ref": "#/$defs/A"}, {"type": "string"}]}}},
    {"$ref": "#/$defs/A", "$defs": {"A": {"type": "string", "not": {"allOf": [{"$ref": "#/$defs/A"}]}}}},
    {"$ref": "#/$defs/A", "$defs": {"A": {"if": {"$ref": "#/$defs/A"}, "then": {"type": "string"}}}},
]


@pytest.mark.parametrize("schema", SELF_REQUIRING, ids=range(len(SELF_REQUIRING)))
def test_a_definition_that_requires_itself_for_the_same_value_is_refused_at_once(schema: dict) -> None:
    """No validator can evaluate it (``jsonschema`` runs out of recursion); unrolling it filled
    the compile budget for seconds before a ConstraintTooComplexError."""
    with pytest.raises(SchemaError, match="requires itself for the same value"):
        JSONLogitsProcessor(schema, load_vocab("spm32k"))  # (found when the schema is loaded)
    assert any(_runs_out_of_recursion(schema, value) for value in ("x", 3, {"x": 3}))


def _runs_out_of_recursion(schema: dict, value: Any) -> bool:
    try:
        jsonschema.Draft202012Validator(schema).is_valid(value)
    except RecursionError:
        return True
    except BaseException as exc:  # (a Rust panic of referencing around a RecursionError)
        if type(exc).__name__ != "PanicException":
            raise
        return True
    return False


def test_a_definition_that_holds_itself_among_other_branches_still_compiles() -> None:
    """``A = anyOf[A, string]``: a validator ends on a string; the depth limit keeps the rest."""
    schema = {"$ref": "#/$defs/A", "$defs": {"A": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "string"}]}}}
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"))
    assert processor.accepts('"x"')
    assert not processor.accepts("3")


def test_a_refused_pattern_is_named_with_its_path_as_written() -> None:
    """nodemon's schema: a PCRE recursion (``(?1)``) in a pattern. The error names the pattern
    as the schema writes it and where it is, not the regex it was rewritten into."""
    schema = {"type": "object", "properties": {"re": {"type": "string", "pattern": "^(a(?1)?b)$"}}}
    with pytest.raises(
        RegexError, match=r"#/properties/re: pattern '\^\(a\(\?1\)\?b\)\$' cannot be enforced"
    ) as err:
        JSONLogitsProcessor(schema, load_vocab("spm32k"))
    assert "position" not in str(err.value) and "(?s:" not in str(err.value)


UNIQUE_OBJECTS = {
    # OpenAPI's parameters: unique items, each a whole object compared by its canonical spelling;
    # one automaton of it cannot hold a nested unique array of two strings or more (which needs
    # memory; of at most one, it is taken with one: see test_json_unique_items)
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "parameters": {
            "type": "array",
            "uniqueItems": True,
            "items": {
                "type": "object",
                "properties": {"in": {"enum": ["path", "query"]}, "required": {"$ref": "#/$defs/names"}},
            },
        },
    },
    "$defs": {"names": {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "minItems": 2}},
}


def test_unique_items_whose_automaton_cannot_be_built_fail_at_construction() -> None:
    """Where one item would not do (``minItems`` of 2): not when generation reaches the array
    (a processor's error mid-generation)."""
    schema = copy.deepcopy(UNIQUE_OBJECTS)
    schema["properties"]["parameters"]["minItems"] = 2
    with pytest.raises(
        SchemaError, match=r"/properties/parameters: keyword 'uniqueItems' cannot be enforced"
    ):
        JSONLogitsProcessor(schema, load_vocab("spm32k"))


def test_unique_items_whose_automaton_cannot_be_built_hold_one_item_when_reached() -> None:
    """Where one item will do, the items' automaton is built when generation first reaches the
    array (not at construction, where OpenAPI's and JSON:API's took up to half a second); if it
    cannot be built, the array holds one item there (a valid subset), whose own nested unique
    array is remembered item by item as anywhere else. No error is left for generation."""
    processor = JSONLogitsProcessor(UNIQUE_OBJECTS, load_vocab("spm32k"))
    split = processor.guide.schema  # type: ignore[attr-defined]
    assert not split.subsets
    split.compile_all()
    assert "#/properties/parameters/uniqueItems" in split.subsets
    names = {"in": "path", "required": ["a", "b"]}
    assert processor.accepts(json.dumps({"name": "n", "parameters": [names]}))
    assert not processor.accepts(json.dumps({"parameters": [names, {"in": "query"}]}))  # (valid: left out)
    assert not processor.accepts(json.dumps({"parameters": [{"required": ["a", "a"]}]}))
    assert not processor.accepts(json.dumps({"parameters": [{"required": ["a"]}]}))


def test_lenient_ignores_only_the_unique_items_it_cannot_enforce() -> None:
    """With lenient, the nested unique array is ignored in the items' automaton, which can then
    be built: the outer array's items are still unique."""
    processor = JSONLogitsProcessor(UNIQUE_OBJECTS, load_vocab("spm32k"), lenient=True)
    twice = {"in": "path", "required": ["a", "b"]}
    assert not processor.accepts(json.dumps({"name": "n", "parameters": [twice, twice]}))
    assert processor.accepts(json.dumps({"name": "n", "parameters": [twice, {"in": "query"}]}))
    assert processor.accepts(json.dumps({"parameters": [{"required": ["a", "a"]}]}))  # (ignored)
    assert not processor.accepts(json.dumps({"parameters": [{"in": "body"}]}))


def test_unique_items_left_unenforced_stay_so_after_pickling() -> None:
    """With lenient, unique strings of 20,001 characters or more are not enforced (their
    automaton passes the limits); what says so is keyed by the items' id, made again from the
    items after unpickling (another process gives them another id)."""
    import pickle

    schema = {"type": "array", "uniqueItems": True, "items": {"type": "string", "minLength": 20_001}}
    processor = JSONLogitsProcessor(schema, load_vocab("spm32k"), lenient=True)
    copy = pickle.loads(pickle.dumps(processor))
    split = copy.guide.schema  # type: ignore[attr-defined]
    unenforced = split._unenforced_unique
    assert unenforced and all(id(items) == key for key, (items, *_) in unenforced.items())
    assert copy.accepts(json.dumps(["a" * 20_001] * 2))  # (ignored)
    assert not copy.accepts(json.dumps(["a" * 20_000]))


def _processor_accepts(processor: JSONLogitsProcessor, text: str) -> bool:
    guide = processor.guide
    state = guide.initial_state
    for byte in text.encode():
        state = guide.advance(state, bytes((byte,)))
        if not state:
            return False
    return bool(guide.is_final(state))


# regexes no automaton enforces: a backreference, PCRE recursion (SchemaStore's nodemon has one)
UNENFORCEABLE_PATTERNS = [
    ({"type": "string", "pattern": r"(a)\1", "maxLength": 5}, "#", r"(a)\1"),
    (
        {"type": "object", "patternProperties": {"^(a)(?1)$": {"type": "integer"}}},
        "patternProperties",
        "^(a)(?1)$",
    ),
    (
        {"type": "object", "properties": {"x": {"type": "string", "not": {"pattern": r"(a)\1"}}}},
        "/properties/x",
        r"(a)\1",
    ),
]


@pytest.mark.parametrize(("schema", "where", "pattern"), UNENFORCEABLE_PATTERNS)
def test_an_unenforceable_pattern_is_an_error_that_names_it_and_the_way_out(schema, where, pattern) -> None:
    schema, _ = _behind_properties(schema)
    with pytest.raises(RegexError) as caught:
        JSONLogitsProcessor(schema, load_vocab("llama3-128k"))
    message = str(caught.value)
    assert repr(pattern) in message and where in message and "lenient=True" in message


def test_lenient_leaves_an_unenforceable_pattern_out_and_enforces_the_rest() -> None:
    vocab = load_vocab("llama3-128k")
    string, keys, negated = (s for s, _, _ in UNENFORCEABLE_PATTERNS)
    processor = JSONLogitsProcessor(string, vocab, lenient=True)
    assert _processor_accepts(processor, '"xyz"') and _processor_accepts(processor, '"aa"')
    assert not _processor_accepts(processor, '"abcdef"')  # maxLength is still enforced
    assert not _processor_accepts(processor, "7")
    processor = JSONLogitsProcessor(keys, vocab, lenient=True)
    assert _processor_accepts(processor, '{"aa": "text"}')  # the entry's keys fall to additionalProperties
    assert not _processor_accepts(processor, '{"aa": }')
    processor = JSONLogitsProcessor(negated, vocab, lenient=True)
    assert _processor_accepts(processor, '{"x": "b"}') and not _processor_accepts(processor, '{"x": 1}')
    # (the schema the processor reads is the one compiled: without the pattern)
    assert "pattern" not in json.dumps(JSONLogitsProcessor(string, vocab, lenient=True).schema)

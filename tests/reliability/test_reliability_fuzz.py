"""Reliability under bad input: every compiler input compiles or raises a clear library error.

Random regex ASTs, random text and bytes as patterns, nested and huge counted
repeats, random JSON Schema documents (recursive, with random keywords, values
and types), and the malformed inputs collected in ``tests/corpus/``. For each:
a :class:`~outlines_gguf.ByteDFA` with valid invariants, or an
``OutlinesGGUFError`` that is a ``ValueError`` (the input is at fault); never
another exception, never a hang (``reliability_support.no_hang``), never a
crash. Compile time is bounded by the documented limits (README, "Limits").
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import (
    assert_clear_error,
    assert_valid_dfa,
    build_input,
    corpus_id,
    load_corpus,
    outcome,
    random_walk,
)

from outlines_gguf import ConstraintTooComplexError, compile_json_schema, compile_regex
from outlines_gguf.automata import budget as automata_budget
from outlines_gguf.automata.budget import MAX_COMPILE_WORK


def fuzz(examples: int) -> settings:
    """Hypothesis settings for fuzzing: no per-example deadline (``no_hang`` guards instead)."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTLINES_GGUF_CACHE", "0")  # thousands of throwaway inputs


@pytest.fixture
def small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fifth of the default work budget: random inputs that exhaust it do so in a fraction
    of a second (the mechanism is the same; the corpus and the budget test use the default)."""
    monkeypatch.setattr(automata_budget, "MAX_COMPILE_WORK", MAX_COMPILE_WORK // 5)


def _compile_grammar(text: str) -> Any:
    from outlines_gguf import compile_grammar

    return compile_grammar(text)


# -- the corpus ---------------------------------------------------------------------------------
# One compiler per file. A new constraint language adds its corpus file and a line here.

CORPORA: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "regex.jsonl": ("pattern", compile_regex),
    "json_schema.jsonl": ("schema", compile_json_schema),
    "grammar.jsonl": ("grammar", _compile_grammar),
}


def _corpus_cases() -> list[Any]:
    cases = []
    for name, (field, _) in CORPORA.items():
        for entry in load_corpus(name):
            marks = [pytest.mark.skip(reason=entry["known_issue"])] if "known_issue" in entry else []
            cases.append(pytest.param(name, field, entry, id=f"{name}:{corpus_id(entry)}", marks=marks))
    return cases


@pytest.mark.filterwarnings("ignore::FutureWarning")  # re warns about "[[:alpha:]" (a corpus entry)
@pytest.mark.parametrize(("name", "field", "entry"), _corpus_cases())
def test_corpus_entry_has_its_expected_outcome(name: str, field: str, entry: dict[str, Any]) -> None:
    compile_fn = CORPORA[name][1]
    key = "schema_text" if "schema_text" in entry else field
    kind, result, _ = outcome(compile_fn, build_input(entry, key))
    assert kind == entry["expect"], f"{entry}: got {kind}: {result}"
    if kind == "ok":
        if name != "grammar.jsonl":
            assert_valid_dfa(result)
    else:
        assert_clear_error(result)
        if "match" in entry:
            assert re.search(entry["match"], str(result)), str(result)


def test_corpus_files_are_well_formed() -> None:
    known = {"ok", "RegexError", "SchemaError", "EmptyLanguageError", "ConstraintTooComplexError"}
    known.add("GrammarError")
    for name, (field, _) in CORPORA.items():
        entries = load_corpus(name)
        assert len(entries) >= 10, name
        for e in entries:
            assert e["expect"] in known, e
            assert any(k in e for k in (field, "schema_text", "repeat", "nest")), e


# -- regexes ------------------------------------------------------------------------------------

_ALPHABET = ["a", "b", "z", "0", "9", " ", "-", "é", "ß", "中", "😀", "\n", "\x00", "\x7f"]


def _regex_atoms() -> st.SearchStrategy[str]:
    char = st.one_of(st.sampled_from(_ALPHABET), st.characters(codec="utf-8")).map(re.escape)
    ranges = st.tuples(st.sampled_from([*_ALPHABET, "\U0010ffff", "\ud7ff"]), st.sampled_from(_ALPHABET)).map(
        lambda t: f"{re.escape(min(t))}-{re.escape(max(t))}"
    )
    category = st.sampled_from([r"\d", r"\w", r"\s", r"\D", r"\W", r"\S"])
    members = st.lists(st.one_of(char, ranges, category), min_size=1, max_size=4)
    return st.one_of(
        char,
        members.map(lambda m: "[" + "".join(m) + "]"),
        members.map(lambda m: "[^" + "".join(m) + "]"),
        st.sampled_from([".", r"\d", r"\w", r"\s", r"\D", r"\W", r"\S", r"\x00", r"\u00e9", r"\t"]),
        # anchors and constructs that are valid Python but not regular, or invalid
        st.sampled_from(
            ["^", "$", r"\A", r"\Z", r"\b", r"\B", r"\1", "(?=a)", "(?!b)", "(?<=a)", "(?<!b)", "(?>a)"]
        ),
        st.sampled_from(["(", ")", "[", "{", "\\"]),
    )


def _quantifier() -> st.SearchStrategy[str]:
    count = st.one_of(
        st.integers(0, 3), st.integers(0, 120), st.integers(9_990, 10_010), st.integers(10**6, 10**25)
    )
    return st.one_of(
        st.sampled_from(["*", "+", "?", "*?", "+?", "??", "*+", "++"]),
        count.map(lambda n: f"{{{n}}}"),
        st.tuples(count, count).map(lambda t: f"{{{min(t)},{max(t)}}}"),
        st.tuples(count, count).map(lambda t: f"{{{t[0]},{t[1]}}}"),  # also max < min
        count.map(lambda n: f"{{{n},}}"),
    )


def regex_asts(max_leaves: int = 8) -> st.SearchStrategy[str]:
    """Pattern text from random regex syntax trees (mostly valid, some not)."""

    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.lists(children, min_size=2, max_size=3).map("".join),
            st.lists(children, min_size=2, max_size=3).map("|".join),
            st.tuples(st.sampled_from(["(", "(?:", "(?P<g>", "(?i:", "(?s:", "(?a:"]), children).map(
                lambda t: f"{t[0]}{t[1]})"
            ),
            st.tuples(children, _quantifier()).map(lambda t: f"(?:{t[0]}){t[1]}"),
        )

    flags = st.sampled_from(["", "", "", "(?i)", "(?s)", "(?a)", "(?m)", "(?x)", "(?u)", "(?L)"])
    return st.tuples(flags, st.recursive(_regex_atoms(), extend, max_leaves=max_leaves)).map("".join)


@pytest.mark.usefixtures("small_budget")
@fuzz(150)
@given(pattern=regex_asts(), seed=st.integers(0, 2**32 - 1))
def test_random_regex_asts_compile_or_fail_clearly(pattern: str, seed: int) -> None:
    kind, result, _ = outcome(compile_regex, pattern)
    if kind != "ok":
        assert_clear_error(result)
        return
    assert_valid_dfa(result)
    # what the automaton accepts, Python's re accepts too, with and without re.ASCII
    rng = np.random.default_rng(seed)
    for _ in range(3):
        data = random_walk(result, rng)
        if data is not None:
            text = data.decode("utf-8")
            assert re.fullmatch(pattern, text), (pattern, text)
            if "(?u" not in pattern:
                assert re.fullmatch(pattern, text, re.ASCII), (pattern, text)


@pytest.mark.usefixtures("small_budget")
@fuzz(200)
@given(pattern=st.one_of(st.text(max_size=40), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
def test_random_text_as_a_pattern_compiles_or_fails_clearly(pattern: str) -> None:
    kind, result, _ = outcome(compile_regex, pattern)
    if kind == "ok":
        assert_valid_dfa(result)
    else:
        assert_clear_error(result)


@fuzz(30)
@given(data=st.binary(max_size=40))
def test_bytes_are_not_a_pattern(data: bytes) -> None:
    kind, result, _ = outcome(compile_regex, data)
    assert kind == "RegexError" and "must be a str" in str(result)


@pytest.mark.usefixtures("small_budget")
@fuzz(15)
@given(
    inner=st.sampled_from(["a", ".", "[a-z]", "(?:ab|c)", "\\w", "中"]),
    counts=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300)), min_size=2, max_size=3),
)
def test_nested_counted_repeats_compile_or_fail_fast(inner: str, counts: list[tuple[int, int]]) -> None:
    pattern = inner
    for lo, hi in counts:
        pattern = f"(?:{pattern}){{{min(lo, hi)},{max(lo, hi)}}}"
    kind, result, seconds = outcome(compile_regex, pattern)
    if kind == "ok":
        assert_valid_dfa(result)
    else:
        assert kind in ("ConstraintTooComplexError", "EmptyLanguageError"), result
    assert seconds < 60, f"{pattern}: {seconds:.1f} s (a hang guard, not a speed target)"


def test_the_work_budget_stops_what_used_to_take_a_minute() -> None:
    """(a{1,100}){1,100} took 62 s and (.{0,50}){0,50} 54 s: the work budget stops them. So
    does (?:(?: a)*){9990}, found by the fuzz test above, whose first DFA state alone needed
    ten thousand closures of ten thousand NFA states each: closure work is charged as it
    accrues, not with the next state."""
    for pattern in ["(a{1,100}){1,100}", "(.{0,50}){0,50}", "(?:(?: a)*){9990}"]:
        start = time.perf_counter()
        with pytest.raises(ConstraintTooComplexError, match="MAX_COMPILE_WORK"):
            compile_regex(pattern)
        assert time.perf_counter() - start < 60  # a hang guard: the error above is the budget's
    assert MAX_COMPILE_WORK == 10_000_000  # the value the README documents


# -- JSON Schema --------------------------------------------------------------------------------

_KEYWORDS = [
    "type", "properties", "required", "additionalProperties", "patternProperties", "minProperties",
    "maxProperties", "items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems",
    "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "enum", "const", "anyOf", "oneOf", "allOf", "not", "$ref", "$defs",
    "definitions", "title", "default", "contains", "if", "then", "dependencies",
]  # fmt: skip
_TYPES = ["null", "boolean", "integer", "number", "string", "array", "object", "strnig"]
_REFS = ["#", "#/$defs/a", "#/$defs/b", "#/definitions/a", "#/properties/x", "http://x/y", "#/nope"]
_PATTERNS = ["[a-z]+", "(a|b)*c", "^x$", "^a", "a{2,300}", "(", "\\", "(?=a)", "^(a{1,100}){1,100}$"]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.integers(-3, 70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(_TYPES + _REFS + _PATTERNS + ["date-time", "uuid", "email"]),
)


def raw_schemas() -> st.SearchStrategy[Any]:
    """Anything JSON: dicts of random keywords with random values of random types."""

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        values = st.one_of(
            children,
            st.lists(children, max_size=3),
            st.dictionaries(st.sampled_from(["a", "b", "x", "y"]), children, max_size=3),
        )
        return st.one_of(
            st.lists(st.tuples(st.sampled_from(_KEYWORDS), values), max_size=5).map(dict),
            st.lists(children, max_size=3),
        )

    leaves = st.one_of(_scalars, st.just({}), st.just(True), st.just(False))
    return st.recursive(leaves, extend, max_leaves=20)


def shaped_schemas() -> st.SearchStrategy[Any]:
    """Keyword values of the right JSON type but random, often hostile, values (negative,
    huge, cyclic $ref), so compilation goes deep."""

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        names = st.sampled_from(["a", "b", "x"])
        types = st.sampled_from(_TYPES[:7])
        return st.fixed_dictionaries(
            {},
            optional={
                "type": st.one_of(types, st.lists(types, max_size=3)),
                "properties": st.dictionaries(names, children, max_size=3),
                "required": st.lists(st.sampled_from(["a", "b", "x", "z"]), max_size=3),
                "additionalProperties": children,
                "items": children,
                "prefixItems": st.lists(children, max_size=2),
                "minItems": st.integers(-1, 12),
                "maxItems": st.one_of(st.integers(-1, 12), st.just(10**9)),
                "minLength": st.integers(-1, 40),
                "maxLength": st.one_of(st.integers(-1, 40), st.just(10**9)),
                "minProperties": st.integers(-1, 5),
                "maxProperties": st.one_of(st.integers(-1, 5), st.just(10**9)),
                "minimum": st.one_of(st.integers(-(10**20), 10**20), st.floats(-1e20, 1e20)),
                "maximum": st.one_of(st.integers(-(10**20), 10**20), st.floats(-1e20, 1e20)),
                "exclusiveMinimum": st.one_of(st.booleans(), st.integers(-100, 100)),
                "multipleOf": st.one_of(st.integers(-2, 40), st.just(10**9), st.floats(-1, 100)),
                "pattern": st.sampled_from(_PATTERNS),
                "format": st.sampled_from(["date-time", "uuid", "email", "ipv4", "nope"]),
                "enum": st.lists(_scalars, max_size=3),
                "const": _scalars,
                "anyOf": st.lists(children, max_size=3),
                "oneOf": st.lists(children, max_size=3),
                "allOf": st.lists(children, max_size=2),
                "not": children,
                "$ref": st.sampled_from(["#", "#/$defs/a", "#/$defs/b", "#/nope"]),
            },
        )

    leaf = st.sampled_from([{}, True, False, {"type": "string"}, {"type": "integer"}, {"$ref": "#/$defs/a"}])
    node = st.recursive(leaf, extend, max_leaves=8)
    defs = st.dictionaries(st.sampled_from(["a", "b"]), node, max_size=2)
    return st.tuples(node, defs).map(lambda t: {**t[0], "$defs": t[1]} if isinstance(t[0], dict) else t[0])


def _check_schema(schema: Any, lenient: bool) -> None:
    kind, result, _ = outcome(lambda s: compile_json_schema(s, lenient=lenient), schema)
    if kind == "ok":
        assert_valid_dfa(result)
    else:
        assert_clear_error(result)


@pytest.mark.usefixtures("small_budget")
@fuzz(200)
@given(schema=raw_schemas(), lenient=st.booleans())
def test_random_json_schema_documents_compile_or_fail_clearly(schema: Any, lenient: bool) -> None:
    _check_schema(schema, lenient)


@pytest.mark.usefixtures("small_budget")
@fuzz(60)
@given(schema=shaped_schemas(), lenient=st.booleans())
def test_hostile_json_schema_values_compile_or_fail_clearly(schema: Any, lenient: bool) -> None:
    _check_schema(schema, lenient)


@pytest.mark.usefixtures("small_budget")
@fuzz(40)
@given(text=st.one_of(st.text(max_size=30), st.text(alphabet='{}[]":,0123456789truefalsn ', max_size=40)))
def test_random_text_as_a_schema_compiles_or_fails_clearly(text: str) -> None:
    _check_schema(text, False)


def test_a_schema_that_fails_compiles_again_on_request() -> None:
    """Errors are not cached: the same bad input fails the same way twice."""
    bad = {"type": "string", "maxLength": "x"}
    for _ in range(2):
        with pytest.raises(ValueError, match="maxLength must be a non-negative integer"):
            compile_json_schema(bad)


@pytest.mark.skipif(not os.environ.get("OUTLINES_GGUF_FUZZ_LONG"), reason="set OUTLINES_GGUF_FUZZ_LONG=1")
@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(schema=st.one_of(raw_schemas(), shaped_schemas()), lenient=st.booleans())
def test_long_json_schema_fuzz(schema: Any, lenient: bool) -> None:
    """The same properties with many more examples (minutes; run before a release)."""
    _check_schema(schema, lenient)

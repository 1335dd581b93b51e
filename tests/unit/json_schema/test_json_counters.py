"""Counted strings and arrays beyond the caps: exact, and counted by the return stack.

``maxLength: 5000`` or ``maxItems: 1000`` written as states would be thousands of copies of a
character's or an item's automaton; the pushdown chains small runs instead, each calling the
next, and compiles a run only when generation reaches it. Judged by ``jsonschema`` on texts
around every run boundary, and masks against a brute force over the whole vocabulary.
"""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
from conftest import load_vocab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pushdown_oracle import brute_force_allowed

from outlines_gguf import SchemaError
from outlines_gguf.automata.dfa import keep_states, reaching
from outlines_gguf.compiler import compile_json_schema
from outlines_gguf.json_schema.pushdown import PushdownGuide
from outlines_gguf.json_schema.runs import STRING_SEGMENT
from outlines_gguf.json_schema.scalars import pattern_part_dfa
from outlines_gguf.json_schema.split import SplitSchema
from outlines_gguf.json_schema.strings import _layered_table, _layers_alive, _live_layers_table, _pair_layout

LENGTHS = sorted({0, 1, 2, 63, 64, 65, 69, 70, 71, 127, 128, 129, 255, 256, 257, 299, 300, 301, 340})
ALPHABET = ["a", "b", "é", "日", "😀", '"', "\\", "\n", " ", "-"]


def _accepts(guide: PushdownGuide, data: bytes) -> bool:
    state = guide.advance(guide.initial_state, data)
    return bool(state) and guide.is_final(state)


def _valid(doc: object, schema: dict) -> bool:
    try:
        jsonschema.validate(doc, schema)
        return True
    except jsonschema.ValidationError:
        return False


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 70, "maxLength": 300},
        {"type": ["string", "null"], "maxLength": 5000},
        {"type": "string", "minLength": 257},
        {"type": "string", "minLength": 129, "maxLength": 257},
        {
            "type": "object",
            "properties": {"s": {"type": "string", "maxLength": 299}, "n": {"type": "integer"}},
            "required": ["s"],
        },
        {
            "type": "object",
            "properties": {
                "s": {"oneOf": [{"type": "null"}, {"type": "string", "minLength": 70, "maxLength": 600}]},
                "n": {"type": "integer"},
            },
            "required": ["s"],
        },
    ],
)
def test_long_strings_count_characters_exactly(schema: dict) -> None:
    vocab = load_vocab("spm32k")
    guide = PushdownGuide(SplitSchema(schema), vocab)
    rng = np.random.default_rng(3)
    wrap = (lambda text: {"s": text, "n": 1}) if schema.get("type") == "object" else (lambda text: text)
    for length in LENGTHS:
        for _ in range(2):
            text = "".join(rng.choice(ALPHABET) for _ in range(length))
            for ascii_only in (True, False):
                doc = wrap(text)
                data = json.dumps(doc, ensure_ascii=ascii_only).encode()
                assert _accepts(guide, data) == _valid(doc, schema), (schema, length, ascii_only)
    if "null" in schema.get("type", []):
        assert _accepts(guide, b"null")
    if "oneOf" in json.dumps(schema):  # a nullable string: counted exactly, past the caps too
        assert _accepts(guide, b'{"s": null, "n": 1}')
        assert _accepts(guide, json.dumps({"s": "x" * 600, "n": 1}).encode())
        assert not _accepts(guide, json.dumps({"s": "x" * 601, "n": 1}).encode())


def test_a_long_string_is_a_chain_of_small_runs() -> None:
    """2,000 characters: a chain of runs of STRING_SEGMENT characters, compiled as reached."""
    split = SplitSchema({"type": "string", "maxLength": 2000})
    assert split.n_compiled <= 2  # the quotes, and at most the first run
    guide = PushdownGuide(split, load_vocab("spm32k"))
    state = guide.advance(guide.initial_state, b'"' + "é".encode() * 700)
    assert state and guide.is_final(guide.advance(state, b'"'))
    assert split.n_compiled <= 700 // STRING_SEGMENT + 3
    chain, number = [], next(iter(split.node(0).calls.values()))[0][0]
    while True:  # follow the chain: each run calls the next after STRING_SEGMENT characters
        node = split.node(number)
        chain.append(node.dfa.n_states)
        if not node.calls:
            break
        ((number, _),) = next(iter(node.calls.values()))
    assert len(chain) == -(-2000 // STRING_SEGMENT)
    assert max(chain) < 40 * (STRING_SEGMENT + 1)


SEG = STRING_SEGMENT


@pytest.mark.parametrize("vocab_name", ["spm32k", "llama3-128k"])
def test_masks_exact_across_run_boundaries(vocab_name: str) -> None:
    """Masks equal a brute force (every token fed byte by byte) where tokens cross from one run
    into the next, at the minimum, and at the maximum."""
    vocab = load_vocab(vocab_name)
    schema = {
        "type": "object",
        "properties": {"s": {"type": "string", "minLength": SEG + 2, "maxLength": 2 * SEG + 4}},
    }
    guide = PushdownGuide(SplitSchema(schema), vocab)
    prefix = b'{"s": "'
    points = [0, SEG - 1, SEG, SEG + 2, 2 * SEG + 4] if vocab_name == "spm32k" else [SEG - 3]
    for count in points:
        state = guide.advance(guide.initial_state, prefix + b"x" * count)
        got = guide.mask(state).allowed_ids(vocab.size)
        assert np.array_equal(got, brute_force_allowed(guide, state, vocab)), count


# (minLength, maxLength) and the character counts to check masks at: far from the bounds (masks
# shared between counts), a token's length from the end of a run (tokens go on into the next
# run), at the minimum and the maximum
SHARED_CASES = [
    ((0, 100), [0, 1, 40, 60, 98, 100]),
    ((50, 2 * SEG + 10), [3, 10, 30, 49, 50, 51, 200, SEG - 40, SEG - 7, SEG - 1, SEG, SEG + 1]),
    ((0, SEG + 5), [SEG - 30, SEG - 10, SEG - 4, SEG - 2, SEG, SEG + 3, SEG + 5]),
    ((0, None), [0, 5, 33]),
    ((40, None), [0, 12, 39, 40, 41, 90]),
    ((SEG + 20, None), [0, 300, SEG - 5, SEG, SEG + 19, SEG + 20, SEG + 21]),
]
# what comes before the count's end: plain characters, or ones that leave the text inside a
# character or an escape
TAILS = [b"", b"\\", b"\\u00", "é".encode()[:1], "日".encode()[:2]]


@pytest.mark.parametrize(("bounds", "counts"), SHARED_CASES)
def test_shared_run_masks_equal_a_brute_force(bounds: tuple[int, int | None], counts: list[int]) -> None:
    """A run's masks are computed once for all the character counts that read every token alike
    (``RunShape.representative``); each equals a brute force at its own count, inside a
    character or an escape too."""
    vocab = load_vocab("spm32k")
    low, high = bounds
    string: dict = {"type": "string", "minLength": low}
    if high is not None:
        string["maxLength"] = high
    schema = {"type": "object", "properties": {"s": string, "t": {"type": "boolean"}}}
    guide = PushdownGuide(SplitSchema(schema), vocab)
    for count in counts:
        for tail in TAILS:
            chars = ("ab€" * (count // 3 + 1))[:count]
            if tail:
                if count == 0 or (high is not None and count > high):
                    continue
                chars = chars[:-1]  # the last character replaced by an unfinished one
            text = b'{"s": "' + chars.encode() + tail
            state = guide.advance(guide.initial_state, text)
            assert state, (bounds, count, tail)
            got = guide.mask(state).allowed_ids(vocab.size)
            assert np.array_equal(got, brute_force_allowed(guide, state, vocab)), (bounds, count, tail)


ITEM_COUNTS = sorted({0, 1, 2, 15, 16, 17, 33, 64, 65, 66, 67, 80, 81, 99, 100, 101, 130})


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "items": {"type": "integer"}, "minItems": 66, "maxItems": 100},
        {
            "type": "array",
            "items": {"type": "object", "properties": {"a": {"type": "boolean"}}},
            "maxItems": 80,
        },
        {"type": "array", "items": {"enum": [1, "x"]}, "minItems": 81},
        {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "null"}, "maxItems": 67},
    ],
)
def test_long_arrays_count_items_exactly(schema: dict) -> None:
    vocab = load_vocab("spm32k")
    guide = PushdownGuide(SplitSchema(schema), vocab)
    rng = np.random.default_rng(5)
    items = schema["items"]
    for count in ITEM_COUNTS:
        if items.get("type") == "object":
            doc = [{"a": bool(rng.integers(2))} if rng.integers(3) else {} for _ in range(count)]
        elif "enum" in items:
            doc = [items["enum"][int(rng.integers(2))] for _ in range(count)]
        elif "prefixItems" in schema:
            doc = ["s", *[None] * (count - 1)] if count else []
        else:
            doc = [int(rng.integers(-50, 50)) for _ in range(count)]
        for separators in ((", ", ": "), (",", ":")):
            data = json.dumps(doc, separators=separators).encode()
            assert _accepts(guide, data) == _valid(doc, schema), (schema, count, separators)
    if "enum" in items:  # a wrong item past the first runs is refused
        assert not _accepts(guide, json.dumps([1] * 90 + [2]).encode())


def test_a_long_array_is_a_chain_of_small_runs() -> None:
    split = SplitSchema({"type": "array", "items": {"type": "number"}, "maxItems": 1000})
    assert split.n_compiled <= 3
    guide = PushdownGuide(split, load_vocab("spm32k"))
    state = guide.advance(guide.initial_state, json.dumps([1.5] * 200).encode()[:-1])
    assert state and guide.is_final(guide.advance(state, b"]"))
    assert split.n_compiled <= 200 // 16 + 4
    assert max(split.node(n).dfa.n_states for n in range(split.n_compiled)) < 2000


def test_array_masks_exact_across_run_boundaries() -> None:
    vocab = load_vocab("spm32k")
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": 70, "maxItems": 100}
    guide = PushdownGuide(SplitSchema(schema), vocab)
    for count in (15, 16, 69, 70, 99, 100):
        state = guide.advance(guide.initial_state, json.dumps(list(range(count))).encode()[:-1])
        got = guide.mask(state).allowed_ids(vocab.size)
        assert np.array_equal(got, brute_force_allowed(guide, state, vocab)), count


def test_pattern_string_masks_equal_a_brute_force() -> None:
    """Strings searched by an unanchored pattern, or in a format, loop on most characters: their
    walks take whole subtrees of the trie (``trie.Loops``). Masks along a document equal a brute
    force, inside the strings and across their closing quotes."""
    vocab = load_vocab("spm32k")
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": "string", "pattern": "[0-9]{4}-[0-9]{2}"},
            "site": {"type": "string", "format": "uri"},
            "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-zé]+$"}},
        },
        "required": ["when", "site", "tags"],
        "additionalProperties": False,
    }
    guide = PushdownGuide(SplitSchema(schema), vocab)
    doc = {"when": "on 2024-05 or so", "site": "https://example.org/a?b=1", "tags": ["ab", "é"]}
    text = json.dumps(doc, ensure_ascii=False)
    data = text.encode()
    keys = (b'"when"', b'"site"')
    cuts = [data.index(b": ", data.index(key)) + 3 + k for key in keys for k in (0, 1, 4, 9)]
    cuts += [data.index(b'["') + 2, data.index(b'"]') - 1, data.index(b'"]'), len(data) - 1]
    for cut in cuts:
        state = guide.advance(guide.initial_state, data[:cut])
        assert state, data[:cut]
        got = guide.mask(state).allowed_ids(vocab.size)
        assert np.array_equal(got, brute_force_allowed(guide, state, vocab)), data[:cut]


def test_a_pattern_counted_beyond_the_table_limit_is_refused_as_too_complex() -> None:
    """Characters counted over a pattern's automaton are layers of it (exact); past
    MAX_LAYERED_ENTRIES that is a ConstraintTooComplexError saying so, not a malformed schema."""
    from outlines_gguf.errors import ConstraintTooComplexError

    with pytest.raises(ConstraintTooComplexError, match="10000 or more characters matching its pattern"):
        SplitSchema({"type": "string", "pattern": "^([a-z][0-9])+$", "minLength": 10000})


@pytest.mark.parametrize("max_length", [30, 64, 255, 1024])
def test_an_email_under_a_max_length_writes_ordinary_addresses(max_length: int) -> None:
    """A format counted under maxLength keeps room for real values (an email with maxLength 255
    once accepted no address: the format's automaton was too big for the layers to fit)."""
    schema = {"type": "string", "format": "email", "maxLength": max_length}
    guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))
    for local in ("example", "first.last", "x" * 20):
        address = f"{local}@example.com"
        doc = json.dumps(address).encode()
        assert _accepts(guide, doc) == (len(address) <= max_length), address
    assert not _accepts(guide, b'"a..b@example.com"') and not _accepts(guide, b'".a@example.com"')


@pytest.mark.parametrize(
    ("leaf", "text"),
    [
        # (schemastore's allstar-branch: each character of such a value cost a walk of the whole trie)
        ({"pattern": "^[^/]+/[^/]+$", "maxLength": 40}, "owner/some-repository-name-here-abc"),
        ({"pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "minLength": 8, "maxLength": 20}, "abc-def-98765-x"),
        ({"pattern": "(ab|é)+", "minLength": 3, "maxLength": 12}, "xabéabé\\n日ab"),
        ({"format": "email", "maxLength": 24}, "a.b-c@example-host.org"),
        # no maximum: the last layer goes on (a GitHub schema's item lost its third letter)
        ({"pattern": "^[a-zA-Z]+$", "minLength": 2}, "Apples"),
        ({"pattern": "^(ab|c)+$", "minLength": 5}, "abcabcc"),
    ],
)
def test_counted_pattern_string_masks_equal_a_brute_force(leaf: dict, text: str) -> None:
    """A string with a pattern (or format) and a length is laid out in layers over the pattern;
    its masks come from one walk per pair of the layout, filtered by layer (``_layered_inside``):
    equal to a brute force at every character, near both bounds, and across the closing quote."""
    vocab = load_vocab("spm32k")
    schema = {"type": "object", "properties": {"v": {"type": "string", **leaf}, "n": {"type": "integer"}}}
    guide = PushdownGuide(SplitSchema(schema), vocab)
    prefix = b'{"v": "'
    body = text.encode()
    state = guide.advance(guide.initial_state, prefix)
    layered = 0
    for cut in range(len(body) + 1):
        here = guide.advance(state, body[:cut])
        if not here:
            break  # (the text left the pattern: the masks before said so)
        got = guide.mask(here).allowed_ids(vocab.size)
        assert np.array_equal(got, brute_force_allowed(guide, here, vocab)), body[:cut]
        layered += any(guide.schema.node(n).layers is not None for _, n, _ in here)
    assert layered  # (the layout was used: the test checks what it means to)


@pytest.mark.parametrize("leaf", [{}, {"pattern": "x"}, {"format": "email"}])
@pytest.mark.parametrize(("low", "high"), [(11, 10), (40, 35), (600, 550)])
def test_a_string_longer_than_its_maximum_is_no_value(leaf: dict, low: int, high: int) -> None:
    # minLength above maxLength: a layered string body kept an acceptance nothing reached, so
    # the leaf passed for productive and generation could open the string into a dead end
    # (or, with a pattern, the layers' arithmetic failed as a "malformed schema"); above
    # MAX_LENGTH_CAP the cap was raised to minLength, past maxLength: 600 characters were
    # accepted for minLength 600, maxLength 550 (invalid output)
    string = {"type": "string", "minLength": low, "maxLength": high, **leaf}
    with pytest.raises(SchemaError, match="no JSON value satisfies this schema"):
        SplitSchema(string)
    with pytest.raises(SchemaError, match="no JSON value satisfies this schema"):
        compile_json_schema(string)
    guide = PushdownGuide(SplitSchema({"type": "object", "properties": {"a": string}}), load_vocab("spm32k"))
    assert not guide.advance(guide.initial_state, b'{"a"')
    assert guide.is_final(guide.advance(guide.initial_state, b"{}"))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    low=st.integers(0, 600),
    high=st.one_of(st.none(), st.integers(0, 600)),
    pattern=st.sampled_from([None, "x", "^x+$", "^[xy]*$"]),
    null=st.booleans(),
)
def test_length_bounds_against_jsonschema(
    low: int, high: int | None, pattern: str | None, null: bool
) -> None:
    """Random length bounds (either order, across MAX_LENGTH_CAP and STRING_SEGMENT), with or
    without a pattern: every string of the lengths around the bounds is accepted exactly when
    jsonschema validates it, or the schema is refused (no value, or too large to count)."""
    from outlines_gguf.errors import ConstraintTooComplexError

    schema: dict = {"type": ["string", "null"] if null else "string", "minLength": low}
    if high is not None:
        schema["maxLength"] = high
    if pattern is not None:
        schema["pattern"] = pattern
    try:
        guide = PushdownGuide(SplitSchema(schema), load_vocab("spm32k"))
    except SchemaError:
        assert not any(_valid("x" * n, schema) for n in {low, low + 1, high or 0})
        return
    except ConstraintTooComplexError:
        return
    lengths = {0, 1, low - 1, low, low + 1, *(() if high is None else (high - 1, high, high + 1))}
    for n in sorted(x for x in lengths if x >= 0):
        value = "x" * n
        if _accepts(guide, json.dumps(value).encode()):
            assert _valid(value, schema), n  # never an invalid value


LAYER_PATTERNS = ["^[a-z]+$", "^[^/]+/[^/]+$", "^(ab|c)*d$", "x", "^[0-9]{2,4}-[A-Z]$", r"^\w+@\w+$", "é|ü+"]


@settings(max_examples=60, deadline=None)
@given(
    pattern=st.sampled_from(LAYER_PATTERNS),
    low=st.integers(0, 6),
    extra=st.one_of(st.none(), st.integers(0, 8)),
)
def test_layer_by_layer_liveness_equals_a_search_of_the_whole_table(pattern: str, low: int, extra) -> None:
    """The live states of a counted pattern string, found layer by layer over the pairs
    (``_layers_alive``), are those a backwards search of the whole table finds, and the table
    laid out from them (``_live_layers_table``) is the whole table's restricted to them."""
    dfa = pattern_part_dfa(pattern)
    order, nxt, completes = _pair_layout(dfa.transitions)
    at_boundary = np.array([s == 0 and bool(dfa.accepting[p]) for p, s in order])
    open_end = extra is None
    layers = low + 1 if open_end else low + extra + 1
    table, accepting = _layered_table(nxt, completes, at_boundary, layers, low, open_end)
    expected = reaching(table, accepting)
    alive = _layers_alive(nxt, completes, at_boundary, layers, low, open_end)
    assert np.array_equal(alive.reshape(-1), expected)
    if expected[0]:
        laid_out = _live_layers_table(nxt, completes, at_boundary, alive, low, open_end)
        for mine, theirs in zip(laid_out, keep_states(table, accepting, expected), strict=True):
            assert np.array_equal(mine, theirs)

"""Plain-text tokens: each classification against a direct check (``re`` on the decoded text, every
code point), and TextTokens' slices and walks against brute force over every token."""

from __future__ import annotations

import math
import re
from functools import cache, lru_cache

import numpy as np
import pytest
from conftest import load_vocab
from hypothesis import example, given, settings
from hypothesis import strategies as st
from token_oracles import TOKEN_BYTES, alive_tokens, random_table, run, vocabularies

from outlines_gguf.compiler import compile_regex
from outlines_gguf.tokens.text import (
    PLAIN_RANGES,
    TextTokens,
    char_count,
    plain_prefix_length,
    starts_plain_char,
)

PLAIN_TEXT = re.compile(r'[^\x00-\x1f"\\\u2028\u2029]*')
PLAIN = r'[^"\\\x00-\x1f\u2028\u2029]'


def is_plain_text(data: bytes) -> bool:
    try:
        return PLAIN_TEXT.fullmatch(data.decode("utf-8")) is not None
    except UnicodeDecodeError:
        return False


@cache
def expected_char_count(data: bytes) -> int | None:
    return len(data.decode("utf-8")) if is_plain_text(data) else None


def expected_plain_prefix(data: bytes) -> int:
    return max(k for k in range(len(data) + 1) if is_plain_text(data[:k]))


@lru_cache(maxsize=1)
def plain_char_heads() -> frozenset[bytes]:
    """Every proper prefix of a plain character's UTF-8 (only multi-byte characters have one; the
    last byte of each 64-code-point block is all that varies, so one per block suffices)."""
    heads = set()
    for cp in range(0x80, 0x110000, 64):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        enc = chr(cp).encode()
        heads.update(enc[:k] for k in range(1, len(enc)))
    return frozenset(heads)


BYTES = st.one_of(
    st.binary(max_size=8),
    st.binary(max_size=8).map(lambda b: bytes(TOKEN_BYTES[x % len(TOKEN_BYTES)] for x in b)),
    st.text(max_size=4).map(str.encode),
)


def test_plain_ranges_are_the_plain_code_points() -> None:
    """Sorted, disjoint, and exactly the code points that are not controls, quote, backslash or a
    surrogate (UTF-8 cannot encode those)."""
    inside = np.zeros(0x110000, dtype=bool)
    for lo, hi in PLAIN_RANGES:
        assert not inside[lo : hi + 1].any()
        inside[lo : hi + 1] = True
    assert [lo for lo, _ in PLAIN_RANGES] == sorted(lo for lo, _ in PLAIN_RANGES)
    for cp in range(0x10000):
        ch = chr(cp)
        try:
            ch.encode()
        except UnicodeEncodeError:
            assert not inside[cp], hex(cp)
            continue
        assert inside[cp] == (PLAIN_TEXT.fullmatch(ch) is not None), hex(cp)
    assert inside[0x10000:].all()  # every astral code point is plain


@settings(max_examples=300)
@given(BYTES)
def test_char_count_and_plain_prefix_equal_a_direct_check(data: bytes) -> None:
    assert char_count(data) == expected_char_count(data)
    assert plain_prefix_length(data) == expected_plain_prefix(data)


def test_starts_plain_char_on_every_short_tail() -> None:
    """Every 1- and 2-byte tail, and every 3-byte tail that could head a 4-byte character."""
    heads = plain_char_heads()
    tails = [bytes([a]) for a in range(256)] + [bytes([a, b]) for a in range(256) for b in range(256)]
    tails += [
        bytes([a, b, c]) for a in range(0xF0, 0xF8) for b in range(0x80, 0xC0) for c in range(0x80, 0xC0)
    ]
    wrong = [t for t in tails if starts_plain_char(t) != (t in heads)]
    assert not wrong, wrong[:10]


@given(st.binary(min_size=1, max_size=4))
def test_starts_plain_char_on_random_tails(tail: bytes) -> None:
    assert starts_plain_char(tail) == (tail in plain_char_heads())


def test_real_vocabulary_classification() -> None:
    """Every token of the 32k SPM vocabulary, classified as the direct checks say."""
    tokens = load_vocab("spm32k").tokens
    for tok in tokens:
        assert char_count(tok) == expected_char_count(tok), tok
        assert plain_prefix_length(tok) == expected_plain_prefix(tok), tok


# -- TextTokens -------------------------------------------------------------------------------


def check_split(text: TextTokens, tokens: list[bytes], special: np.ndarray) -> None:
    """The plain ids are sorted by count, the other ids are the rest, ``by_first`` groups the plain
    ids by first byte, and the rest tries split the non-plain tokens by their plain prefix."""
    plain = [i for i, t in enumerate(tokens) if t and not special[i] and expected_char_count(t) is not None]
    plain_set = set(plain)
    rest = [i for i, t in enumerate(tokens) if t and not special[i] and i not in plain_set]
    assert sorted(text.plain_ids.tolist()) == plain
    counts = [expected_char_count(tokens[i]) for i in text.plain_ids.tolist()]
    assert text.plain_counts.tolist() == counts == sorted(counts)
    assert text.plain_first.tolist() == [tokens[i][0] for i in text.plain_ids.tolist()]
    assert text.other_ids.tolist() == [i for i in range(len(tokens)) if i not in plain_set]
    assert text.first_byte.tolist() == [t[0] if t else 0 for t in tokens]
    by_first: dict[int, list[int]] = {}
    for i in plain:
        by_first.setdefault(tokens[i][0], []).append(i)
    for b in range(256):
        group = text.by_first_ids[text.by_first_start[b] : text.by_first_start[b + 1]]
        assert sorted(group.tolist()) == by_first.get(b, [])
        group_counts = text.by_first_counts[text.by_first_start[b] : text.by_first_start[b + 1]].tolist()
        assert (
            group_counts == sorted(group_counts) == [expected_char_count(tokens[i]) for i in group.tolist()]
        )
    everything = np.zeros((1, 256), dtype=np.int32)
    assert sorted(text.rest.walk(everything, 0).tolist()) == rest
    bare = set(text.rest_bare.walk(everything, 0).tolist())
    tails = set(text.rest_tails.walk(everything, 0).tolist())
    partial = set(text.rest_partial.tolist())
    for i in rest:
        tail = tokens[i][expected_plain_prefix(tokens[i]) :]
        kind = "partial" if tail in plain_char_heads() else "tails" if len(tail) < len(tokens[i]) else "bare"
        assert [i in bare, i in tails, i in partial] == [
            kind == "bare",
            kind == "tails",
            kind == "partial",
        ], tokens[i]
    assert len(bare) + len(tails) + len(partial) == len(rest) == text.rest_partial.size + len(bare | tails)


@settings(max_examples=40, deadline=None)
@given(vocabularies())
def test_build_splits_the_vocabulary(vocab: tuple[list[bytes], np.ndarray]) -> None:
    tokens, special = vocab
    check_split(TextTokens.build(tokens, special), tokens, special)


def check_slices(text: TextTokens, tokens: list[bytes], n: float, excluded: np.ndarray | None) -> None:
    """``up_to``, ``count_up_to`` and ``not_up_to`` against a filter over every plain token."""
    skip = set() if excluded is None else set(excluded.tolist())
    counts = {i: expected_char_count(tokens[i]) for i in text.plain_ids.tolist()}
    expected = sorted(i for i, c in counts.items() if c <= n and tokens[i][0] not in skip)
    got = text.up_to(n, excluded)
    assert sorted(got.tolist()) == expected, (n, skip)
    assert text.count_up_to(n, excluded) == len(expected)
    others = text.not_up_to(n, excluded).tolist()
    assert sorted(others) == sorted(set(range(len(tokens))) - set(expected)), (n, skip)
    assert len(others) == len(set(others))


FIRST_BYTES = st.one_of(
    st.none(), st.sets(st.sampled_from(list(TOKEN_BYTES))).map(lambda s: np.array(sorted(s), np.uint8))
)
LENGTHS = st.one_of(st.integers(0, 6), st.just(math.inf), st.floats(0, 6))


@settings(max_examples=60, deadline=None)
@given(vocabularies(), LENGTHS, FIRST_BYTES)
def test_slices_by_character_count(
    vocab: tuple[list[bytes], np.ndarray], n: float, excluded: np.ndarray | None
) -> None:
    tokens, special = vocab
    check_slices(TextTokens.build(tokens, special), tokens, n, excluded)


# tokens whose first byte is an exception, with a plain prefix and a tail of each kind
EDGE_TOKENS = [b'a"', b'ab"', b"a\xc3", b"ab\xe4\xb8", b'b"', b'"', b"\xc3", b"a\\\n", b"\n", b"a\xa9", b"ab"]


def plain_loop_cases() -> list[tuple[str, bytes, bytes]]:
    """(regex, text before the state, its exceptions): states where every plain character but the
    exceptions leads to one state that every plain character leads back to."""
    after = ['"', '"(?:a|é)b?', r"\\[ab]\n", '\n"?', r'"[^"]*"']
    cases = [(f"{PLAIN}*{s}", b"", b"") for s in after]
    cases += [(f'"(?:{PLAIN}|\\\\.)*{s}', b'"', b"") for s in after]
    cases += [(f'(?:a{{1,3}}b|[^a"\\\\\\x00-\\x1f]{PLAIN}*){s}', b"", b"a") for s in after]
    cases += [(f'x(?:["a]+|[^"a\\\\\\x00-\\x1f]{PLAIN}*)"', b"x", b"a")]  # '"' is no exception: not plain
    return cases


def plain_loop(pattern: str, before: bytes, exceptions: bytes) -> tuple[np.ndarray, int, int]:
    """The DFA's table, the state after ``before`` and its plain target, the precondition checked
    on a sample of characters of every UTF-8 width."""
    dfa = compile_regex(pattern)
    state = dfa.run(before)
    target = run(dfa.transitions, state, b"b")
    sample = " b~\x7f\x80é\u07ff\u0800中\ud7ff\ue000\uffff😀\U0010ffff"
    for ch in sample:
        assert run(dfa.transitions, state, ch.encode()) == target >= 0, (pattern, ch)
        assert run(dfa.transitions, target, ch.encode()) == target, (pattern, ch)
    for ch in exceptions:
        assert run(dfa.transitions, state, bytes([ch])) != target
    return dfa.transitions, state, target


@pytest.mark.parametrize("case", plain_loop_cases(), ids=lambda c: c[0])
@settings(max_examples=8, deadline=None)
@given(vocab=vocabularies(max_size=60))
@example(vocab=(EDGE_TOKENS, np.zeros(len(EDGE_TOKENS), dtype=bool)))
def test_walk_rest_equals_running_each_token(
    case: tuple[str, bytes, bytes], vocab: tuple[list[bytes], np.ndarray]
) -> None:
    """From a plain-loop state, the two small walks (bare tokens from the state, tails from the
    target) find exactly the non-plain tokens a full run keeps alive, less those starting with an
    exception; without a target, the walk of the whole rest does."""
    tokens, special = vocab
    table, state, target = plain_loop(*case)
    text = TextTokens.build(tokens, special)
    excluded = special.copy()
    excluded[text.plain_ids] = True
    expected = alive_tokens(table, state, tokens, excluded)
    assert sorted(text.walk_rest(table, state).tolist()) == expected
    exceptions = np.frombuffer(case[2], dtype=np.uint8)
    got = text.walk_rest(table, state, target, exceptions).tolist()
    assert sorted(got) == [i for i in expected if tokens[i][0] not in case[2]]


@settings(max_examples=30, deadline=None)
@given(vocabularies(), st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_walk_rest_without_target_on_random_tables(
    vocab: tuple[list[bytes], np.ndarray], seed: int, n: int
) -> None:
    tokens, special = vocab
    text = TextTokens.build(tokens, special)
    excluded = special.copy()
    excluded[text.plain_ids] = True
    table = random_table(seed, n)
    for state in range(n):
        assert sorted(text.walk_rest(table, state).tolist()) == alive_tokens(table, state, tokens, excluded)


# -- one real vocabulary --------------------------------------------------------------------


def test_real_vocabulary_split_and_slices() -> None:
    vocab = load_vocab("spm32k")
    tokens, text = vocab.tokens, vocab.text_tokens
    check_split(text, tokens, vocab.is_special)
    for n in (0, 3, math.inf):
        for excluded in (None, np.frombuffer(b" ae{", np.uint8)):
            check_slices(text, tokens, n, excluded)


@pytest.mark.parametrize(
    "case", [plain_loop_cases()[5], plain_loop_cases()[10], plain_loop_cases()[15]], ids=lambda c: c[0]
)
def test_real_vocabulary_walk_rest(case: tuple[str, bytes, bytes]) -> None:
    vocab = load_vocab("spm32k")
    tokens, text = vocab.tokens, vocab.text_tokens
    table, state, target = plain_loop(*case)
    excluded = vocab.is_special.copy()
    excluded[text.plain_ids] = True
    expected = alive_tokens(table, state, tokens, excluded)
    got = text.walk_rest(table, state, target, np.frombuffer(case[2], dtype=np.uint8)).tolist()
    assert sorted(got) == [i for i in expected if tokens[i][0] not in case[2]]


def test_empty_tokens_are_in_no_split() -> None:
    """Regression: an empty token not marked special used to crash the build (IndexError)."""
    tokens = [b"", b"a", b'"', b""]
    text = TextTokens.build(tokens, np.zeros(len(tokens), dtype=bool))
    check_split(text, tokens, np.zeros(len(tokens), dtype=bool))
    assert text.other_ids.tolist() == [0, 2, 3]

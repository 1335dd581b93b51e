"""The byte DFA accepts exactly the UTF-8 encodings of what Python's re fullmatches."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from regex_strategies import ALPHABET, bounded_regexes, strings_up_to, unbounded_regexes

from outlines_gguf import ConstraintTooComplexError, EmptyLanguageError, RegexError, compile_regex
from outlines_gguf.automata.regex import regex_may_be_refused

STRINGS = strings_up_to(4)


@settings(max_examples=150, deadline=None)
@given(bounded_regexes())
def test_bounded_language_equals_python_re(pattern: str) -> None:
    dfa = compile_regex(pattern)
    for s in STRINGS:
        assert dfa.matches(s.encode()) == bool(re.fullmatch(pattern, s)), (pattern, s)


@settings(max_examples=100, deadline=None)
@given(unbounded_regexes())
def test_unbounded_language_equals_python_re(pattern: str) -> None:
    dfa = compile_regex(pattern)
    for s in strings_up_to(3):
        assert dfa.matches(s.encode()) == bool(re.fullmatch(pattern, s)), (pattern, s)


@settings(max_examples=100, deadline=None)
@given(bounded_regexes())
def test_every_state_is_live(pattern: str) -> None:
    """A state exists only if some continuation reaches acceptance (checked by search)."""
    dfa = compile_regex(pattern)
    table = dfa.transitions
    for state in range(dfa.n_states):
        seen, frontier, ok = {state}, [state], False
        while frontier and not ok:
            s = frontier.pop()
            ok = bool(dfa.accepting[s])
            for t in set(table[s][table[s] >= 0].tolist()) - seen:
                seen.add(t)
                frontier.append(t)
        assert ok, (pattern, state)


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (r"[0-9]{4}", ["2024", "0000"], ["202", "20245", "２０２４"]),
        (r"\+?[1-9][0-9]{7,14}", ["+14155552671", "12345678"], ["+0123456789", "1234567"]),
        (r"[à-ÿ]+", ["éèà", "ÿ"], ["e", "ā"]),
        (r".", ["a", "é", "中", "😀"], ["\n", "ab", ""]),
        (r"(?s).", ["\n"], [""]),
        (r"(?i)hello", ["HeLLo", "hello"], ["hallo"]),
        (r"\d+", ["123"], ["١٢٣", "a"]),  # ASCII digits only, see module docs
        (r"\D", ["a", "é"], ["1", "٣"]),  # and no Unicode digit in the negation
        (r"[^\d\s]", ["a"], ["1", " ", "٣", "\u2003"]),
        (r"(?a)\w+", ["abc_1"], ["é"]),
        (r"^abc$", ["abc"], ["ab"]),
        (r"a|", ["a", ""], ["b"]),
        (r"(?:ab)*?c", ["c", "ababc"], ["abc c"]),
    ],
)
def test_semantics(pattern: str, good: list[str], bad: list[str]) -> None:
    dfa = compile_regex(pattern)
    for s in good:
        assert dfa.matches(s.encode()), s
        assert re.fullmatch(pattern, s)
    for s in bad:
        assert not dfa.matches(s.encode()), s


def test_multibyte_characters_split_across_bytes() -> None:
    dfa = compile_regex("é中😀")
    data = "é中😀".encode()
    for k in range(len(data) + 1):
        assert dfa.run(data[:k]) >= 0  # every byte prefix is alive
    assert dfa.run(b"\xc3\xa8") < 0  # è is not é
    assert dfa.run(b"\xff") < 0  # never valid UTF-8


@pytest.mark.parametrize(
    ("pattern", "error", "message"),
    [
        ("(", RegexError, "missing \\)"),
        ("[z-a]", RegexError, "bad character range"),
        ("a(?<=b|bc)", RegexError, "variable-width lookbehind"),
        ("(?<=a(?=bc))", RegexError, "lookahead inside a lookbehind"),
        (r"(a)\1", RegexError, "backreference"),
        (r"(a)?(?(1)b|c)", RegexError, "conditional"),
        ("a*+", RegexError, "possessive"),
        ("(?>ab)", RegexError, "atomic"),
        ("a^b", EmptyLanguageError, "matches no string"),  # an inner anchor that never holds
        (r"a\bb", EmptyLanguageError, "matches no string"),
        ("[^\\x00-\\U0010ffff]", EmptyLanguageError, "matches no string"),
        ("a{20000}", ConstraintTooComplexError, "repeat count"),
        (b"abc", RegexError, "must be a str"),
    ],
)
def test_bad_patterns_fail_early_and_clearly(pattern: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        compile_regex(pattern)
    assert issubclass(error, ValueError)
    if error is not EmptyLanguageError and isinstance(pattern, str):
        # the JSON engine's construction scan looks for these without building anything
        assert regex_may_be_refused(pattern)


@pytest.mark.parametrize(
    "pattern", ["abc", "^a+$", "(?i)[a-z\\d]+", "ab(?<=b)c", "(?=x)x", "\\bfoo\\b", "a{2,9}", "(?s:.*?)(?:a)"]
)
def test_patterns_the_compiler_takes_are_not_flagged(pattern: str) -> None:
    assert not regex_may_be_refused(pattern)
    compile_regex(pattern)


@settings(max_examples=100, deadline=None)
@given(unbounded_regexes())
def test_a_refused_pattern_is_always_flagged(pattern: str) -> None:
    try:
        compile_regex(pattern)
    except (RegexError, ConstraintTooComplexError):
        assert regex_may_be_refused(pattern), pattern
    except EmptyLanguageError:
        pass


def test_alphabet_is_mixed_width() -> None:
    assert sorted(len(c.encode()) for c in ALPHABET) == [1, 1, 2, 3, 4]

"""ECMA-262 syntax in regexes: Unicode property escapes (``\\p{...}``) and control escapes (``\\cX``), exact
against :mod:`unicodedata` (the oracle of Python's Unicode version), and against the ``regex``
module on characters whose category is stable."""

from __future__ import annotations

import random
import unicodedata

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from outlines_gguf import RegexError
from outlines_gguf.automata.ecma_syntax import expand_escapes
from outlines_gguf.automata.regex import regex_may_be_refused, regex_to_dfa
from outlines_gguf.errors import EmptyLanguageError

# property name as written -> which two-letter categories it means
NAMES = {
    "L": lambda c: c.startswith("L"),
    "Letter": lambda c: c.startswith("L"),
    "Lu": lambda c: c == "Lu",
    "uppercase letter": lambda c: c == "Lu",
    "gc=Ll": lambda c: c == "Ll",
    "General_Category=Nd": lambda c: c == "Nd",
    "digit": lambda c: c == "Nd",
    "N": lambda c: c.startswith("N"),
    "P": lambda c: c.startswith("P"),
    "punct": lambda c: c.startswith("P"),
    "Zs": lambda c: c == "Zs",
    "S": lambda c: c.startswith("S"),
    "LC": lambda c: c in ("Lu", "Ll", "Lt"),
    "Mn": lambda c: c == "Mn",
}

# a sample of code points: ASCII, Latin-1, and a spread over the planes (no surrogates: they
# are not UTF-8)
CODE_POINTS = (
    list(range(0x80))
    + list(range(0x80, 0x250, 3))
    + random.Random(0).sample([cp for cp in range(0x250, 0x30000) if not 0xD800 <= cp <= 0xDFFF], 600)
)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_property_classes_are_exact(name: str) -> None:
    member = NAMES[name]
    positive = regex_to_dfa(f"\\p{{{name}}}")
    negative = regex_to_dfa(f"\\P{{{name}}}")
    in_class = regex_to_dfa(f"[x\\p{{{name}}}]")
    negated_class = regex_to_dfa(f"[^\\p{{{name}}}]")
    for cp in CODE_POINTS:
        text = chr(cp).encode()
        want = member(unicodedata.category(chr(cp)))
        assert positive.matches(text) == want, (name, hex(cp))
        assert negative.matches(text) == (not want), (name, hex(cp))
        assert in_class.matches(text) == (want or cp == ord("x")), (name, hex(cp))
        assert negated_class.matches(text) == (not want), (name, hex(cp))


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["\\p{L}", "\\p{Lu}", "\\P{L}", "\\p{N}", "[\\p{L}\\p{Nd}_]", "[^\\p{P}\\s]", "\\pL"]),
    st.lists(st.sampled_from([*CODE_POINTS[:0x120], 0xE9, 0x3B1, 0x416, 0x5D0, 0x9EA, 0x4E2D]), max_size=4),
)
def test_patterns_agree_with_the_regex_module(piece: str, code_points: list[int]) -> None:
    """On characters whose category every Unicode version agrees on. ``\\s`` is Python's
    (``str.isspace``: the separators U+001C..U+001F too), which the ``regex`` module's (Unicode
    White_Space) is not."""
    pattern = f"(?:{piece})*"
    text = "".join(map(chr, code_points))
    as_python = pattern.replace("\\s", "\\s\\x1c-\\x1f")
    assert regex_to_dfa(pattern).matches(text.encode()) == bool(regex.fullmatch(as_python, text))


def test_control_escapes() -> None:
    assert regex_to_dfa(r"\cC").matches(b"\x03")
    assert regex_to_dfa(r"\cc").matches(b"\x03")
    assert not regex_to_dfa(r"\cC").matches(b"\\cC")
    assert regex_to_dfa(r"[\cJ\cM]+").matches(b"\r\n")


def test_escaped_backslashes_and_literal_brackets_are_left_alone() -> None:
    assert expand_escapes(r"\\p{L}") == r"\\p{L}"  # a backslash, then "p{L}"
    assert regex_to_dfa(r"\\p{L}").matches(b"\\p{L}")
    assert regex_to_dfa(r"[]\p{Nd}]+").matches("]4\u0664".encode())  # "]" first is a member
    assert regex_to_dfa(r"[\]\p{Nd}]+").matches(b"]4")
    assert expand_escapes("a[b]c") == "a[b]c"


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"\p{Greek}", r"\\p\{Greek\} is not supported"),
        (r"\p{Script=Latin}", r"general categories only"),
        (r"\p{Nope}", r"\\p\{Nope\} is not supported"),
        (r"a\p", r"needs a property name"),
    ],
)
def test_unsupported_properties_are_named(pattern: str, message: str) -> None:
    with pytest.raises(RegexError, match=message):
        regex_to_dfa(pattern)
    assert regex_may_be_refused(pattern)


def test_named_groups_and_code_point_escapes() -> None:
    assert expand_escapes(r"(?<year>\d{4})-(?<m>\d\d)") == r"(?P<year>\d{4})-(?P<m>\d\d)"
    assert expand_escapes(r"(?<=a)b(?<!c)") == r"(?<=a)b(?<!c)"  # lookbehinds stay
    assert expand_escapes(r"[(?<x>]") == r"[(?<x>]"  # inside a class: characters
    assert regex_to_dfa(r"(?<year>\d{4})").matches(b"2024")
    assert regex_to_dfa(r"\u{1F600}+").matches("\U0001f600\U0001f600".encode())
    assert regex_to_dfa(r"[\u{61}-\u{63}]+").matches(b"abc")
    with pytest.raises(RegexError, match="past U\\+10FFFF"):
        regex_to_dfa(r"\u{110000}")


def test_errors_name_the_pattern_as_written() -> None:
    """Not the classes a property escape was rewritten into."""
    with pytest.raises(RegexError, match=r"invalid regex '\\\\p\{L\}\(': missing \)") as caught:
        regex_to_dfa(r"\p{L}(")
    assert "U000" not in str(caught.value) and "position" not in str(caught.value)
    with pytest.raises(RegexError, match=r"regex '\(\\\\p\{L\}\)\\\\1': a backreference"):
        regex_to_dfa(r"(\p{L})\1")


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        # (schemastore's mimetypes.json: [\w-_.], refused by Python's parser as a bad range)
        (r"^[\w-_.]+/[\w-_.]+$", ["text/x-c_1.2", "a-b/-"], ["a/b/c", "a b/c"]),
        (r"^[a-\d]+$", ["a-9", "-"], ["b", "z"]),  # Annex B: a, a dash, or a digit
        (r"^[\s-x]$", [" ", "-", "x"], ["a"]),
        (r"^[\\w-x]$", ["w", "x", "\\"], ["-", "a"]),  # an escaped backslash: w-x is a range
    ],
)
def test_a_dash_beside_a_class_escape_is_a_dash(pattern: str, matching: list, not_matching: list) -> None:
    dfa = regex_to_dfa(expand_escapes(pattern))
    for text in matching:
        assert dfa.matches(text.encode()), text
    for text in not_matching:
        assert not dfa.matches(text.encode()), text
    assert expand_escapes(r"^[a-z]+\w-\d$") == r"^[a-z]+\w-\d$"  # outside a class, untouched


FLAG_PIECES = ["a", "B", "(?i)", "(?-i)", "(", ")", "[ab]", "c*", "(?:", "$", "^"]


@st.composite
def _flagged(draw: st.DrawFn) -> str:
    """Patterns with flag groups anywhere (balanced parentheses, at least one flag group)."""
    pieces = draw(st.lists(st.sampled_from(FLAG_PIECES), min_size=1, max_size=9))
    out, depth = [], 0
    for piece in pieces:
        if piece == ")" and depth == 0:
            continue
        depth += piece in ("(", "(?:") or -(piece == ")")
        out.append(piece)
    return "".join(out) + ")" * depth + draw(st.sampled_from(["(?i)b", ""]))


@settings(max_examples=150, deadline=None)
@given(_flagged(), st.lists(st.text("aAbBc", max_size=5), min_size=1, max_size=6))
def test_flag_groups_past_the_start_scope_to_their_group_as_re2_does(pattern: str, texts: list[str]) -> None:
    """``^(?i)(abort|warn)?$`` (a Kubernetes CRD, validated by Go's RE2) was refused as Python 3.11
    refuses it: a flag group past the start holds to the end of its group, as the ``regex``
    module's version 1 reads it."""
    oracle = regex.compile(pattern, regex.V1)
    try:
        dfa = regex_to_dfa(pattern)
    except EmptyLanguageError:  # ("$(?i)b": nothing after the end)
        assert not any(oracle.fullmatch(text) for text in texts)
        return
    for text in texts:
        assert dfa.matches(text.encode()) == bool(oracle.fullmatch(text)), (pattern, text)


def test_a_flag_group_before_an_alternation_in_its_scope_is_named() -> None:
    assert expand_escapes("^(?i)(abort|warn)?$") == "^(?i:(abort|warn)?$)"
    with pytest.raises(RegexError, match="global flags"):
        regex_to_dfa("a(?i)b|c")  # (scoped, the "|" would divide something else)

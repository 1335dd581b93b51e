"""A pattern read narrow (to be matched) or wide (to be complemented) brackets every reader.

JSON Schema patterns are judged by Python's ``re`` and by ECMA-262 engines, which read ``\\s``,
``\\d``, ``\\w``, ``$`` and case folding differently. A string the narrow automaton accepts must
match under each reading, and a string some reading matches must be in the wide automaton, or
``not: {pattern}`` lets through what a validator refuses.
"""

from __future__ import annotations

import re
from itertools import product

from hypothesis import given, settings
from hypothesis import strategies as st

from outlines_gguf.automata.budget import compile_budget
from outlines_gguf.automata.regex import NFABuilder
from outlines_gguf.errors import EmptyLanguageError
from outlines_gguf.json_schema.lexical import _searched

ATOMS = [
    r"\s", r"\S", r"\d", r"\D", r"\w", r"\W", r"[^\s]", r"[\s\d]", r"[^\w\s]", r"[^\W]", ".",
    "a", "k", "(?i:k)", "(?i:[^s])", "(?i:[a-z])", r"[^a]", r"\b", r"(?!\s)", r"(?<=\d)",
]  # fmt: skip
CHARS = [
    "a", "k", "s", "1", "_", " ", "\r", "\n", "\x1c",
    "\xa0", "\u3000", "\u2028", "\u0663", "\ufeff", "\u212a", "\u017f",
]  # fmt: skip
TEXTS = ["", *CHARS, *("".join(p) for p in product(CHARS, repeat=2))]


@st.composite
def patterns(draw: st.DrawFn) -> str:
    def piece() -> str:
        atom = draw(st.sampled_from(ATOMS))
        return (
            atom + draw(st.sampled_from(["", "", "*", "?", "+"]))
            if not atom.startswith(("(?!", "(?<", r"\b"))
            else atom
        )

    alternatives = [
        "".join(piece() for _ in range(draw(st.integers(1, 3)))) for _ in range(draw(st.integers(1, 2)))
    ]
    body = "|".join(alternatives)
    start = draw(st.sampled_from(["", "^"]))
    end = draw(st.sampled_from(["", "$"]))
    return f"{start}(?:{body}){end}" if start or end else body


def _dfa(pattern: str, wide: bool):
    with compile_budget("test"):
        builder = NFABuilder("test")
        try:
            return builder.build(builder.regex(_searched(pattern), negated=wide, ecma=True))
        except EmptyLanguageError:
            return None


def _ecma_like(pattern: str) -> str:
    """``pattern`` with ECMA-262's ``.`` (no line terminator) and ``$`` (the very end), which the
    patterns drawn here have only as the ``.`` atom and a final ``$``."""
    return pattern.replace(".", "[^\n\r\u2028\u2029]").replace("$", r"\Z")


@settings(max_examples=150, deadline=None)
@given(patterns())
def test_narrow_and_wide_bracket_every_reading(pattern: str) -> None:
    narrow, wide = _dfa(pattern, False), _dfa(pattern, True)
    readers = [re.compile(pattern), re.compile(pattern, re.ASCII), re.compile(_ecma_like(pattern))]
    for text in TEXTS:
        data = text.encode()
        found = [r.search(text) is not None for r in readers]
        if narrow is not None and narrow.matches(data):
            assert all(found), (pattern, text)
        if any(found):
            assert wide is not None and wide.matches(data), (pattern, text)


def test_the_widest_reading_has_ecma_spaces_and_python_dollar() -> None:
    r"""ECMA-262's ``\s`` has U+FEFF, which Python's does not; Python's ``$`` matches before a
    final newline and its ``.`` matches ``\r``, ECMA-262's do not: the wide automaton has each,
    the narrow one none."""
    for pattern, text in [
        (r"\s", "\ufeff"),
        ("a$", "a\n"),
        (r"^\s+$", "\xa0\n"),
        ("a$|b", "a\n"),
        ("a.b", "a\rb"),
    ]:
        assert _dfa(pattern, True).matches(text.encode()), (pattern, text)
        assert not _dfa(pattern, False).matches(text.encode()), (pattern, text)

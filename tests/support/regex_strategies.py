"""Hypothesis strategies for random regexes over a small mixed-width alphabet."""

from __future__ import annotations

import itertools
import re

from hypothesis import strategies as st

# 1-, 2-, 3- and 4-byte UTF-8 characters, so tokens can split characters
ALPHABET = ["a", "b", "é", "中", "😀"]


def _atom() -> st.SearchStrategy[str]:
    letters = st.sampled_from(ALPHABET)
    literal = letters.map(re.escape)
    klass = st.sets(letters, min_size=1, max_size=3).map(lambda s: "[" + "".join(sorted(s)) + "]")
    negated = st.sets(letters, min_size=1, max_size=3).map(lambda s: "[^" + "".join(sorted(s)) + "]")
    return st.one_of(literal, literal, klass, negated, st.just("."))


def bounded_regexes(max_leaves: int = 6) -> st.SearchStrategy[str]:
    """Regexes whose matches are at most a few characters long (finite languages)."""

    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(children, children).map(lambda t: t[0] + t[1]),
            st.tuples(children, children).map(lambda t: f"(?:{t[0]}|{t[1]})"),
            children.map(lambda c: f"(?:{c})?"),
            st.tuples(children, st.integers(0, 2), st.integers(0, 1)).map(
                lambda t: f"(?:{t[0]}){{{t[1]},{t[1] + t[2]}}}"
            ),
        )

    return st.recursive(_atom(), extend, max_leaves=max_leaves)


def unbounded_regexes() -> st.SearchStrategy[str]:
    inner = bounded_regexes(4)
    return st.one_of(
        inner,
        st.tuples(inner, inner).map(lambda t: f"{t[0]}(?:{t[1]})*"),
        st.tuples(inner, inner).map(lambda t: f"(?:{t[0]})+{t[1]}"),
    )


def strings_up_to(n: int, alphabet: list[str] = ALPHABET) -> list[str]:
    """Every string of at most ``n`` characters over ``alphabet`` (plus one outsider)."""
    letters = [*alphabet, "z"]
    return ["".join(p) for k in range(n + 1) for p in itertools.product(letters, repeat=k)]


# -- regexes with lookarounds, word boundaries and inner anchors ---------------------------

LOOK_ALPHABET = ["a", "b", "-", "é"]
"""Letters for lookaround regexes: word characters, an ASCII non-word one, a non-ASCII one."""


def _single_chars(alphabet: list[str], categories: bool) -> st.SearchStrategy[str]:
    letters = st.sampled_from(alphabet)
    literal = letters.map(re.escape)
    members = st.sets(letters, min_size=1, max_size=2).map(lambda s: "".join(map(re.escape, sorted(s))))
    klass = members.map(lambda m: f"[{m}]")
    negated = members.map(lambda m: f"[^{m}]")
    extra = [st.just("."), st.sampled_from([r"\w", r"\W"])] if categories else [st.just(".")]
    return st.one_of(literal, literal, klass, negated, *extra)


def lookaround_regexes(
    alphabet: list[str] = LOOK_ALPHABET, categories: bool = True
) -> st.SearchStrategy[str]:
    """Regexes mixing characters, lookaheads (nested, any body), fixed-width lookbehinds,
    ``\\b``/``\\B`` (when ``categories``) and anchors anywhere, under repeats and alternations."""
    char = _single_chars(alphabet, categories)
    fixed = st.one_of(  # a fixed-width body, as Python's lookbehind requires
        st.lists(char, min_size=1, max_size=2).map("".join),
        st.tuples(char, char).map(lambda t: f"(?:{t[0]}|{t[1]})"),
    )
    anchors = ["^", "$", r"\A", r"\Z", *([r"\b", r"\B"] if categories else [])]

    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(children, children).map(lambda t: t[0] + t[1]),
            st.tuples(children, children).map(lambda t: f"(?:{t[0]}|{t[1]})"),
            children.map(lambda c: f"(?:{c})?"),
            children.map(lambda c: f"(?:{c})*"),
            st.tuples(children, st.integers(0, 2)).map(lambda t: f"(?:{t[0]}){{{t[1]},{t[1] + 1}}}"),
            st.tuples(st.sampled_from(["(?=", "(?!"]), children).map(lambda t: f"{t[0]}{t[1]})"),
        )

    look = st.one_of(
        st.tuples(st.sampled_from(["(?<=", "(?<!"]), fixed).map(lambda t: f"{t[0]}{t[1]})"),
        st.sampled_from(anchors),
    )
    return st.recursive(st.one_of(char, char, look), extend, max_leaves=7)

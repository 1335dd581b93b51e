"""What an automaton derives once and keeps (``ByteDFA.longest``, ``byte_ranges``), and the NFA
builder's deferred copies of automata: judged against brute force and ``re``."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regex_strategies import bounded_regexes, strings_up_to, unbounded_regexes

from outlines_gguf.automata import nfa as nfa_module
from outlines_gguf.automata.dfa import texts
from outlines_gguf.automata.nfa import FragmentBuilder
from outlines_gguf.compiler import compile_regex
from outlines_gguf.errors import ConstraintTooComplexError, EmptyLanguageError

STRINGS = strings_up_to(3)


def _compiled(pattern: str):
    try:
        return compile_regex(pattern)
    except EmptyLanguageError:
        return None


def _longest_by_levels(dfa) -> int | None:
    """The longest accepted length, found level by level: the states reachable in exactly k
    bytes; past as many levels as states, a path has a cycle (every state is live): None."""
    level = {0}
    longest = 0 if dfa.accepting[0] else -1
    for k in range(1, dfa.n_states + 1):
        level = {int(t) for s in level for t in np.unique(dfa.transitions[s]) if t >= 0}
        if not level:
            return longest
        if any(dfa.accepting[s] for s in level):
            longest = k
    return None


@settings(max_examples=150, deadline=None)
@given(st.one_of(bounded_regexes(), unbounded_regexes()))
def test_longest_is_the_longest_accepted_length(pattern: str) -> None:
    dfa = _compiled(pattern)
    if dfa is None:
        return
    assert dfa.longest == _longest_by_levels(dfa)
    listed = texts(dfa, 2_000)
    if listed is not None:  # (a small language: its texts too)
        assert dfa.longest == max(len(t) for t in listed)


@settings(max_examples=80, deadline=None)
@given(st.one_of(bounded_regexes(), unbounded_regexes()))
def test_byte_ranges_rebuild_the_table(pattern: str) -> None:
    dfa = _compiled(pattern)
    if dfa is None:
        return
    rebuilt = np.full_like(dfa.transitions, -1)
    for state, runs in enumerate(dfa.byte_ranges):
        previous_end = -1
        for lo, hi, target in runs:
            assert previous_end < lo <= hi  # sorted, disjoint
            previous_end = hi
            rebuilt[state, lo : hi + 1] = target
    assert (rebuilt == dfa.transitions).all()


def test_derived_values_are_not_pickled() -> None:
    dfa = compile_regex("[ab]{2,4}")
    assert dfa.longest == 4 and dfa.byte_ranges
    assert set(vars(dfa)) >= {"longest", "byte_ranges"}
    copy = pickle.loads(pickle.dumps(dfa))
    assert set(vars(copy)) == {"transitions", "accepting"}
    assert copy.longest == 4 and (copy.transitions == dfa.transitions).all()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(bounded_regexes(4), unbounded_regexes()), min_size=1, max_size=4), st.data())
def test_copied_automata_between_literals_read_as_their_regex(
    patterns: list[str], data: st.DataObject
) -> None:
    """Copies are written into the NFA when its edges are read: literals and copies interleaved
    (and copies inside an alternative) build the language of the joined regex."""
    dfas = [_compiled(p) for p in patterns]
    if any(d is None for d in dfas):
        return
    b = FragmentBuilder()
    parts = []
    joined = ""
    for pattern, dfa in zip(patterns, dfas, strict=True):
        glue = data.draw(st.sampled_from(["", "a", "é"]))
        parts += [b.literal(glue), b.either(b.dfa(dfa), b.dfa(dfa))]
        joined += re.escape(glue) + f"(?:{pattern})"
    built = b.build(b.seq(parts))
    judge = re.compile(joined)
    for text in STRINGS:
        assert built.matches(text.encode()) == bool(judge.fullmatch(text)), text


def test_a_build_past_the_nfa_limit_fails_before_writing_its_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nfa_module, "MAX_NFA_STATES", 500)
    dfa = compile_regex("[a-z]{1,30}")
    b = FragmentBuilder()
    with pytest.raises(ConstraintTooComplexError, match="NFA states"):
        b.seq([b.dfa(dfa) for _ in range(100)])
    assert b.nfa._copies  # never written: the error came first

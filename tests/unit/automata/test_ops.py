"""Products of byte automata: intersect and difference accept exactly what membership in both
operands says (``re`` as judge), are empty exactly when a pair search finds nothing, and stop
at their size and work limits."""

from __future__ import annotations

import re
from collections import deque
from functools import cache
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regex_strategies import bounded_regexes, strings_up_to, unbounded_regexes

from outlines_gguf.automata import ops
from outlines_gguf.automata.budget import compile_budget
from outlines_gguf.automata.dfa import ByteDFA
from outlines_gguf.automata.ops import difference, difference_soon_dead, intersect
from outlines_gguf.compiler import compile_regex
from outlines_gguf.errors import ConstraintTooComplexError, DFAProductTooLargeError

STRINGS = strings_up_to(3)
REGEXES = st.one_of(bounded_regexes(), unbounded_regexes())


def product_nonempty(a: ByteDFA, b: ByteDFA, want_b: bool) -> bool:
    """Whether some string is accepted by ``a`` and (``want_b``) or not (else) by ``b``:
    a search over reachable state pairs, -1 standing for ``b`` being dead."""
    seen = {(0, 0)}
    queue = deque(seen)
    while queue:
        s, t = queue.popleft()
        b_accepts = t >= 0 and bool(b.accepting[t])
        if a.accepting[s] and b_accepts == want_b:
            return True
        for byte in range(256):
            s2 = int(a.transitions[s, byte])
            t2 = int(b.transitions[t, byte]) if t >= 0 else -1
            if s2 < 0 or (want_b and t2 < 0) or (s2, t2) in seen:
                continue
            seen.add((s2, t2))
            queue.append((s2, t2))
    return False


def check_is_byte_dfa(dfa: ByteDFA) -> None:
    """The ByteDFA contract: an (n, 256) int32 table whose every state reaches acceptance."""
    assert dfa.transitions.shape == (dfa.n_states, 256) and dfa.transitions.dtype.name == "int32"
    live = dfa.accepting.copy()
    while True:
        grown = live | ((dfa.transitions >= 0) & live[dfa.transitions.clip(0)]).any(axis=1)
        if (grown == live).all():
            break
        live = grown
    assert live.all()


@settings(max_examples=60, deadline=None)
@given(REGEXES, REGEXES)
def test_intersect_and_difference_equal_re_membership(p: str, q: str) -> None:
    a, b = compile_regex(p), compile_regex(q)
    both, only_a = intersect(a, b), difference(a, b)
    assert (both is not None) == product_nonempty(a, b, want_b=True), (p, q)
    assert (only_a is not None) == product_nonempty(a, b, want_b=False), (p, q)
    for dfa in (both, only_a):
        if dfa is not None:
            check_is_byte_dfa(dfa)
    for s in STRINGS:
        in_p, in_q = re.fullmatch(p, s) is not None, re.fullmatch(q, s) is not None
        data = s.encode()
        assert (both is not None and both.matches(data)) == (in_p and in_q), (p, q, s)
        assert (only_a is not None and only_a.matches(data)) == (in_p and not in_q), (p, q, s)


@settings(max_examples=60, deadline=None)
@given(REGEXES, REGEXES)
def test_difference_built_while_the_second_is_alive_equals_re_membership(p: str, q: str) -> None:
    """``difference_soon_dead`` (pairs while ``b`` lives, then ``a``'s own states) accepts what
    ``difference`` accepts, whatever ``b`` is, and keeps the ByteDFA contract."""
    a, b = compile_regex(p), compile_regex(q)
    only_a = difference_soon_dead(a, b)
    assert (only_a is not None) == product_nonempty(a, b, want_b=False), (p, q)
    if only_a is not None:
        check_is_byte_dfa(only_a)
    for s in STRINGS:
        in_p, in_q = re.fullmatch(p, s) is not None, re.fullmatch(q, s) is not None
        assert (only_a is not None and only_a.matches(s.encode())) == (in_p and not in_q), (p, q, s)


@settings(max_examples=30, deadline=None)
@given(REGEXES)
def test_with_itself(p: str) -> None:
    a = compile_regex(p)
    assert difference(a, a) is None
    both = intersect(a, a)
    assert both is not None and all(both.matches(s.encode()) == a.matches(s.encode()) for s in STRINGS)


PAIRS = [
    (r"[a-z0-9._]+@[a-z]+\.(?:com|org)", r".{6,12}"),
    (r"[0-9]{4}-[0-9]{2}-[0-9]{2}", r"2024-.*|.*-01"),
    (r"[a-z0-9_]+(?: [a-z0-9_]+)*", r"[^aeiou]*"),
    (r"(?:[a-f0-9]{2})+", r"(?:[0-9a-f]{4})*"),
    (r"[\u00e0-\u00ff\u4e00-\u4e10]+", r"(?s).{1,3}"),
]


@cache
def products(p: str, q: str) -> tuple[ByteDFA | None, ByteDFA | None]:
    a, b = compile_regex(p), compile_regex(q)
    return intersect(a, b), difference(a, b)


@pytest.mark.parametrize(("p", "q"), PAIRS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_realistic_pairs_on_sampled_strings(p: str, q: str, data: st.DataObject) -> None:
    """Strings drawn from either regex and random text: the products agree with ``re``."""
    both, only_a = products(p, q)
    s = data.draw(
        st.one_of(st.from_regex(p, fullmatch=True), st.from_regex(q, fullmatch=True), st.text(max_size=8))
    )
    in_p, in_q = re.fullmatch(p, s) is not None, re.fullmatch(q, s) is not None
    assert (both is not None and both.matches(s.encode())) == (in_p and in_q)
    assert (only_a is not None and only_a.matches(s.encode())) == (in_p and not in_q)


def test_product_state_limit() -> None:
    """Past MAX_PRODUCT_STATES reachable pairs: DFAProductTooLargeError, a ConstraintTooComplexError."""
    a, b = compile_regex(r"[ab]{0,30}"), compile_regex(r"(?:[ab]{3})*")
    assert intersect(a, b) is not None  # 31 x 3 pairs fit the real limit
    with mock.patch.object(ops, "MAX_PRODUCT_STATES", 20):
        for product in (intersect, difference, difference_soon_dead):
            with pytest.raises(DFAProductTooLargeError, match="more than 20 product states"):
                product(a, b)
    assert issubclass(DFAProductTooLargeError, ConstraintTooComplexError)
    assert issubclass(DFAProductTooLargeError, ValueError)


def test_product_work_is_charged_to_the_running_budget() -> None:
    a, b = compile_regex(r"[ab]{0,30}"), compile_regex(r"(?:[ab]{3})*")
    with (
        compile_budget("schema X", limit=ops.PRODUCT_STATE_WORK * 10),
        pytest.raises(ConstraintTooComplexError, match="schema X is too complex"),
    ):
        intersect(a, b)
    with compile_budget("schema Y", limit=ops.PRODUCT_STATE_WORK * 1000):
        assert intersect(a, b) is not None

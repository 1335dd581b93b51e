"""Automata of JSON number texts by value: decimal ``multipleOf`` and its complement, and every
number except listed values.

Why: ``multipleOf: 0.01`` (prices), ``not: {multipleOf: 5}`` and ``not: {enum: [0, 1]}`` are
conditions on a number's *value*, and a number has many spellings (``1``, ``1.0``, ``1.00``).
Over numbers written without an exponent each of these is a regular language, built here
exactly: a text is accepted if and only if its value passes. Numbers with an exponent are never
written (a valid subset: every text accepted still passes).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache

import numpy as np

from outlines_gguf.automata.budget import MAX_DFA_STATES
from outlines_gguf.automata.dfa import ByteDFA, minimize
from outlines_gguf.automata.ops import difference
from outlines_gguf.automata.regex import NFABuilder
from outlines_gguf.errors import ConstraintTooComplexError, EmptyLanguageError

PLAIN_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?"
"""JSON numbers without an exponent: the texts these automata describe."""


def exact_value(x: int | float) -> Fraction:
    """The exact decimal a JSON number denotes (a float through its shortest repr, which is
    how the number was written in the schema)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"not a number: {x!r}")
    if isinstance(x, int):
        return Fraction(x)
    try:
        return Fraction(Decimal(repr(x)))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"not a finite number: {x!r}") from exc


def _decimal_step(step: int | float) -> tuple[int, int]:
    """``step`` as (P, k) with step = P / 10**k, P a positive integer."""
    value = exact_value(step)
    if value <= 0:
        raise ValueError("multipleOf must be positive")
    k = 0
    while (value * 10**k).denominator != 1:
        k += 1
        if k > 40:
            raise ValueError(f"multipleOf {step} is not a short decimal")
    return int(value * 10**k), k


@lru_cache(maxsize=1024)
def bounded_number_dfa(pattern: str) -> ByteDFA:
    """The automaton of a bounded number's regex (:func:`~.leaves.number_range`), built once per
    bounds while they are in use: schemas repeat ``minimum: 0, maximum: 100`` in many places,
    and each regex is parsed and determinized (``outlines_gguf.clear_caches`` forgets them)."""
    helper = NFABuilder("number")
    dfa = helper.build(helper.regex(pattern))
    dfa.transitions.flags.writeable = False  # (shared by every schema with these bounds)
    return dfa


@lru_cache(maxsize=64)
def multiple_of_dfa(step: int | float) -> ByteDFA:
    """Plain JSON numbers (no exponent) whose value is a multiple of ``step``.

    x is a multiple of P/10^k iff x*10^k is an integer divisible by P: at most k fraction
    digits other than trailing zeros, and the digits read as an integer (scaled to k fraction
    digits) divisible by P. States: the remainder mod P, and how many fraction digits were read.
    """
    p, k = _decimal_step(step)
    n = 3 + (k + 3) * p
    if n > MAX_DFA_STATES:
        raise ConstraintTooComplexError(
            f"multipleOf {step} needs about {n} automaton states (the limit is {MAX_DFA_STATES})"
        )
    start, minus, zero = 0, 1, 2

    def integer(r: int) -> int:
        return 3 + r

    def dot(r: int) -> int:
        return 3 + p + r

    def fraction(f: int, r: int) -> int:  # f = 1..k fraction digits read
        return 3 + 2 * p + (f - 1) * p + r

    def tail(r: int) -> int:  # k fraction digits read: only zeros may follow
        return 3 + (2 + k) * p + r

    table = np.full((n, 256), -1, dtype=np.int32)
    accepting = np.zeros(n, dtype=bool)
    digits = [(d, ord("0") + d) for d in range(10)]
    table[start, ord("-")] = minus
    for source in (start, minus):
        table[source, ord("0")] = zero
        for d, byte in digits[1:]:
            table[source, byte] = integer(d % p)
    accepting[zero] = True
    table[zero, ord(".")] = dot(0)
    for r in range(p):
        accepting[integer(r)] = r * 10**k % p == 0
        table[integer(r), ord(".")] = dot(r)
        for d, byte in digits:
            table[integer(r), byte] = integer((10 * r + d) % p)
            table[dot(r), byte] = fraction(1, (10 * r + d) % p) if k else -1
        if not k:
            table[dot(r), ord("0")] = tail(r)
        for f in range(1, k + 1):
            accepting[fraction(f, r)] = r * 10 ** (k - f) % p == 0
            if f < k:
                for d, byte in digits:
                    table[fraction(f, r), byte] = fraction(f + 1, (10 * r + d) % p)
            else:
                table[fraction(f, r), ord("0")] = tail(r)
        accepting[tail(r)] = r == 0
        table[tail(r), ord("0")] = tail(r)
    dfa = minimize(table, accepting)
    assert dfa is not None  # 0 is always a multiple
    return dfa


@lru_cache(maxsize=1)
def plain_number_dfa() -> ByteDFA:
    builder = NFABuilder("number")
    return builder.build(builder.regex(PLAIN_NUMBER))


def not_multiple_of_dfa(step: int | float) -> ByteDFA | None:
    """Plain JSON numbers whose value is not a multiple of ``step``."""
    return difference(plain_number_dfa(), multiple_of_dfa(step))


def _spellings(value: Fraction) -> str:
    """A regex of every plain spelling of ``value`` (``-`` for negatives, also ``-0``)."""
    sign = "-" if value < 0 else "-?" if value == 0 else ""
    magnitude = abs(value)
    whole = int(magnitude)
    rest = magnitude - whole
    if rest == 0:
        return f"{sign}{whole}(?:\\.0+)?"
    digits = ""
    while rest:  # a decimal (from exact_value), so this ends
        rest *= 10
        digit = int(rest)
        digits += str(digit)
        rest -= digit
    return f"{sign}{whole}\\.{digits}0*"


def numbers_except_dfa(values: list) -> ByteDFA | None:
    """Plain JSON numbers whose value is none of ``values`` (numbers; others are ignored)."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    listed = sorted({exact_value(v) for v in numbers})
    if not listed:
        return plain_number_dfa()
    builder = NFABuilder("numbers")
    try:
        excluded = builder.build(builder.alt(builder.regex(_spellings(v)) for v in listed))
    except EmptyLanguageError:
        return plain_number_dfa()
    return difference(plain_number_dfa(), excluded)

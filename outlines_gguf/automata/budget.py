"""Limits on automaton construction: state counts, repeat counts, and the per-compilation work budget."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from outlines_gguf.errors import ConstraintTooComplexError

MAX_NFA_STATES = 200_000
"""Thompson NFA states one builder may create."""

MAX_DFA_STATES = 20_000
"""States of one determinized automaton."""

MAX_REPEAT = 10_000
"""The largest count of a counted repeat ``{m,n}``."""

MAX_COMPILE_WORK = 10_000_000
"""Work units one compilation may spend (a regex, or a JSON schema with all its parts).

A unit is roughly 0.1-0.3 microseconds of compile time: NFA states and edges visited
while determinizing (a subset of size k costs k), 20 per NFA state built, 400 per
state of an automaton product, 8 per state per merging round, 10 per character of
regex text.
The budget stops inputs whose automata stay within the size limits but take
long to build (nested counted repeats such as ``(a{1,100}){1,100}``, whose every
DFA state is a subset of thousands of NFA states), after one to three seconds on
an idle core instead of minutes. Of the 6,100 JSONSchemaBench schemas that the
compiler was measured on, the most demanding one that compiles needs 8.3M units
(a one-second compile, mostly merging states); the median needs 76k (11 ms)."""

MAX_SCHEMA_WORK = 4 * MAX_COMPILE_WORK
"""Work units all the pieces compiled for one JSON schema in one step may spend together (each
piece also within :data:`MAX_COMPILE_WORK`).

A JSON schema is compiled in pieces, one budget each; one step (construction, or a token that
reaches new pieces) may compile many. This bounds the step: a schema whose pieces keep coming
(each new, each small) is refused after seconds instead of compiling for minutes. Of the 6,100
JSONSchemaBench dev schemas, the most demanding step of one that compiles needs 9.9M units."""

NODE_WORK = 5_000
"""Units charged for each piece of a JSON schema compiled: the bookkeeping around it (deciding
which pieces can be finished, cutting calls) that no automaton construction counts."""

NFA_STATE_WORK = 20


class CompileBudget:
    """Work units spent by one compilation; raises past ``limit`` (see :data:`MAX_COMPILE_WORK`)."""

    __slots__ = ("label", "limit", "outer", "used")

    def __init__(self, label: str, limit: int, outer: CompileBudget | None = None) -> None:
        self.label = label
        self.limit = limit
        self.outer = outer  # charged too (a piece's budget inside its schema's)
        self.used = 0

    def spend(self, units: int) -> None:
        self.used += units
        if self.used > self.limit:
            if self.limit == MAX_COMPILE_WORK:
                why = "MAX_COMPILE_WORK; nested or large counted repeats, large products of automata?"
            else:
                name = " MAX_SCHEMA_WORK" if self.limit == MAX_SCHEMA_WORK else ""
                why = f"{name} on all its pieces together; a recursive schema whose pieces keep growing?"
            raise ConstraintTooComplexError(
                f"{self.label} is too complex to compile: it needs more than {self.limit:,} work units "
                f"(the compile-time limit {why.lstrip()})"
            )
        if self.outer is not None:
            self.outer.spend(units)


_budgets = threading.local()


@contextmanager
def compile_budget(label: str, limit: int | None = None, *, own: bool = False) -> Iterator[CompileBudget]:
    """Run a compilation under one work budget, shared by everything it compiles inside.

    A nested call joins the budget already running in this thread (a JSON
    schema's patterns and products count against the schema's budget), unless
    ``own``: then it has a budget of its own whose spending also charges the one
    around it (a piece of a JSON schema, inside the schema's step).
    """
    outer: CompileBudget | None = getattr(_budgets, "current", None)
    if outer is not None and not own:
        yield outer
        return
    budget = CompileBudget(label, MAX_COMPILE_WORK if limit is None else limit, outer)
    _budgets.current = budget
    try:
        if outer is None:
            with collector_paused():
                yield budget
        else:
            yield budget
    finally:
        _budgets.current = outer


_collector_lock = threading.Lock()
_pauses = 0  # compilations running (in any thread) with the collector paused
_collector_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run a compilation with Python's cyclic garbage collector paused (as it was, after).

    Compiling allocates hundreds of thousands of small lists and tuples (NFA edges, subsets)
    that live until the compilation ends; each collection the allocations trigger scans every
    object still alive, those of the process included. Paused, OpenAPI 3.0's first mask took
    0.11 s instead of 0.38-0.55 s, Swagger 2.0's 0.17 s instead of 0.28-0.46 s. Objects in
    cycles made meanwhile are collected at the next collection after it."""
    global _pauses, _collector_was_enabled
    with _collector_lock:
        if _pauses == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _collector_lock:
            _pauses -= 1
            if _pauses == 0 and _collector_was_enabled:
                gc.enable()


def spend(units: int) -> None:
    """Charge ``units`` of work to the compilation running in this thread (if any)."""
    budget: CompileBudget | None = getattr(_budgets, "current", None)
    if budget is not None:
        budget.spend(units)

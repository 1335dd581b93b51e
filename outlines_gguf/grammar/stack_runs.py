"""Parser stacks with long runs of one state, shortened to a stack that reads the same.

Forty unary minus signs, or forty open brackets, leave forty copies of one LR state on the
stack. A token mask walks such runs a state deeper at each sign of a token like ``-----``, and
what the lexer may do after each sign (:meth:`~outlines_gguf.grammar.compiled.Grammar.view_read`)
depends on the whole run: a number there is reduced through every sign before the next
terminal is known to fit. So every depth was computed anew, for every new stack below the run.

A computation that reads at most ``n`` terminals past the stack cannot tell a run of ``k``
copies of a state ``M`` from one of ``k - p`` copies, once ``k`` is large enough, if every
reduction pops at most one ``M`` (checked on the table: no reduction is reachable from ``M``
that pops more states than lie between it and ``M`` plus one). Why: call an *event* a
reduction that pops one of the run's states; what follows it depends only on the input
position and the nonterminal ``A`` reduced (the state uncovered is ``M`` again, and
``goto(M, A)`` is pushed), until the next event pops the next state of the run. Events are
thus a deterministic sequence over keys (position, ``A``): while the run lasts, a key must
have a goto from ``M`` or the computation stops, so there are at most ``(n + 1) * G`` keys
that go on (``G``: the nonterminals ``M`` has a goto on), and a key met twice repeats at the
same position, with a period of at most ``G`` events. The outcome of a run of ``k`` states
is decided by the key of the ``k``-th event (where the state below the run is uncovered) or
by an earlier stop; so two runs of at least ``(n + 1) * G + 2`` states whose lengths differ
by a multiple of ``lcm(1..G)`` give the same outcome, whatever lies above or below them.

:class:`RunCompressor` maps each stack to its *canonical* stack: every run longer than that
shortened by multiples of the period, everything else as it is. Results of such bounded
computations are then kept per canonical stack and shared by all the depths of a run.
"""

from __future__ import annotations

from math import lcm
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from outlines_gguf.grammar.compiled import ParseTable


class RunCompressor:
    """Canonical stacks of a :class:`ParseTable` for computations reading at most
    ``lookahead`` terminals (``$END`` counted) past the stack (see the module docstring)."""

    def __init__(self, table: ParseTable, terminals: frozenset[str], lookahead: int) -> None:
        self.table = table
        self.terminals = terminals | {"$END"}
        self.lookahead = lookahead
        self._limits: dict[int, tuple[int, int] | None] = {}
        self._canon: dict[int, tuple[int, int]] = {0: (0, -1)}  # stack -> (canonical, agreement)
        self._run: dict[int, int] = {0: 1}  # canonical stack -> length of its top run
        self._longest: int | None = None  # the longest reduction of the table (read once)

    def limit(self, state: int) -> tuple[int, int] | None:
        """(shortest kept length, period) of runs of ``state``, or None where runs of it are
        kept whole (it does not loop to itself, or a reduction may pop two of it)."""
        if state in self._limits:
            return self._limits[state]
        actions = self.table.actions
        row = actions[state]
        found: tuple[int, int] | None = None
        if any(act == (state,) for act in row.values()) and self._pops_one(state):
            gotos = sum(1 for s, act in row.items() if len(act) == 1 and s not in self.terminals)
            low = (self.lookahead + 1) * gotos + 2
            found = (low, lcm(*range(1, gotos + 1)) if gotos else 1)
        self._limits[state] = found
        return found

    def _pops_one(self, state: int) -> bool:
        """Whether no reduction can pop two copies of ``state``: from ``state``, ``q`` shifts
        away, no reduction pops more than ``q + 1`` states (``state`` would be at position 2 or
        deeper in its rule, where the state before it may be ``state`` again)."""
        actions = self.table.actions
        if self._longest is None:
            sizes = (act[1] for row in actions for act in row.values() if len(act) == 2)
            self._longest = max(sizes, default=0)
        longest = self._longest
        level, seen = {state}, set()
        for q in range(longest):
            for s in level:
                if any(len(act) == 2 and act[1] > q + 1 for act in actions[s].values()):
                    return False
            seen |= level
            level = {act[0] for s in level for act in actions[s].values() if len(act) == 1} - seen
            if not level:
                break
        return True

    def canonical(self, stack: int) -> tuple[int, int]:
        """The canonical stack of ``stack``, and how many of their top states are the same
        (``-1``: all, they are one stack)."""
        canon = self._canon
        found = canon.get(stack)
        if found is not None:
            return found
        below, tops = self.table._below, self.table._top
        chain = []
        s = stack
        while s not in canon:
            chain.append(s)
            s = below[s]
        base, agree = canon[s]
        for s in reversed(chain):
            state = tops[s]
            c = self.table.push(base, state)
            run = self._run[base] + 1 if tops[base] == state else 1
            limit = self.limit(state) if run > 2 else None
            if limit is not None and run >= limit[0] + limit[1]:
                for _ in range(limit[1]):
                    c = below[c]
                run -= limit[1]
                agree = run  # (the rest of the real run lies where the canonical one has ended)
            elif agree >= 0:
                agree += 1
            self._run[c] = run
            canon[s] = (c, -1 if c == s else agree)
            base = c
        return canon[stack]

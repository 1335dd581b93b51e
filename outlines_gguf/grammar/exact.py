"""The LALR engine with an exact contextual lexer, and the proof that it lexes a grammar exactly.

:class:`~outlines_gguf.grammar.compiled.Grammar` lexes like lark's contextual lexer: in a parser state it
runs every terminal of that state, which LALR's merged states make a superset of what the parser
accepts on the actual stack (after a JSON value, the terminals of both the object and the array
around it). A terminal the parser cannot take may then run a lexeme on past where it must end.
:class:`ExactLexerGrammar` runs, on each stack, only the terminals the parser accepts there (in
lark's order), so the lexer follows the parse as a scannerless parser would. Its texts are still
sentences of the Lark grammar; it is what GBNF grammars compile to (:mod:`~outlines_gguf.grammar.gbnf`).

:func:`lexer_conflicts` then shows, terminal pair by terminal pair, that longest-match lexing
splits every text where the grammar does; where it cannot, the grammar needs the general engine.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from outlines_gguf.grammar.compiled import ACCEPT, END, Grammar
from outlines_gguf.grammar.lexer import LexerAutomaton

MAX_CHECKED_PAIRS = 200_000
"""Automaton pairs the lexer-safety check explores per pair of terminals before it gives up (unsafe)."""


class _StateTerminals:
    def __init__(self, names: list[str], scan: list[str]) -> None:
        self.names, self.scan = names, scan


class ExactLexerGrammar(Grammar):
    """A :class:`Grammar` whose lexer on each stack runs only the terminals the parser accepts."""

    exact_liveness = False  # its lexers follow the stack, not the parser state (GBNF uses it where
    # lexer_conflicts proves that longest-match lexing splits every text as the grammar does)
    lexer_reads_acceptable = True  # (its lexer is built for the acceptable set)

    def __init__(self, text: str, start: str = "start") -> None:
        self._exact_lexers: dict[frozenset[str], LexerAutomaton] = {}
        super().__init__(text, start)

    # self.lexers holds _StateTerminals here, not automata: only state_lexer reads them
    @staticmethod
    def _lexer_automaton(basic, dfas, representatives, follows) -> _StateTerminals:  # type: ignore[override]
        """Only the state's terminals and lark's order: the automata are built per acceptable set."""
        return _StateTerminals([t.name for t in basic.terminals], [t.name for t in basic.scanner.terminals])

    def state_lexer(self, stack: int) -> _StateTerminals:
        """The terminals of lark's contextual lexer in the stack's top state, in lark's order."""
        found = self.lexers[self.lexer_of_state[self.table.top(stack)]]
        return found  # type: ignore[return-value]  # a _StateTerminals (see _lexer_automaton)

    def _candidates(self, stack: int) -> list[str]:
        return self.state_lexer(stack).names

    def lexer(self, stack: int) -> LexerAutomaton:
        names = self.acceptable(stack)
        found = self._exact_lexers.get(names)
        if found is None:
            scan = [n for n in self.state_lexer(stack).scan if n in names]
            representatives = np.asarray(self._representatives, dtype=np.int64)
            follows = {n: self.terminal_follows[n] for n in scan if n in self.terminal_follows}
            found = LexerAutomaton(
                scan, scan, {}, [self.terminal_dfas[n] for n in scan], representatives, follows
            )
            self._exact_lexers[names] = found
        return found


def compile_exact_grammar(text: str, start: str = "start") -> ExactLexerGrammar:
    """Compile a Lark grammar for the exact-lexer engine (uncached: GBNF grammars are cached whole
    by ``compiler.compile_gbnf``)."""
    return ExactLexerGrammar(text, start)



def _live(dfa) -> np.ndarray:
    """States of ``dfa`` from which an accepting state is reachable."""
    table = dfa.transitions
    live = dfa.accepting.astype(bool).copy()
    while True:
        grown = live | ((table >= 0) & live[np.maximum(table, 0)]).any(axis=1)
        if (grown == live).all():
            return live
        live = grown


def _first_bytes(dfa, live: np.ndarray) -> np.ndarray:
    """The bytes that start some text of ``dfa`` (``live``: its states that can still accept)."""
    row = dfa.transitions[0]
    return (row >= 0) & live[np.maximum(row, 0)]


MAX_CHECKED_STACKS = 1500
"""Parser stacks the lexer-safety check visits (breadth first, so the shallow ones)."""


def lexer_conflicts(
    grammar: ExactLexerGrammar, limit: int = 10, max_stacks: int = MAX_CHECKED_STACKS
) -> list[str]:
    """Why the LALR engine's lexer might split some text differently from the grammar (empty: it
    does not, so the engine accepts exactly the grammar's language).

    The engine's lexer runs the terminals the parser accepts on the stack: the first in lark's
    order that matches wins, and a lexeme runs on while one of them can still match it (longest
    match). For each parser stack (visited breadth first from the start,
    up to ``max_stacks``) and each terminal A the parser accepts there, this checks that

    * no terminal tried before A matches a prefix of a text A matches (it would win), and
    * at no point where A has matched can a terminal the parser accepts there (A included) go on
      with a byte that can start a terminal the parser accepts after A (the lexeme would run on).

    Then every lexeme ends exactly where the grammar's token ends, as the right terminal.
    Shift/reduce conflicts count too. The engine never lets text outside the grammar through in
    any case: a mis-split only refuses a text that the grammar allows.
    """
    problems = [f"LALR conflict: {c}" for c in grammar.conflicts]
    dfas = grammar.terminal_dfas
    table = grammar.table
    live = {name: _live(dfa) for name, dfa in dfas.items()}
    first = {name: _first_bytes(dfa, live[name]) for name, dfa in dfas.items()}
    nothing = np.zeros(256, dtype=bool)

    def acceptable(stack: int) -> list[str]:
        return sorted(t for t in grammar.acceptable(stack) if t != END)

    follow_memo: dict[int, np.ndarray] = {}

    def follow(stack: int) -> np.ndarray:
        found = follow_memo.get(stack)
        if found is None:
            found = nothing.copy()
            for t in acceptable(stack):
                found |= first[t]
            follow_memo[stack] = found
        return found

    checked: dict[tuple, str | None] = {}

    def check(key: tuple, a: str, c: str, follow_a: np.ndarray | None) -> bool:
        if key not in checked:
            checked[key] = found = _pair_conflict(a, c, dfas, follow_a, live)
            if found:
                problems.append(found)
        return len(problems) >= limit

    seen = {table.root}
    queue = deque([table.root])
    while queue:
        stack = queue.popleft()
        here = acceptable(stack)
        order = grammar.lexer(stack).scan  # the acceptable terminals, in lark's order
        for a in here:
            after = table.run(stack, a)
            if after is None or after == ACCEPT:
                continue
            after_bytes = follow(after)
            for c in order[: order.index(a)]:
                if check((a, c, "prefix"), a, c, None):
                    return problems
            for c in here:
                if check((a, c, after_bytes.tobytes()), a, c, after_bytes):
                    return problems
            if after not in seen and len(seen) < max_stacks:
                seen.add(after)
                queue.append(after)
    return problems


def _pair_conflict(
    a: str, c: str, dfas, follow_a: np.ndarray | None, live: dict[str, np.ndarray]
) -> str | None:
    """With ``follow_a`` None: whether ``c`` matches a prefix of a text ``a`` matches. Else: whether
    ``c`` matches a text ``a`` matches too, or goes on from where ``a`` matched with a byte of
    ``follow_a``. Returns the problem with an example text, or None."""
    da, dc = dfas[a], dfas[c]
    live_a, live_c = live[a], live[c]
    start = (0, 0)
    parent: dict[tuple[int, int], tuple[tuple[int, int], int] | None] = {start: None}
    queue = deque([start])

    def text(pair: tuple[int, int]) -> str:
        out = bytearray()
        while (step := parent[pair]) is not None:
            pair, byte = step
            out.append(byte)
        return bytes(reversed(out)).decode("utf-8", "backslashreplace")

    while queue:
        pair = queue.popleft()
        sa, sc = pair
        if pair != start:
            if follow_a is None:
                if dc.accepting[sc]:
                    return f"{c} is tried before {a} and matches {text(pair)!r}, the start of a text of {a}"
            elif da.accepting[sa]:
                if a != c and dc.accepting[sc]:
                    return f"terminals {a} and {c} both match {text(pair)!r}"
                row = dc.transitions[sc]
                runs_on = (row >= 0) & live_c[np.maximum(row, 0)] & follow_a
                if runs_on.any():
                    byte = int(np.flatnonzero(runs_on)[0])
                    who = "it" if a == c else c
                    return (
                        f"after {a} matches {text(pair)!r}, {who} can go on with {bytes([byte])!r}, "
                        f"which can also start what follows {a}"
                    )
        ra, rc = da.transitions[sa], dc.transitions[sc]
        step = (ra >= 0) & live_a[np.maximum(ra, 0)]
        if a != c:
            step &= (rc >= 0) & live_c[np.maximum(rc, 0)]
        for byte in np.flatnonzero(step).tolist():
            nxt = (int(ra[byte]), int(ra[byte]) if a == c else int(rc[byte]))
            if nxt not in parent:
                if len(parent) >= MAX_CHECKED_PAIRS:
                    return f"terminals {a} and {c} are too large to prove apart"
                parent[nxt] = (pair, byte)
                queue.append(nxt)
    return None



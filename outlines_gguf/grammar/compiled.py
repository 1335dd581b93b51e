"""Lark grammars compiled for incremental, byte-level recognition.

lark does what it does well: it loads the grammar (``%import common.*``,
``?rule`` inlining, priorities, ``%ignore``) and builds the LALR(1) tables
and its contextual lexer. This module turns those into what a guide needs:

* one byte-level DFA per terminal (:func:`terminal_dfa`),
* one :class:`~outlines_gguf.grammar.lexer.LexerAutomaton` per distinct set
  of terminals the contextual lexer tries in a parser state,
* the parse table as plain dicts, with an incremental ``feed``.

A *configuration* ``(stack, q)`` is a parser stack (an interned int: see
:class:`ParseTable`) and the lexer automaton state of the lexeme being read (``q``; the
automaton is the one of the stack's top state). :meth:`Grammar.step` moves a
configuration by one byte, exactly as lark's contextual lexer and LALR
parser would read the text; :meth:`Grammar.is_final` says whether the text
so far is a sentence.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from outlines_gguf.automata.dfa import ByteDFA
from outlines_gguf.automata.lookaround import (
    Follow,
    PendingLookaheadError,
    compile_terminal,
    needs_assertions,
)
from outlines_gguf.automata.regex import regex_to_dfa
from outlines_gguf.automata.translate import C
from outlines_gguf.automata.translate import sre_parse as _sre_parse
from outlines_gguf.errors import ConstraintTooComplexError, EmptyLanguageError, GrammarError, RegexError
from outlines_gguf.grammar.lexer import CROSS, LexerAutomaton, byte_classes
from outlines_gguf.grammar.liveness import Liveness, TooLargeError, lexing_is_free
from outlines_gguf.grammar.stack_memo import StackMemo
from outlines_gguf.grammar.stack_runs import RunCompressor
from outlines_gguf.locking import Locked

logger = logging.getLogger("outlines_gguf")

Config = tuple[int, int]
ViewReads = tuple[int, dict[str, int]]
"""What a lexer view read of its stack (see :meth:`Grammar.view_reads`)."""
"""(parser stack, as an interned id of :class:`ParseTable`; lexer automaton state)."""

END = "$END"


EXAMPLE_SEARCH_LIMIT = 20_000
"""How many configurations the emptiness check explores before giving up (then it assumes non-empty)."""



class _Stepping(Protocol):
    """What :func:`bfs_completion` needs of a grammar (either mode)."""

    _representatives: list[int]

    def step(self, config: Any, byte: int) -> Any: ...

    def is_final(self, config: Any) -> bool: ...


def bfs_completion(grammar: _Stepping, config: Hashable, limit: int) -> bytes | None:
    """The shortest bytes that complete ``config`` to a sentence, breadth first over the
    grammar's byte classes (one byte of each, ASCII first); None once more than ``limit``
    configurations are seen. Raises :class:`EmptyLanguageError` when none exists."""
    seen = {config: b""}
    queue = deque([config])
    while queue:
        current = queue.popleft()
        text = seen[current]
        if grammar.is_final(current):
            return text
        for byte in grammar._representatives:
            nxt = grammar.step(current, byte)
            if nxt is not None and nxt not in seen:
                if len(seen) >= limit:
                    return None
                seen[nxt] = text + bytes([byte])
                queue.append(nxt)
    raise EmptyLanguageError("no text completes this one to a sentence of the grammar")


def _has_lazy_quantifier(regexp: str) -> bool:
    def visit(items) -> bool:
        for op, av in items:
            if op == C.MIN_REPEAT:
                return True
            if op in (C.MAX_REPEAT, getattr(C, "POSSESSIVE_REPEAT", None)):
                if visit(av[2]):
                    return True
            elif op == C.SUBPATTERN:
                if visit(av[-1]):
                    return True
            elif op == C.BRANCH:
                if any(visit(branch) for branch in av[1]):
                    return True
        return False

    return visit(_sre_parse.parse(regexp))


def _shortest_match(dfa: ByteDFA) -> ByteDFA:
    """The DFA that stops at its first accepting state (a lazy pattern's match)."""
    table = dfa.transitions.copy()
    table[dfa.accepting] = -1
    return ByteDFA(table, dfa.accepting.copy())


def _terminal_regex(name: str, regexp: str) -> tuple[ByteDFA, Follow | None]:
    """A terminal's regex as a DFA. Lookarounds inside the terminal are compiled exactly; a
    lookahead at its end, which lark's lexer lets see the next lexeme, is kept as a
    :class:`Follow` when one byte of what follows decides it."""
    if not needs_assertions(list(_sre_parse.parse(regexp).data)):
        return regex_to_dfa(regexp), None
    return compile_terminal(regexp, f"terminal {name}")


@lru_cache(maxsize=1024)
def terminal_lexing(name: str, regexp: str) -> tuple[ByteDFA, Follow | None]:
    """The byte DFA of a lark terminal, with the match lark's lexer would make, and what
    may follow the lexeme (None: anything; see :func:`_terminal_regex`).

    lark matches a terminal with Python's ``re``: greedy quantifiers take the
    longest match (the lexer's maximal munch), lazy ones the shortest, which
    is the DFA cut at its first accepting state.
    """
    try:
        lazy = _has_lazy_quantifier(regexp)
        dfa, follow = _terminal_regex(name, regexp)
    except PendingLookaheadError as exc:
        raise GrammarError(
            f"terminal {name} (/{regexp}/) cannot be enforced: its lookahead looks past the end of the "
            "terminal more than one byte into the next lexeme, which is not supported (a lookahead "
            f"followed by more of the terminal, or decided by the next byte, is): {exc}"
        ) from exc
    except RegexError as exc:
        raise GrammarError(f"terminal {name} (/{regexp}/) cannot be enforced: {exc}") from exc
    except re.error as exc:
        raise GrammarError(f"terminal {name} (/{regexp}/) is not a valid regex: {exc}") from exc
    if dfa.accepting[0]:
        raise GrammarError(f"terminal {name} (/{regexp}/) matches the empty string")
    if lazy and follow is not None:
        raise GrammarError(
            f"terminal {name} (/{regexp}/) cannot be enforced: a lazy quantifier with a lookahead "
            "at the end of the terminal is not supported"
        )
    return (_shortest_match(dfa) if lazy else dfa), follow


def terminal_dfa(name: str, regexp: str) -> ByteDFA:
    """The byte DFA of a lark terminal (:func:`terminal_lexing` without what may follow)."""
    return terminal_lexing(name, regexp)[0]


MAX_STACKS = 2_000_000
"""The most distinct parser stacks one grammar interns (about 150 bytes each); past it, generation
stops with ConstraintTooComplexError. Random arithmetic text reaches about 120 per token (masks
explore long runs of brackets), JSON a few per token."""

VIEW_LOOKAHEAD = 2
"""Terminals a lexer view reads past its stack: the one that ends the lexeme and the one after
it, or the end of the text (:mod:`~outlines_gguf.grammar.stack_runs`)."""

MEMO_SIZE = 500_000
"""Per-stack results (parser runs, acceptable terminals, lexer views) kept before they are
dropped and recomputed on demand."""

ACCEPT = -2
"""What :meth:`ParseTable.run` returns for ``$END`` when the text is a sentence."""


@dataclass
class ParseTable:
    """lark's LALR(1) table as dicts: ``actions[state][symbol]`` is ``(target,)``
    for a shift (or a goto on a rule) and ``(rule_name, length)`` for a reduce.

    Stacks are interned: a stack is an int naming (the stack below, top
    state), so pushing, popping, hashing and comparing are O(1), and every
    result computed for a stack is shared by all texts that reach it.
    """

    actions: list[dict[str, tuple]]
    start: int
    end: int

    root = 0
    """The stack holding only the start state."""

    def __post_init__(self) -> None:
        self._below: list[int] = [-1]
        self._top: list[int] = [self.start]
        self._depth: list[int] = [1]
        self._ids: dict[tuple[int, int], int] = {(-1, self.start): 0}
        self._runs: dict[tuple[int, str], tuple[int | None, int, int]] = {}
        self._shiftable: dict[int, tuple[frozenset[str], dict[str, int], int]] = {}
        self._groups: dict[int, tuple[frozenset[str], list[tuple[str, int, frozenset[str]]]]] = {}

    def top(self, stack: int) -> int:
        return self._top[stack]

    def depth(self, stack: int) -> int:
        return self._depth[stack]

    def states(self, stack: int) -> tuple[int, ...]:
        """The states of ``stack``, bottom first (for inspection)."""
        out = []
        while stack >= 0:
            out.append(self._top[stack])
            stack = self._below[stack]
        return tuple(reversed(out))

    def push(self, stack: int, state: int) -> int:
        key = (stack, state)
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self._top)
            if found >= MAX_STACKS:
                raise ConstraintTooComplexError(
                    f"the grammar reached more than {MAX_STACKS} distinct parser stacks"
                )
            self._below.append(stack)
            self._top.append(state)
            self._depth.append(self._depth[stack] + 1)
        return found

    def run(self, stack: int, terminal: str) -> int | None:
        """The stack after shifting ``terminal`` (reductions included), None on a syntax error;
        for ``$END``, :data:`ACCEPT` if the text is a sentence."""
        return self.probe(stack, terminal)[0]

    def accepts_end(self, stack: int) -> bool:
        """Whether the text read so far (``stack``) is a complete sentence."""
        return self.probe(stack, END)[0] == ACCEPT

    def _action_groups(self, state: int) -> tuple[frozenset[str], list[tuple[str, int, frozenset[str]]]]:
        """The symbols ``state`` shifts, and its reductions with the terminals each is taken on
        (``$END`` left out)."""
        found = self._groups.get(state)
        if found is None:
            shifts: set[str] = set()
            reduces: dict[tuple, set[str]] = {}
            for symbol, act in self.actions[state].items():
                if len(act) == 1:
                    shifts.add(symbol)
                elif symbol != END:
                    reduces.setdefault(act, set()).add(symbol)
            groups = [(origin, size, frozenset(terms)) for (origin, size), terms in reduces.items()]
            found = self._groups[state] = (frozenset(shifts), groups)
        return found

    def shiftable(self, stack: int) -> tuple[frozenset[str], int]:
        """The terminals :meth:`run` shifts from ``stack`` (reductions included; ``$END`` aside),
        and a position at or below the deepest state that read (as :meth:`probe` gives it).

        The terminals a state reduces on alike are followed together, through one reduction to
        the stack it leaves, whose answer is kept: a run of reductions (a number after forty
        unary minus signs, reduced through all of them on whatever comes next) is then followed
        once for all terminals, and once for every stack below, instead of once per terminal
        per stack. Equal to probing each terminal."""
        found = self._shiftable_entry(stack)
        return found[0], found[2]

    def shift_reads(self, stack: int) -> dict[str, int]:
        """Per terminal that the stack's top state reduces on, the position down to which
        :meth:`probe` reads to decide it (a shift or an error reads the top state alone)."""
        return self._shiftable_entry(stack)[1]

    def _shiftable_entry(self, stack: int) -> tuple[frozenset[str], dict[str, int], int]:
        memo = self._shiftable
        found = memo.get(stack)
        if found is not None:
            return found
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        below, tops, actions = self._below, self._top, self.actions
        work, started = [stack], set()
        while work:
            current = work[-1]
            if current in memo:
                work.pop()
                continue
            shifts, groups = self._action_groups(tops[current])
            after = []
            for origin, size, _ in groups:
                base = current
                for _ in range(size):
                    base = below[base]
                goto = actions[tops[base]].get(origin) if base >= 0 else None
                after.append(self.push(base, goto[0]) if goto is not None else None)
            missing = [a for a in after if a is not None and a not in memo and a not in started]
            if missing:  # (a stack met again on its own way down is a loop of reductions: none)
                started.add(current)
                work.extend(missing)
                continue
            work.pop()
            # what each terminal read, as its own probe would: a reduction reads the state it
            # uncovers, then what the stack it leaves read for that terminal (not for others)
            shiftable, reads = set(shifts), {}
            for (_, size, terms), reduced in zip(groups, after, strict=True):
                sub = memo.get(reduced) if reduced is not None else None
                if sub is None:
                    reads.update(dict.fromkeys(terms, size))
                    continue
                shiftable |= terms & sub[0]
                for t in terms:
                    reads[t] = max(size, size - 1 + sub[1].get(t, 0))
            memo[current] = (frozenset(shiftable), reads, max(reads.values(), default=0))
        return memo[stack]

    def probe(self, stack: int, terminal: str) -> tuple[int | None, int, int]:
        """:meth:`run`, with what it read of ``stack``: (the result, a position at or below the
        deepest state it read (0: the top), the position of the result's top (negative: above
        ``stack``'s top)); see :mod:`~outlines_gguf.grammar.stack_memo`. Memoized per (stack, terminal) for
        every stack on the way, so a chain of reductions is followed once."""
        runs = self._runs
        key = (stack, terminal)
        found = runs.get(key)
        if found is not None:
            return found
        actions, below, tops = self.actions, self._below, self._top
        act = actions[tops[stack]].get(terminal)
        if act is None or len(act) == 1:  # an error or a shift: the top state alone decides
            if len(runs) >= MEMO_SIZE:
                runs.clear()
            if terminal == END and tops[stack] == self.end:
                found = runs[key] = (ACCEPT, 0, 0)
            elif act is None or terminal == END:
                found = runs[key] = (None, 0, 0)
            else:
                found = runs[key] = (self.push(stack, act[0]), 0, -1)
            return found
        position = deepest = 0
        pending: list[tuple[tuple[int, str], int]] = []  # (key, the position of its top)
        result: int | None
        while True:
            pending.append((key, position))
            state = tops[stack]
            if terminal == END and state == self.end:
                result = ACCEPT
                break
            act = actions[state].get(terminal)
            if act is None or (len(act) == 1 and terminal == END):
                result = None
                break
            if len(act) == 1:
                result = self.push(stack, act[0])
                position -= 1
                break
            origin, size = act
            for _ in range(size):
                stack = below[stack]
            position += size
            if position > deepest:
                deepest = position
            stack = self.push(stack, actions[tops[stack]][origin][0])
            position -= 1
            key = (stack, terminal)
            found = runs.get(key)
            if found is not None:
                result = found[0]
                deepest = max(deepest, position + found[1])
                position += found[2]
                break
        if len(runs) >= MEMO_SIZE:
            runs.clear()
        # (a stack met on the way gets the deepest read of the whole run: no shallower than its
        # own, which only shares it less)
        for k, top in pending:
            runs[k] = (result, deepest - top, position - top)
        return runs[pending[0][0]]


def _parse_table(lark_parse_table, start: str) -> ParseTable:
    from lark.parsers.lalr_analysis import Shift

    n = max(lark_parse_table.states) + 1
    actions: list[dict[str, tuple]] = [{} for _ in range(n)]
    for state, acts in lark_parse_table.states.items():
        row = actions[state]
        for symbol, (action, arg) in acts.items():
            # plain str keys: lark's Token names compare through a slow __eq__
            if action is Shift:
                row[str(symbol)] = (arg,)
            else:
                row[str(symbol)] = (str(arg.origin.name), len(arg.expansion))
    return ParseTable(actions, lark_parse_table.start_states[start], lark_parse_table.end_states[start])


class _ConflictLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.conflicts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Shift/Reduce conflict"):
            self.conflicts.append(message.replace(": (resolving as shift)", ""))
        elif self.conflicts and message.startswith(" * "):
            self.conflicts[-1] += f" ({message[3:]})"


def _regex_errors() -> tuple[type[Exception], ...]:
    """``re``'s error and the ``regex`` module's, which lark uses for terminals when installed."""
    try:
        import regex
    except ImportError:  # pragma: no cover - regex is a dependency of the test environment only
        return (re.error,)
    return (re.error, regex.error)


def load_lark(text: str, start: str | list[str], parser: str = "lalr"):
    """lark's parser for ``text`` (``parser="lalr"``: LALR(1) with the contextual lexer;
    ``"earley"``: Earley with every lexing), and the shift/reduce conflicts lark resolved as shift."""
    from lark import Lark
    from lark import logger as lark_logger
    from lark.exceptions import GrammarError as LarkGrammarError
    from lark.exceptions import LarkError, UnexpectedInput

    if not isinstance(text, str):
        raise GrammarError(f"a grammar must be a str (Lark syntax), got {type(text).__name__}")
    log = _ConflictLog()
    level, handlers, propagate = lark_logger.level, lark_logger.handlers, lark_logger.propagate
    lark_logger.handlers, lark_logger.propagate = [log], False  # listen to lark's debug log, print none of it
    lark_logger.setLevel(logging.DEBUG)
    try:
        if parser == "earley":
            return Lark(text, parser="earley", lexer="dynamic_complete", start=start), []
        return Lark(text, parser="lalr", lexer="contextual", start=start), log.conflicts
    except UnexpectedInput as exc:
        context = exc.get_context(text).rstrip() if hasattr(exc, "get_context") else ""
        raise GrammarError(
            f"grammar syntax error at line {exc.line}, column {exc.column}:\n{context}"
        ) from exc
    except LarkGrammarError as exc:
        raise GrammarError(f"invalid grammar: {exc}") from exc
    except LarkError as exc:
        raise GrammarError(f"grammar rejected by lark: {exc}") from exc
    except _regex_errors() as exc:  # a terminal lark's regex module (or re) cannot compile
        raise GrammarError(f"invalid regex in the grammar: {exc}") from exc
    except (KeyError, ValueError, TypeError, RecursionError) as exc:  # lark fails on some inputs this way
        raise GrammarError(f"grammar rejected by lark: {type(exc).__name__}: {exc}") from exc
    finally:
        lark_logger.handlers, lark_logger.propagate = handlers, propagate
        lark_logger.setLevel(level)


def _check_productive(rules, start: str) -> None:
    """Raise EmptyLanguageError if ``start`` derives no finite text (rules without a base case)."""
    productive: set[str] = set()
    changed = True
    while changed:
        changed = False
        for rule in rules:
            origin = str(rule.origin.name)
            if origin in productive:
                continue
            if all(sym.is_term or str(sym.name) in productive for sym in rule.expansion):
                productive.add(origin)
                changed = True
    reachable, todo = {start}, [start]
    while todo:
        name = todo.pop()
        for rule in rules:
            if str(rule.origin.name) == name:
                for sym in rule.expansion:
                    if not sym.is_term and str(sym.name) not in reachable:
                        reachable.add(str(sym.name))
                        todo.append(str(sym.name))
    stuck = sorted(reachable - productive)
    if start not in productive:
        raise EmptyLanguageError(
            f"the grammar accepts no text: rule(s) {', '.join(stuck)} never finish "
            "(every alternative needs the rule itself again: add a base case)"
        )
    if stuck:  # generation could enter them and never finish
        raise GrammarError(
            f"rule(s) {', '.join(stuck)} can never finish (every alternative needs the rule itself "
            "again): add a base case or remove them"
        )


def _declared_line(text: str, name: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("%declare") and re.search(rf"\b{re.escape(name)}\b", line):
            return number
    return None


def check_no_declared(text: str, lark, starts: Sequence[str]) -> None:
    """Raise :func:`declared_terminal_error` for a terminal that a rule reachable from ``starts``
    uses but no pattern defines."""
    defined = {t.name for t in lark.terminals if t.pattern is not None}
    by_origin: dict[str, list] = {}
    for rule in lark.rules:
        by_origin.setdefault(str(rule.origin.name), []).append(rule)
    reached, todo = set(starts), list(starts)
    while todo:
        for rule in by_origin.get(todo.pop(), ()):
            for sym in rule.expansion:
                if sym.is_term and sym.name not in defined:
                    raise declared_terminal_error(text, str(sym.name))
                if not sym.is_term and str(sym.name) not in reached:
                    reached.add(str(sym.name))
                    todo.append(str(sym.name))


def declared_terminal_error(text: str, name: str) -> GrammarError:
    """The error for a terminal declared with ``%declare`` (only a Python postlexer could make it)."""
    line = _declared_line(text, name)
    where = f" (line {line})" if line else ""
    return GrammarError(
        f"terminal {name} is declared with %declare{where} but has no pattern: only a Python "
        "postlexer (for example an indenter) can produce it, which a token mask cannot follow"
    )


class Grammar(Locked):
    """A Lark grammar, compiled for byte-by-byte recognition (see the module docstring).

    Masks built on it are exact for grammars without LALR conflicts: every
    allowed byte leads to text that some continuation completes. Where the
    grammar's terminals can swallow each other (longest match), the stacks
    that can still be completed are computed exactly (``liveness``, see
    :mod:`~outlines_gguf.grammar.liveness`), unless that is too large (then
    one lexeme of lookahead, with a warning). Where lark resolved a
    shift/reduce conflict (``conflicts``, logged as a warning) dead ends
    remain possible. A dead end stops generation with an error; it never
    lets invalid text through.
    """

    mode = "lalr"
    exact_liveness = True
    """Whether masks check that the stack can still be completed (:mod:`~outlines_gguf.grammar.liveness`);
    otherwise a lexeme may end only where the next one can start (one lexeme of lookahead)."""
    lexer_reads_acceptable = False
    """Whether the lexer of a stack depends on the whole set of terminals accepted there (not on
    the top state alone): what :meth:`view_reads` counts the lexer's choice as reading."""

    def __init__(self, text: str, start: str = "start", *, loaded: tuple | None = None) -> None:
        self.text = text
        self.start_symbol = start
        lark, self.conflicts = loaded if loaded is not None else load_lark(text, start)
        if self.conflicts:
            logger.warning(
                "outlines-gguf: the grammar has %d shift/reduce conflict(s), which lark resolves as shift "
                "(%s); some texts then lead to dead ends, where generation stops with an error",
                len(self.conflicts),
                "; ".join(self.conflicts[:3]),
            )
        check_no_declared(text, lark, [start])
        _check_productive(lark.rules, start)
        frontend = lark.parser
        contextual = frontend.lexer
        self.ignore: frozenset[str] = frozenset(lark.ignore_tokens)
        self.table = _parse_table(frontend.parser.parser.parse_table, start)
        self._canonical = RunCompressor(self.table, frozenset(t.name for t in lark.terminals), VIEW_LOOKAHEAD)

        dfas: dict[str, ByteDFA] = {}
        follows: dict[str, Follow] = {}
        for term in lark.terminals:
            pattern = term.pattern
            if pattern is None:
                raise declared_terminal_error(text, term.name)
            dfas[term.name], follow = terminal_lexing(term.name, pattern.to_regexp())
            if follow is not None:
                follows[term.name] = follow
        self.terminal_dfas = dfas
        self.terminal_follows = follows
        self.byte_class, representatives = byte_classes(
            list(dfas.values()), [f.bytes for f in follows.values()]
        )
        self.n_classes = len(representatives)
        self._representatives = [int(np.flatnonzero(self.byte_class == c)[0]) for c in range(self.n_classes)]

        self.lexers: list[LexerAutomaton] = []
        by_basic: dict[int, int] = {}
        self.lexer_of_state: list[int] = [0] * len(self.table.actions)
        for state, basic in contextual.lexers.items():
            index = by_basic.get(id(basic))
            if index is None:
                index = by_basic[id(basic)] = len(self.lexers)
                self.lexers.append(self._lexer_automaton(basic, dfas, representatives, follows))
            self.lexer_of_state[state] = index
        self._lock = threading.RLock()
        self._acceptable: dict[int, tuple[frozenset[str], int]] = {}
        self._views: dict[int, tuple[np.ndarray, int, ViewReads | None]] = {}
        stacks = self.table._below, self.table._top
        self._shared_acceptable = StackMemo(*stacks, MEMO_SIZE)
        self._shared_views = StackMemo(*stacks, MEMO_SIZE)
        self.initial_state: Config = (ParseTable.root, 0)
        self.liveness: Liveness | None = None
        if self.exact_liveness and not lexing_is_free(self):
            try:
                self.liveness = Liveness(self)
            except TooLargeError:
                logger.warning(
                    "outlines-gguf: the grammar's terminals may swallow each other several lexemes "
                    "ahead, and checking that exactly is too large: some texts may then lead to dead "
                    "ends, where generation stops with an error"
                )
        self._check_not_empty()

    @staticmethod
    def _lexer_automaton(
        basic, dfas: dict[str, ByteDFA], representatives: np.ndarray, follows: dict[str, Follow]
    ) -> LexerAutomaton:
        scanner = basic.scanner  # builds lark's scanner: the terminal order and the keyword retyping
        names = [t.name for t in basic.terminals]
        scan = [t.name for t in scanner.terminals]
        unless: dict[str, list[str]] = {}
        for name, callback in basic.callback.items():
            inner = getattr(callback, "scanner", None)
            if inner is None:
                raise GrammarError(f"lexer callback on terminal {name} is not supported")
            unless[name] = [t.name for t in inner.terminals]
        return LexerAutomaton(
            names, scan, unless, [dfas[n] for n in names], representatives,
            {n: follows[n] for n in names if n in follows},
        )

    @property
    def lock(self) -> threading.RLock:
        """Held by guides around every use: the interned stacks and the memos grow as masks are
        computed, and one grammar is shared by the guides of all vocabularies."""
        return self._lock

    # -- configurations ---------------------------------------------------------------------

    def lexer(self, stack: int) -> LexerAutomaton:
        return self.lexers[self.lexer_of_state[self.table.top(stack)]]

    def acceptable(self, stack: int) -> frozenset[str]:
        """The terminals the lexer may emit here: the ignored ones and those the parser can shift."""
        return self._acceptable_read(stack)[0]

    def _candidates(self, stack: int) -> list[str]:
        """The terminals tried on ``stack`` (a function of its top state)."""
        return self.lexer(stack).names

    def _acceptable_read(self, stack: int) -> tuple[frozenset[str], int]:
        """:meth:`acceptable` and the deepest position of the stack it read, shared by the stacks
        that agree down to there (:mod:`~outlines_gguf.grammar.stack_memo`)."""
        found = self._acceptable.get(stack)
        if found is not None:
            return found
        found = self._shared_acceptable.get(stack)
        if found is None:
            shiftable, deepest = self.table.shiftable(stack)
            ignore = self.ignore
            found = (frozenset(n for n in self._candidates(stack) if n in ignore or n in shiftable), deepest)
            self._shared_acceptable.put(stack, deepest, found)
        if len(self._acceptable) >= MEMO_SIZE:
            self._acceptable.clear()
        self._acceptable[stack] = found
        return found

    def view(self, stack: int) -> np.ndarray:
        """The lexer table of the stack's top state, restricted to what the parser accepts here
        and to lexemes whose end the next lexeme (or the end of the text) can follow."""
        return self.view_read(stack)[0]

    def view_read(self, stack: int) -> tuple[np.ndarray, int]:
        """:meth:`view` and the deepest position of the stack it depends on (0: the top state
        alone), for results built on it to be shared the same way
        (:mod:`~outlines_gguf.grammar.stack_memo`)."""
        found = self.view_reads(stack)
        return found[0], found[1]

    def view_reads(self, stack: int) -> tuple[np.ndarray, int, ViewReads | None]:
        """:meth:`view_read`, and what each part of the view read: (the position the choice of
        lexer read down to, and per terminal of that lexer the position down to which the
        parser was read to know whether it is accepted here and what may follow it); None
        where that is not tracked (the whole stack). A walk of lexemes that can end only as
        some terminals depends on the stack down to where those terminals' parts read."""
        found = self._views.get(stack)
        if found is None:
            found = self._shared_views.get(stack)
            if found is None:
                canonical, agree = self._canonical.canonical(stack) if self.liveness is None else (stack, -1)
                if canonical != stack:  # (a long run shortened: its view, read the same)
                    # (a read into a shortened run, or below one: the states it read lie at
                    # most the states taken out deeper in ``stack``)
                    shift = self.table.depth(stack) - self.table.depth(canonical)

                    def moved(d: int) -> int:
                        return d + shift if d >= agree else d

                    view, deepest, reads = self.view_reads(canonical)
                    if reads is not None:
                        reads = (moved(reads[0]), {t: moved(d) for t, d in reads[1].items()})
                    found = (view, moved(deepest), reads)
                else:
                    found = self._view_read(stack)
                self._shared_views.put(stack, found[1], found)
            if len(self._views) >= MEMO_SIZE:
                self._views.clear()
            self._views[stack] = found
        return found

    def _view_read(self, stack: int) -> tuple[np.ndarray, int, ViewReads | None]:
        acceptable, deepest = self._acceptable_read(stack)
        lexer_read = deepest if self.lexer_reads_acceptable else 0
        here = self.lexer(stack)
        shift_reads = self.table.shift_reads(stack)
        per = {t: shift_reads.get(t, 0) for t in self._candidates(stack)}  # (accepted or not)
        follow = {}
        for terminal in acceptable:
            if terminal in self.ignore:
                after, top = stack, 0
            else:
                found, _, top = self.table.probe(stack, terminal)
                if found is None:  # pragma: no cover - acceptable() checked it
                    continue
                after = found
            if self.liveness is not None:
                follow[terminal] = self.liveness.live_classes(after)
                continue
            following, read_next = self._acceptable_read(after)
            read = top + read_next
            first = self.lexer(after).view(following)[0] >= 0
            ends = False  # (canonical where it does not matter: the run to the end reads deep)
            if here.end_matters(terminal, first):
                end, read_end, _ = self.table.probe(after, END)
                ends, read = end == ACCEPT, max(read, top + read_end)
            per[terminal] = max(per.get(terminal, 0), read)
            deepest = max(deepest, read)
            follow[terminal] = (ends, first)
        if self.liveness is not None:  # (what it reads is not tracked: the whole stack)
            return here.follow_view(follow), self.table.depth(stack) - 1, None
        return here.follow_view(follow), deepest, (lexer_read, per)

    def emit(self, stack: int, q: int) -> int | None:
        """The stack after the lexeme in lexer state ``q`` ends (None if the parser rejects it)."""
        terminal = self.lexer(stack).emits[q]
        if terminal is None:
            return None
        if terminal in self.ignore:
            return stack
        return self.table.run(stack, terminal)

    def step(self, config: Config, byte: int) -> Config | None:
        """The configuration after one more byte, or None if no sentence starts this way."""
        return self.step_through(self.view, config, byte)

    def step_through(self, view: Callable[[int], np.ndarray], config: Config, byte: int) -> Config | None:
        """:meth:`step` with the lexer views of ``view`` (tests give a reference definition)."""
        stack, q = config
        cls = self.byte_class[byte]
        nxt = int(view(stack)[q, cls])
        if nxt >= 0:
            return stack, nxt
        if nxt != CROSS:
            return None
        emitted = self.emit(stack, q)
        if emitted is None:
            return None
        stack = emitted
        nxt = int(view(stack)[0, cls])
        return (stack, nxt) if nxt >= 0 else None

    def advance(self, config: Config, data: bytes) -> Config | None:
        """The configuration after ``data`` (None as soon as it dies)."""
        for byte in data:
            stepped = self.step(config, byte)
            if stepped is None:
                return None
            config = stepped
        return config

    def is_final(self, config: Config) -> bool:
        """Whether the text read so far is a sentence of the grammar."""
        stack, q = config
        if q == 0:
            return self.table.accepts_end(stack)
        lexer = self.lexer(stack)
        terminal = lexer.emits[q]
        if terminal is None or terminal not in self.acceptable(stack) or not lexer.end_ok[q]:
            return False
        after = self.emit(stack, q)
        return after is not None and self.table.accepts_end(after)

    def accepts(self, data: bytes) -> bool:
        """Whether ``data`` is a sentence (what lark's own parser accepts)."""
        config = self.advance(self.initial_state, data)
        return config is not None and self.is_final(config)

    def shortest_completion(self, config: Config, limit: int = EXAMPLE_SEARCH_LIMIT) -> bytes | None:
        """Bytes that complete ``config`` to a sentence, short (one byte per class, ASCII first),
        or None if none was found.

        A breadth-first search over configurations gives the shortest; where
        that grows past ``limit`` configurations, a search over whole
        terminals (each written as its shortest example) takes over.
        Raises :class:`EmptyLanguageError` when provably no completion exists.
        """
        found = bfs_completion(self, config, min(limit, 300))
        if found is None:
            found = self._terminal_completion(config)
        if found is None and limit > 300:
            found = bfs_completion(self, config, limit)
        return found

    def _terminal_example(self, name: str) -> bytes:
        cache = self.__dict__.setdefault("_examples", {})
        if name not in cache:
            dfa = self.terminal_dfas[name]
            seen = {0: b""}
            queue = deque([0])
            while queue:
                state = queue.popleft()
                if dfa.accepting[state]:
                    cache[name] = seen[state]
                    break
                for byte in self._representatives:
                    nxt = int(dfa.transitions[state, byte])
                    if nxt >= 0 and nxt not in seen:
                        seen[nxt] = seen[state] + bytes([byte])
                        queue.append(nxt)
            else:  # pragma: no cover - terminal DFAs accept something
                cache[name] = b""
        return cache[name]

    def _terminal_completion(self, config: Config, limit: int = 5000) -> bytes | None:
        """Finish the current lexeme, then the cheapest sequence of whole terminals to the end."""
        import heapq

        stack, q = config
        lexer = self.lexer(stack)
        starts: list[tuple[bytes, int]] = []
        if q == 0:
            starts.append((b"", stack))
        else:  # the shortest ways to end the current lexeme, one per terminal
            view = self.view(stack)
            seen = {q: b""}
            queue = deque([q])
            while queue:
                state = queue.popleft()
                if lexer.emits[state] is not None and lexer.emits[state] in self.acceptable(stack):
                    after = self.emit(stack, state)
                    if after is not None:
                        starts.append((seen[state], after))
                for cls in range(self.n_classes):
                    nxt = int(view[state, cls])
                    if nxt >= 0 and nxt not in seen:
                        seen[nxt] = seen[state] + bytes([self._representatives[cls]])
                        queue.append(nxt)
        separators = [b"", *sorted((self._terminal_example(n) for n in self.ignore), key=len)[:1]]
        for lexeme_end, after in starts:
            heap: list[tuple[int, int, int, tuple[str, ...]]] = [(0, 0, after, ())]
            done: set[int] = set()
            tie = 0
            while heap and len(done) < limit:
                _, _, current, path = heapq.heappop(heap)
                cost = sum(len(self._terminal_example(t)) + 1 for t in path)
                if current in done:
                    continue
                done.add(current)
                if self.table.accepts_end(current):
                    for sep in separators:
                        text = lexeme_end + b"".join(sep + self._terminal_example(t) for t in path)
                        end = self.advance(config, text)
                        if end is not None and self.is_final(end):
                            return text
                    continue
                for name in self.lexer(current).names:
                    if name in self.ignore:
                        continue
                    shifted = self.table.run(current, name)
                    if shifted is not None and shifted not in done:
                        tie += 1
                        step = cost + len(self._terminal_example(name)) + 1
                        # deeper stacks are further from the end: search those last (best first)
                        priority = step + 4 * self.table.depth(shifted)
                        heapq.heappush(heap, (priority, tie, shifted, (*path, name)))
        return None

    def example(self, limit: int = EXAMPLE_SEARCH_LIMIT) -> bytes | None:
        """A shortest sentence, or None if none was found within ``limit`` configurations."""
        try:
            return self.shortest_completion(self.initial_state, limit)
        except EmptyLanguageError:
            raise EmptyLanguageError(
                "the grammar accepts no text (no sentence can be lexed and parsed)"
            ) from None

    def _check_not_empty(self) -> None:
        try:
            self.example()
        except RecursionError as exc:  # pragma: no cover - defensive
            raise ConstraintTooComplexError("the grammar is too deep to check") from exc

"""Lark grammars compiled for incremental, byte-level recognition.

lark does what it does well: it loads the grammar (``%import common.*``,
``?rule`` inlining, priorities, ``%ignore``) and builds the LALR(1) tables
and its contextual lexer. This module turns those into what a guide needs:

* one byte-level DFA per terminal (:func:`terminal_dfa`),
* one :class:`~outlines_gguf.grammar_lexer.LexerAutomaton` per distinct set
  of terminals the contextual lexer tries in a parser state,
* the parse table as plain dicts, with an incremental ``feed``.

A *configuration* ``(stack, q)`` is a parser stack (a tuple of LALR states)
and the lexer automaton state of the lexeme being read (``q``; the
automaton is the one of the stack's top state). :meth:`Grammar.step` moves a
configuration by one byte, exactly as lark's contextual lexer and LALR
parser would read the text; :meth:`Grammar.is_final` says whether the text
so far is a sentence.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import ConstraintTooComplexError, EmptyLanguageError, GrammarError, RegexError
from .grammar_lexer import CROSS, LexerAutomaton, byte_classes
from .regex_dfa import ByteDFA, compile_regex

try:  # Python >= 3.11
    import re._parser as _sre_parse  # type: ignore[import-not-found]
    from re import _constants as _sre_constants  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sre_constants  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

Config = tuple[tuple[int, ...], int]
"""(parser stack, lexer automaton state)."""

END = "$END"

# lark's common.ESCAPED_STRING relies on a lazy match and a lookbehind; this
# is the same set of strings with the same first match, written for a DFA.
_ESCAPED_STRING = r'".*?(?<!\\)(\\\\)*?"'
_ESCAPED_STRING_DFA = r'"(?:[^"\\\n]|\\[^\n])*"'

EXAMPLE_SEARCH_LIMIT = 20_000
"""How many configurations the emptiness check explores before giving up (then it assumes non-empty)."""

_FEED_CACHE_SIZE = 200_000


def _has_lazy_quantifier(regexp: str) -> bool:
    def visit(items) -> bool:
        for op, av in items:
            if op == _sre_constants.MIN_REPEAT:
                return True
            if op in (_sre_constants.MAX_REPEAT, getattr(_sre_constants, "POSSESSIVE_REPEAT", None)):
                if visit(av[2]):
                    return True
            elif op == _sre_constants.SUBPATTERN:
                if visit(av[-1]):
                    return True
            elif op == _sre_constants.BRANCH:
                if any(visit(branch) for branch in av[1]):
                    return True
        return False

    return visit(_sre_parse.parse(regexp))


def _shortest_match(dfa: ByteDFA) -> ByteDFA:
    """The DFA that stops at its first accepting state (a lazy pattern's match)."""
    table = dfa.transitions.copy()
    table[dfa.accepting] = -1
    return ByteDFA(table, dfa.accepting.copy())


@lru_cache(maxsize=1024)
def terminal_dfa(name: str, regexp: str) -> ByteDFA:
    """The byte DFA of a lark terminal, with the match lark's lexer would make.

    lark matches a terminal with Python's ``re``: greedy quantifiers take the
    longest match (the lexer's maximal munch), lazy ones the shortest, which
    is the DFA cut at its first accepting state.
    """
    if regexp == _ESCAPED_STRING:
        regexp = _ESCAPED_STRING_DFA
    try:
        lazy = _has_lazy_quantifier(regexp)
        dfa = compile_regex(regexp)
    except RegexError as exc:
        raise GrammarError(f"terminal {name} (/{regexp}/) cannot be enforced: {exc}") from exc
    except re.error as exc:
        raise GrammarError(f"terminal {name} (/{regexp}/) is not a valid regex: {exc}") from exc
    if dfa.accepting[0]:
        raise GrammarError(f"terminal {name} (/{regexp}/) matches the empty string")
    return _shortest_match(dfa) if lazy else dfa


@dataclass
class ParseTable:
    """lark's LALR(1) table as dicts: ``actions[state][symbol]`` is ``(target,)``
    for a shift (or a goto on a rule) and ``(rule_name, length)`` for a reduce."""

    actions: list[dict[str, tuple]]
    start: int
    end: int

    def __post_init__(self) -> None:
        self._feed: dict[tuple[tuple[int, ...], str], tuple[int, ...] | None] = {}

    def feed(self, stack: tuple[int, ...], terminal: str) -> tuple[int, ...] | None:
        """The stack after shifting ``terminal`` (reductions included), None on a syntax error."""
        key = (stack, terminal)
        cache = self._feed
        if key in cache:
            return cache[key]
        actions = self.actions
        st = list(stack)
        result: tuple[int, ...] | None
        while True:
            act = actions[st[-1]].get(terminal)
            if act is None:
                result = None
                break
            if len(act) == 1:
                st.append(act[0])
                result = tuple(st)
                break
            origin, size = act
            if size:
                del st[-size:]
            st.append(actions[st[-1]][origin][0])
        if len(cache) >= _FEED_CACHE_SIZE:
            cache.clear()
        cache[key] = result
        return result

    def accepts_end(self, stack: tuple[int, ...]) -> bool:
        """Whether the text read so far (``stack``) is a complete sentence."""
        actions, end = self.actions, self.end
        st = list(stack)
        while True:
            if st[-1] == end:
                return True
            act = actions[st[-1]].get(END)
            if act is None or len(act) == 1:
                return False
            origin, size = act
            if size:
                del st[-size:]
            st.append(actions[st[-1]][origin][0])


def _parse_table(lark_parse_table, start: str) -> ParseTable:
    from lark.parsers.lalr_analysis import Shift

    n = max(lark_parse_table.states) + 1
    actions: list[dict[str, tuple]] = [{} for _ in range(n)]
    for state, acts in lark_parse_table.states.items():
        row = actions[state]
        for symbol, (action, arg) in acts.items():
            if action is Shift:
                row[symbol] = (arg,)
            else:
                row[symbol] = (arg.origin.name, len(arg.expansion))
    return ParseTable(actions, lark_parse_table.start_states[start], lark_parse_table.end_states[start])


def _load_lark(text: str, start: str):
    from lark import Lark
    from lark.exceptions import GrammarError as LarkGrammarError
    from lark.exceptions import LarkError, UnexpectedInput

    if not isinstance(text, str):
        raise GrammarError(f"a grammar must be a str (Lark syntax), got {type(text).__name__}")
    try:
        return Lark(text, parser="lalr", lexer="contextual", start=start)
    except UnexpectedInput as exc:
        context = exc.get_context(text).rstrip() if hasattr(exc, "get_context") else ""
        raise GrammarError(
            f"grammar syntax error at line {exc.line}, column {exc.column}:\n{context}"
        ) from exc
    except LarkGrammarError as exc:
        raise GrammarError(f"invalid grammar: {exc}") from exc
    except LarkError as exc:
        raise GrammarError(f"grammar rejected by lark: {exc}") from exc
    except (KeyError, ValueError, TypeError, RecursionError) as exc:  # lark fails on some inputs this way
        raise GrammarError(f"grammar rejected by lark: {type(exc).__name__}: {exc}") from exc


class Grammar:
    """A Lark grammar, compiled for byte-by-byte recognition (see the module docstring)."""

    def __init__(self, text: str, start: str = "start") -> None:
        self.text = text
        self.start_symbol = start
        lark = _load_lark(text, start)
        frontend = lark.parser
        contextual = frontend.lexer
        self.ignore: frozenset[str] = frozenset(lark.ignore_tokens)
        self.table = _parse_table(frontend.parser.parser.parse_table, start)

        dfas: dict[str, ByteDFA] = {}
        for term in lark.terminals:
            pattern = term.pattern
            if pattern is None:
                raise GrammarError(f"terminal {term.name} has no pattern (%declare is not supported)")
            dfas[term.name] = terminal_dfa(term.name, pattern.to_regexp())
        self.terminal_dfas = dfas
        self.byte_class, representatives = byte_classes(list(dfas.values()))
        self.n_classes = len(representatives)

        self.lexers: list[LexerAutomaton] = []
        by_basic: dict[int, int] = {}
        self.lexer_of_state: list[int] = [0] * len(self.table.actions)
        for state, basic in contextual.lexers.items():
            index = by_basic.get(id(basic))
            if index is None:
                index = by_basic[id(basic)] = len(self.lexers)
                self.lexers.append(self._lexer_automaton(basic, dfas, representatives))
            self.lexer_of_state[state] = index
        self._acceptable: dict[tuple[int, ...], frozenset[str]] = {}
        self.initial_state: Config = ((self.table.start,), 0)
        self._check_not_empty()

    @staticmethod
    def _lexer_automaton(basic, dfas: dict[str, ByteDFA], representatives: np.ndarray) -> LexerAutomaton:
        scanner = basic.scanner  # builds lark's scanner: the terminal order and the keyword retyping
        names = [t.name for t in basic.terminals]
        scan = [t.name for t in scanner.terminals]
        unless: dict[str, list[str]] = {}
        for name, callback in basic.callback.items():
            inner = getattr(callback, "scanner", None)
            if inner is None:
                raise GrammarError(f"lexer callback on terminal {name} is not supported")
            unless[name] = [t.name for t in inner.terminals]
        return LexerAutomaton(names, scan, unless, [dfas[n] for n in names], representatives)

    # -- configurations ---------------------------------------------------------------------

    def lexer(self, stack: tuple[int, ...]) -> LexerAutomaton:
        return self.lexers[self.lexer_of_state[stack[-1]]]

    def acceptable(self, stack: tuple[int, ...]) -> frozenset[str]:
        """The terminals the lexer may emit here: the ignored ones and those the parser can shift."""
        found = self._acceptable.get(stack)
        if found is None:
            feed, ignore = self.table.feed, self.ignore
            found = frozenset(
                n for n in self.lexer(stack).names if n in ignore or feed(stack, n) is not None
            )
            if len(self._acceptable) >= _FEED_CACHE_SIZE:
                self._acceptable.clear()
            self._acceptable[stack] = found
        return found

    def view(self, stack: tuple[int, ...]) -> np.ndarray:
        """The lexer table of the stack's top state, restricted to what the parser accepts here."""
        return self.lexer(stack).view(self.acceptable(stack))

    def emit(self, stack: tuple[int, ...], q: int) -> tuple[int, ...] | None:
        """The stack after the lexeme in lexer state ``q`` ends (None if the parser rejects it)."""
        terminal = self.lexer(stack).emits[q]
        if terminal is None:
            return None
        if terminal in self.ignore:
            return stack
        return self.table.feed(stack, terminal)

    def step(self, config: Config, byte: int) -> Config | None:
        """The configuration after one more byte, or None if no sentence starts this way."""
        stack, q = config
        cls = self.byte_class[byte]
        nxt = int(self.view(stack)[q, cls])
        if nxt >= 0:
            return stack, nxt
        if nxt != CROSS:
            return None
        stack = self.emit(stack, q)
        if stack is None:
            return None
        nxt = int(self.view(stack)[0, cls])
        return (stack, nxt) if nxt >= 0 else None

    def advance(self, config: Config, data: bytes) -> Config | None:
        """The configuration after ``data`` (None as soon as it dies)."""
        for byte in data:
            config = self.step(config, byte)  # type: ignore[assignment]
            if config is None:
                return None
        return config

    def is_final(self, config: Config) -> bool:
        """Whether the text read so far is a sentence of the grammar."""
        stack, q = config
        if q == 0:
            return self.table.accepts_end(stack)
        lexer = self.lexer(stack)
        terminal = lexer.emits[q]
        if terminal is None or terminal not in self.acceptable(stack):
            return False
        after = self.emit(stack, q)
        return after is not None and self.table.accepts_end(after)

    def accepts(self, data: bytes) -> bool:
        """Whether ``data`` is a sentence (what lark's own parser accepts)."""
        config = self.advance(self.initial_state, data)
        return config is not None and self.is_final(config)

    def example(self, limit: int = EXAMPLE_SEARCH_LIMIT) -> bytes | None:
        """A shortest sentence (over class representatives), or None if none was found within ``limit``."""
        reps = [int(np.flatnonzero(self.byte_class == c)[0]) for c in range(self.n_classes)]
        seen = {self.initial_state: b""}
        queue = deque([self.initial_state])
        while queue:
            config = queue.popleft()
            text = seen[config]
            if self.is_final(config):
                return text
            for byte in reps:
                nxt = self.step(config, byte)
                if nxt is not None and nxt not in seen:
                    if len(seen) >= limit:
                        return None
                    seen[nxt] = text + bytes([byte])
                    queue.append(nxt)
        raise EmptyLanguageError("the grammar accepts no text (no sentence can be lexed and parsed)")

    def _check_not_empty(self) -> None:
        try:
            self.example()
        except RecursionError as exc:  # pragma: no cover - defensive
            raise ConstraintTooComplexError("the grammar is too deep to check") from exc


@lru_cache(maxsize=64)
def compile_grammar(text: str, start: str = "start") -> Grammar:
    """Compile a Lark grammar (cached per text). Raises :class:`GrammarError` with the location."""
    return Grammar(text, start)

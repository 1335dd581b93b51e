"""The lexer automaton of each lark contextual-lexer state: lexing a text with it (maximal munch,
a lexeme ending where the next byte cannot continue it) must give lark's own tokens, and its
views must equal a brute-force reading of their definitions."""

from __future__ import annotations

from collections import deque
from functools import cache
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lark import Lark, Token
from lark.utils import TextSlice
from token_oracles import random_table

from outlines_gguf.automata.dfa import ByteDFA
from outlines_gguf.errors import ConstraintTooComplexError
from outlines_gguf.grammar import lexer as lexer_module
from outlines_gguf.grammar.compiled import terminal_dfa
from outlines_gguf.grammar.lexer import CROSS, DEAD, LexerAutomaton, byte_classes

# Grammars whose terminals never make lark back up: lark lexes a text iff the automaton does.
EXACT = {
    "keywords": r"""
        start: (NAME | NUMBER | WS | IF | IN | EQ | EQEQ | LT | LE)*
        IF: "if"
        IN: "in"
        NAME: /[a-z]+/
        NUMBER: /[0-9]+/
        WS: " "
        EQ: "="
        EQEQ: "=="
        LT: "<"
        LE: "<="
    """,
    "priority": r"""
        start: (A | B | SP)*
        A.2: /a+/
        B: /[ab]+/
        SP: " "
    """,
    "contextual": r"""
        start: NAME EQ value (WS NAME EQ value)*
        value: NUMBER | NAME | IF | STRING
        IF: "if"
        NAME: /[a-z]+/
        NUMBER: /[0-9]+/
        STRING: /"[^"]*"/
        WS: " "
        EQ: "="
    """,
}
# lark backs up more than the automaton follows here ("1.x", "abcb"): the automaton may refuse a
# text lark lexes, never lex it differently.
BACKTRACKING = {
    "float": r"""
        start: (INT | FLOAT | DOT | NAME)*
        INT: /[0-9]+/
        FLOAT: /[0-9]+\.[0-9]+/
        DOT: "."
        NAME: /[a-z]+/
    """,
    "repeat": r"""
        start: (A | B | C)*
        A: /a(bc)*/
        B: "b"
        C: "c"
    """,
}
ALPHABETS = {
    "keywords": "ifnz09 =<",
    "priority": "ab c",
    "contextual": 'ifnz09 ="',
    "float": "19.ab",
    "repeat": "abcd",
}


@cache
def state_lexers(name: str) -> list[tuple[object, LexerAutomaton, np.ndarray]]:
    """(lark's lexer, our automaton, byte classes) for each distinct contextual-lexer state."""
    text = {**EXACT, **BACKTRACKING}[name]
    contextual = Lark(text, parser="lalr", lexer="contextual").parser.lexer
    dfas = {t.name: terminal_dfa(t.name, t.pattern.to_regexp()) for t in contextual.root_lexer.terminals}
    byte_class, representatives = byte_classes(list(dfas.values()))
    out, seen = [], set()
    for basic in contextual.lexers.values():
        if id(basic) in seen or not basic.terminals:
            continue
        seen.add(id(basic))
        names = [t.name for t in basic.terminals]
        scan = [t.name for t in basic.scanner.terminals]
        unless = {k: [t.name for t in cb.scanner.terminals] for k, cb in basic.callback.items()}
        out.append(
            (
                basic,
                LexerAutomaton(names, scan, unless, [dfas[n] for n in names], representatives),
                byte_class,
            )
        )
    return out


def lark_lex(basic: object, text: str) -> list[tuple[str, bytes]] | None:
    """lark's BasicLexer loop (match at the position, then the keyword callback); None on an error."""
    out, pos, sliced = [], 0, TextSlice.cast_from(text)
    while pos < len(text):
        found = basic.match(sliced, pos)  # type: ignore[attr-defined]
        if not found:
            return None
        value, kind = found
        if kind in basic.callback:  # type: ignore[attr-defined]
            kind = basic.callback[kind](Token(kind, value)).type  # type: ignore[attr-defined]
        out.append((kind, value.encode()))
        pos += len(value)
    return out


def automaton_lex(
    lexer: LexerAutomaton, byte_class: np.ndarray, data: bytes
) -> list[tuple[str, bytes]] | None:
    """Lex ``data`` with the view accepting every terminal: follow the table, end a lexeme at CROSS."""
    view = lexer.view(frozenset(lexer.names))
    out: list[tuple[str, bytes]] = []
    q, start = 0, 0
    for i, b in enumerate(data):
        nxt = int(view[q, byte_class[b]])
        if nxt == CROSS:
            out.append((lexer.emits[q], data[start:i]))  # type: ignore[arg-type]
            q, start = 0, i
            nxt = int(view[0, byte_class[b]])
        if nxt < 0:
            return None
        q = nxt
    if start < len(data):
        if lexer.emits[q] is None:
            return None
        out.append((lexer.emits[q], data[start:]))  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("grammar", [*EXACT, *BACKTRACKING])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_lexing_equals_lark(grammar: str, data: st.DataObject) -> None:
    text = data.draw(st.text(alphabet=ALPHABETS[grammar], max_size=10))
    for basic, lexer, byte_class in state_lexers(grammar):
        ours, theirs = automaton_lex(lexer, byte_class, text.encode()), lark_lex(basic, text)
        if grammar in EXACT or ours is not None:
            assert ours == theirs, (lexer.names, text)


@pytest.mark.parametrize(
    ("grammar", "text", "expected"),
    [
        ("keywords", "if iffy==in<=", "IF WS NAME EQEQ IN LE"),
        ("priority", "aab ba", "A B SP B"),
        ("float", "1.5.2", "FLOAT DOT INT"),
        ("float", "1.x", None),  # lark: INT DOT NAME, backing up over the dot
        ("repeat", "abcb", None),  # lark: A B, backing up over "b"
        ("repeat", "abcbc", "A"),
    ],
)
def test_pinned_lexemes(grammar: str, text: str, expected: str | None) -> None:
    basic, lexer, byte_class = state_lexers(grammar)[0]
    ours = automaton_lex(lexer, byte_class, text.encode())
    assert (None if ours is None else " ".join(kind for kind, _ in ours)) == expected
    assert lark_lex(basic, text) is not None


def reaching(delta: np.ndarray, goal: list[bool]) -> list[bool]:
    """States from which a goal state is reachable, by a backward search."""
    into: dict[int, set[int]] = {}
    for q, c in zip(*np.nonzero(delta >= 0), strict=True):
        into.setdefault(int(delta[q, c]), set()).add(int(q))
    live, queue = list(goal), deque(q for q, g in enumerate(goal) if g)
    while queue:
        for p in into.get(queue.popleft(), ()):
            if not live[p]:
                live[p] = True
                queue.append(p)
    return live


def expected_view(lexer: LexerAutomaton, good: list[bool], crossable: np.ndarray) -> np.ndarray:
    live = reaching(lexer.delta, good)
    out = np.full(lexer.delta.shape, DEAD, dtype=np.int32)
    for q in range(lexer.n_states):
        for c in range(lexer.delta.shape[1]):
            nxt = int(lexer.delta[q, c])
            if nxt >= 0 and live[nxt]:
                out[q, c] = nxt
            elif nxt < 0 and crossable[q, c]:
                out[q, c] = CROSS
    return out


ALL_LEXERS = [(g, i) for g in [*EXACT, *BACKTRACKING] for i in range(len(state_lexers(g)))]


@pytest.mark.parametrize(("grammar", "index"), ALL_LEXERS)
def test_every_state_can_emit(grammar: str, index: int) -> None:
    """Pruned: every state but the start reaches a state that ends a lexeme, which the start cannot."""
    lexer = state_lexers(grammar)[index][1]
    assert lexer.emits[0] is None
    live = reaching(lexer.delta, [e is not None for e in lexer.emits])
    reachable = {0} | set(lexer.delta[lexer.delta >= 0].tolist())
    assert all(live[q] for q in reachable - {0})


@pytest.mark.parametrize(("grammar", "index"), ALL_LEXERS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_views_equal_their_definition(grammar: str, index: int, data: st.DataObject) -> None:
    """``view``: go on where the lexeme can still end as an acceptable terminal, CROSS where it
    cannot go on and ends as one here. ``follow_view``: the same, where a lexeme may end only if
    the text can end after it or the byte that ends it can start what follows."""
    lexer = state_lexers(grammar)[index][1]
    names, n_classes = lexer.names, lexer.delta.shape[1]
    acceptable = frozenset(data.draw(st.sets(st.sampled_from(names))))
    good = [e is not None and e in acceptable for e in lexer.emits]
    crossable = (lexer.delta < 0) & np.array(good)[:, None]
    assert (lexer.view(acceptable) == expected_view(lexer, good, crossable)).all()

    follow = {
        n: (
            data.draw(st.booleans()),
            np.array(data.draw(st.lists(st.booleans(), min_size=n_classes, max_size=n_classes))),
        )
        for n in data.draw(st.sets(st.sampled_from(names)))
    }
    nothing = (False, np.zeros(n_classes, dtype=bool))
    first = np.array([follow.get(e, nothing)[1] if e is not None else nothing[1] for e in lexer.emits])
    crossable = (lexer.delta < 0) & first
    good = [
        (e is not None and follow.get(e, nothing)[0]) or bool(crossable[q].any())
        for q, e in enumerate(lexer.emits)
    ]
    assert (lexer.follow_view(follow) == expected_view(lexer, good, crossable)).all()


def test_follow_view_refuses_a_terminal_that_swallows_what_follows() -> None:
    """``T0: /b[ab]*/`` before ``"a"``: T0 would take the "a" too, so nothing can start with b."""
    dfas = [terminal_dfa("T0", "b[ab]*"), terminal_dfa("A", "a")]
    byte_class, representatives = byte_classes(dfas)
    lexer = LexerAutomaton(["T0", "A"], ["T0", "A"], {}, dfas, representatives)
    a, b = byte_class[ord("a")], byte_class[ord("b")]
    before_a = np.zeros(representatives.size, dtype=bool)
    before_a[a] = True
    assert lexer.follow_view({"T0": (False, before_a)})[0, b] == DEAD
    assert lexer.follow_view({"T0": (True, before_a)})[0, b] >= 0  # the text may end after it
    assert lexer.view(frozenset({"T0"}))[0, b] >= 0


# -- byte classes ----------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 8)), max_size=3))
def test_byte_classes_group_the_bytes_no_automaton_tells_apart(specs: list[tuple[int, int, int]]) -> None:
    """Two bytes share a class iff every DFA moves every state alike on them; classes are
    numbered by their first byte, and each representative is that byte."""
    dfas = []
    for seed, n_states, n_columns in specs:  # few distinct columns, so classes hold many bytes
        columns = random_table(seed, n_states, n_labels=n_columns)
        spread = np.random.default_rng(seed + 1).integers(0, n_columns, 256)
        dfas.append(ByteDFA(columns[:, spread], np.ones(n_states, dtype=bool)))
    byte_class, representatives = byte_classes(dfas)
    keys = [tuple(int(d.transitions[s, b]) for d in dfas for s in range(d.n_states)) for b in range(256)]
    first_of: dict[tuple[int, ...], int] = {}
    for b, key in enumerate(keys):
        first_of.setdefault(key, b)
    firsts = sorted(first_of.values())
    assert representatives.tolist() == firsts
    assert byte_class.tolist() == [firsts.index(first_of[key]) for key in keys]


def test_lexer_state_limit() -> None:
    dfas = [terminal_dfa("A", "(?:a*b){0,20}c"), terminal_dfa("B", "(?:b*a){0,20}d")]  # 21 x 21 counts
    _, representatives = byte_classes(dfas)
    LexerAutomaton(["A", "B"], ["A", "B"], {}, dfas, representatives)
    with (
        mock.patch.object(lexer_module, "MAX_LEXER_STATES", 50),
        pytest.raises(ConstraintTooComplexError, match=r"terminals \['A', 'B'\] needs more than 50 states"),
    ):
        LexerAutomaton(["A", "B"], ["A", "B"], {}, dfas, representatives)

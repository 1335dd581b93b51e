"""Any context-free grammar, recognized byte by byte with every lexing and every parse.

The general mode, for grammars lark's LALR(1) refuses or resolves by
guessing (reduce/reduce and shift/reduce conflicts, ambiguity) and for
scannerless grammars whose terminals overlap. Its semantics are those of
lark's Earley parser with ``lexer="dynamic_complete"``: a lexeme is any
piece of text that a terminal matches (not only the longest), between any
two lexemes, and around the text, ``%ignore``d terminals may appear.

A configuration is a set of *items* ``(stack, terminal, q)``: a node of the
graph-structured stack (:class:`~outlines_gguf.grammar.glr_table.GLRTable`), the terminal whose lexeme is
being read and its DFA state (``terminal == -1``: between lexemes, only in
the initial configuration). A byte advances every item: inside its lexeme,
and, where the lexeme may end, through the parser (all reductions, then the
shift) into the next lexeme. Items are only ever made for a terminal the
parser can shift and a live DFA state, and the tables come from a productive,
epsilon-free grammar, so every item can be completed to a sentence: masks
have no dead ends.

Configurations are interned as ids of a lazily built deterministic automaton
over byte classes (:meth:`GeneralGrammar.next_ids`): the trie walk of a mask
looks up transitions vectorized and computes only the ones never seen.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

import numpy as np

from outlines_gguf.automata.dfa import ByteDFA, reaching
from outlines_gguf.errors import ConstraintTooComplexError, GrammarError
from outlines_gguf.grammar.compiled import (
    bfs_completion,
    check_no_declared,
    declared_terminal_error,
    load_lark,
    terminal_lexing,
)
from outlines_gguf.grammar.glr_table import CFGRule, GLRTable, build_table, normalize
from outlines_gguf.grammar.lexer import byte_classes
from outlines_gguf.locking import Locked

Item = tuple[int, int, int]
"""(GLR stack, terminal index or -1 between lexemes, the terminal's DFA state)."""
ConfigSet = frozenset
"""A general-mode configuration: a frozenset of :data:`Item`."""

MAX_ITEMS = 5_000
"""The most items one configuration may hold (then ConstraintTooComplexError)."""

MAX_SETS = 200_000
"""Configurations interned before the lazily built automaton is dropped and rebuilt."""

UNKNOWN = -2
DEAD = -1


class GeneralGrammar(Locked):
    """A Lark grammar in the general mode (see the module docstring)."""

    mode = "general"

    def __init__(self, text: str, start: str | Sequence[str] = "start") -> None:
        self.text = text
        starts = [start] if isinstance(start, str) else list(start)
        self.start_symbol = start if isinstance(start, str) else tuple(starts)
        lark, _ = load_lark(text, starts, parser="earley")
        check_no_declared(text, lark, starts)
        dfas: dict[str, ByteDFA] = {}
        for term in lark.terminals:
            if term.pattern is None:
                raise declared_terminal_error(text, term.name)
            dfa, follow = terminal_lexing(term.name, term.pattern.to_regexp())
            if follow is not None:  # the general lexer has no Follow tables (grammar/lexer.py has)
                raise GrammarError(
                    f"terminal {term.name} (/{term.pattern.to_regexp()}/) ends with a lookahead into the "
                    "next lexeme, which only the LALR mode enforces: use lexer='auto' or 'contextual' "
                    "with a grammar LALR(1) accepts"
                )
            dfas[term.name] = dfa
        self.terminals = list(dfas)
        index = {n: i for i, n in enumerate(self.terminals)}
        self.ignore = frozenset(index[n] for n in lark.ignore_tokens if n in index)
        rules = [
            CFGRule(
                str(r.origin.name),
                tuple(str(s.name) for s in r.expansion),
                tuple(bool(s.is_term) for s in r.expansion),
            )
            for r in lark.rules
        ]
        normalized, live, empty = normalize(rules, set(dfas), starts)
        self.table: GLRTable = build_table(normalized, live, empty, starts)

        self.byte_class, representatives = byte_classes(list(dfas.values()))
        self.n_classes = len(representatives)
        self._representatives = [int(np.flatnonzero(self.byte_class == c)[0]) for c in range(self.n_classes)]
        self._trans: list[list[list[int]]] = []
        self._accepting: list[list[bool]] = []
        for name in self.terminals:
            dfa = dfas[name]
            table = dfa.transitions[:, representatives]
            live_states = reaching(table, dfa.accepting)
            table = np.where((table >= 0) & live_states[np.maximum(table, 0)], table, DEAD)
            self._trans.append(table.tolist())
            self._accepting.append(dfa.accepting.tolist())
        self._names = [str(n) for n in self.terminals]
        self._acceptable: dict[int, tuple[int, ...]] = {}
        self.initial_state: ConfigSet = frozenset((root, -1, 0) for root in self.table.roots)
        self._lock = threading.RLock()
        self._reset()

    @property
    def lock(self) -> threading.RLock:
        """Held by guides around every use: one grammar is shared by the guides of all vocabularies."""
        return self._lock

    # -- the lazily built automaton over configurations ----------------------------------------

    def _reset(self) -> None:
        self._ids: dict[ConfigSet, int] = {}
        self._sets: list[ConfigSet] = []
        self._finals: list[bool | None] = []
        self._delta = np.full((64, self.n_classes), UNKNOWN, dtype=np.int32)

    def intern(self, config: ConfigSet) -> int:
        """The id of ``config`` in the automaton (-1 for the empty set)."""
        if not config:
            return DEAD
        found = self._ids.get(config)
        if found is None:
            found = self._ids[config] = len(self._sets)
            self._sets.append(config)
            self._finals.append(None)
            if found >= self._delta.shape[0]:
                grown = np.full((2 * self._delta.shape[0], self.n_classes), UNKNOWN, dtype=np.int32)
                grown[: self._delta.shape[0]] = self._delta
                self._delta = grown
        return found

    def config(self, config_id: int) -> ConfigSet:
        return self._sets[config_id]

    def begin(self) -> None:
        """Drop the automaton if it grew past :data:`MAX_SETS` (call before using ids)."""
        if len(self._sets) > MAX_SETS:
            self._reset()

    def next_ids(self, ids: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """The configuration ids after byte class ``classes[i]`` from ``ids[i]`` (vectorized;
        transitions never computed before are computed now)."""
        out = self._delta[ids, classes]
        unknown = out == UNKNOWN
        if unknown.any():
            pairs = np.unique(np.stack([ids[unknown], classes[unknown]], axis=1), axis=0)
            for sid, cls in pairs.tolist():
                self._delta[sid, cls] = self.intern(self._step(self._sets[sid], cls))
            out = self._delta[ids, classes]
        return out

    def next_id(self, config_id: int, cls: int) -> int:
        """:meth:`next_ids` for one configuration and one class (for walks node by node)."""
        found = int(self._delta[config_id, cls])
        if found == UNKNOWN:
            found = self._delta[config_id, cls] = self.intern(self._step(self._sets[config_id], cls))
        return found

    # -- items ---------------------------------------------------------------------------

    def acceptable(self, stack: int) -> tuple[int, ...]:
        """The terminals a lexeme may be read as here: the ignored ones and those the parser shifts."""
        found = self._acceptable.get(stack)
        if found is None:
            shift, names = self.table.shift, self._names
            found = self._acceptable[stack] = tuple(
                t for t in range(len(names)) if t in self.ignore or shift(stack, names[t])
            )
        return found

    def _after(self, stack: int, terminal: int) -> tuple[int, ...]:
        """The stacks after a lexeme of ``terminal`` ends."""
        after = self.table.shift(stack, self._names[terminal])
        return (stack, *after) if terminal in self.ignore else after

    def _step(self, config: ConfigSet, cls: int) -> ConfigSet:
        out: set[Item] = set()
        trans, accepting = self._trans, self._accepting
        for stack, terminal, q in config:
            starts: tuple[int, ...]
            if terminal < 0:
                starts = (stack,)
            else:
                nxt = trans[terminal][q][cls]
                if nxt >= 0:
                    out.add((stack, terminal, nxt))
                if not accepting[terminal][q]:
                    continue
                starts = self._after(stack, terminal)
            for after in starts:
                for t in self.acceptable(after):
                    nxt = trans[t][0][cls]
                    if nxt >= 0:
                        out.add((after, t, nxt))
        out = self._merged(out)
        if len(out) > MAX_ITEMS:
            raise ConstraintTooComplexError(
                f"the grammar is too ambiguous here: more than {MAX_ITEMS} ways to read the text so far"
            )
        return frozenset(out)

    def _merged(self, items: set[Item]) -> set[Item]:
        """Items that read the same lexeme in the same state on stacks with the same top state
        become one item on the union of their stacks (graph-structured stack merging)."""
        top = self.table.top
        groups: dict[tuple[int, int, int], list[int]] = {}
        for node, terminal, q in items:
            groups.setdefault((terminal, q, top(node)), []).append(node)
        if len(groups) == len(items):
            return items
        merge = self.table.merge
        return {(merge(nodes), terminal, q) for (terminal, q, _), nodes in groups.items()}

    def _is_final(self, config: ConfigSet) -> bool:
        accepts = self.table.accepts_end
        for stack, terminal, q in config:
            if terminal < 0:
                if accepts(stack):
                    return True
            elif self._accepting[terminal][q] and any(accepts(s) for s in self._after(stack, terminal)):
                return True
        return False

    # -- the grammar interface (as grammar.Grammar) -----------------------------------------

    def step(self, config: ConfigSet, byte: int) -> ConfigSet | None:
        """The configuration after one more byte, or None if no sentence starts this way."""
        self.begin()
        sid = self.intern(config)
        nxt = int(self.next_ids(np.array([sid]), np.array([self.byte_class[byte]], dtype=np.int64))[0])
        return None if nxt < 0 else self._sets[nxt]

    def advance(self, config: ConfigSet, data: bytes) -> ConfigSet | None:
        """The configuration after ``data`` (None as soon as it dies)."""
        self.begin()
        sid = self.intern(config)
        if sid < 0:
            return None
        delta, byte_class = self._delta, self.byte_class
        for byte in data:
            cls = int(byte_class[byte])
            nxt = int(delta[sid, cls])
            if nxt == UNKNOWN:
                nxt = int(self.next_ids(np.array([sid]), np.array([cls]))[0])
                delta = self._delta
            if nxt < 0:
                return None
            sid = nxt
        return self._sets[sid]

    def is_final(self, config: ConfigSet) -> bool:
        """Whether the text read so far is a sentence of the grammar."""
        sid = self._ids.get(config)
        if sid is None:
            return self._is_final(config)
        found = self._finals[sid]
        if found is None:
            found = self._finals[sid] = self._is_final(config)
        return found

    def is_final_id(self, config_id: int) -> bool:
        return self.is_final(self._sets[config_id])

    def accepts(self, data: bytes) -> bool:
        """Whether ``data`` is a sentence."""
        config = self.advance(self.initial_state, data)
        return config is not None and self.is_final(config)

    def shortest_completion(self, config: ConfigSet, limit: int = 20_000) -> bytes | None:
        """Bytes that complete ``config`` to a sentence, or None if none was found within
        ``limit`` configurations. Short texts are found breadth first over byte classes (ASCII
        first, the shortest); past that, a best-first search over whole terminals (each written
        as its shortest example: with every lexing, lexemes may simply be put side by side)."""
        found = bfs_completion(self, config, min(limit, 300))
        if found is None:
            found = self._terminal_completion(config, limit)
        return found

    def _shortest_from(self, terminal: int, q: int) -> bytes | None:
        """The shortest bytes that take ``terminal``'s DFA from ``q`` to an accepting state."""
        seen = {q: b""}
        queue = deque([q])
        while queue:
            state = queue.popleft()
            if self._accepting[terminal][state]:
                return seen[state]
            for cls, byte in enumerate(self._representatives):
                nxt = self._trans[terminal][state][cls]
                if nxt >= 0 and nxt not in seen:
                    seen[nxt] = seen[state] + bytes([byte])
                    queue.append(nxt)
        return None

    def _terminal_completion(self, config: ConfigSet, limit: int) -> bytes | None:
        import heapq

        table = self.table
        examples = [self._shortest_from(t, 0) or b"" for t in range(len(self._names))]
        heap: list[tuple[int, int, int, bytes]] = []
        tie = 0
        for stack, terminal, q in config:
            starts = [(b"", stack)]
            if terminal >= 0:
                rest = self._shortest_from(terminal, q)
                starts = [] if rest is None else [(rest, s) for s in self._after(stack, terminal)]
            for text, s in starts:
                tie += 1
                heapq.heappush(heap, (len(text) + 4 * table.depth(s), tie, s, text))
        done: set[int] = set()
        while heap and len(done) < limit:
            _, _, stack, text = heapq.heappop(heap)
            if stack in done:
                continue
            done.add(stack)
            if table.accepts_end(stack):
                return text
            for t in self.acceptable(stack):
                if t in self.ignore:
                    continue
                for nxt in table.shift(stack, self._names[t]):
                    if nxt not in done:
                        tie += 1
                        longer = text + examples[t]
                        heapq.heappush(heap, (len(longer) + 4 * table.depth(nxt), tie, nxt, longer))
        return None

    def example(self, limit: int = 20_000) -> bytes | None:
        """A shortest sentence, or None if none was found within ``limit`` configurations."""
        return self.shortest_completion(self.initial_state, limit)


"""lark's contextual lexer for one parser state, as one DFA over byte classes.

lark lexes with Python's ``re``: at each position it tries the terminals of
the current parser state in a fixed order (priority, then width, then
length of the pattern) and takes the first one that matches; a regex
terminal whose match equals a keyword string is retyped to that keyword.

:class:`LexerAutomaton` runs all those terminal DFAs side by side. Its
states record each terminal's DFA state and which terminals have matched
some prefix of the lexeme so far. The *winner* of a state is the first
terminal, in lark's order, that has matched; the state can end the lexeme
(it *emits*) when the winner matches the whole lexeme. States from which no
emitting state is reachable are pruned. A lexeme ends at the first byte that
no terminal can take (maximal munch), which is where lark ends it too:
anything lark would match longer, or with a terminal earlier in its order,
keeps a live state here.

Texts where lark would backtrack more than one byte to an earlier match
(a terminal like ``/a(bc)*/`` read as ``abcb...``) are not followed: such a
lexeme is dead here. That can only forbid text, never allow text that lark
would lex differently.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from outlines_gguf.automata.dfa import ByteDFA, group_columns, reaching
from outlines_gguf.automata.lookaround import Follow
from outlines_gguf.errors import ConstraintTooComplexError

DEAD = -1
CROSS = -3
"""In a view: the lexeme ends before this byte, which starts the next lexeme."""

MAX_LEXER_STATES = 50_000
"""The most states one contextual lexer automaton may have."""


def byte_classes(
    dfas: Sequence[ByteDFA], extra: Sequence[np.ndarray] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Bytes that no DFA (and no ``extra`` table, rows over 256 bytes) tells apart share a
    class: (class of each byte as uint8, one byte per class)."""
    if not dfas:
        return np.zeros(256, dtype=np.uint8), np.zeros(1, dtype=np.int64)
    tables = [d.transitions for d in dfas] + [t.astype(np.int32) for t in extra]
    columns = np.concatenate(tables, axis=0).T
    _, representatives, inverse = np.unique(columns, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(representatives)  # number classes by their first byte
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[inverse.reshape(-1)].astype(np.uint8), representatives[order].astype(np.int64)


class LexerAutomaton:
    """The terminals lark tries in one parser state, as one DFA over byte classes.

    ``delta[q, c]`` is the next state or -1; ``emits[q]`` the terminal the
    lexeme ends as in ``q`` (None if it cannot end there). State 0 is the
    empty lexeme.
    """

    def __init__(
        self,
        names: Sequence[str],
        scan: Sequence[str],
        unless: dict[str, list[str]],
        dfas: Sequence[ByteDFA],
        representatives: np.ndarray,
        follows: dict[str, Follow] | None = None,
    ) -> None:
        self.names = list(names)
        index = {n: i for i, n in enumerate(self.names)}
        scan_idx = [index[n] for n in scan]
        self.scan = [self.names[i] for i in scan_idx]  # lark's order: the first that matches wins
        unless_idx = {index[k]: [index[s] for s in v if s in index] for k, v in unless.items() if k in index}
        k, n_classes = len(self.names), representatives.size
        rows = [d.transitions[:, representatives] for d in dfas]
        accepting = [d.accepting for d in dfas]

        start_key = (tuple([0] * k), 0, False)
        keys: dict[tuple, int] = {start_key: 0}
        order = [start_key]
        delta: list[list[int]] = []
        i = 0
        while i < len(order):
            states, flags, _ = order[i]
            i += 1
            nxt_cols = np.full((k, n_classes), -1, dtype=np.int64)
            for t, s in enumerate(states):
                if s >= 0:
                    nxt_cols[t] = rows[t][s]
            # the flags each class adds (terminals of the scan list that accept after it)
            added = np.zeros(n_classes, dtype=object if k > 62 else np.int64)
            for t in scan_idx:
                nxt = nxt_cols[t]
                hit = (nxt >= 0) & accepting[t][np.maximum(nxt, 0)]
                if hit.any():
                    added[hit] |= 1 << t
            dead = np.all(nxt_cols < 0, axis=0)
            # classes that lead to the same terminal states (hence the same added flags) share a lookup
            first, inverse = group_columns(nxt_cols)
            columns = nxt_cols[:, first].T
            targets = []
            for j, c in enumerate(first.tolist()):
                if dead[c]:
                    targets.append(DEAD)
                    continue
                key = (tuple(columns[j, :k].tolist()), flags | int(added[c]), True)
                target = keys.get(key)
                if target is None:
                    target = keys[key] = len(order)
                    order.append(key)
                    if target >= MAX_LEXER_STATES:
                        raise ConstraintTooComplexError(
                            f"the lexer for terminals {self.names} needs more than {MAX_LEXER_STATES} states"
                        )
                targets.append(target)
            row = np.asarray(targets, dtype=np.int64)[inverse.reshape(-1)].tolist()
            delta.append(row)

        emits: list[str | None] = []
        follows = follows or {}
        self.follow_ok = np.ones((len(order), n_classes), dtype=bool)
        self.end_ok = np.ones(len(order), dtype=bool)
        for q, (states, flags, _) in enumerate(order):
            emit = None
            winner = next((t for t in scan_idx if flags >> t & 1), None)
            if winner is not None and states[winner] >= 0 and accepting[winner][states[winner]]:
                emit = self.names[winner]
                follow = follows.get(emit)
                if follow is not None:  # a trailing lookahead: what the next byte may be
                    self.follow_ok[q] = follow.bytes[states[winner]][representatives]
                    self.end_ok[q] = follow.at_end[states[winner]]
                for s in unless_idx.get(winner, ()):
                    if states[s] >= 0 and accepting[s][states[s]]:
                        emit = self.names[s]  # lark retypes a keyword matched by a regex terminal
                        break
            emits.append(emit)
        table = np.asarray(delta, dtype=np.int32).reshape(len(order), n_classes)
        live = reaching(table, np.array([e is not None for e in emits]))
        self.delta = np.where((table >= 0) & live[np.maximum(table, 0)], table, DEAD).astype(np.int32)
        self.emits = emits
        self._views: dict[object, np.ndarray] = {}
        self._end_matters: dict[tuple[str, bytes], bool] = {}
        self._terminals_from: dict[bytes, frozenset[str]] = {}

    @property
    def n_states(self) -> int:
        return int(self.delta.shape[0])

    def view(self, acceptable: frozenset[str]) -> np.ndarray:
        """``delta`` for a parser that accepts only ``acceptable`` next.

        Entries: the next state (a lexeme that can still end as an
        acceptable terminal), :data:`CROSS` (the lexeme ends before this
        byte, as an acceptable terminal, and the byte starts the next one),
        or :data:`DEAD`.
        """
        view = self._views.get(acceptable)
        if view is None:
            good = np.array([e is not None and e in acceptable for e in self.emits])
            live = reaching(self.delta, good)
            delta = self.delta
            nxt_live = (delta >= 0) & live[np.maximum(delta, 0)]
            ends = (delta < 0) & good[:, None] & self.follow_ok
            view = np.where(nxt_live, delta, np.where(ends, CROSS, DEAD)).astype(np.int32)
            self._views[acceptable] = view
        return view

    def terminals_from(self, classes: np.ndarray) -> frozenset[str]:
        """The terminals a lexeme whose first byte is of one of ``classes`` may end as: the only
        ones whose acceptance and follow information a view's walk of such lexemes reads (the
        states it can reach, and whether each lives, depend on nothing else)."""
        key = np.unique(classes).tobytes()
        found = self._terminals_from.get(key)
        if found is None:
            first = self.delta[0, np.frombuffer(key, dtype=classes.dtype).astype(np.int64)]
            seen = np.zeros(self.n_states, dtype=bool)
            frontier = np.unique(first[first >= 0])
            while frontier.size:
                seen[frontier] = True
                nxt = self.delta[frontier].reshape(-1)
                nxt = np.unique(nxt[nxt >= 0])
                frontier = nxt[~seen[nxt]]
            found = frozenset(self.emits[q] for q in np.flatnonzero(seen).tolist()) - {None}
            self._terminals_from[key] = found
        return found

    def end_matters(self, terminal: str, first: np.ndarray) -> bool:
        """Whether :meth:`follow_view` depends on the text being able to end after ``terminal``,
        when ``first`` can start the next lexeme: only where a lexeme of ``terminal`` could end
        with no byte that starts the next one (knowing it spares a parser run to the end)."""
        key = (terminal, first.tobytes())
        found = self._end_matters.get(key)
        if found is None:
            states = np.flatnonzero(np.array([e == terminal for e in self.emits], dtype=bool))
            crossable = ((self.delta[states] < 0) & first & self.follow_ok[states]).any(axis=1)
            found = self._end_matters[key] = bool((self.end_ok[states] & ~crossable).any())
        return found

    def follow_view(self, follow: dict[str, tuple[bool, np.ndarray]]) -> np.ndarray:
        """Like :meth:`view`, knowing what may come after each acceptable terminal.

        ``follow[t] = (text may end after t, classes that can start the next
        lexeme after t)``. A lexeme can end only where the byte that ends it
        can start the next one (or the text can end): a terminal that would
        swallow whatever must follow it (``T0: /b[ab]*/`` before ``"a"``) is
        no way forward.
        """
        key = tuple(sorted((t, ends, first.tobytes()) for t, (ends, first) in follow.items()))
        view = self._views.get(key)
        if view is None:
            n_classes = self.delta.shape[1]
            nothing = (False, np.zeros(n_classes, dtype=bool))
            ends = np.array([e is not None and follow.get(e, nothing)[0] for e in self.emits]) & self.end_ok
            first = np.stack([follow.get(e, nothing)[1] if e is not None else nothing[1] for e in self.emits])
            crossable = (self.delta < 0) & first & self.follow_ok
            good = ends | crossable.any(axis=1)
            live = reaching(self.delta, good)
            delta = self.delta
            nxt_live = (delta >= 0) & live[np.maximum(delta, 0)]
            view = np.where(nxt_live, delta, np.where(crossable, CROSS, DEAD)).astype(np.int32)
            self._views[key] = view
        return view

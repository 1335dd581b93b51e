"""Which parser stacks can still be completed, given how lark's contextual lexer splits text.

The LALR mode lexes like lark: a lexeme runs as long as some terminal of the parser state's lexer
can go on (maximal munch). Two terminals that the grammar puts side by side may then never be
lexed side by side (``T0 T0`` with ``T0: /[0-9]+/``: the first lexeme swallows the second), and
a text can run into such a place any number of lexemes later (``x: "+" x T0 | "a"``: after
``++a`` two numbers must follow each other). Looking one lexeme ahead does not see that.

This module decides it exactly. At a lexeme boundary the state of recognition is the parser stack
and the byte class ``d`` the next lexeme starts with (or the end of the text). A lexeme of the
lexer on top of the stack, starting with ``d``, can end as terminal ``B`` right before a byte of
class ``e`` (the lexer cannot take that byte) or at the end of the text; feeding ``B`` to the
parser (reductions, then the shift) gives the next boundary. That is a pushdown system; the
boundaries from which an accepting run exists form a regular set of stacks, computed once per
grammar by saturation (``pre*``, Bouajjani, Esparza and Maler 1997, in Schwoon's worklist form).
A stack is then checked by running that automaton down the stack once (memoized per interned
stack): :meth:`Liveness.live_classes`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from outlines_gguf.grammar.compiled import Grammar

MAX_LIVENESS_WORK = 200_000
"""Rules plus transitions the saturation may handle (about 8 µs each); past it the grammar keeps
the one-lexeme lookahead (``Grammar.liveness`` is None, with a warning)."""

ANY = -1
"""A transition of the automaton over stacks that reads any parser state."""


class TooLargeError(Exception):
    """The saturation would exceed :data:`MAX_LIVENESS_WORK`."""


def lexing_is_free(grammar: Grammar) -> bool:
    """A sufficient condition for looking one lexeme ahead to be exact (no :class:`Liveness`
    needed): in every parser state the lexer can produce each terminal the parser takes there, and
    a lexeme of any terminal, wherever it can end, can end before any byte that starts a terminal
    that may follow it (per the parse table; an ignored terminal may follow anything and anything
    may follow it). Then any sequence of terminals the parser accepts can be written as text that
    lexes as that sequence, and every stack the parser reaches can be completed."""
    table, lexers, ignore = grammar.table, grammar.lexers, grammar.ignore
    if not all(lexer.end_ok.all() for lexer in lexers):
        return False  # a trailing lookahead that forbids ending the text: left to Liveness
    emitted = [set(filter(None, lexer.emits)) for lexer in lexers]
    lexer_names: set[str] = set()
    for lexer in lexers:
        lexer_names |= set(lexer.names)
    follows: dict[str, set[tuple[int, str]]] = defaultdict(set)  # terminal -> (lexer after it, next)
    for t, row in enumerate(table.actions):
        here = grammar.lexer_of_state[t]
        for name, act in row.items():
            if name not in grammar.terminal_dfas:  # $END, or a goto on a rule
                continue
            if name not in emitted[here]:
                return False  # the parser takes a terminal that this state's lexer never produces
            if len(act) == 1:
                after = grammar.lexer_of_state[act[0]]
                follows[name] |= {(after, n) for n in lexers[after].names}
    for name in ignore:
        follows[name] |= {(i, n) for i, lexer in enumerate(lexers) for n in lexer.names}
        for key in list(follows):
            follows[key] |= {(i, name) for i, lexer in enumerate(lexers) if name in lexer.names}
    firsts = [_first_classes(lexer) for lexer in lexers]
    stops = [(lexer.delta < 0) & lexer.follow_ok for lexer in lexers]
    separating: dict[tuple[int, str, bytes], bool] = {}

    def separates(i: int, name: str, first: np.ndarray) -> bool:
        """Whether every lexeme of ``name`` in lexer ``i`` can end before every class of ``first``."""
        key = (i, name, first.tobytes())
        if key not in separating:
            ends = [q for q, emit in enumerate(lexers[i].emits) if emit == name]
            separating[key] = bool(stops[i][np.ix_(np.asarray(ends), first)].all()) if ends else True
        return separating[key]

    n_classes = stops[0].shape[1] if stops else 0
    needs: dict[str, tuple[np.ndarray, list[tuple[int, np.ndarray]]]] = {}
    for before, pairs in follows.items():
        unique: dict[tuple[bytes, int], np.ndarray] = {}
        for after, nxt in pairs:
            starts = firsts[after].get(nxt)
            if nxt not in ignore and starts is not None:  # an ignored terminal is never needed
                unique.setdefault((starts.tobytes(), after), starts)
        matrix = np.zeros((len(unique), n_classes), dtype=bool)
        for k, starts in enumerate(unique.values()):
            matrix[k, starts] = True
        needs[before] = (matrix, [(after, starts) for (_, after), starts in unique.items()])

    for i, lexer in enumerate(lexers):
        by_name: dict[str, list[int]] = defaultdict(list)
        for q, emit in enumerate(lexer.emits):
            if emit is not None:
                by_name[emit].append(q)
        for emit, ends in by_name.items():
            if emit not in needs:
                continue
            rows = stops[i][ends]
            matrix, listed = needs[emit]
            for k in np.flatnonzero((matrix & ~rows.all(axis=0)).any(axis=1)).tolist():
                after, first = listed[k]
                ok = rows[:, first].all(axis=1)
                for ignored in ignore:  # an ignored terminal must fit between, and end before the next
                    sep = firsts[after].get(ignored)
                    if sep is not None and separates(after, ignored, first):
                        ok |= rows[:, sep].any(axis=1)
                if not ok.all():
                    return False
    return True


def _first_classes(lexer) -> dict[str, np.ndarray]:
    """Per terminal: the classes a lexeme of it can start with in ``lexer``."""
    delta, emits = lexer.delta, lexer.emits
    out: dict[str, set[int]] = defaultdict(set)
    for c in range(delta.shape[1]):
        start = int(delta[0, c])
        if start < 0:
            continue
        seen, todo = {start}, [start]
        while todo:
            q = todo.pop()
            if emits[q] is not None:
                out[emits[q]].add(c)
            for nxt in delta[q].tolist():
                if nxt >= 0 and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
    return {name: np.array(sorted(cs), dtype=np.int64) for name, cs in out.items()}


class Liveness:
    """The stacks of a :class:`~outlines_gguf.grammar.compiled.Grammar` that can still be completed,
    per next byte class (see the module docstring)."""

    def __init__(self, grammar: Grammar) -> None:
        table = grammar.table
        self.n_classes = grammar.n_classes
        raw = [self._lexemes(lexer) for lexer in grammar.lexers]
        self.group = self._group_classes(raw, [(lx.delta < 0) & lx.follow_ok for lx in grammar.lexers])
        eos = int(self.group.max()) + 1  # the "class" of the end of the text, after the groups
        self.eos = eos
        lex = [
            [sorted({(name, eos if e == self.n_classes else int(self.group[e])) for name, e in raw_l[c]})
             for c in self._representatives(eos)]
            for raw_l in raw
        ]
        n_states = len(table.actions)
        controls: dict[tuple, int] = {}

        def control(key: tuple) -> int:
            found = controls.get(key)
            if found is None:
                found = controls[key] = len(controls)
            return found

        for d in range(eos + 1):
            control(("at", d))  # boundary controls are 0..eos
        accept = control(("accept",))
        final = control(("final",))
        # rules <p, g> -> <p2, w>: pops (w empty), swaps (w = one state), pushes (w = two states)
        pops: list[tuple[int, int, int]] = []
        swaps: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # by p2: (p, g, w0)
        pushes: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)  # by p2: (p, g, w0, w1)
        work = 0

        def count(n: int = 1) -> None:
            nonlocal work
            work += n
            if work > MAX_LIVENESS_WORK:
                raise TooLargeError

        ignore = grammar.ignore
        for t in range(n_states):
            for d, endings in enumerate(lex[grammar.lexer_of_state[t]]):
                for name, e in endings:
                    count()
                    target = e if name in ignore else control(("feed", name, e))
                    swaps[target].append((d, t, t))
            swaps[control(("feed", "$END", eos))].append((eos, t, t))
        for t, row in enumerate(table.actions):
            for name, act in row.items():
                for e in ([eos] if name == "$END" else range(eos + 1)):
                    if name != "$END" and (name in ignore or ("feed", name, e) not in controls):
                        continue
                    count()
                    feed = control(("feed", name, e))
                    if len(act) == 1:
                        if name != "$END":  # a shift
                            pushes[e].append((feed, t, act[0], t))
                        continue
                    origin, size = act
                    if size == 0:  # an empty rule: the goto is pushed on t itself
                        goto = table.actions[t].get(origin)
                        if goto is not None:
                            pushes[feed].append((feed, t, goto[0], t))
                        continue
                    top = control(("pop", name, e, origin, size - 1))
                    pops.append((feed, t, top))
                    for k in range(size - 1, 0, -1):
                        below = control(("pop", name, e, origin, k - 1))
                        pops.append((control(("pop", name, e, origin, k)), ANY, below))
                    bottom = control(("pop", name, e, origin, 0))
                    if ("goto", bottom) not in controls:
                        control(("goto", bottom))
                        for u in range(n_states):
                            goto = table.actions[u].get(origin)
                            if goto is not None:
                                count()
                                pushes[feed].append((bottom, u, goto[0], u))
        end = control(("feed", "$END", eos))
        swaps[accept].append((end, table.end, table.end))

        # saturation: transitions (p, g, q) of the automaton over stacks (top first). Rules and
        # transitions are indexed by (control, state read) and by control alone (for ANY)
        swap_at: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        for p2, rules in swaps.items():
            for p, g1, w0 in rules:
                swap_at[(p2, w0)].append((p, g1))
        push_at: dict[tuple[int, int], list[tuple[int, int, int]]] = defaultdict(list)
        for p2, prules in pushes.items():
            for p, g1, w0, w1 in prules:
                push_at[(p2, w0)].append((p, g1, w1))
        derived_at: dict[tuple[int, int], set[tuple[int, int]]] = defaultdict(set)
        rule_symbols: dict[int, set[int]] = defaultdict(set)  # control -> states its rules read
        for q, sym in [*swap_at, *push_at]:
            rule_symbols[q].add(sym)
        derived_symbols: dict[int, set[int]] = defaultdict(set)
        rel: set[tuple[int, int, int]] = set()
        out_at: dict[tuple[int, int], set[int]] = defaultdict(set)  # (q, g) -> q2, g concrete
        out_any: dict[int, set[int]] = defaultdict(set)  # q -> q2 over ANY
        todo: list[tuple[int, int, int]] = [(accept, ANY, final), (final, ANY, final), *pops]
        while todo:
            trans = todo.pop()
            if trans in rel:
                continue
            count()
            rel.add(trans)
            q, g, q2 = trans
            if g == ANY:
                out_any[q].add(q2)
                symbols = rule_symbols[q] | derived_symbols[q]
            else:
                out_at[(q, g)].add(q2)
                symbols = {g}
            for sym in symbols:
                for p, g1 in swap_at.get((q, sym), ()):
                    todo.append((p, g1, q2))
                for p, g1 in list(derived_at.get((q, sym), ())):
                    todo.append((p, g1, q2))
                for p, g1, w1 in push_at.get((q, sym), ()):
                    rule = (p, g1)
                    if rule in derived_at[(q2, w1)]:
                        continue
                    count()
                    derived_at[(q2, w1)].add(rule)
                    derived_symbols[q2].add(w1)
                    for q3 in out_at.get((q2, w1), ()):
                        todo.append((p, g1, q3))
                    for q3 in out_any.get(q2, ()):
                        todo.append((p, g1, q3))
        self._controls = controls
        self._final = final
        # reversed, for reading stacks bottom up: (g, q2) -> {q}
        self._into: dict[tuple[int, int], set[int]] = defaultdict(set)
        for q, g, q2 in rel:
            self._into[(g, q2)].add(q)
        self._table = table
        self._memo: dict[int, frozenset[int]] = {}
        self.work = work

    def _representatives(self, n_groups: int) -> list[int]:
        """One class of each group."""
        first: dict[int, int] = {}
        for c, g in enumerate(self.group.tolist()):
            first.setdefault(g, c)
        return [first[g] for g in range(n_groups)]

    def _group_classes(self, raw: list[list[list[tuple[str, int]]]], stops: list[np.ndarray]) -> np.ndarray:
        """Classes that no lexer tells apart, as a lexeme's first byte or as the byte that ends
        one, are one group (partition refinement): the pushdown system runs over groups."""
        n = self.n_classes
        group = self._rank([tuple(st[:, c].tobytes() for st in stops) for c in range(n)])
        while True:
            names = [-1 if e == n else int(g) for e, g in enumerate([*group.tolist(), -1])]
            refined = self._rank(
                [
                    (int(group[c]), tuple(frozenset((b, names[e]) for b, e in lx[c]) for lx in raw))
                    for c in range(n)
                ]
            )
            if refined.max() == group.max():
                return refined
            group = refined

    @staticmethod
    def _rank(keys: list) -> np.ndarray:
        index: dict = {}
        return np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)

    def _lexemes(self, lexer) -> list[list[tuple[str, int]]]:
        """Per start class d: the (terminal, class of the byte after it, or the end) of lexemes
        that start with d (maximal munch over all of the lexer's terminals)."""
        delta = lexer.delta
        ends = self._endings(lexer)
        out = []
        for d in range(self.n_classes):
            first = int(delta[0, d])
            found: set[tuple[str, int]] = set()
            if first >= 0:
                seen = {first}
                todo = [first]
                while todo:
                    q = todo.pop()
                    found |= ends[q]
                    for nxt in delta[q].tolist():
                        if nxt >= 0 and nxt not in seen:
                            seen.add(nxt)
                            todo.append(nxt)
            out.append(sorted(found))
        return out

    def _endings(self, lexer) -> list[set[tuple[str, int]]]:
        """Per lexer state: how the lexeme can end there (terminal, next class or the end)."""
        out = []
        for q, name in enumerate(lexer.emits):
            here: set[tuple[str, int]] = set()
            if name is not None:
                stops = (lexer.delta[q] < 0) & lexer.follow_ok[q]
                here = {(name, int(e)) for e in np.flatnonzero(stops)}
                if lexer.end_ok[q]:
                    here.add((name, self.n_classes))
            out.append(here)
        return out

    def _accepting(self, stack: int) -> frozenset[int]:
        """The automaton states from which reading ``stack`` (top first) ends in the final state."""
        found = self._memo.get(stack)
        if found is not None:
            return found
        table = self._table
        chain = []
        while stack >= 0 and stack not in self._memo:
            chain.append(stack)
            stack = table._below[stack]
        below = self._memo.get(stack, frozenset([self._final])) if stack >= 0 else frozenset([self._final])
        into = self._into
        for node in reversed(chain):
            top = table._top[node]
            here: set[int] = set()
            for q2 in below:
                here |= into.get((top, q2), set())
                here |= into.get((ANY, q2), set())
            below = frozenset(here)
            if len(self._memo) >= 500_000:
                self._memo.clear()
            self._memo[node] = below
        return below

    def live_classes(self, stack: int) -> tuple[bool, np.ndarray]:
        """(whether the text may end at ``stack``, the classes a lexeme may start with there) such
        that the text can still be completed."""
        accepting = self._accepting(stack)
        live = np.array([g in accepting for g in range(self.eos)], dtype=bool)
        return self.eos in accepting, live[self.group]

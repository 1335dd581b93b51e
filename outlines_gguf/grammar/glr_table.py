"""LR tables that keep every conflict, and the GLR stacks that run them.

lark's LALR(1) analyzer refuses reduce/reduce conflicts and resolves
shift/reduce ones as shifts, which changes the language. For the general
CFG mode we reuse its LR(0) automaton and LALR(1) lookahead computation
(``lark.parsers.lalr_analysis``) but keep every action: a state may shift
and reduce on the same terminal, or reduce by several rules. A parse is then
a *set* of stacks (GLR recognition).

Before the analysis the grammar is normalized so that a set of stacks stays
finite and every stack can still be completed:

* unproductive rules (that derive no finite text) are removed, so every
  shifted prefix is a viable prefix that some text completes;
* epsilon rules are eliminated (each rule is expanded into the variants
  with and without its nullable symbols), so every reduction pops at least
  one state and the reductions between two shifts only ever reach stacks no
  deeper than before: a finite closure, even for hidden left or right
  recursion and unit cycles. A start rule that derives the empty text is
  recorded (:attr:`GLRTable.empty_ok`) instead.

Stacks are a graph-structured stack of interned nodes (:class:`GLRTable`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from outlines_gguf.errors import ConstraintTooComplexError, EmptyLanguageError

END = "$END"

MAX_NULLABLE_PER_RULE = 12
"""Epsilon elimination writes 2**k variants of a rule with k nullable symbols; past this, it refuses."""

MAX_STACKS = 2_000_000
"""The most stack nodes one grammar interns (then ConstraintTooComplexError)."""

MEMO_SIZE = 500_000
"""Per-(stack, terminal) shift results kept before they are dropped and recomputed."""


@dataclass(frozen=True)
class CFGRule:
    """A rule as plain strings: ``origin -> expansion``; ``terminals`` marks which symbols are terminals."""

    origin: str
    expansion: tuple[str, ...]
    terminals: tuple[bool, ...]


def normalize(
    rules: Iterable[CFGRule], lexable: set[str], starts: Sequence[str]
) -> tuple[list[CFGRule], list[str], set[str]]:
    """The epsilon-free, productive rules for ``starts``; the starts that derive non-empty text;
    the starts that derive the empty text. Raises EmptyLanguageError if no start derives any."""
    rules = list(rules)
    productive: set[str] = set()
    changed = True
    while changed:
        changed = False
        for r in rules:
            if r.origin not in productive and all(
                (s in lexable) if t else (s in productive)
                for s, t in zip(r.expansion, r.terminals, strict=True)
            ):
                productive.add(r.origin)
                changed = True
    rules = [
        r
        for r in rules
        if r.origin in productive
        and all(
            (s in lexable) if t else (s in productive) for s, t in zip(r.expansion, r.terminals, strict=True)
        )
    ]
    nullable: set[str] = set()
    nonempty: set[str] = set()  # derives some non-empty text
    changed = True
    while changed:
        changed = False
        for r in rules:
            if r.origin not in nullable and all(
                not t and s in nullable for s, t in zip(r.expansion, r.terminals, strict=True)
            ):
                nullable.add(r.origin)
                changed = True
            if r.origin not in nonempty and any(
                t or s in nonempty for s, t in zip(r.expansion, r.terminals, strict=True)
            ):
                nonempty.add(r.origin)
                changed = True
    out: dict[tuple[str, tuple[str, ...]], CFGRule] = {}
    for r in rules:
        # symbols that derive only the empty text vanish; nullable ones are kept or dropped
        kept = [(s, t) for s, t in zip(r.expansion, r.terminals, strict=True) if t or s in nonempty]
        optional = [i for i, (s, t) in enumerate(kept) if not t and s in nullable]
        if len(optional) > MAX_NULLABLE_PER_RULE:
            raise ConstraintTooComplexError(
                f"rule {r.origin} has {len(optional)} symbols that may be empty (at most "
                f"{MAX_NULLABLE_PER_RULE} are supported in the general mode)"
            )
        for mask in range(1 << len(optional)):
            dropped = {optional[j] for j in range(len(optional)) if mask >> j & 1}
            symbols = [kept[i] for i in range(len(kept)) if i not in dropped]
            if not symbols:
                continue
            expansion = tuple(s for s, _ in symbols)
            out.setdefault((r.origin, expansion), CFGRule(r.origin, expansion, tuple(t for _, t in symbols)))
    # keep what the starts reach
    by_origin: dict[str, list[CFGRule]] = {}
    for r in out.values():
        by_origin.setdefault(r.origin, []).append(r)
    live_starts = [s for s in starts if s in nonempty]
    empty_starts = {s for s in starts if s in nullable}
    if not live_starts and not empty_starts:
        raise EmptyLanguageError(
            "the grammar accepts no text: the start rule(s) never finish (every alternative needs "
            "a rule without a base case, or a terminal that cannot be lexed)"
        )
    reached, todo = set(live_starts), list(live_starts)
    while todo:
        for r in by_origin.get(todo.pop(), ()):
            for s, t in zip(r.expansion, r.terminals, strict=True):
                if not t and s not in reached:
                    reached.add(s)
                    todo.append(s)
    return [r for r in out.values() if r.origin in reached], live_starts, empty_starts


@dataclass
class GLRTable:
    """LALR(1) actions with conflicts kept: ``shifts[state][terminal]`` is the target state,
    ``reduces[state][terminal]`` the rules ``(origin, length)`` to reduce by, ``gotos[state][rule]``
    the state after a reduction. ``roots`` holds one stack node per start rule.

    Stacks form a graph-structured stack, hash-consed: a *node* is an int naming
    (top state, the set of nodes below it), and stands for every stack made of one
    stack of a node below plus the top state. Stacks that share a top state are one
    node (the union of what lies below), so ambiguity that would multiply stacks
    (``e: e "+" e | e "*" e``) keeps one node per state instead; equal structures
    reached by different texts are the same int, so results are shared."""

    shifts: list[dict[str, int]]
    reduces: list[dict[str, tuple[tuple[str, int], ...]]]
    gotos: list[dict[str, int]]
    start_states: list[int]
    end_states: frozenset[int]
    empty_ok: frozenset[int] = field(default_factory=frozenset)
    """Indexes (in ``start_states``) of the start rules that also derive the empty text."""

    def __post_init__(self) -> None:
        self._top: list[int] = []
        self._below: list[frozenset[int]] = []
        self._depth: list[int] = []
        self._ids: dict[tuple[int, frozenset[int]], int] = {}
        self.roots = tuple(self.node(s, frozenset()) for s in self.start_states)
        self._empty_roots = frozenset(self.roots[i] for i in self.empty_ok)
        self._shift: dict[tuple[int, str], tuple[int, ...]] = {}
        self._accepts: dict[int, bool] = {}

    @property
    def n_nodes(self) -> int:
        return len(self._top)

    def top(self, node: int) -> int:
        return self._top[node]

    def below(self, node: int) -> frozenset[int]:
        return self._below[node]

    def depth(self, node: int) -> int:
        """The depth of the shallowest stack of ``node``."""
        return self._depth[node]

    def node(self, state: int, below: frozenset[int]) -> int:
        """The interned node for ``state`` on top of the stacks of ``below``."""
        key = (state, below)
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self._top)
            if found >= MAX_STACKS:
                raise ConstraintTooComplexError(f"the grammar reached more than {MAX_STACKS} stack nodes")
            self._top.append(state)
            self._below.append(below)
            self._depth.append(1 + min((self._depth[b] for b in below), default=0))
        return found

    def merge(self, nodes: Iterable[int]) -> int:
        """One node for nodes with the same top state (the union of their stacks)."""
        nodes = list(nodes)
        if len(nodes) == 1:
            return nodes[0]
        return self.node(self._top[nodes[0]], frozenset().union(*(self._below[n] for n in nodes)))

    def _reductions(self, node: int, terminal: str) -> dict[int, set[int]]:
        """Every top state reachable from ``node`` by reductions with lookahead ``terminal``, with
        the nodes below it (``node``'s own state included). Each new edge is reduced through once
        (Tomita's algorithm); epsilon-free rules pop at least the top, so edges only ever point to
        older nodes and the closure is finite."""
        below, tops, reduces, gotos = self._below, self._top, self.reduces, self.gotos
        frontier: dict[int, set[int]] = {tops[node]: set(below[node])}
        work = [(tops[node], b) for b in below[node]]
        while work:
            state, edge = work.pop()
            for origin, size in reduces[state].get(terminal, ()):
                bases = {edge}
                for _ in range(size - 1):
                    bases = {b for n in bases for b in below[n]}
                for base in bases:
                    goto = gotos[tops[base]][origin]
                    edges = frontier.setdefault(goto, set())
                    if base not in edges:
                        edges.add(base)
                        work.append((goto, base))
        return frontier

    def shift(self, node: int, terminal: str) -> tuple[int, ...]:
        """The nodes after reading ``terminal`` (all ways of reducing first, one node per top
        state); empty if none."""
        key = (node, terminal)
        found = self._shift.get(key)
        if found is None:
            shifts = self.shifts
            after: dict[int, set[int]] = {}
            for state, edges in self._reductions(node, terminal).items():
                target = shifts[state].get(terminal)
                if target is not None:
                    after.setdefault(target, set()).add(self.node(state, frozenset(edges)))
            found = tuple(sorted(self.node(t, frozenset(b)) for t, b in after.items()))
            if len(self._shift) >= MEMO_SIZE:
                self._shift.clear()
            self._shift[key] = found
        return found

    def accepts_end(self, node: int) -> bool:
        """Whether the text read so far (``node``) is a complete sentence."""
        found = self._accepts.get(node)
        if found is None:
            found = node in self._empty_roots or any(
                state in self.end_states for state in self._reductions(node, END)
            )
            if len(self._accepts) >= MEMO_SIZE:
                self._accepts.clear()
            self._accepts[node] = found
        return found


def build_table(
    rules: Sequence[CFGRule], live_starts: Sequence[str], empty_starts: set[str], starts: Sequence[str]
) -> GLRTable:
    """The conflict-keeping LALR(1) table of normalized ``rules`` (see :func:`normalize`)."""
    from lark.common import ParserConf
    from lark.grammar import NonTerminal, Rule, Terminal
    from lark.parsers.lalr_analysis import LALR_Analyzer

    lark_rules = [
        Rule(
            NonTerminal(r.origin),
            [Terminal(s) if t else NonTerminal(s) for s, t in zip(r.expansion, r.terminals, strict=True)],
        )
        for r in rules
    ]
    shifts: list[dict[str, int]] = []
    reduces: list[dict[str, tuple[tuple[str, int], ...]]] = []
    gotos: list[dict[str, int]] = []
    start_state: dict[str, int] = {}
    ends: set[int] = set()
    if live_starts:
        analyzer = LALR_Analyzer(ParserConf(lark_rules, {}, list(live_starts)))
        analyzer.compute_lr0_states()
        analyzer.compute_reads_relations()
        analyzer.compute_includes_lookback()
        analyzer.compute_lookaheads()
        itemsets = sorted(analyzer.lr0_itemsets, key=lambda s: sorted(map(repr, s.kernel)))
        index = {id(s): i for i, s in enumerate(itemsets)}
        for itemset in itemsets:
            shifts.append(
                {str(sym.name): index[id(t)] for sym, t in itemset.transitions.items() if sym.is_term}
            )
            gotos.append(
                {str(sym.name): index[id(t)] for sym, t in itemset.transitions.items() if not sym.is_term}
            )
            row: dict[str, tuple[tuple[str, int], ...]] = {}
            for la, found in itemset.lookaheads.items():
                acts = tuple(
                    sorted(
                        (str(r.origin.name), len(r.expansion))
                        for r in found
                        if not str(r.origin.name).startswith("$root_")
                    )
                )
                if acts:
                    row[str(la.name)] = acts
            reduces.append(row)
            for rp in itemset.closure:
                if rp.is_satisfied and str(rp.rule.origin.name).startswith("$root_"):
                    ends.add(index[id(itemset)])
        for name, itemset in analyzer.lr0_start_states.items():
            start_state[name] = index[id(itemset)]
    empty_state = len(shifts)  # a state with no actions: the root of a start that derives only ""
    shifts.append({})
    reduces.append({})
    gotos.append({})
    order = [s for s in starts if s in start_state or s in empty_starts]
    return GLRTable(
        shifts,
        reduces,
        gotos,
        [start_state.get(s, empty_state) for s in order],
        frozenset(ends),
        frozenset(i for i, s in enumerate(order) if s in empty_starts),
    )

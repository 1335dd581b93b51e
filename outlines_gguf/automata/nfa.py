"""Byte-level NFAs built from fragments, and their subset construction into a :class:`ByteDFA`.

The layer every automaton is built on: characters as UTF-8 byte sequences,
a Thompson NFA, fragments (``alt``, ``seq``, ``repeat``, embedded DFAs, shared
minimal pieces) and determinization over byte classes. Python regexes as
fragments are one level up (:mod:`.regex`, with :mod:`.translate` and
:mod:`.lookaround`), so that the lookaround compiler builds here without
importing the regex entry point that dispatches to it.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from outlines_gguf import fast_unique
from outlines_gguf.automata.budget import (
    MAX_DFA_STATES,
    MAX_NFA_STATES,
    MAX_REPEAT,
    NFA_STATE_WORK,
    _budgets,
    compile_budget,
    spend,
)
from outlines_gguf.automata.charsets import MAX_CODEPOINT, Ranges, _without_surrogates
from outlines_gguf.automata.dfa import ByteDFA, StateNumbers, minimize
from outlines_gguf.errors import ConstraintTooComplexError, EmptyLanguageError

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is 3.11+; only mypy reads it here

_MISSING = object()


# -- UTF-8 ----------------------------------------------------------------------------


def _encode(cp: int) -> bytes:
    return chr(cp).encode("utf-8", "surrogatepass")


def utf8_sequences(lo: int, hi: int) -> Iterator[list[tuple[int, int]]]:
    """Byte-range sequences whose concatenations are exactly UTF-8 of ``[lo, hi]``."""
    for blo, bhi in ((0, 0x7F), (0x80, 0x7FF), (0x800, 0xFFFF), (0x10000, MAX_CODEPOINT)):
        a, b = max(lo, blo), min(hi, bhi)
        if a <= b:
            yield from _split_same_length(a, b)


@lru_cache(maxsize=4096)
def _utf8_sequences_cached(lo: int, hi: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    return tuple(tuple(seq) for seq in utf8_sequences(lo, hi))


def _split_same_length(lo: int, hi: int) -> Iterator[list[tuple[int, int]]]:
    n = len(_encode(lo))
    for i in range(1, n):
        m = (1 << (6 * i)) - 1
        if lo & ~m != hi & ~m:
            if lo & m:
                yield from _split_same_length(lo, lo | m)
                yield from _split_same_length((lo | m) + 1, hi)
                return
            if hi & m != m:
                yield from _split_same_length(lo, (hi & ~m) - 1)
                yield from _split_same_length(hi & ~m, hi)
                return
    a, b = _encode(lo), _encode(hi)
    yield [(a[k], b[k]) for k in range(n)]


# -- NFA --------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _chars_plan(ranges: Ranges) -> tuple[int, list[list[tuple[int, int, int]]]]:
    """The UTF-8 automaton of one character from ``ranges``, as relative edges.

    State 0 is the start and 1 the end; the others stand for "the bytes still
    to read", shared by all characters that end alike, so the automaton is
    close to minimal (a class of all of Unicode needs 7 such states, not one
    per byte sequence).
    """
    suffix_state: dict[tuple[tuple[int, int], ...], int] = {(): 1}
    edges: list[set[tuple[int, int, int]]] = [set(), set()]

    def state_for(suffix: tuple[tuple[int, int], ...]) -> int:
        q = suffix_state.get(suffix)
        if q is None:
            q = suffix_state[suffix] = len(edges)
            edges.append(set())
            edges[q].add((*suffix[0], state_for(suffix[1:])))
        return q

    for lo, hi in _without_surrogates(ranges):
        if hi < 0x80:  # ASCII: one byte range
            edges[0].add((lo, hi, 1))
            continue
        for seq in _utf8_sequences_cached(lo, hi):
            edges[0].add((*seq[0], state_for(seq[1:])))
    return len(edges) - 2, [sorted(out) for out in edges]


class _NFA:
    """Thompson NFA over bytes: epsilon edges and byte-range edges.

    The edges of a copied automaton (:meth:`copied_block`) are written when ``edges`` is first
    read after the copy, not at the copy: a build that passes :data:`MAX_NFA_STATES` then fails
    without writing the hundreds of thousands of edges it copied (a unique array's item
    automaton is tried at construction, and most of its states are copied string automata).
    """

    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        # per state its edges; () for a copied state whose edges are not written yet
        self._edges: list[Any] = []
        self._copies: list[tuple[int, list[list[tuple[int, int, int]]]]] = []  # (first state, edges)

    @property
    def edges(self) -> list[list[tuple[int, int, int]]]:
        """Per state, its byte-range edges ``(lo, hi, target)``."""
        if self._copies:
            edges = self._edges
            for base, relative in self._copies:
                moved = [[(lo, hi, base + t) for lo, hi, t in out] for out in relative]
                edges[base : base + len(relative)] = moved
            self._copies = []
        return self._edges

    def add_edge(self, source: int, lo: int, hi: int, target: int) -> None:
        """An edge from a state made by :meth:`state` (a copied state has no list to add to)."""
        self._edges[source].append((lo, hi, target))

    def state(self) -> int:
        n = len(self.eps)
        if n >= MAX_NFA_STATES:
            self.state_limit_reached()
        if not n & 1023:  # charge the compile budget 1,024 states at a time
            spend(NFA_STATE_WORK << 10)
        self.eps.append([])
        self._edges.append([])
        return len(self.eps) - 1

    def copied_block(self, relative: list[list[tuple[int, int, int]]]) -> int:
        """``len(relative)`` new states in a row whose edges are ``relative`` (targets counted from
        the first, which is returned), written when ``edges`` is next read."""
        n = len(self.eps)
        count = len(relative)
        if n + count > MAX_NFA_STATES:
            self.state_limit_reached()
        spend(NFA_STATE_WORK * count)
        self.eps.extend([[] for _ in range(count)])
        self._edges.extend(itertools.repeat((), count))
        self._copies.append((n, relative))
        return n

    @staticmethod
    def state_limit_reached() -> None:
        budget = getattr(_budgets, "current", None)
        raise ConstraintTooComplexError(
            f"{budget.label if budget else 'the constraint'} needs more than {MAX_NFA_STATES} "
            "NFA states; reduce large counted repeats, lengths or counts"
        )


Fragment = tuple[int, int]
"""A piece of NFA: (entry state, exit state)."""


class _Template:
    """A DFA as relocatable NFA edges: copied into a builder in one step.

    ``edges[s]`` lists ``(lo, hi, target)`` with targets relative to the
    copy's first state; accepting states get an epsilon edge to one extra
    exit state. ``dfa=None``: the empty language (an exit no edge reaches).
    """

    __slots__ = ("accepting", "edges")

    def __init__(self, dfa: ByteDFA | None) -> None:
        if dfa is None:
            self.edges: list[list[tuple[int, int, int]]] = [[]]
            self.accepting: list[int] = []
            return
        self.edges = dfa.byte_ranges  # (shared with the automaton: read, never changed)
        self.accepting = np.flatnonzero(dfa.accepting).tolist()

    def copy_into(self, nfa: _NFA) -> Fragment:
        base = nfa.copied_block(self.edges)
        exit_state = nfa.state()
        for s in self.accepting:
            nfa.eps[base + s].append(exit_state)
        return base, exit_state


_TEMPLATES: OrderedDict[Hashable, _Template | None] = OrderedDict()
_TEMPLATES_LOCK = threading.Lock()
MAX_TEMPLATES = 1024
"""Shared fragments (see :meth:`NFABuilder.shared`) kept per process, least recently used dropped."""


class FragmentBuilder:
    """Builds one byte-level NFA from fragments, then a :class:`ByteDFA`.

    Fragments are single-use: to repeat a piece, pass a function that builds
    a fresh copy (``repeat``). ``None`` stands for the empty language in
    ``alt`` and makes ``seq`` empty; the methods return ``None`` only when
    given it (or for an empty ``alt`` or ``repeat``), and their overloads say
    so, so pieces that cannot be empty are typed :data:`Fragment`. (A fragment
    may still match nothing: one whose end cannot be reached.)
    """

    def __init__(self, label: str = "constraint") -> None:
        self.label = label
        self.nfa = _NFA()

    def empty(self) -> Fragment:
        s = self.nfa.state()
        return s, s

    def chars(self, ranges: Ranges) -> Fragment:
        """Any one character of ``ranges``, as UTF-8."""
        _, edges = _chars_plan(ranges)
        nfa = self.nfa
        base = nfa.copied_block(edges)  # start, end, then the states inside multi-byte characters
        return base, base + 1

    def literal(self, text: str | bytes) -> Fragment:
        data = text.encode() if isinstance(text, str) else text
        start = cur = self.nfa.state()
        for b in data:
            nxt = self.nfa.state()
            self.nfa.add_edge(cur, b, b, nxt)
            cur = nxt
        return start, cur

    @overload
    def seq(self, parts: Iterable[Fragment]) -> Fragment: ...
    @overload
    def seq(self, parts: Iterable[Fragment | None]) -> Fragment | None: ...
    def seq(self, parts: Iterable[Fragment | None]) -> Fragment | None:
        start = cur = self.nfa.state()
        for part in parts:
            if part is None:
                return None
            self.nfa.eps[cur].append(part[0])
            cur = part[1]
        return start, cur

    def alt(self, parts: Iterable[Fragment | None]) -> Fragment | None:
        live = [p for p in parts if p is not None]
        return self._union(live) if live else None

    def either(self, first: Fragment, *others: Fragment) -> Fragment:
        """``alt`` of pieces that are never None (so neither is the result)."""
        return self._union([first, *others])

    def _union(self, parts: list[Fragment]) -> Fragment:
        start, end = self.nfa.state(), self.nfa.state()
        for s, e in parts:
            self.nfa.eps[start].append(s)
            self.nfa.eps[e].append(end)
        return start, end

    def optional(self, part: Fragment | None) -> Fragment:
        empty = self.empty()
        return self._union([empty] if part is None else [part, empty])

    @overload
    def repeat(self, make: Callable[[], Fragment], lo: int, hi: None) -> Fragment: ...
    @overload
    def repeat(self, make: Callable[[], Fragment | None], lo: int, hi: int | None) -> Fragment | None: ...
    def repeat(self, make: Callable[[], Fragment | None], lo: int, hi: int | None) -> Fragment | None:
        """``lo`` to ``hi`` copies (``hi=None``: unbounded) of the fragment ``make`` builds."""
        if lo > MAX_REPEAT or (hi is not None and hi > MAX_REPEAT):
            raise ConstraintTooComplexError(
                f"{self.label}: a repeat count above {MAX_REPEAT} is not supported"
            )
        if hi is not None and hi < lo:
            return None
        nfa = self.nfa
        start = cur = nfa.state()
        for _ in range(lo):
            part = make()
            if part is None:
                return None
            nfa.eps[cur].append(part[0])
            cur = part[1]
        if hi is None:
            part = make()
            end = nfa.state()
            nfa.eps[cur].append(end)
            if part is not None:
                s, e = part
                nfa.eps[cur].append(s)
                nfa.eps[e].append(s)
                nfa.eps[e].append(end)
            return start, end
        end = nfa.state()
        for _ in range(hi - lo):
            nfa.eps[cur].append(end)
            part = make()
            if part is None:
                break
            nfa.eps[cur].append(part[0])
            cur = part[1]
        nfa.eps[cur].append(end)
        return start, end

    def dfa(self, dfa: ByteDFA) -> Fragment:
        """Embed an existing DFA (e.g. a product of two automata) as a fragment."""
        return _Template(dfa).copy_into(self.nfa)

    @overload
    def shared(self, key: Hashable, make: Callable[[Self], Fragment]) -> Fragment: ...
    @overload
    def shared(self, key: Hashable, make: Callable[[Self], Fragment | None]) -> Fragment | None: ...
    def shared(self, key: Hashable, make: Callable[[Self], Fragment | None]) -> Fragment | None:
        """A copy of the minimal automaton for what ``make`` builds, built once per ``key``.

        For pieces a compilation repeats (a string character, whitespace, a
        number): copying a small DFA is cheaper than parsing and building the
        piece again, and a minimal piece determinizes faster. ``key`` must
        identify what ``make`` builds. ``None`` is returned where ``make``
        returns it; a piece that matches nothing is a fragment whose end
        cannot be reached.
        """
        with _TEMPLATES_LOCK:
            template = _TEMPLATES.get(key, _MISSING)
            if template is not _MISSING:
                _TEMPLATES.move_to_end(key)
        if template is _MISSING:
            helper = type(self)(self.label)  # ``make`` may use a subclass's regexes
            fragment = make(helper)
            try:
                template = None if fragment is None else _Template(helper.build(fragment))
            except EmptyLanguageError:
                template = _Template(None)
            with _TEMPLATES_LOCK:
                _TEMPLATES[key] = template
                while len(_TEMPLATES) > MAX_TEMPLATES:
                    _TEMPLATES.popitem(last=False)
        return template.copy_into(self.nfa) if isinstance(template, _Template) else None

    def build(self, fragment: Fragment | None, merge: bool = True) -> ByteDFA:
        """Determinize, drop dead states and (``merge``) merge equivalent ones."""
        if fragment is None:
            raise EmptyLanguageError(f"{self.label} matches no string at all")
        start, accept = fragment
        with compile_budget(self.label):
            dfa = minimize(*_determinize(self.nfa, start, accept, self.label), merge=merge)
            if dfa is None:
                raise EmptyLanguageError(f"{self.label} matches no string at all")
            return dfa


# -- DFA --------------------------------------------------------------------------------


def _closure(nfa: _NFA, states: Iterable[int]) -> frozenset[int]:
    seen = set(states)
    stack = list(seen)
    eps = nfa.eps
    while stack:
        for t in eps[stack.pop()]:
            if t not in seen:
                seen.add(t)
                stack.append(t)
    return frozenset(seen)


DETERMINIZE_SPEND_CHUNK = 1 << 12
"""Work units a subset construction accrues before charging the compile budget (one call
per DFA state was a tenth of the construction)."""

CLOSURE_WORK_CHUNK = 1 << 16
"""Closure work charged to the compile budget as it accrues past this, not with the next DFA
state: the targets of one state's edges may each have a closure of thousands of NFA states
(``(?:(?: a)*){9990}``), and the budget must stop that within the state."""


def _determinize(nfa: _NFA, start: int, accept: int, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Subset construction over byte ranges.

    Returns ``(table, accepting, byte_class)``: ``table[s, c]`` is the next
    state on any byte of class ``c`` (``byte_class[b]``), -1 for none. Each
    subset's target sets are found by a sweep over its edges' range ends;
    epsilon closures are memoized per NFA state. The classes are cut where
    some reached state's transitions change (found at the end from the
    transitions made, not from a pass over every edge of the NFA, which also
    holds the states of whatever else the builder built).

    Bounded by :data:`MAX_DFA_STATES` states and by the compile budget
    (:data:`MAX_COMPILE_WORK`; the NFA states visited in subsets and closures,
    charged every :data:`DETERMINIZE_SPEND_CHUNK` units), so a pattern whose
    subsets are huge (nested counted repeats) fails fast instead of running for
    minutes.
    """
    single: dict[int, frozenset[int]] = {}
    edges, eps = nfa.edges, nfa.eps
    work = 0  # closure work, charged with the next state's cost

    def closure_of(t: int) -> frozenset[int]:
        nonlocal work
        c = single.get(t)
        if c is None:
            if not eps[t]:  # most states of copied automata
                work += 1
                c = single[t] = frozenset((t,)) if edges[t] or t == accept else frozenset()
                return c
            reached = _closure(nfa, [t])
            work += len(reached)
            if work > CLOSURE_WORK_CHUNK:  # charge big closures now: one state may need thousands
                spend(work)
                work = 0
            # only states with edges, and the accepting one, tell subsets apart
            c = single[t] = frozenset(q for q in reached if edges[q] or q == accept)
        return c

    states = StateNumbers(
        closure_of(start),
        MAX_DFA_STATES,
        lambda: ConstraintTooComplexError(f"{label} needs more than {MAX_DFA_STATES} DFA states"),
    )
    state_of = states.number
    queue = states.found
    segments: list[int] = []  # flat: (state, first byte, end byte, target) after another
    add_segment = segments.extend
    accepting: list[bool] = []
    by_targets: dict[frozenset[int], int] = {}
    by_single: dict[int, int] = {}
    pending = 0  # work not yet charged
    done = 0
    while done < len(queue):
        current = queue[done]
        accepting.append(accept in current)
        out: list[tuple[int, int, int]] = []
        if len(current) == 1:  # (most subsets: the edges as they are, not a copy)
            for s in current:
                out = edges[s]
        else:
            for s in current:
                out += edges[s]
        pending += 16 + len(current) + work + len(out)
        work = 0
        disjoint = True
        if len(out) > 1:
            out = sorted(out)
            end = out[0][1]
            for edge in itertools.islice(out, 1, None):
                if edge[0] <= end:
                    disjoint = False
                    break
                end = edge[1]
        if disjoint:  # the common case: every byte range has one target
            for lo, hi, t in out:
                k = by_single.get(t)
                if k is None:
                    k = by_single[t] = state_of(closure_of(t))
                add_segment((done, lo, hi + 1, k))
        else:
            events: dict[int, list[tuple[int, int]]] = {}
            for lo, hi, t in out:
                events.setdefault(lo, []).append((t, 1))
                events.setdefault(hi + 1, []).append((t, -1))
            active: dict[int, int] = {}
            cuts = sorted(events)
            for a, b in itertools.pairwise(cuts):
                for t, delta in events[a]:
                    count = active.get(t, 0) + delta
                    if count:
                        active[t] = count
                    else:
                        active.pop(t, None)
                if not active:
                    continue
                pending += len(active)
                key = frozenset(active)
                k = by_targets.get(key)
                if k is None:
                    parts = [closure_of(t) for t in key]
                    work += sum(len(c) for c in parts)
                    k = by_targets[key] = state_of(frozenset().union(*parts))
                add_segment((done, a, b, k))
        if pending > DETERMINIZE_SPEND_CHUNK:
            spend(pending)
            pending = 0
        done += 1
    spend(pending + work)
    table, byte_class = _class_table(segments, len(queue))
    return table, np.array(accepting, dtype=bool), byte_class


def _class_table(segments: list[int], n_states: int) -> tuple[np.ndarray, np.ndarray]:
    """The transition table of ``segments`` (flat: state, first byte, end byte, target, ...)
    over byte classes cut at every range end, and each byte's class."""
    seg = np.array(segments, dtype=np.int64).reshape(-1, 4)
    bounds = fast_unique.unique(np.concatenate([np.array([0, 256], dtype=np.int64), seg[:, 1], seg[:, 2]]))
    table = np.full((n_states, bounds.size - 1), -1, dtype=np.int32)
    lo = np.searchsorted(bounds, seg[:, 1])
    widths = np.searchsorted(bounds, seg[:, 2]) - lo
    starts = np.cumsum(widths) - widths
    columns = np.arange(int(widths.sum())) - np.repeat(starts - lo, widths)
    table[np.repeat(seg[:, 0], widths), columns] = np.repeat(seg[:, 3], widths)
    return table, np.repeat(np.arange(bounds.size - 1, dtype=np.intp), np.diff(bounds))

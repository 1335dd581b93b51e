"""Lookarounds, word boundaries and inner anchors, compiled exactly into a byte DFA.

A regex with ``(?=…)``, ``(?!…)``, ``(?<=…)``, ``(?<!…)``, ``\\b``, ``\\B`` or an
anchor away from the ends still describes a regular language (Python's
lookbehind has a fixed width, lookaheads are regular), so it compiles to a
DFA; :meth:`.regex.NFABuilder.regex` hands such patterns here.

Design (an alternating automaton, determinized directly):

* the pattern becomes one Thompson NFA whose assertions are *marker* edges;
* a **lookahead** body is part of the same NFA and ends in ``U``, a state that
  reads any byte forever (``body·Σ*``). Passing a lookahead marker gives the
  thread an *obligation* ``(sign, threads of the body)`` that runs along with
  it: a positive one is met once a body thread reaches ``U`` free of its own
  obligations and fails when its threads die; a negative one the reverse. At
  the end of the text a pending obligation is judged as a lookahead that sees
  the end (what ``re.fullmatch`` does);
* a **lookbehind** is a *watcher*: the DFA of ``Σ*·body`` (compiled
  recursively, so lookbehinds nest), run over the whole text from its start,
  whose state is shared by every thread; a lookbehind marker passes if the
  watcher accepts (or not, for a negative one). Lookbehinds inside lookahead
  bodies use the same watchers, so they see the whole text before them;
* ``\\b``, ``\\B``, ``\\A``, ``\\Z``, ``^``, ``$`` are rewritten into lookarounds.

A DFA state is the watcher states plus the set of threads, a thread being an
NFA state and its (nested) obligations. The subset construction over these is
bounded by the compile budget and :data:`~outlines_gguf.automata.budget.MAX_DFA_STATES`.

Character classes keep the compiler's rule that a generated string must
match under every judge (``re`` and the ``regex`` module, ``str`` and ASCII
semantics): a class read under an odd number of negative lookarounds takes
its *widest* meaning (``\\w``: ASCII word characters plus every non-ASCII
character), so its complement is the narrowest. Exact for ASCII text; next
to non-ASCII characters ``\\b`` and ``(?!\\w)`` err on the safe side.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import numpy as np

from outlines_gguf.automata.budget import MAX_DFA_STATES, compile_budget, spend
from outlines_gguf.automata.charsets import (
    _ASCII_CATEGORIES,
    _UNICODE_PATTERNS,
    MAX_CODEPOINT,
    C,
    Ranges,
    _category,
    _normalize,
)
from outlines_gguf.automata.dfa import ByteDFA, StateNumbers, minimize
from outlines_gguf.automata.nfa import _MISSING, Fragment, FragmentBuilder
from outlines_gguf.automata.translate import _Flags, _RegexTranslator, _short, sre_parse
from outlines_gguf.errors import ConstraintTooComplexError, EmptyLanguageError, RegexError

__all__ = ["PendingLookaheadError", "compile_assertions", "needs_assertions"]

_ANY = r"(?s:.)"
_REWRITES = {
    C.AT_BEGINNING_STRING: rf"(?<!{_ANY})",
    C.AT_END_STRING: rf"(?!{_ANY})",
    C.AT_BOUNDARY: r"(?:(?<=\w)(?!\w)|(?<!\w)(?=\w))",
    # Python's re (before 3.14) fails \B on an empty text, the regex module matches: both must hold
    C.AT_NON_BOUNDARY: rf"(?:(?<=\w)(?=\w)|(?<!\w)(?!\w)(?:(?<={_ANY})|(?={_ANY})))",
}
_WIDE_NON_BOUNDARY = r"(?:(?<=\w)(?=\w)|(?<!\w)(?!\w))"
_LINE_REWRITES = {  # ^ and $ without and with re.MULTILINE
    (C.AT_BEGINNING, False): rf"(?<!{_ANY})",
    (C.AT_END, False): rf"(?=\n?(?!{_ANY}))",
    (C.AT_BEGINNING, True): rf"(?:(?<=\n)|(?<!{_ANY}))",
    (C.AT_END, True): rf"(?=\n|(?!{_ANY}))",
}
STATE_WORK = 200
"""Work units (see ``automata.budget.MAX_COMPILE_WORK``) charged per DFA state."""
THREAD_WORK = 12
"""Work units per thread visited (closed, stepped, cut or judged at the end); about 2 microseconds."""


class PendingLookaheadError(RegexError):
    """A lookahead looks past the end of what is compiled (a lexer terminal, a lookbehind body)."""


# -- which patterns need this module -------------------------------------------------------


def needs_assertions(parsed: list, at_start: bool = True, at_end: bool = True) -> bool:
    """Whether the parse tree has an assertion the plain compiler cannot take: a lookaround,
    ``\\b``/``\\B``, or an anchor anywhere but the very start or end (mirrors its rule)."""
    n = len(parsed)
    for k, (op, av) in enumerate(parsed):
        first, last = at_start and k == 0, at_end and k == n - 1
        if op in (C.ASSERT, C.ASSERT_NOT):
            return True
        if op is C.AT:
            if av in (C.AT_BEGINNING, C.AT_BEGINNING_STRING) and first:
                continue
            if av in (C.AT_END, C.AT_END_STRING) and last:
                continue
            return True
        if op is C.BRANCH:
            if any(needs_assertions(list(alt), first, last) for alt in av[1]):
                return True
        elif op is C.SUBPATTERN:
            if needs_assertions(list(av[3]), first, last):
                return True
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT) or str(op) == "POSSESSIVE_REPEAT":
            if needs_assertions(list(av[2]), False, False):
                return True
    return False


# -- classes under a polarity --------------------------------------------------------------


@cache
def _wide(name: str) -> Ranges:
    """The widest meaning of ``\\d``/``\\w``/``\\s`` over all judges: ASCII, ``re``'s
    Unicode meaning within ASCII (``\\x1c-\\x1f`` are ``str`` spaces) and all of non-ASCII."""
    pattern = re.compile(_UNICODE_PATTERNS[name][:2])
    ascii_part = [(c, c) for c in range(0x80) if pattern.fullmatch(chr(c))]
    return _normalize([*_ASCII_CATEGORIES[name], *ascii_part, (0x80, MAX_CODEPOINT)])



# -- the NFA with assertion markers --------------------------------------------------------


class _Shared:
    """What one compilation's translators share: markers, lookahead bodies, watchers."""

    def __init__(
        self, builder: FragmentBuilder, chars: Callable[[Ranges], Fragment], pattern: str, ecma: bool = False
    ) -> None:
        self.builder = builder
        self.ecma = ecma  # (see _RegexTranslator.ecma)
        self.nfa = builder.nfa
        self.chars = chars
        self.pattern = pattern
        # state -> [(kind, index, positive, target)]; kind "ahead" or "behind"
        self.marks: dict[int, list[tuple[str, int, bool, int]]] = {}
        self.ahead: list[int] = []  # body start of each lookahead
        self.watchers: list[ByteDFA | None] = []
        self.universal = self.nfa.state()  # U: the end of every lookahead body, then any bytes
        self.nfa.add_edge(self.universal, 0, 255, self.universal)


class _AssertionTranslator(_RegexTranslator):
    """The regex translator, plus assertions as markers and classes read under a polarity."""

    def __init__(self, shared: _Shared, negative: bool, multiline: bool) -> None:
        super().__init__(shared.builder, shared.pattern, shared.chars)
        self.shared = shared
        self.negative = negative
        self.ecma = shared.ecma
        self.multiline = multiline

    def item(self, op: object, av: object, flags: _Flags, at_start: bool, at_end: bool) -> tuple[int, int]:
        if op in (C.ASSERT, C.ASSERT_NOT):
            direction, sub = cast("tuple[int, sre_parse.SubPattern]", av)
            return self.assertion(direction > 0, op is C.ASSERT, list(sub.data), flags, sub)
        if op is C.SUBPATTERN:
            _, add, remove, _sub = cast("tuple[int | None, int, int, sre_parse.SubPattern]", av)
            outer = self.multiline
            self.multiline = (outer or bool(add & C.SRE_FLAG_MULTILINE)) and not remove & C.SRE_FLAG_MULTILINE
            try:
                return super().item(op, av, flags, at_start, at_end)
            finally:
                self.multiline = outer
        return super().item(op, av, flags, at_start, at_end)

    def anchor(self, av: object, flags: _Flags) -> Fragment:
        """``\\b``, ``\\B``, ``\\A``, ``\\Z``, ``^``, ``$`` inside the pattern, as lookarounds."""
        anchor = cast("C._NamedIntConstant", av)
        text: str | None
        if anchor is C.AT_NON_BOUNDARY and self.negative:  # complemented: the wider (regex's) meaning
            text = _WIDE_NON_BOUNDARY
        else:
            text = _REWRITES.get(anchor) or _LINE_REWRITES.get((anchor, self.multiline))
            if anchor is C.AT_END and not self.multiline and self.ecma and not self.negative:
                text = _REWRITES[C.AT_END_STRING]  # ECMA-262's $: the very end (Python's: or before \n)
        if text is None:
            raise self.fail(f"the anchor {av}")
        return self.seq(list(sre_parse.parse(text).data), flags, False, False)

    def category(self, cat: Any, ascii_only: bool, wide: bool) -> Ranges:
        """As in plain regexes, but the larger meaning is the widest over every judge."""
        return _category(cat, ascii_only, wide, _wide)

    def assertion(
        self, ahead: bool, positive: bool, items: list, flags: _Flags, sub: sre_parse.SubPattern
    ) -> Fragment:
        shared, nfa = self.shared, self.nfa
        negative = self.negative != (not positive)
        if ahead:
            inner = _AssertionTranslator(shared, negative, self.multiline)
            start, end = inner.seq(items, flags, False, False)
            nfa.eps[end].append(shared.universal)
            index = len(shared.ahead)
            shared.ahead.append(start)
            kind = "ahead"
        else:
            lo, hi = sub.getwidth()
            if lo != hi:
                raise self.fail("a variable-width lookbehind")
            index = len(shared.watchers)
            shared.watchers.append(self.watcher(items, flags, negative))
            kind = "behind"
        s, e = nfa.state(), nfa.state()
        shared.marks.setdefault(s, []).append((kind, index, positive, e))
        return s, e

    def watcher(self, items: list, flags: _Flags, negative: bool) -> ByteDFA | None:
        """The DFA of ``Σ*·body`` over the whole text (None: the body matches nothing)."""
        nested = _Shared(self.builder, self.charset, self.pattern, self.ecma)
        inner = _AssertionTranslator(nested, negative, self.multiline)
        anything = self.builder.repeat(lambda: self.charset(((0, MAX_CODEPOINT),)), 0, None)
        body = inner.seq(items, flags, False, False)
        fragment = self.builder.seq([anything, body])
        assert fragment is not None  # both parts are fragments (a repetition from 0, a body)
        try:
            return _Determinizer(nested, fragment, strict=True).dfa()
        except PendingLookaheadError as exc:
            raise self.fail("a lookahead inside a lookbehind that looks past the lookbehind's end") from exc


# -- determinization -----------------------------------------------------------------------

Thread = tuple[int, frozenset]  # (NFA state, obligations)
Obligation = tuple[bool, frozenset]  # (positive, threads of the body)


class _Determinizer:
    """The subset construction over (watcher states, threads with obligations)."""

    def __init__(self, shared: _Shared, fragment: Fragment, strict: bool, trailing: bool = False) -> None:
        self.s = shared
        self.start, self.accept = fragment
        self.strict = strict
        self.trailing = trailing  # a lexer terminal: a trailing lookahead may read one byte on
        self.follow: np.ndarray | None = None
        self.at_end: np.ndarray | None = None
        self.edges, self.eps = shared.nfa.edges, shared.nfa.eps
        self.universal = shared.universal
        self.done_thread: Thread = (self.universal, frozenset())
        self._closures: dict[tuple, frozenset] = {}
        self._steps: dict[tuple, frozenset | None] = {}
        self._cuts: dict[int, tuple[int, ...]] = {}
        self._watch_cuts: list[dict[int, tuple[int, ...]]] = [{} for _ in shared.watchers]
        self.work = 0

    # obligations ---------------------------------------------------------------------------

    def settle(self, positive: bool, threads: frozenset) -> object:
        """An obligation simplified: True (met, drop it), False (failed) or the obligation."""
        if self.done_thread in threads:
            return positive
        if not threads:
            return not positive
        return (positive, threads)

    def add(self, obligations: frozenset, positive: bool, threads: frozenset) -> frozenset | None:
        settled = self.settle(positive, threads)
        if settled is True:
            return obligations
        if settled is False:
            return None
        return obligations | {settled}

    # closures and steps --------------------------------------------------------------------

    def close(self, q: int, obligations: frozenset, watch: tuple[int, ...]) -> frozenset:
        """The threads reachable from ``(q, obligations)`` by epsilon and marker edges."""
        key = (q, obligations, watch)
        found = self._closures.get(key)
        if found is not None:
            return found
        edges, eps, marks = self.edges, self.eps, self.s.marks
        out: set[Thread] = set()
        seen = {(q, obligations)}
        stack = [(q, obligations)]
        while stack:
            p, obs = stack.pop()
            self.work += 1
            if edges[p] or p == self.accept:
                out.add((p, obs))
            nexts = [(t, obs) for t in eps[p]]
            for kind, index, positive, target in marks.get(p, ()):
                if kind == "behind":
                    dfa, w = self.s.watchers[index], watch[index]
                    holds = dfa is not None and w >= 0 and bool(dfa.accepting[w])
                    if holds == positive:
                        nexts.append((target, obs))
                else:
                    body = self.close(self.s.ahead[index], frozenset(), watch)
                    added = self.add(obs, positive, body)
                    if added is not None:
                        nexts.append((target, added))
            for nxt in nexts:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        found = self._closures[key] = frozenset(out)
        return found

    def step_obligations(self, obligations: frozenset, byte: int, watch: tuple[int, ...]) -> frozenset | None:
        out: frozenset = frozenset()
        for positive, threads in obligations:
            after = self.step_all(threads, byte, watch)
            added = self.add(out, positive, after)
            if added is None:
                return None
            out = added
        return out

    def step_all(self, threads: Iterable[Thread], byte: int, watch: tuple[int, ...]) -> frozenset:
        result: set[Thread] = set()
        for thread in threads:
            self.work += 1
            key = (thread, byte, watch)
            found = self._steps.get(key, _MISSING)
            if found is _MISSING:
                q, obs = thread
                found = None
                targets = [t for lo, hi, t in self.edges[q] if lo <= byte <= hi]
                if targets:
                    moved = self.step_obligations(obs, byte, watch)
                    if moved is not None:
                        found = frozenset().union(*(self.close(t, moved, watch) for t in targets))
                self._steps[key] = found
            if found:
                result |= cast(frozenset, found)  # a cached or computed step, not _MISSING
        return frozenset(result)

    # acceptance at the end of the text -----------------------------------------------------

    def ends_well(self, thread: Thread, final: int) -> bool:
        self.work += 1
        q, obs = thread
        return q == final and all(self.met_at_end(ob) for ob in obs)

    def met_at_end(self, obligation: Obligation) -> bool:
        positive, threads = obligation
        return any(self.ends_well(t, self.universal) for t in threads) == positive

    # the construction ----------------------------------------------------------------------

    def cuts(self, threads: Iterable[Thread], watch: tuple[int, ...]) -> list[int]:
        points = {0, 256}
        stack = list(threads)
        while stack:
            q, obs = stack.pop()
            self.work += 1
            c = self._cuts.get(q)
            if c is None:
                c = self._cuts[q] = tuple({x for lo, hi, _ in self.edges[q] for x in (lo, hi + 1)})
            points.update(c)
            for _, sub in obs:
                stack.extend(sub)
        for i, w in enumerate(watch):
            dfa = self.s.watchers[i]
            if dfa is None or w < 0:
                continue
            c = self._watch_cuts[i].get(w)
            if c is None:
                row = dfa.transitions[w]
                c = self._watch_cuts[i][w] = tuple((np.flatnonzero(row[1:] != row[:-1]) + 1).tolist())
            points.update(c)
        return sorted(points)

    def next_watch(self, watch: tuple[int, ...], byte: int) -> tuple[int, ...]:
        return tuple(
            -1 if d is None or w < 0 else int(d.transitions[w, byte])
            for d, w in zip(self.s.watchers, watch, strict=True)
        )

    def one_byte_on(self, ends: list[Thread], watch: tuple[int, ...]) -> tuple[np.ndarray, bool]:
        """For a match that ends with pending lookaheads: the bytes after which they are met,
        and whether the end of the text meets them. Lookaheads that one more byte does not
        decide raise :class:`PendingLookaheadError`."""
        follow = np.zeros(256, dtype=bool)
        for byte in range(256):
            nxt_watch = self.next_watch(watch, byte)
            moved = [self.step_obligations(obs, byte, nxt_watch) for _, obs in ends]
            if any(m is not None and not m for m in moved):
                follow[byte] = True
            elif any(m for m in moved):
                raise PendingLookaheadError(
                    f"regex {_short(self.s.pattern)}: a lookahead at the end looks more than one byte "
                    "past the end of the match"
                )
        return follow, any(self.ends_well(t, self.accept) for t in ends)

    def dfa(self) -> ByteDFA | None:
        watchers = self.s.watchers
        watch0 = tuple(-1 if d is None else 0 for d in watchers)
        states = StateNumbers(
            (watch0, self.close(self.start, frozenset(), watch0)),
            MAX_DFA_STATES,
            lambda: ConstraintTooComplexError(
                f"regex {_short(self.s.pattern)} needs more than {MAX_DFA_STATES} DFA states "
                "(its lookarounds multiply the automaton)"
            ),
        )
        rows: list[np.ndarray] = []
        accepting: list[int] = []  # 0: no; 1: yes; 2...: a trailing lookahead's signature
        signatures: dict[tuple[bytes, bool], int] = {}
        while len(rows) < len(states):
            watch, threads = states.found[len(rows)]
            spend(STATE_WORK + THREAD_WORK * self.work)
            self.work = 0
            ends = [t for t in threads if t[0] == self.accept]
            pending = bool(ends) and all(obs for _, obs in ends)
            if pending and self.trailing:
                follow, ends_ok = self.one_byte_on(ends, watch)
                key_ = (follow.tobytes(), ends_ok)
                label = signatures.setdefault(key_, len(signatures) + 2)
                accepting.append(label if follow.any() or ends_ok else 0)
            elif pending and self.strict:
                raise PendingLookaheadError(
                    f"regex {_short(self.s.pattern)}: a lookahead at the end looks past the end of the match"
                )
            else:
                accepting.append(int(any(self.ends_well(t, self.accept) for t in ends)))
            row = np.full(256, -1, dtype=np.int32)
            points = self.cuts(threads, watch)
            for a, b in itertools.pairwise(points):
                nxt_watch = self.next_watch(watch, a)
                after = self.step_all(threads, a, nxt_watch)
                if not after:
                    continue
                row[a:b] = states.number((nxt_watch, after))
            rows.append(row)
        spend(THREAD_WORK * self.work)
        dfa = minimize(np.stack(rows), np.array(accepting, dtype=np.int64))  # merges equal labels only
        if dfa is None:
            return None
        labels = dfa.accepting
        if signatures:  # what may follow the match, per state
            follow = np.zeros((labels.size, 256), dtype=bool)
            at_end = np.zeros(labels.size, dtype=bool)
            follow[labels == 1] = True
            at_end[labels == 1] = True
            for (row_bytes, ends_ok), label in signatures.items():
                follow[labels == label] = np.frombuffer(row_bytes, dtype=bool)
                at_end[labels == label] = ends_ok
            self.follow, self.at_end = follow, at_end
        return ByteDFA(dfa.transitions, labels > 0)


# -- entry point ---------------------------------------------------------------------------


def compile_assertions(
    builder: FragmentBuilder,
    pattern: str,
    parsed: sre_parse.SubPattern,
    chars: Callable[[Ranges], Fragment],
    anchored: bool,
    *,
    strict: bool = False,
    negated: bool = False,
    ecma: bool = False,
) -> ByteDFA | None:
    """The DFA of a pattern with assertions (``parsed``: by ``re``'s parser), full match (None:
    it matches nothing).

    The pieces are built in ``builder``'s NFA (so ``chars`` may write into it, as
    JSON's escaping does). ``strict``: raise :class:`PendingLookaheadError` if a
    lookahead at the end would look past the match (a lexer terminal). ``negated``, ``ecma``: as
    :meth:`.regex.NFABuilder.regex` reads them.
    """
    try:
        re.compile(pattern)
    except re.error as exc:
        if "look-behind" in str(exc):
            what = "a variable-width lookbehind is not supported"
            raise RegexError(f"regex {_short(pattern)}: {what}") from exc
        raise RegexError(f"invalid regex {_short(pattern)}: {exc}") from exc
    return _determinized(builder, pattern, parsed, chars, anchored, strict, False, negated, ecma).dfa()


def _determinized(
    builder: FragmentBuilder,
    pattern: str,
    parsed: sre_parse.SubPattern,
    chars: Callable[[Ranges], Fragment],
    anchored: bool,
    strict: bool,
    trailing: bool,
    negated: bool = False,
    ecma: bool = False,
) -> _Determinizer:
    shared = _Shared(builder, chars, pattern, ecma)
    translator = _AssertionTranslator(shared, negated, bool(parsed.state.flags & C.SRE_FLAG_MULTILINE))
    try:
        fragment = translator.seq(list(parsed.data), _Flags.of(parsed.state.flags), anchored, anchored)
        return _Determinizer(shared, fragment, strict, trailing)
    except RecursionError as exc:
        raise ConstraintTooComplexError(f"regex {_short(pattern)} is nested too deeply") from exc


@dataclass(frozen=True)
class Follow:
    """What may come right after a lexeme that ends in each state of a terminal's DFA, for
    a terminal whose trailing lookahead reads the next byte (``[?](?![a-z])``)."""

    bytes: np.ndarray  # (n_states, 256) bool: the next byte may be this one
    at_end: np.ndarray  # (n_states,) bool: the text may end here


def compile_terminal(pattern: str, label: str) -> tuple[ByteDFA, Follow | None]:
    """A lexer terminal with assertions: its DFA (a state accepts if the lexeme may end
    there) and, if a lookahead at its end reads one byte of what follows, a :class:`Follow`.

    A lookahead that needs more than one following byte raises :class:`PendingLookaheadError`.
    """
    with compile_budget(label):
        builder = FragmentBuilder(label)
        det = _determinized(builder, pattern, sre_parse.parse(pattern), builder.chars, True, True, True)
        dfa = det.dfa()
        if dfa is None:
            raise EmptyLanguageError(f"{label} matches no string at all")
        if det.follow is None or det.at_end is None:
            return dfa, None
        return dfa, Follow(det.follow, det.at_end)

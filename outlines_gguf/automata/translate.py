"""Python's ``re`` parse tree as NFA fragments: the plain regex translator.

Assertions (lookarounds, ``\\b``, inner anchors) are refused here; the
:mod:`.lookaround` translator extends this one with them, and
:meth:`.regex.NFABuilder.regex` picks between the two.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from outlines_gguf.automata.budget import MAX_REPEAT
from outlines_gguf.automata.charsets import (
    MAX_CODEPOINT,
    Ranges,
    _category,
    _complement,
    _ignore_case,
    _normalize,
)
from outlines_gguf.automata.nfa import Fragment, FragmentBuilder
from outlines_gguf.errors import ConstraintTooComplexError, RegexError

if sys.version_info >= (3, 11):
    from re import _constants as C  # noqa: N812
    from re import _parser as sre_parse
else:  # pragma: no cover - Python 3.10
    import sre_constants as C  # noqa: N812
    import sre_parse

__all__ = ["C", "sre_parse"]


@dataclass
class _Flags:
    ignorecase: bool
    dotall: bool
    ascii: bool

    @classmethod
    def of(cls, sre_flags: int) -> _Flags:
        """The flags a parsed pattern starts with (``parsed.state.flags``)."""
        return cls(
            ignorecase=bool(sre_flags & C.SRE_FLAG_IGNORECASE),
            dotall=bool(sre_flags & C.SRE_FLAG_DOTALL),
            ascii=bool(sre_flags & C.SRE_FLAG_ASCII),
        )


class _RegexTranslator:
    """Turns the tree of Python's ``re`` parser into NFA fragments."""

    negative = False
    """Read under an odd number of negative lookarounds (:mod:`.lookaround`): the text must *not*
    match, so classes take the meaning that is complemented afterwards."""

    ecma = False
    """A JSON Schema pattern, which ECMA-262 engines judge too: read so as to hold under both (a
    ``.`` to be matched is no line terminator of either: not ``\\r``, U+2028 or U+2029 either)."""

    def __init__(self, builder: FragmentBuilder, pattern: str, chars: Callable[[Ranges], Fragment]) -> None:
        self.builder = builder
        self.nfa = builder.nfa
        self.pattern = pattern
        self.charset = chars

    def fail(self, what: str) -> RegexError:
        return RegexError(f"regex {_short(self.pattern)}: {what} is not supported")

    def empty(self) -> Fragment:
        return self.builder.empty()

    def seq(self, items: list, flags: _Flags, at_start: bool, at_end: bool) -> tuple[int, int]:
        start = cur = self.nfa.state()
        n = len(items)
        for k, (op, av) in enumerate(items):
            s, e = self.item(op, av, flags, at_start and k == 0, at_end and k == n - 1)
            self.nfa.eps[cur].append(s)
            cur = e
        return start, cur

    def item(self, op: object, av: Any, flags: _Flags, at_start: bool, at_end: bool) -> tuple[int, int]:
        """One parsed item; ``av``'s shape depends on ``op`` (sre's argument values)."""
        if op is C.LITERAL:
            ranges: Ranges = ((av, av),)
            if flags.ignorecase:
                ranges = _ignore_case(ranges, self.negative, flags.ascii)
            return self.charset(ranges)
        if op is C.NOT_LITERAL:
            excluded: Ranges = ((av, av),)
            if flags.ignorecase:
                excluded = _ignore_case(excluded, not self.negative, flags.ascii)
            return self.charset(_complement(excluded))
        if op is C.ANY:
            if flags.dotall:
                return self.charset(((0, MAX_CODEPOINT),))
            line_ends = _ECMA_LINE_ENDS if self.ecma and not self.negative else ((10, 10),)
            return self.charset(_complement(line_ends))
        if op is C.IN:
            return self.charset(self.char_class(av, flags))
        if op is C.BRANCH:
            _, alternatives = av
            start, end = self.nfa.state(), self.nfa.state()
            for alt in alternatives:
                s, e = self.seq(list(alt), flags, at_start, at_end)
                self.nfa.eps[start].append(s)
                self.nfa.eps[e].append(end)
            return start, end
        if op is C.SUBPATTERN:
            _, add, remove, sub = av
            inner = _Flags(
                ignorecase=(flags.ignorecase or bool(add & C.SRE_FLAG_IGNORECASE))
                and not remove & C.SRE_FLAG_IGNORECASE,
                dotall=(flags.dotall or bool(add & C.SRE_FLAG_DOTALL)) and not remove & C.SRE_FLAG_DOTALL,
                ascii=flags.ascii or bool(add & C.SRE_FLAG_ASCII),
            )
            return self.seq(list(sub), inner, at_start, at_end)
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, sub = av
            return self.repeat(lo, hi, list(sub), flags)
        if op is C.AT:
            if av in (C.AT_BEGINNING, C.AT_BEGINNING_STRING) and at_start:
                return self.empty()
            if av is C.AT_END and at_end and self.negative:
                # complemented: Python's $ also matches before a final newline (ECMA's does not)
                return self.builder.repeat(lambda: self.charset(((10, 10),)), 0, 1) or self.empty()
            if av in (C.AT_END, C.AT_END_STRING) and at_end:
                return self.empty()
            return self.anchor(av, flags)
        names = {
            "GROUPREF": "a backreference",
            "GROUPREF_EXISTS": "a conditional group",
            "ASSERT": "a lookahead/lookbehind",
            "ASSERT_NOT": "a negative lookaround",
            "POSSESSIVE_REPEAT": "a possessive repeat",
            "ATOMIC_GROUP": "an atomic group",
        }
        raise self.fail(names.get(str(op), f"the construct {op}"))

    def anchor(self, av: Any, flags: _Flags) -> Fragment:
        """An anchor away from the ends of the pattern (:mod:`.lookaround` rewrites them)."""
        raise self.fail(f"the anchor {av} anywhere but at the very start or end")

    def char_class(self, items: list, flags: _Flags) -> Ranges:
        negate = bool(items) and items[0][0] is C.NEGATE
        wide = negate != self.negative  # complemented afterwards: take the wider meaning
        ranges: list[tuple[int, int]] = []
        for op, av in items[1:] if negate else items:
            if op is C.LITERAL:
                ranges.append((av, av))
            elif op is C.RANGE:
                ranges.append(av)
            elif op is C.CATEGORY:
                ranges.extend(self.category(av, flags.ascii, wide))
            else:
                raise self.fail(f"{op} inside a character class")
        result = _normalize(ranges)
        if flags.ignorecase:
            result = _ignore_case(result, wide, flags.ascii)
        return _complement(result) if negate else result

    def category(self, cat: Any, ascii_only: bool, wide: bool) -> Ranges:
        """``\\d``, ``\\w``, ``\\s`` or a negation; ``wide``: their larger meaning."""
        return _category(cat, ascii_only, wide)

    def repeat(self, lo: int, hi: int, sub: list, flags: _Flags) -> Fragment:
        unbounded = hi is C.MAXREPEAT or hi == C.MAXREPEAT
        if lo > MAX_REPEAT or (not unbounded and hi > MAX_REPEAT):
            raise ConstraintTooComplexError(
                f"regex {_short(self.pattern)}: repeat count above {MAX_REPEAT} is not supported"
            )
        top = None if unbounded else hi
        fragment = self.builder.repeat(lambda: self.seq(sub, flags, False, False), lo, top)
        assert fragment is not None  # re's parser refuses {m,n} with n < m
        return fragment


_ECMA_LINE_ENDS: Ranges = ((10, 10), (13, 13), (0x2028, 0x2029))
"""What ECMA-262's ``.`` does not match (Python's misses only the first)."""


def _short(text: str, limit: int = 200) -> str:
    """``repr(text)``, cut in the middle past ``limit`` characters (for error messages)."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[: limit // 2]}...{shown[-limit // 2 :]}"

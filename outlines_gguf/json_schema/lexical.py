"""The lexical pieces of JSON texts as automaton fragments: whitespace, characters of strings
and keys, and regexes shared between schemas."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np

from outlines_gguf.automata.charsets import MAX_CODEPOINT, Ranges, _complement, _normalize
from outlines_gguf.automata.dfa import ByteDFA, minimize
from outlines_gguf.automata.nfa import Fragment
from outlines_gguf.automata.ops import difference
from outlines_gguf.automata.regex import NFABuilder
from outlines_gguf.automata.translate import C, sre_parse
from outlines_gguf.errors import EmptyLanguageError, RegexError, SchemaError
from outlines_gguf.json_schema.leaves import NUMBER, integer_range, number_range


@dataclass(frozen=True)
class Whitespace:
    """Where whitespace may go, as regexes (None: nowhere)."""

    after_colon: str | None = "[ ]?"
    after_comma: str | None = "[ ]?"
    inside: str | None = None  # after "{" "[" and before "}" "]", and around ":" ","

    @classmethod
    def from_pattern(cls, pattern: str | None) -> Whitespace:
        if pattern is None:
            return cls()
        return cls(pattern, pattern, pattern)


# JSON string characters: what may appear raw, and the escapes of the rest
_RAW_FORBIDDEN: Ranges = ((0, 0x1F), (0x22, 0x22), (0x5C, 0x5C))

_SHORT_ESCAPES = {
    0x22: '\\"',
    0x5C: "\\\\",
    0x2F: "\\/",
    0x08: "\\b",
    0x0C: "\\f",
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
}

_ANY_CHAR: Ranges = ((0, MAX_CODEPOINT),)

_GENERIC_NUMBERS = frozenset({NUMBER, integer_range(None, None), number_range(None, None, False, False)})


def _intersect_ranges(a: Ranges, b: Ranges) -> Ranges:
    out = []
    for lo, hi in a:
        for blo, bhi in b:
            lo2, hi2 = max(lo, blo), min(hi, bhi)
            if lo2 <= hi2:
                out.append((lo2, hi2))
    return _normalize(out)


def json_chars(b: NFABuilder, ranges: Ranges) -> Fragment:
    """One JSON string character from ``ranges``: raw where allowed, else its escapes.

    A class holding many characters that must be escaped (``[^/]``, ``.``: every control
    character, in two ``\\u`` spellings each) is a few hundred NFA states written out, which
    every use of the class then determinizes again; it is built once as a shared minimal
    automaton (a dozen states) instead."""
    raw, escapes = _json_char_plan(tuple(ranges))
    if len(escapes) > _SHARED_ESCAPES:
        return b.shared(("JSON characters", tuple(ranges)), lambda h: _json_chars(h, raw, escapes))
    return _json_chars(b, raw, escapes)


_SHARED_ESCAPES = 6
"""Classes with more escaped spellings than this are shared pieces (see :func:`json_chars`)."""


@lru_cache(maxsize=4096)
def _json_char_plan(ranges: Ranges) -> tuple[Ranges, tuple[str, ...]]:
    """The characters of ``ranges`` written raw, and the escaped spellings of the others (a
    counted class, ``[a-z]{1,255}``, asks for the same plan at every copy)."""
    raw = _intersect_ranges(ranges, _complement(_RAW_FORBIDDEN))
    escapes: list[str] = []
    for lo, hi in _intersect_ranges(ranges, (*_RAW_FORBIDDEN, (0x2F, 0x2F))):
        for cp in range(lo, hi + 1):
            forms = [f"\\u{cp:04x}", f"\\u{cp:04X}"]
            if cp in _SHORT_ESCAPES:
                forms.append(_SHORT_ESCAPES[cp])
            escapes += dict.fromkeys(forms)
    return raw, tuple(escapes)


def _json_chars(b: NFABuilder, raw: Ranges, escapes: tuple[str, ...]) -> Fragment:
    alternatives = [b.chars(raw)] if raw else []
    alternatives += [b.literal(f) for f in escapes]
    return b.alt(alternatives) or b.chars(())


def plain_key_char(b: NFABuilder) -> Fragment:
    """One character of a key written without escapes (see ``_Compiler.key_except``)."""
    return b.chars(_complement(_RAW_FORBIDDEN))


def foreign_escapes(names: list[str]) -> list[str]:
    """The escaped spellings (``\\n``, ``\\u0016``, ``\\u001F``: as strings write them, see
    :func:`json_chars`) of the characters that are written escaped (control characters, the
    quote, the backslash, ``/``) and that no name in ``names`` holds: a key written with one is
    none of them, whatever else it spells. (Escapes of a name's character are left out of an
    extra key, lest it spell that name: a valid subset.)"""
    held = {ord(ch) for name in names for ch in name}
    out: list[str] = []
    for lo, hi in (*_RAW_FORBIDDEN, (0x2F, 0x2F)):
        for code in range(lo, hi + 1):
            if code not in held:
                out += _json_char_plan(((code, code),))[1]
    return out


def any_key_char(b: NFABuilder) -> Fragment:
    """Any character as a string automaton reads it (:func:`json_chars` of every character:
    raw where it may be, else its escapes)."""
    return json_chars(b, _ANY_CHAR)


def spelled_key(b: NFABuilder, name: str) -> Fragment:
    """Every spelling of the key ``name`` a string automaton reads (quotes included): each
    character raw where it may be, or its escapes (:func:`json_chars`), so that subtracting it
    leaves no way to write the name (``"a\\/b"`` is ``"a/b"`` too)."""
    return b.seq([b.literal('"'), *(json_chars(b, ((ord(ch), ord(ch)),)) for ch in name), b.literal('"')])


def foreign_escape(b: NFABuilder, foreign: tuple[str, ...]) -> Fragment | None:
    """One of the spellings ``foreign`` (:func:`foreign_escapes`), as one shared piece (dozens
    of literals written out at every node of a key's trie were hundreds of states)."""
    if not foreign:
        return None
    return b.shared(("foreign escapes", foreign), lambda h: h.alt([h.literal(e) for e in foreign]))


def any_string_char(b: NFABuilder) -> Fragment:
    """Any JSON string character: raw, a short escape, a \\u escape, or an escaped surrogate
    pair (never a lone surrogate)."""
    return b.shared("JSON string character", _any_string_char)


def _any_string_char(b: NFABuilder) -> Fragment:
    return b.either(
        b.chars(_complement(_RAW_FORBIDDEN)),
        b.regex(r'\\["\\/bfnrt]'),
        b.regex(r"\\u(?:[0-9a-cA-CefEF][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2})"),
        # a character beyond U+FFFF as an escaped surrogate pair (what json.dumps writes)
        b.regex(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"),
    )


def shared_regex(b: NFABuilder, pattern: str) -> Fragment | None:
    """``pattern`` (a fixed regex of the library: any number, any integer) as a shared fragment."""
    return b.shared(("regex", pattern), lambda h: h.regex(pattern))


_NO_KEY = ByteDFA(np.full((1, 256), -1, dtype=np.int32), np.zeros(1, dtype=bool))
"""The automaton of no key at all (propertyNames false, or unsatisfiable)."""


@lru_cache(maxsize=1)
def _string_content() -> ByteDFA:
    """The content of any JSON string, every character raw except the ones JSON must escape
    (and ``/``), which have their escapes: each character has the same spellings as in
    ``json_chars``, so differences with pattern automata built by it are exact."""
    every = NFABuilder("string")
    return every.build(
        every.repeat(lambda: json_chars(every, ((0, 0xD7FF), (0xE000, MAX_CODEPOINT))), 0, None)
    )


def _strings_except(values: list[str], within: ByteDFA | None = None) -> ByteDFA | None:
    """The content of any JSON string (of ``within``, if given) other than ``values``. Both sides
    write each character with the spellings of ``json_chars``, so the difference is exact (a
    valid subset of all spellings)."""
    body = within if within is not None else _string_content()
    listed = NFABuilder("enum")
    words = listed.alt(listed.regex(re.escape(v), lambda r: json_chars(listed, r)) for v in values)
    try:
        return difference(body, listed.build(words))
    except EmptyLanguageError:
        return body


def _strings_not_matching(patterns: list[str], within: ByteDFA | None, path: str) -> ByteDFA | None:
    """The content of JSON strings (of ``within``, if given) in which none of ``patterns`` is
    found: the complement of each pattern's automaton (spelled as in ``json_chars``), read in
    its widest meaning, so that no reader finds the pattern in what is left."""
    body: ByteDFA | None = within if within is not None else _string_content()
    for pattern in patterns:
        if body is None:
            return None
        if not isinstance(pattern, str):
            raise SchemaError("pattern must be a string", path)
        helper = NFABuilder(f"pattern {pattern!r}")
        try:
            found = helper.build(helper.regex(_searched(pattern), partial(json_chars, helper), negated=True))
        except EmptyLanguageError:
            continue  # found nowhere: excludes nothing
        except RegexError as exc:
            raise unenforceable_pattern(path, pattern, exc, " (under not)") from exc
        body = difference(body, found)
    return body


def unenforceable_pattern(path: str, pattern: str, exc: RegexError, where: str = "") -> RegexError:
    """The error for a ``pattern`` the regex compiler refused: the pattern as the schema writes
    it (not as rewritten to be searched), its path, and the way out."""
    reason = re.sub(r" at position \d+$", "", str(exc).rsplit("': ", 1)[-1])
    return RegexError(
        f"{path}: pattern {pattern!r}{where} cannot be enforced: {reason} (pass lenient=True to ignore it)"
    )


def _interleave(items: list[Fragment], make_sep: Callable[[], Fragment]) -> list[Fragment]:
    """``items`` with a fresh separator between each two."""
    out: list[Fragment] = []
    for i, it in enumerate(items):
        if i:
            out.append(make_sep())
        out.append(it)
    return out


def _searched(pattern: str) -> str:
    """A full-match regex for the strings in which ``pattern`` is found (JSON Schema searches).

    Global flags leading the pattern (``(?i)^[a-z]+$``, valid where schemas are checked with
    Python's ``re``) become a group's own flags, since they may only lead the whole regex."""
    flags = _GLOBAL_FLAGS.match(pattern)
    if flags is not None:
        rest = pattern[flags.end() :]
        # (under MULTILINE, ^ and $ also match at line breaks: no anchored shortcut)
        inner = f"(?s:.*?)(?:{rest})(?s:.*)" if "m" in flags.group(1) else _searched(rest)
        return f"(?{flags.group(1)}:{inner})"
    start, end = _anchored(pattern)
    searched = pattern if start else f"(?s:.*?)(?:{pattern})"
    return searched if end else f"(?:{searched})(?s:.*)"


def _anchored(pattern: str) -> tuple[bool, bool]:
    """Whether every way through ``pattern`` starts with ``^`` (and ends with ``$``), looking
    through groups and alternatives (``^$|^a+$`` is anchored at both ends, ``^a|b`` at neither):
    there the search needs no ``.*`` around it, which would turn the anchors into assertions
    to compile. (False, False) for what Python's parser refuses: the regex compiler says why."""
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return False, False
    if parsed.state.flags & C.SRE_FLAG_MULTILINE:
        return False, False
    items: list = parsed.data
    return _edge(items, 0), _edge(items, -1)


def _edge(items: list, at: int) -> bool:
    """Whether the sequence ``items`` starts (``at`` 0) or ends (-1) with its anchor."""
    if not items:
        return False
    op, av = items[at]
    if op is C.AT:
        return av in ((C.AT_BEGINNING, C.AT_BEGINNING_STRING) if at == 0 else (C.AT_END, C.AT_END_STRING))
    if op is C.SUBPATTERN:
        _, add, _, sub = av
        return not add & C.SRE_FLAG_MULTILINE and _edge(list(sub), at)
    if op is C.BRANCH:
        return all(_edge(list(alternative), at) for alternative in av[1])
    return False


_GLOBAL_FLAGS = re.compile(r"\(\?([aiLmsux]+)\)")


def _multiple_of_dfa(step: int) -> ByteDFA:
    """JSON integers divisible by ``step`` (remainder automaton over decimal digits)."""
    # 0: start, 1: after "-", 2: "0" (complete), 3..: remainder r of a number with leading 1-9
    n = 3 + step
    table = np.full((n, 256), -1, dtype=np.int32)
    accepting = np.zeros(n, dtype=bool)
    table[0, ord("-")] = 1
    for start in (0, 1):
        for d in range(1, 10):
            table[start, ord("0") + d] = 3 + d % step
    table[0, ord("0")] = 2
    accepting[2] = True
    for r in range(step):
        for d in range(10):
            table[3 + r, ord("0") + d] = 3 + (r * 10 + d) % step
    accepting[3] = True
    dfa = minimize(table, accepting)
    assert dfa is not None
    return dfa

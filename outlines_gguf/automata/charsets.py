"""Sets of code points as sorted ranges: normalizing, complementing, Unicode categories and case closure."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from functools import cache, lru_cache

import numpy as np

from outlines_gguf.automata.budget import spend

if sys.version_info >= (3, 11):
    from re import _constants as C  # noqa: N812
else:  # pragma: no cover - Python 3.10
    import sre_constants as C  # noqa: N812

MAX_CODEPOINT = 0x10FFFF

Ranges = tuple[tuple[int, int], ...]  # sorted, disjoint, inclusive code point ranges


def _normalize(ranges: Iterable[tuple[int, int]]) -> Ranges:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def _complement(ranges: Ranges) -> Ranges:
    out, nxt = [], 0
    for lo, hi in ranges:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CODEPOINT:
        out.append((nxt, MAX_CODEPOINT))
    return tuple(out)


def _without_surrogates(ranges: Ranges) -> Ranges:
    out = []
    for lo, hi in ranges:
        if hi < 0xD800 or lo > 0xDFFF:
            out.append((lo, hi))
            continue
        if lo < 0xD800:
            out.append((lo, 0xD7FF))
        if hi > 0xDFFF:
            out.append((0xE000, hi))
    return tuple(out)


_ASCII_CATEGORIES: dict[str, Ranges] = {
    "digit": ((0x30, 0x39),),
    "word": _normalize([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]),
    "space": _normalize([(0x09, 0x0D), (0x20, 0x20)]),
}

_UNICODE_PATTERNS = {"digit": r"\d+", "word": r"\w+", "space": r"\s+"}


@cache
def _unicode_category(name: str) -> Ranges:
    """Code points Python's ``str`` regexes put in ``\\d``, ``\\w`` or ``\\s`` (and U+FEFF, which
    ECMA-262 calls a space, so that a negated class excludes what either calls one)."""
    # every code point but the surrogates, decoded at once (joining 1.1M chr() took 110 ms)
    points = np.r_[np.arange(0xD800), np.arange(0xE000, MAX_CODEPOINT + 1)].astype("<u4")
    text = points.tobytes().decode("utf-32-le")
    out = []
    for m in re.finditer(_UNICODE_PATTERNS[name], text):
        lo, hi = ord(m.group()[0]), ord(m.group()[-1])
        out.append((lo, hi))
    if name == "space":
        out.append((0xFEFF, 0xFEFF))  # ECMA-262's \s has it too (JSON Schema patterns): \S excludes it
    return _normalize(out)


_CATEGORY = {
    C.CATEGORY_DIGIT: ("digit", False),
    C.CATEGORY_NOT_DIGIT: ("digit", True),
    C.CATEGORY_WORD: ("word", False),
    C.CATEGORY_NOT_WORD: ("word", True),
    C.CATEGORY_SPACE: ("space", False),
    C.CATEGORY_NOT_SPACE: ("space", True),
}


def _category(
    cat: C._NamedIntConstant,
    ascii_only: bool,
    widen: bool,
    unicode_meaning: Callable[[str], Ranges] = _unicode_category,
) -> Ranges:
    """A ``\\d``-like category. ``widen`` asks for the larger of the two
    meanings (used inside a negated class, which is complemented afterwards);
    ``unicode_meaning`` gives the larger set of ``digit``, ``word`` or ``space``."""
    name, negated = _CATEGORY[cat]
    if ascii_only:
        base = _ASCII_CATEGORIES[name]
    else:
        # positive, narrow: ASCII; negative, narrow: not-Unicode; and the reverse when widened
        use_unicode = negated != widen
        base = unicode_meaning(name) if use_unicode else _ASCII_CATEGORIES[name]
    return _complement(base) if negated else base


def _ignore_case(ranges: Ranges, negated: bool, ascii_only: bool) -> Ranges:
    """The characters a set matches under ``re.IGNORECASE``, for a set that is then
    used as written (``negated=False``) or complemented (``negated=True``).

    Follows the intersection of ``str`` and ``re.ASCII`` semantics, like the
    classes: a set used as written gains the other case of its ASCII letters
    only (what both modes match), a set that is complemented gains every
    character Unicode case folding relates to it (``[^k]`` excludes the Kelvin
    sign, ``[^\u00e9-\ud7ff]`` excludes ``å``, whose capital form U+212B is in
    the range), so its complement is matched in both modes.
    """
    if negated and not ascii_only:
        return _unicode_case_closure(ranges)
    extra = [(ord(c), ord(c)) for lo, hi in ranges for c in _ascii_letters(lo, hi)]
    return _normalize([*ranges, *extra]) if extra else ranges


def _ascii_letters(lo: int, hi: int) -> list[str]:
    """The other case of the ASCII letters in ``[lo, hi]``."""
    return [chr(c).swapcase() for c in range(max(lo, 0x41), min(hi, 0x7A) + 1) if chr(c).isalpha()]


@cache
def _cased_code_points() -> tuple[int, ...]:
    """Code points with a case mapping: the only ones IGNORECASE can add to a set.
    (All of them are below U+20000; scanning the planes above would cost 0.4 s for nothing.)"""
    return tuple(c for c in range(0x20000) if (ch := chr(c)).lower() != ch or ch.upper() != ch)


@lru_cache(maxsize=1024)
def _unicode_case_closure(ranges: Ranges) -> Ranges:
    """Exactly the characters ``re`` matches with ``[ranges]`` under IGNORECASE (asked of re)."""
    cased = _cased_code_points()
    spend(4 * len(cased) + 10 * len(ranges))
    members = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges)
    matcher = re.compile(f"[{members}]", re.IGNORECASE).fullmatch
    extra = [(c, c) for c in cased if matcher(chr(c))]
    return _normalize([*ranges, *extra])

"""ECMA-262 regex syntax that Python's ``re`` parser refuses, rewritten into what it reads:
Unicode property escapes (``\\p{L}``, ``\\P{Nd}``, ``\\p{Letter}``) as character classes,
control escapes (``\\cC``), code point escapes ``\\u{1F600}``, and named groups ``(?<name>...)``
(Python spells them ``(?P<name>...)``).

JSON Schema patterns are ECMA-262 regexes with Unicode semantics, where ``\\p{...}`` is common
in real schemas (``^[\\p{L} .'-]+$`` for names), and users of the ``regex`` module write it too.
General categories are what :mod:`unicodedata` knows (Python's Unicode version), by short name,
long name or alias (``digit`` is ``Nd``), with ``gc=``/``General_Category=`` or without, matched
loosely as Unicode says (case, ``_``, ``-`` and spaces ignored); also ``Any``, ``ASCII`` and
``Assigned``. Scripts and binary properties need tables Python does not ship: a
:class:`RegexError` names the property.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

from outlines_gguf.automata.charsets import MAX_CODEPOINT, Ranges, _complement, _normalize
from outlines_gguf.errors import RegexError

_CATEGORY_NAMES: dict[str, tuple[str, ...]] = {
    # short name: (long name, aliases...); two-letter names are single categories, one-letter
    # names the union of those starting with it
    "L": ("Letter",),
    "LC": ("Cased_Letter",),
    "Lu": ("Uppercase_Letter",),
    "Ll": ("Lowercase_Letter",),
    "Lt": ("Titlecase_Letter",),
    "Lm": ("Modifier_Letter",),
    "Lo": ("Other_Letter",),
    "M": ("Mark", "Combining_Mark"),
    "Mn": ("Nonspacing_Mark",),
    "Mc": ("Spacing_Mark",),
    "Me": ("Enclosing_Mark",),
    "N": ("Number",),
    "Nd": ("Decimal_Number", "digit"),
    "Nl": ("Letter_Number",),
    "No": ("Other_Number",),
    "P": ("Punctuation", "punct"),
    "Pc": ("Connector_Punctuation",),
    "Pd": ("Dash_Punctuation",),
    "Ps": ("Open_Punctuation",),
    "Pe": ("Close_Punctuation",),
    "Pi": ("Initial_Punctuation",),
    "Pf": ("Final_Punctuation",),
    "Po": ("Other_Punctuation",),
    "S": ("Symbol",),
    "Sm": ("Math_Symbol",),
    "Sc": ("Currency_Symbol",),
    "Sk": ("Modifier_Symbol",),
    "So": ("Other_Symbol",),
    "Z": ("Separator",),
    "Zs": ("Space_Separator",),
    "Zl": ("Line_Separator",),
    "Zp": ("Paragraph_Separator",),
    "C": ("Other",),
    "Cc": ("Control", "cntrl"),
    "Cf": ("Format",),
    "Cs": ("Surrogate",),
    "Co": ("Private_Use",),
    "Cn": ("Unassigned",),
}


def _loose(name: str) -> str:
    """Unicode's loose matching of property names (UAX #44, LM3)."""
    return re.sub(r"[\s_\-]", "", name).lower()


_BY_LOOSE_NAME: dict[str, str] = {}
for _short, _names in _CATEGORY_NAMES.items():
    for _name in (_short, *_names):
        _BY_LOOSE_NAME[_loose(_name)] = _short


@cache
def _categories() -> dict[str, Ranges]:
    """Every two-letter general category's code points, in one pass over Unicode."""
    found: dict[str, list[tuple[int, int]]] = {}
    current, start = unicodedata.category("\0"), 0
    for cp in range(1, MAX_CODEPOINT + 2):
        cat = unicodedata.category(chr(cp)) if cp <= MAX_CODEPOINT else ""
        if cat != current:
            found.setdefault(current, []).append((start, cp - 1))
            current, start = cat, cp
    return {cat: _normalize(ranges) for cat, ranges in found.items()}


@cache
def property_ranges(name: str) -> Ranges:
    """The code points of the Unicode property ``name`` (as written inside ``\\p{...}``)."""
    key = name
    if "=" in name:
        prop, _, key = name.partition("=")
        if _loose(prop) not in ("gc", "generalcategory"):
            raise RegexError(f"the Unicode property \\p{{{name}}} is not supported (general categories only)")
    loose = _loose(key)
    if loose == "any":
        return ((0, MAX_CODEPOINT),)
    if loose == "ascii":
        return ((0, 0x7F),)
    if loose == "assigned":
        return _complement(_categories().get("Cn", ()))
    short = _BY_LOOSE_NAME.get(loose)
    if short is None:
        raise RegexError(
            f"the Unicode property \\p{{{name}}} is not supported (general categories such as L, Lu, "
            "Nd, P or Letter; not scripts or binary properties)"
        )
    categories = _categories()
    if short == "LC":
        members = ["Lu", "Ll", "Lt"]
    elif len(short) == 1:
        members = [cat for cat in categories if cat.startswith(short)]
    else:
        members = [short]
    return _normalize(r for cat in members for r in categories.get(cat, ()))


def _class_text(ranges: Ranges) -> str:
    """``ranges`` as the inside of a character class, every code point escaped."""
    return "".join(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges)


_PROPERTY = re.compile(r"\\([pP])(?:\{([^}]*)\}|([A-Za-z]))")
_CODE_POINT = re.compile(r"\\u\{([0-9A-Fa-f]{1,6})\}")
_NAMED_GROUP = re.compile(r"\(\?<(?![=!])")  # not a lookbehind
_CLASS_ESCAPE = re.compile(r"\\[wWdDsS]")
_DASHED = re.compile(r"\\[wWdDsS]-|-\\[wWdDsS]")  # a class escape beside a dash


def expand_escapes(pattern: str) -> str:
    """``pattern`` with ``\\p``/``\\P`` property escapes (a class outside ``[...]``, its ranges
    inside one), ``\\cX`` and ``\\u{...}`` escapes, ``(?<name>`` groups and dashes beside a
    class escape in a class (``[\\w-.]``) written as Python's ``re`` reads them. Unchanged (the
    same object) when it has none of them."""
    marks = ("\\p", "\\P", "\\c", "\\u{", "(?<")
    if not any(mark in pattern for mark in marks) and not _DASHED.search(pattern):
        return scope_inline_flags(pattern)
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    class_start = -1  # where the current class's members begin (a "]" there is literal)
    after_class_escape = False  # the last member written was \w, \d, \s or their negations
    while i < n:
        ch = pattern[i]
        if in_class and ch == "-" and (after_class_escape or _CLASS_ESCAPE.match(pattern, i + 1)):
            # ECMA-262 (Annex B) reads a dash beside a class escape as itself ([\w-.] is a word
            # character, a dash or a dot); Python's parser calls it a bad range
            out.append("\\-")
            i += 1
            after_class_escape = False
            continue
        after_class_escape = in_class and _CLASS_ESCAPE.match(pattern, i) is not None
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt in "pP":
                m = _PROPERTY.match(pattern, i)
                if m is None:
                    raise RegexError(f"regex {pattern[:60]!r}: a \\{nxt} escape needs a property name")
                ranges = property_ranges(m.group(2) if m.group(2) is not None else m.group(3))
                if nxt == "P":
                    ranges = _complement(ranges)
                text = _class_text(ranges) if ranges else ""
                if in_class:
                    out.append(text)
                else:
                    out.append(f"[{text}]" if text else "(?!)")
                i = m.end()
                continue
            if nxt == "c" and i + 2 < n and pattern[i + 2].isascii() and pattern[i + 2].isalpha():
                out.append(f"\\x{ord(pattern[i + 2]) % 32:02x}")
                i += 3
                continue
            code_point = _CODE_POINT.match(pattern, i)
            if code_point is not None:
                value = int(code_point.group(1), 16)
                if value > MAX_CODEPOINT:
                    raise RegexError(f"regex {pattern[:60]!r}: \\u{{{code_point.group(1)}}} is past U+10FFFF")
                out.append(f"\\U{value:08x}")
                i = code_point.end()
                continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if ch == "]" and i != class_start:
                in_class = False
        elif ch == "(" and _NAMED_GROUP.match(pattern, i):
            out.append("(?P<")
            i += 3
            continue
        elif ch == "[":
            in_class = True
            class_start = i + 1
            if pattern.startswith("^", class_start):
                out.append("[^")
                i += 2
                class_start = i
                continue
        out.append(ch)
        i += 1
    return scope_inline_flags("".join(out))


_FLAG_GROUP = re.compile(r"\(\?([aiLmsux]+(?:-[imsx]+)?|-[imsx]+)\)")


def scope_inline_flags(pattern: str) -> str:
    """``pattern`` with each global flag group past its start written as a scoped group over the
    rest of the group it stands in: ``^(?i)(abort|warn)?$`` as ``^(?i:(abort|warn)?$)``. Go's
    RE2 (Kubernetes validates CRDs with it) reads such a group so; Python's ``re`` refuses it
    since 3.11 (before, it applied the flags to the whole pattern: a reading the scoped one is a
    subset of). Left as written where the rest of the group holds an alternation (the scope
    would change what ``|`` divides): ``re`` then names the error. The same object when
    nothing changed."""
    if "(?" not in pattern:
        return pattern
    for _ in range(pattern.count("(?")):
        found = _misplaced_flags(pattern)
        if found is None:
            break
        start, stop, close = found
        flags = pattern[start + 2 : stop - 1]
        pattern = f"{pattern[:start]}(?{flags}:{pattern[stop:close]}){pattern[close:]}"
    return pattern


def _misplaced_flags(pattern: str) -> tuple[int, int, int] | None:
    """The first global flag group past the start whose rest of group has no alternation: its
    start, its end, and where the group it stands in closes (or the pattern ends)."""
    i, n = 0, len(pattern)
    in_class = False
    opened: list[int] = []  # the open groups
    leading = True  # only flag groups so far (where Python reads them as global)
    candidate: tuple[int, int, int] | None = None  # (start, stop, depth)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            i += 2
            leading = False
            continue
        if in_class:
            in_class = ch != "]" or pattern[i - 1] == "["
            i += 1
            continue
        flags = _FLAG_GROUP.match(pattern, i) if ch == "(" else None
        if flags is not None:
            if (not leading or "-" in flags.group(1)) and candidate is None:  # ((?-i) is never global)
                candidate = (i, flags.end(), len(opened))
            i = flags.end()
            continue
        leading = False
        if ch == "[":
            in_class = True
        elif ch == "(":
            opened.append(i)
        elif ch == ")":
            if candidate is not None and len(opened) == candidate[2]:
                return candidate[0], candidate[1], i
            if opened:
                opened.pop()
        elif ch == "|" and candidate is not None and len(opened) == candidate[2]:
            return None  # (an alternation in its scope: left for re to refuse)
        i += 1
    return (candidate[0], candidate[1], n) if candidate is not None else None

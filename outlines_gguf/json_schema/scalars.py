"""The JSON Schema compiler's rules for scalars: enum and const, numbers, strings."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import cache, lru_cache, partial
from typing import TYPE_CHECKING, Any, NamedTuple

from outlines_gguf.automata.budget import MAX_DFA_STATES
from outlines_gguf.automata.dfa import ByteDFA
from outlines_gguf.automata.nfa import Fragment
from outlines_gguf.automata.ops import intersect
from outlines_gguf.automata.regex import NFABuilder
from outlines_gguf.errors import (
    ConstraintTooComplexError,
    DFAProductTooLargeError,
    EmptyLanguageError,
    RegexError,
    SchemaError,
)
from outlines_gguf.json_schema.format_tables import shipped_format_dfa
from outlines_gguf.json_schema.keywords import (
    ANNOTATIONS,
    MAX_LENGTH_CAP,
    NOT_MULTIPLE_KEY,
    NOT_NUMBERS_KEY,
    NOT_PATTERN_KEY,
    NOT_STRINGS_KEY,
    _is_int,
)
from outlines_gguf.json_schema.leaves import STRING_FORMATS, integer_range, number_range
from outlines_gguf.json_schema.lexical import (
    _GENERIC_NUMBERS,
    _NO_KEY,
    _interleave,
    _multiple_of_dfa,
    _searched,
    _strings_except,
    _strings_not_matching,
    any_string_char,
    json_chars,
    shared_regex,
    unenforceable_pattern,
)
from outlines_gguf.json_schema.numbers import (
    bounded_number_dfa,
    multiple_of_dfa,
    not_multiple_of_dfa,
    numbers_except_dfa,
)
from outlines_gguf.json_schema.strings import layered_body
from outlines_gguf.json_schema.validate import MARKER_CHECKS, Undecided, Validator, json_equal

if TYPE_CHECKING:
    from outlines_gguf.json_schema.compiler_api import CompilerAPI

LITERAL_ANY_ORDER_MAX = 4
"""Listed objects (``const``, ``enum``) of at most this many members take them in any order
(2^n states each, members copied n*2^(n-1) times); larger ones in the order listed."""


class _Bounds(NamedTuple):
    """A number's range: ``minimum``/``maximum`` and their exclusive forms, in any draft."""

    lo: float | None
    hi: float | None
    lo_x: bool
    hi_x: bool

    @classmethod
    def of(cls, schema: dict, path: str) -> _Bounds:
        lo, hi = schema.get("minimum"), schema.get("maximum")
        xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        lo_x = hi_x = False
        if isinstance(xlo, bool):  # draft 4
            lo_x = xlo
        elif xlo is not None:
            lo, lo_x = (xlo, True) if lo is None or xlo >= lo else (lo, False)
        if isinstance(xhi, bool):
            hi_x = xhi
        elif xhi is not None:
            hi, hi_x = (xhi, True) if hi is None or xhi <= hi else (hi, False)
        for name, value in (("minimum", lo), ("maximum", hi)):
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise SchemaError(f"{name} must be a number", path)
        return cls(lo, hi, lo_x, hi_x)


class _ScalarRules:
    """Scalar rules of the JSON Schema compiler (mixed into ``_Compiler``)."""

    def enum(self: CompilerAPI, schema: dict, path: str, depth: int) -> Fragment | None:
        listed = schema.get("enum", [])
        if not isinstance(listed, list):
            raise self.fail("enum must be an array", path)
        values = listed
        if "const" in schema:  # (and the enum, if there is one, must list it too)
            values = [schema["const"]]
            if "enum" in schema:
                values = [v for v in values if any(json_equal(v, w) for w in listed)]
        rest = {k: v for k, v in schema.items() if k not in ("enum", "const") and k not in ANNOTATIONS}
        return self.listed(values, rest, path, depth)

    def listed(self: CompilerAPI, values: list, rest: Any, path: str, depth: int) -> Fragment | None:
        """The ``values`` (of an enum or const) that satisfy ``rest``, each exactly.

        Each value is checked by :class:`~outlines_gguf.json_schema.validate.Validator`, so the result
        is exact whatever keywords ``rest`` holds; where the validator cannot decide (a keyword
        it does not know), by the automaton of ``rest`` (a valid subset)."""
        fragments = []
        check: ByteDFA | None = None
        validator = Validator(self.root, MARKER_CHECKS)
        for v in values:
            try:
                keep = rest in (True, {}) or validator.is_valid(rest, v)
            except Undecided:
                if check is None:
                    check = self.sub_dfa(rest, path, depth) or _NO_KEY
                texts = [
                    json.dumps(v, ensure_ascii=False, separators=(",", ":")),
                    json.dumps(v, ensure_ascii=False),
                ]
                keep = any(check.matches(t.encode()) for t in texts)
            except RecursionError as exc:
                raise ConstraintTooComplexError(f"{path}: an enum value is nested too deeply") from exc
            if keep:
                fragments.append(self.literal_value(v))
        return self.b.alt(fragments)

    def literal_value(self: CompilerAPI, v: Any) -> Fragment:
        """One JSON value, exactly, with the structural whitespace allowed between tokens. The
        members of a small object (:data:`LITERAL_ANY_ORDER_MAX`) come in any order: an object
        is the same value whatever order a document lists its members in."""
        if isinstance(v, dict):
            if not self.canonical and 1 < len(v) <= LITERAL_ANY_ORDER_MAX:
                return self.literal_object_any_order(v)
            members = sorted(v.items()) if self.canonical else v.items()  # (one order per value)
            items = [
                self.b.seq([self.lit(json.dumps(k, ensure_ascii=False)), self.colon(), self.literal_value(x)])
                for k, x in members
            ]
            return self.b.seq([self.open("{"), *_interleave(items, self.comma), self.close("}")])
        if isinstance(v, list):
            items = [self.literal_value(x) for x in v]
            return self.b.seq([self.open("["), *_interleave(items, self.comma), self.close("]")])
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return self.listed_number(v)
        return self.lit(json.dumps(v, ensure_ascii=False))

    def literal_object_any_order(self: CompilerAPI, v: dict) -> Fragment:
        """``{`` the members of ``v`` in any order ``}``: a state per set of members written."""
        b = self.b
        members = list(v.items())
        everything = (1 << len(members)) - 1
        entry = self.open("{")
        end = b.nfa.state()
        state = {0: entry[1]}
        for written in range(everything + 1):  # ascending: a set comes after its subsets
            source = state[written]
            if written == everything:
                self.close_into(source, end)
                continue
            for i, (name, value) in enumerate(members):
                if written >> i & 1:
                    continue
                target = state.setdefault(written | 1 << i, b.nfa.state())
                member = b.seq(
                    [self.lit(json.dumps(name, ensure_ascii=False)), self.colon(), self.literal_value(value)]
                )
                self.member_link(source, member, target, comma=written != 0)
        return entry[0], end

    def listed_number(self: CompilerAPI, v: float) -> Fragment:
        """A listed number in the spellings of its value without an exponent: ``1``, ``1.0``,
        ``1.00`` for 1 (JSON Schema compares numbers by value), ``1.5``, ``1.50`` for 1.5, and
        ``-0`` for 0. (Spellings with an exponent are not written, as elsewhere where a value
        condition applies, so every spelling's value is the listed one.)"""
        b = self.b

        def zeros() -> Fragment:
            return b.repeat(lambda: self.lit("0"), 1, None)

        if isinstance(v, int) or (v == int(v) and abs(v) < 1e16):
            whole = str(int(v))
            spellings = [self.lit(whole)] + ([self.lit("-0")] if whole == "0" else [])
            fraction = b.optional(b.seq([self.lit("."), zeros()]))
            return b.seq([b.either(*spellings), fraction])
        text = json.dumps(v)
        if "e" in text or "E" in text or "." not in text:  # (huge or tiny: as written)
            return self.lit(text)
        return b.seq([self.lit(text), b.optional(zeros())])

    def number(self: CompilerAPI, schema: dict, path: str, integer: bool) -> Fragment | None:
        bounds = _Bounds.of(schema, path)
        step = schema.get("multipleOf")
        filters: list[Callable[[], ByteDFA | None]] = []  # conditions on the value (plain numbers)
        if step is not None and not _is_int(step):
            filters.append(partial(multiple_of_dfa, step))  # a decimal step (0.01): by value
            step = None
        for other in schema.get(NOT_MULTIPLE_KEY, []):
            filters.append(partial(not_multiple_of_dfa, other))
        if NOT_NUMBERS_KEY in schema:
            filters.append(lambda: numbers_except_dfa(schema[NOT_NUMBERS_KEY]))
        base = self.number_base(bounds, step, path, integer)
        if base is None or not filters:
            return base
        try:
            dfa: ByteDFA | None = self.b.build(base)
            for make in filters:
                condition = make()
                dfa = None if dfa is None or condition is None else intersect(dfa, condition)
        except EmptyLanguageError:
            return None
        except ValueError as exc:
            raise self.fail(str(exc), path) from exc
        except DFAProductTooLargeError as exc:
            raise ConstraintTooComplexError(f"{path}: the number's conditions are too large ({exc})") from exc
        return None if dfa is None else self.b.dfa(dfa)

    def number_base(
        self: CompilerAPI, bounds: _Bounds, step: int | float | None, path: str, integer: bool
    ) -> Fragment | None:
        """Numbers within the bounds (integers if ``integer``), multiples of an integer ``step``."""
        lo, hi, lo_x, hi_x = bounds
        if integer or step is not None:
            ilo = None if lo is None else (math.floor(lo) + 1 if lo_x and _is_int(lo) else math.ceil(lo))
            ihi = None if hi is None else (math.ceil(hi) - 1 if hi_x and _is_int(hi) else math.floor(hi))
            if step is not None:
                return self.multiple_of(int(step), ilo, ihi, path, integer)
            pattern = integer_range(ilo, ihi)
        else:
            pattern = number_range(lo, hi, lo_x, hi_x)
        if pattern is None:
            return None
        # unbounded numbers are shared fragments; bounds, automata kept while in use
        if pattern in _GENERIC_NUMBERS:
            return shared_regex(self.b, pattern)
        return self.b.dfa(bounded_number_dfa(pattern))

    def multiple_of(
        self: CompilerAPI,
        step: int,
        lo: int | None,
        hi: int | None,
        path: str,
        integer: bool,
    ) -> Fragment | None:
        if step <= 0:
            raise self.fail("multipleOf must be positive", path)
        if lo is not None and hi is not None and (hi - lo) // step <= 64:
            first = -(-lo // step) * step
            values = range(first, hi + 1, step)
            return self.b.alt(self.lit(str(v)) for v in values)
        if step > MAX_DFA_STATES:
            raise ConstraintTooComplexError(
                f"{path}: multipleOf {step} needs a {step}-state automaton (the limit is "
                f"{MAX_DFA_STATES}); bound the value with minimum/maximum"
            )
        digits = _multiple_of_dfa(step)
        bounded = integer_range(lo, hi)
        if bounded is None:
            return None
        helper = NFABuilder("multipleOf")
        result = intersect(digits, helper.build(helper.regex(bounded)))
        return None if result is None else self.b.dfa(result)

    def string(self: CompilerAPI, schema: dict, path: str) -> Fragment | None:
        body = self.string_body(schema, path)
        if body is None:
            return None
        if isinstance(body, ByteDFA):
            return self.b.seq([self.lit('"'), self.b.dfa(body), self.lit('"')])
        return body

    def string_body(self: CompilerAPI, schema: dict, path: str) -> ByteDFA | Fragment | None:
        """The content automaton of a string schema (between the quotes), or, for a string
        with no pattern, format or length, the whole string as a fragment; None if none fits."""
        min_len = schema.get("minLength", 0)
        max_len = schema.get("maxLength")
        declared_max: int | None = max_len if isinstance(max_len, int) else None
        if isinstance(max_len, int) and max_len > MAX_LENGTH_CAP:
            # (never above the declared maximum: with minLength above it, no string fits)
            max_len = min(max_len, max(MAX_LENGTH_CAP, int(min_len) if _is_int(min_len) else 0))
        for name, value in (("minLength", min_len), ("maxLength", max_len)):
            if value is not None and (not _is_int(value) or value < 0):
                raise self.fail(f"{name} must be a non-negative integer", path)
        pattern = schema.get("pattern")
        fmt = schema.get("format")
        fmt_regex = STRING_FORMATS.get(fmt) if isinstance(fmt, str) else None
        quote = '"'
        negations = [k for k in (NOT_STRINGS_KEY, NOT_PATTERN_KEY) if schema.get(k)]
        if pattern is None and fmt_regex is None and not negations:
            if max_len is not None:
                return layered_body(int(min_len), int(max_len))
            body = self.b.repeat(lambda: any_string_char(self.b), int(min_len), None)
            return self.b.seq([self.lit(quote), body, self.lit(quote)])
        # pattern and format, each over the JSON-escaped form, intersected
        shape: ByteDFA | None = None
        for part in self.string_parts(pattern, fmt_regex, path):
            shape = part if shape is None else intersect(shape, part)
            if shape is None:
                return None
        if NOT_STRINGS_KEY in negations:
            shape = _strings_except(schema[NOT_STRINGS_KEY], shape)
        if NOT_PATTERN_KEY in negations:
            shape = _strings_not_matching(schema[NOT_PATTERN_KEY], shape, path)
        if shape is None:
            return None
        longest = shape.longest
        if not min_len and (declared_max is None or (longest is not None and longest <= declared_max)):
            # no match is longer than maxLength bytes, so none has more characters (checked
            # against the schema's own maxLength: a format of a few hundred characters at most,
            # such as an email address, needs no counting under maxLength 1024)
            return shape
        # counted characters laid out in layers over the pattern automaton; an unbounded
        # pattern's maxLength is capped where the layers would not fit (a valid subset)
        return layered_body(int(min_len), None if max_len is None else int(max_len), shape, fit=True)

    def string_parts(self: CompilerAPI, pattern: Any, fmt_regex: str | None, path: str) -> list[ByteDFA]:
        """The automata a string's content must match: its ``pattern`` (searched) and its
        format's regex, each over the JSON-escaped characters (built once per process)."""
        parts = []
        if pattern is not None:
            if not isinstance(pattern, str):
                raise self.fail("pattern must be a string", path)
            try:
                parts.append(pattern_part_dfa(pattern))
            except RegexError as exc:  # (it quotes the regex as rewritten to be searched)
                raise unenforceable_pattern(path, pattern, exc) from exc
        if fmt_regex is not None:
            parts.append(format_part_dfa(fmt_regex))
        return parts


@lru_cache(maxsize=1024)
def pattern_part_dfa(pattern: str, wide: bool = False) -> ByteDFA:
    """The automaton of a string's content where ``pattern`` is found in it, built once per
    pattern (real schemas repeat a pattern in many places; ``clear_caches`` forgets them).

    Narrow (the default): found under every reader (Python's ``re``, ECMA-262), for strings
    that must match. ``wide``: found under some reader, for strings that must not match, which
    are what is left outside it."""
    return _content_dfa(f"pattern {pattern!r}", _searched(pattern), negated=wide, ecma=True)


@cache
def format_part_dfa(fmt_regex: str) -> ByteDFA:
    """The automaton of a string's content in a format: shipped with the package
    (:mod:`~outlines_gguf.json_schema.format_tables`), else built, once per process either
    way, as the shared pieces are (a format's regex is large: ``format: regex`` beside a
    pattern, as in GitLab CI's ``coverage``, took 200 ms a node)."""
    shipped = shipped_format_dfa(fmt_regex)
    return shipped if shipped is not None else build_format_dfa(fmt_regex)


def build_format_dfa(fmt_regex: str) -> ByteDFA:
    """The automaton of a string's content in a format, built from its regex."""
    return _content_dfa("format", fmt_regex)


def _content_dfa(label: str, regex: str, negated: bool = False, ecma: bool = False) -> ByteDFA:
    """``regex`` over JSON-escaped characters, read-only (it is shared); ``negated``, ``ecma``:
    as :meth:`.NFABuilder.regex` reads them."""
    helper = NFABuilder(label)
    dfa = helper.build(helper.regex(regex, lambda r: json_chars(helper, r), negated=negated, ecma=ecma))
    dfa.transitions.flags.writeable = False
    dfa.accepting.flags.writeable = False
    return dfa

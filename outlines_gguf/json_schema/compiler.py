"""JSON Schema (or a Pydantic model) to a byte automaton of valid JSON texts.

The compiler walks the schema and builds NFA fragments directly (no regex
text in between), then determinizes once. Leaves (numbers, string formats,
``pattern``) are regexes; ``pattern`` is compiled over the JSON-escaped form
of each character, so a pattern that allows ``"`` yields ``\\"``. ``allOf``
of non-mergeable parts uses exact products of automata; ``not`` and overlapping
``oneOf`` branches are rewritten into positive schemas (``_Compiler.negate``), and
an ``enum``/``const`` beside other keywords keeps the values a validator passes.

What is generated: properties in the order of ``properties``, additional
properties (when the schema allows them) after the declared ones, bounded
whitespace (``json.dumps`` and compact forms by default), recursion through
``$ref`` unrolled to ``max_depth`` levels, free-form values (``{}``) nested
at most ``FREE_FORM_DEPTH`` levels and additional properties' values at most
``EXTRA_VALUE_DEPTH``, strings and arrays at most ``MAX_LENGTH_CAP``
characters and ``MAX_ITEMS_CAP`` items. Texts outside these limits are valid JSON that we do
not generate (never the reverse).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from outlines_gguf.automata.ops import difference, intersect
from outlines_gguf.automata.regex import (
    MAX_CODEPOINT,
    MAX_DFA_STATES,
    ByteDFA,
    Fragment,
    NFABuilder,
    Ranges,
    _complement,
    _normalize,
    compile_budget,
    minimize,
)
from outlines_gguf.errors import (
    ConstraintTooComplexError,
    DFAProductTooLargeError,
    EmptyLanguageError,
    OutlinesGGUFError,
    SchemaError,
)
from outlines_gguf.json_schema.leaves import (
    NUMBER,
    STRING_FORMATS,
    UNENFORCEABLE_FORMATS,
    integer_range,
    number_range,
)
from outlines_gguf.json_schema.numbers import (
    exact_value,
    multiple_of_dfa,
    not_multiple_of_dfa,
    numbers_except_dfa,
)
from outlines_gguf.json_schema.strings import layered_body
from outlines_gguf.json_schema.validate import (
    Undecided,
    Validator,
    json_equal,
    pattern_matches,
    resolve_local,
)

DEFAULT_MAX_DEPTH = 3
FREE_FORM_DEPTH = 2
"""Nesting allowed inside a free-form value (``{}`` or ``true``): the automaton for
"any JSON value" grows about 4x per level (713 states at 2, 2,889 at 3)."""
EXTRA_VALUE_DEPTH = 1
"""Nesting allowed inside the value of an additional property of an object that also
declares properties (an object without declared properties is free-form)."""
MAX_LENGTH_CAP = 256
"""A ``maxLength`` above this is generated as at most this many characters (or
``minLength``, if larger): every output still validates, and the automaton
stays small (each counted character is a few states)."""
MAX_ITEMS_CAP = 64
"""Likewise for ``maxItems`` (each counted item is a copy of the item's automaton), and
for ``maxProperties`` above both this and the number of declared properties."""



ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "example",
        "$schema",
        "$id",
        "id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentMediaType",
        "contentEncoding",
        "$anchor",
        "discriminator",
        "$defs",
        "definitions",
    }
)
# Validation keywords we know and cannot enforce exactly: an error unless lenient.
UNSUPPORTED = frozenset(
    {
        "unevaluatedProperties",
        "unevaluatedItems",
        "$dynamicRef",
        "$recursiveRef",
        "$dynamicAnchor",
        "$recursiveAnchor",
    }
)
_OBJECT_KEYS = {
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "minProperties",
    "maxProperties",
}
_ARRAY_KEYS = {"items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems"}
_CONTAINS_KEYS = {"contains", "minContains", "maxContains"}
_STRING_KEYS = {"minLength", "maxLength", "pattern", "format"}
_NUMBER_KEYS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")


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
    """One JSON string character from ``ranges``: raw where allowed, else its escapes."""
    raw = _intersect_ranges(ranges, _complement(_RAW_FORBIDDEN))
    alternatives = [b.chars(raw)] if raw else []
    for lo, hi in _intersect_ranges(ranges, (*_RAW_FORBIDDEN, (0x2F, 0x2F))):
        for cp in range(lo, hi + 1):
            forms = [f"\\u{cp:04x}", f"\\u{cp:04X}"]
            if cp in _SHORT_ESCAPES:
                forms.append(_SHORT_ESCAPES[cp])
            alternatives += [b.literal(f) for f in dict.fromkeys(forms)]
    return b.alt(alternatives) or b.chars(())  # type: ignore[return-value]


def plain_key_char(b: NFABuilder) -> Fragment:
    """One character of a key written without escapes (see ``_Compiler.key_except``)."""
    return b.chars(_complement(_RAW_FORBIDDEN))


def any_string_char(b: NFABuilder) -> Fragment:
    """Any JSON string character: raw, a short escape, a \\u escape, or an escaped surrogate
    pair (never a lone surrogate)."""
    return b.shared("JSON string character", _any_string_char)  # type: ignore[return-value]


def _any_string_char(b: NFABuilder) -> Fragment | None:
    return b.alt(
        [
            b.chars(_complement(_RAW_FORBIDDEN)),
            b.regex(r'\\["\\/bfnrt]'),
            b.regex(r"\\u(?:[0-9a-cA-CefEF][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2})"),
            # a character beyond U+FFFF as an escaped surrogate pair (what json.dumps writes)
            b.regex(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"),
        ]
    )


def shared_regex(b: NFABuilder, pattern: str) -> Fragment | None:
    """``pattern`` (a fixed regex of the library: any number, any integer) as a shared fragment."""
    return b.shared(("regex", pattern), lambda h: h.regex(pattern))


ANY_ORDER_MAX = 3
"""In split mode, an object with at most this many declared properties (and no
min/maxProperties) takes them in any order: one automaton state per set of members written.
Larger objects take them in the order of ``properties`` (extra members still anywhere)."""
MEMBER_CHUNK = 16
"""In split mode, an object with more properties than this (and no min/maxProperties) is written
as runs of this many members, each its own node (see ``_Compiler.chunked_object``)."""
EXTRA_KEY = "x-outlines-gguf-extra"
"""Marks the synthetic schema of one extra member (``"key": value``) of an object, a node of its
own in split mode, so extra members may come anywhere between the declared ones."""
NOT_STRINGS_KEY = "x-outlines-gguf-not-strings"
"""Marks the negation of a string enum: any string but these (see ``_Compiler.negate``)."""
NOT_PATTERN_KEY = "x-outlines-gguf-not-patterns"
"""Strings in which none of these patterns is found (the negation of ``pattern``)."""
NOT_NUMBERS_KEY = "x-outlines-gguf-not-numbers"
"""Numbers whose value is none of these (the negation of a numeric enum)."""
NOT_MULTIPLE_KEY = "x-outlines-gguf-not-multiples"
"""Numbers that are a multiple of none of these (the negation of ``multipleOf``)."""
_NEGATION_MARKERS = (NOT_STRINGS_KEY, NOT_PATTERN_KEY, NOT_NUMBERS_KEY, NOT_MULTIPLE_KEY)
"""The compiler's own keywords for negations: each a list; allOf parts merge by joining them."""
CHUNK_KEY = "x-outlines-gguf-run"
"""Marks the synthetic schema of such a run (its value: "first" or "after")."""
ITEMS_RUN_KEY = "x-outlines-gguf-items-run"
"""Marks the synthetic schema of a run of array items in split mode: ``[min, max]`` more items
(max None: any number) of ``items``, each after a comma (see ``_Compiler.items_run``)."""
ITEMS_RUN = 16
"""Items per node of such a run: a count above ``MAX_ITEMS_CAP`` is a chain of these."""

HEAVY_LEAF_LENGTH = 16
"""In split mode, a string value with a larger ``maxLength`` (or with a pattern or a format) is a
call to a node of its own instead of states in every automaton that holds it."""
HEAVY_LEAF_ENUM = 16
"""Likewise an enum of more values than this."""

CALL_BYTE = 0xFF
"""In a split automaton (see :mod:`~outlines_gguf.json_schema.pushdown`), a nested object or array value
is this byte followed by the callee's number in three bytes. 0xFF never occurs in UTF-8 text,
so the marker cannot be confused with a value's bytes; it is removed from the table that walks text."""


def call_marker(node: int) -> bytes:
    """The bytes that stand for a call to automaton ``node`` in a split automaton."""
    return bytes((CALL_BYTE, node >> 16 & 0xFF, node >> 8 & 0xFF, node & 0xFF))


class _Compiler:
    def __init__(
        self,
        root: Any,
        ws: Whitespace,
        max_depth: int,
        lenient: bool,
        extra_properties: bool | None,
        builder: NFABuilder | None = None,
        calls: Callable[[Any, str], int] | None = None,
    ) -> None:
        self.root = root
        self.calls = calls
        self._nest = 0  # objects and arrays entered so far in this automaton (split mode)
        self._leaves_called = False  # split mode: every nested value a call (any_order_body)
        self._spread = [MAX_DISTRIBUTED]  # allOf branches _distribute may still create (shared)
        self.ws = ws
        self.max_depth = max_depth
        self.lenient = lenient
        self.extra_properties = extra_properties
        self.builder = builder or NFABuilder("JSON schema")
        self._ref_depth: dict[str, int] = {}

    # -- small helpers ------------------------------------------------------------------------

    @property
    def b(self) -> NFABuilder:
        return self.builder

    def lit(self, text: str) -> Fragment:
        return self.b.literal(text)

    def token(self, text: str, before: str | None = None, after: str | None = None) -> Fragment:
        """A structural character with optional whitespace around it."""

        def make(b: NFABuilder) -> Fragment | None:
            parts = [b.regex(before) if before else None, b.literal(text), b.regex(after) if after else None]
            return b.seq([p for p in parts if p is not None])

        return self.b.shared(("token", text, before, after), make)  # type: ignore[return-value]

    def colon(self) -> Fragment:
        return self.token(":", self.ws.inside, self.ws.after_colon)

    def comma(self) -> Fragment:
        return self.token(",", self.ws.inside, self.ws.after_comma)

    def open(self, ch: str) -> Fragment:
        return self.token(ch, None, self.ws.inside)

    def close(self, ch: str) -> Fragment:
        return self.token(ch, self.ws.inside, None)

    def fail(self, message: str, path: str) -> SchemaError:
        return SchemaError(message, path)

    # -- entry ----------------------------------------------------------------------------------

    def compile(self) -> ByteDFA:
        fragment = self.value(self.root, "#", self.max_depth)
        if fragment is None:
            raise SchemaError(
                f"no JSON value satisfies this schema (within the recursion depth limit {self.max_depth})",
                "#",
            )
        return self.b.build(fragment)

    # -- values ---------------------------------------------------------------------------------

    def value(self, schema: Any, path: str, depth: int) -> Fragment | None:
        if isinstance(schema, dict) and ITEMS_RUN_KEY in schema:
            return self.items_run(schema, path, depth)
        if self.calls is not None:
            if self._nest > 0 and (self._leaves_called or self.may_nest(schema, path)):
                return self.b.literal(call_marker(self.calls(schema, path)))
            if schema is True or schema == {}:
                return self.any_value_nfa(1)  # its members and items are calls: any depth
        if schema is True or schema == {}:
            return self.any_value(min(depth, FREE_FORM_DEPTH))
        if schema is False:
            return None
        if not isinstance(schema, dict):
            raise self.fail(f"a schema must be an object or a boolean, got {type(schema).__name__}", path)
        self.check_keywords(schema, path)
        self.check_shapes(schema, path)
        if "enum" in schema or "const" in schema:
            # the listed values that pass every other keyword: exact, whatever those say
            return self.enum(schema, path, depth)
        if any(key in schema for key in _DEPENDENCY_KEYS):
            return self.value(self.expand_dependencies(schema, path), path, depth)
        if "if" in schema or "then" in schema or "else" in schema:
            return self.value(self.expand_condition(schema, path), path, depth)
        if "$ref" in schema:
            return self.ref(schema, path, depth)
        if "allOf" in schema:
            return self.all_of(schema, path, depth)
        if "anyOf" in schema or "oneOf" in schema:
            return self.any_of(schema, path, depth)
        if "not" in schema:
            return self.value(self.apply_not(schema, path), path, depth)
        if "enum" in schema or "const" in schema:
            return self.enum(schema, path, depth)
        types = self.types(schema, path)
        return self.b.alt(self.typed(t, schema, path, depth) for t in types)

    def expand_dependencies(self, schema: dict, path: str) -> dict:
        """``dependentRequired``/``dependentSchemas``/``dependencies`` as a union of plain
        schemas: for each property that has dependencies, one branch where it is absent and one
        where it is present with what it requires (2^k branches for k such properties)."""
        deps: dict[str, tuple[list[str], Any]] = {}
        for key in _DEPENDENCY_KEYS:
            value = schema.get(key)
            if value is None:
                continue
            if not isinstance(value, dict):
                raise self.fail(f"{key} must be an object", f"{path}/{key}")
            for name, need in value.items():
                names, sub = deps.get(name, ([], True))
                if isinstance(need, list) and key != "dependentSchemas":
                    if not all(isinstance(n, str) for n in need):
                        raise self.fail(f"{key}/{name} must list property names", f"{path}/{key}")
                    names = [*names, *need]
                elif _is_schema(need) and key != "dependentRequired":
                    sub = need if sub is True else {"allOf": [sub, need]}
                else:
                    raise self.fail(f"{key}/{name} must be an array of names or a schema", f"{path}/{key}")
                deps[name] = (names, sub)
        if len(deps) > MAX_DEPENDENCY_BRANCHES.bit_length() - 1:
            raise ConstraintTooComplexError(
                f"{path}: more than {MAX_DEPENDENCY_BRANCHES.bit_length() - 1} properties with dependencies"
            )
        rest = {k: v for k, v in schema.items() if k not in _DEPENDENCY_KEYS}
        branches: list[list[Any]] = [[]]
        for name, (names, sub) in deps.items():
            absent = {"properties": {name: False}}
            present: dict[str, Any] = {"required": list(dict.fromkeys([name, *names]))}
            parts = [present] if sub is True else [present, sub]
            branches = [[*b, absent] for b in branches] + [[*b, *parts] for b in branches]
        return {"anyOf": [{"allOf": [rest, *b]} for b in branches]}

    def expand_condition(self, schema: dict, path: str) -> Any:
        """``if``/``then``/``else`` as (if and then) or (not if, and else): branches that
        exclude each other, so their union is exact. ``not if`` is rewritten as a union of
        positive schemas, each merged with the rest (a condition that cannot be negated raises
        a SchemaError naming it)."""
        rest = {k: v for k, v in schema.items() if k not in ("if", "then", "else")}
        if "if" not in schema:
            return rest  # then and else without if are ignored, as JSON Schema says
        condition = schema["if"]
        otherwise = schema.get("else", True)
        branches: list[Any] = [{"allOf": [rest, condition, schema.get("then", True)]}]
        negated = self.negate(condition, f"{path}/if")
        if negated is None:
            raise self.fail(
                "if: the condition cannot be negated (types, bounds, lengths, counts, required, "
                "properties, string const/enum and anyOf/allOf/not of those can)",
                f"{path}/if",
            )
        branches += [{"allOf": [rest, alternative, otherwise]} for alternative in _alternatives(negated)]
        return {"anyOf": branches}

    def may_nest(self, schema: Any, path: str) -> bool:
        """Whether a value of ``schema`` may be an object or an array (or needs a ``$ref`` or a
        combinator resolved): in split mode such a value is a call to its own automaton."""
        if schema is True or schema == {}:
            return True
        if not isinstance(schema, dict):
            return False
        if any(key in schema for key in ("$ref", "allOf", "anyOf", "oneOf", "not")):
            return True
        if "enum" in schema or "const" in schema:
            values = schema.get("enum")
            return isinstance(values, list) and len(values) > HEAVY_LEAF_ENUM
        types = self.types(schema, path)
        if {"object", "array"} & set(types):
            return True
        # a string leaf whose automaton is big (counted characters, a pattern, a format): its
        # own node, compiled once however many properties share it
        max_len, min_len = schema.get("maxLength"), schema.get("minLength")
        return "string" in types and (
            "pattern" in schema
            or "format" in schema
            or any(_is_int(n) and n > HEAVY_LEAF_LENGTH for n in (max_len, min_len))
        )

    def check_keywords(self, schema: dict, path: str) -> None:
        listed = "enum" in schema or "const" in schema  # the validator checks listed values
        for key in schema:
            if key in UNSUPPORTED and not self.lenient:
                raise self.fail(f"keyword {key!r} cannot be enforced (pass lenient=True to ignore it)", path)
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in UNENFORCEABLE_FORMATS and not self.lenient:
            raise self.fail(f"format {fmt!r} cannot be enforced (pass lenient=True to ignore it)", path)
        unique = schema.get("uniqueItems") is True and not listed
        if unique and not self.lenient and _unique_domain(schema) is None:
            raise self.fail(
                "keyword 'uniqueItems' can only be enforced for items from a few values (an enum or "
                f"boolean of at most {MAX_UNIQUE_VALUES}, no prefixItems; pass lenient=True to ignore it)",
                path,
            )

    def check_shapes(self, schema: dict, path: str) -> None:
        """Reject keyword values of the wrong JSON type (``"maxLength": "x"``, ``"items": 3``)
        with a :class:`SchemaError` naming the keyword, before anything uses them."""
        for key, value in schema.items():
            expected = _SHAPES.get(key)
            if expected is not None and not _SHAPE_CHECKS[expected](value):
                raise self.fail(f"{key} must be {expected}, got {_show(value)}", f"{path}/{key}")
        required = schema.get("required")
        if isinstance(required, list) and not all(isinstance(name, str) for name in required):
            raise self.fail("required must be an array of strings", f"{path}/required")

    def types(self, schema: dict, path: str) -> list[str]:
        declared = schema.get("type")
        if declared is None:
            inferred = []
            keys = set(schema)
            if keys & _OBJECT_KEYS:
                inferred.append("object")
            if keys & (_ARRAY_KEYS - {"uniqueItems"}):
                inferred.append("array")
            if keys & {*_STRING_KEYS, NOT_STRINGS_KEY, NOT_PATTERN_KEY}:
                inferred.append("string")
            if keys & {*_NUMBER_KEYS, NOT_NUMBERS_KEY, NOT_MULTIPLE_KEY}:
                inferred.append("number")
            return inferred or list(_TYPES)
        listed = declared if isinstance(declared, list) else [declared]
        for t in listed:
            if not isinstance(t, str) or t not in _TYPES:
                shown = repr(t) if isinstance(t, str) else _show(t)
                raise self.fail(f"unknown type {shown}", path + "/type")
        if "number" in listed and "integer" in listed:
            listed = [t for t in listed if t != "integer"]
        return list(dict.fromkeys(listed))

    def typed(self, kind: str, schema: dict, path: str, depth: int) -> Fragment | None:
        if kind == "null":
            return self.lit("null")
        if kind == "boolean":
            return self.b.alt([self.lit("true"), self.lit("false")])
        if kind in ("integer", "number"):
            return self.number(schema, path, integer=kind == "integer")
        if kind == "string":
            return self.string(schema, path)
        if kind == "array":
            return self.array(schema, path, depth)
        return self.object(schema, path, depth)

    def any_value(self, depth: int) -> Fragment | None:
        """Any JSON value nested at most ``depth`` levels: an automaton built once per
        (depth, whitespace) and embedded, so schemas do not determinize it again."""
        ws = self.ws
        return self.b.shared(
            ("any value", depth, ws),
            lambda b: _Compiler({}, ws, DEFAULT_MAX_DEPTH, False, None, builder=b).any_value_nfa(depth),
        )

    def any_value_nfa(self, depth: int) -> Fragment | None:
        scalars = [
            self.lit("null"),
            self.lit("true"),
            self.lit("false"),
            shared_regex(self.b, NUMBER),
            self.string({}, "#"),
        ]
        if depth <= 0:
            return self.b.alt(scalars)
        return self.b.alt([*scalars, self.array({}, "#", depth), self.object({}, "#", depth)])

    # -- references and combinators ------------------------------------------------------------

    def resolve(self, ref: str, path: str) -> Any:
        if not ref.startswith("#"):
            raise self.fail(f"only local $ref ('#/...') is supported, got {ref!r}", path)
        try:
            return resolve_local(self.root, ref)
        except LookupError as exc:
            raise self.fail(f"$ref {ref!r} points to nothing", path) from exc

    def ref(self, schema: dict, path: str, depth: int) -> Fragment | None:
        ref = schema["$ref"]
        if not isinstance(ref, str):
            raise self.fail("$ref must be a string", path)
        target = self.resolve(ref, path)
        rest = {k: v for k, v in schema.items() if k != "$ref" and k not in ANNOTATIONS}
        seen = self._ref_depth.get(ref, 0)
        if seen >= self.max_depth:
            return None  # recursion cut here: this branch is dropped (documented depth limit)
        self._ref_depth[ref] = seen + 1
        try:
            merged = {"allOf": [target, rest]} if rest else target
            return self.value(merged, f"{path}/$ref", depth)
        finally:
            self._ref_depth[ref] = seen

    def all_of(self, schema: dict, path: str, depth: int) -> Fragment | None:
        parts = [{k: v for k, v in schema.items() if k != "allOf"}, *schema["allOf"]]
        parts = [self.inline_refs(p, path) for p in parts]
        for i, part in enumerate(parts[1:]):
            if isinstance(part, dict):
                self.check_shapes(part, f"{path}/allOf/{i}")
        parts = [self.inline_refs(p, path) for p in _spliced(parts)]
        for part in parts:
            values = _listed_values(part)
            if values is not None:  # an enum or const part: its values that pass every part
                try:
                    validator = Validator(self.root, self.marker_checks())
                    kept = [v for v in values if validator.is_valid({"allOf": parts}, v)]
                except Undecided:
                    break  # a keyword the validator does not know: compile the parts instead
                except RecursionError as exc:
                    raise ConstraintTooComplexError(f"{path}: an enum value is nested too deeply") from exc
                return self.b.alt(self.literal_value(v) for v in kept)
        merged = _merge_all(parts)
        if merged is not None:
            return self.value(merged, path, depth)
        spread = _distribute(parts)
        if spread is not None and len(spread["anyOf"]) <= self._spread[0]:
            # allOf[a, anyOf[b, c]] = anyOf[allOf[a, b], allOf[a, c]]: parts that merge (a budget
            # per compile: nested unions would multiply)
            self._spread[0] -= len(spread["anyOf"])
            return self.value(spread, path, depth)
        dfas = [self.sub_dfa(p, f"{path}/allOf/{i}", depth) for i, p in enumerate(parts)]
        if any(d is None for d in dfas):
            return None
        result = dfas[0]
        try:
            for d in dfas[1:]:
                result = intersect(result, d)  # type: ignore[arg-type]
                if result is None:
                    break  # the parts exclude each other
        except DFAProductTooLargeError as exc:
            raise ConstraintTooComplexError(f"{path}: allOf is too large to intersect ({exc})") from exc
        return None if result is None else self.b.dfa(result)

    def inline_refs(self, schema: Any, path: str) -> Any:
        """Replace a top-level $ref by its target, so allOf parts can be merged."""
        seen: set[str] = set()
        while isinstance(schema, dict) and "$ref" in schema and len(schema) == 1:
            ref = schema["$ref"]
            if not isinstance(ref, str):
                raise self.fail("$ref must be a string", path)
            if ref in seen:
                raise self.fail(f"$ref {ref!r} refers to itself through $refs only (a cycle)", path)
            seen.add(ref)
            schema = self.resolve(ref, path)
        return schema

    def any_of(self, schema: dict, path: str, depth: int) -> Fragment | None:
        key = "anyOf" if "anyOf" in schema else "oneOf"
        base = {k: v for k, v in schema.items() if k != key}
        branches = schema[key]
        if not isinstance(branches, list) or not branches:
            raise self.fail(f"{key} must be a non-empty array", path)
        if key == "oneOf" and len(branches) > 1:
            exclusive = _exclusive_required(branches)
            if exclusive is not None:  # oneOf over required sets: each branch excludes the others
                key, branches = "anyOf", exclusive
        combined = [{"allOf": [base, b]} if base and set(base) - ANNOTATIONS else b for b in branches]
        if key == "oneOf" and len(combined) > 1:
            resolved = [self.flatten(c, path) for c in combined]
            for i, branch in enumerate(resolved):
                if isinstance(branch, dict):
                    self.check_shapes(branch, f"{path}/{key}/{i}")
            n = len(resolved)
            overlaps = {
                (i, j)
                for i in range(n)
                for j in range(n)
                if i != j and not _safely_disjoint(resolved[i], resolved[j])
            }
            try:
                if overlaps and n > MAX_ONEOF_EXCLUSIVE:
                    i, j = min(overlaps)
                    raise self.fail(
                        f"oneOf branches {i} and {j} may both match the same value, and with {n} "
                        f"branches (more than {MAX_ONEOF_EXCLUSIVE}) they are not made exclusive, so "
                        "'exactly one' cannot be enforced (pass lenient=True to treat oneOf as anyOf)",
                        path,
                    )
                if overlaps:
                    combined = self.exactly_one(base, branches, overlaps, path)
            except SchemaError:
                if not self.lenient:
                    raise  # lenient: the branches as a union (anyOf), a superset of oneOf
        # anyOf, or oneOf with pairwise disjoint branches: a union is exact
        return self.b.alt(self.value(b, f"{path}/{key}/{i}", depth) for i, b in enumerate(combined))

    def exactly_one(self, base: dict, branches: list, overlaps: set[tuple[int, int]], path: str) -> list:
        """``oneOf`` branches that may overlap, as branches that exclude each other: branch i and
        not branch j, for every j that may overlap it (so their union is exact). Raises a
        SchemaError naming the branch whose negation cannot be expressed."""
        negations: dict[int, Any] = {}
        for i, j in sorted(overlaps):
            if j not in negations:
                negations[j] = self.negate(branches[j], f"{path}/oneOf/{j}")
                if negations[j] is None:
                    raise self.fail(
                        f"oneOf branches {i} and {j} may both match the same value, and branch {j} cannot "
                        "be negated to exclude it, so 'exactly one' cannot be enforced (pass lenient=True "
                        "to treat oneOf as anyOf)",
                        path,
                    )
        out: list[Any] = []
        extra = [base] if base and set(base) - ANNOTATIONS else []
        for i, branch in enumerate(branches):
            others = [negations[j] for (a, j) in sorted(overlaps) if a == i]
            if any(o is True for o in others):
                others = [o for o in others if o is not True]
            if any(o is False for o in others):
                continue  # another branch holds whenever this one does
            choices: list[list[Any]] = [[]]
            for negated in others:
                options = _alternatives(negated)
                choices = [[*c, o] for c in choices for o in options]
                if len(out) + len(choices) > MAX_ONEOF_CHOICES:
                    raise self.fail(
                        f"oneOf branch {i} may match the same value as others, and excluding them "
                        f"takes more than {MAX_ONEOF_CHOICES} alternatives, so 'exactly one' cannot be "
                        "enforced (pass lenient=True to treat oneOf as anyOf)",
                        path,
                    )
            out += [{"allOf": [*extra, branch, *choice]} for choice in choices]
        return out or [False]

    def flatten(self, schema: Any, path: str) -> Any:
        """A schema with top-level $ref and mergeable allOf resolved (for disjointness checks)."""
        schema = self.inline_refs(schema, path)
        if isinstance(schema, dict) and "allOf" in schema:
            parts = [{k: v for k, v in schema.items() if k != "allOf"}, *schema["allOf"]]
            merged = _merge_all([self.inline_refs(p, path) for p in parts])
            return merged if merged is not None else schema
        return schema

    def sub_dfa(self, schema: Any, path: str, depth: int) -> ByteDFA | None:
        """Compile a sub-schema on its own (for products of automata)."""
        sub = _Compiler(self.root, self.ws, self.max_depth, self.lenient, self.extra_properties)
        sub._ref_depth = dict(self._ref_depth)
        sub._spread = self._spread  # one budget for the whole compile
        fragment = sub.value(schema, path, depth)
        if fragment is None:
            return None
        try:
            return sub.b.build(fragment)
        except EmptyLanguageError:
            return None

    def apply_not(self, schema: dict, path: str) -> dict:
        """The schema without ``not``: the negation rewritten as a positive schema."""
        rest = {k: v for k, v in schema.items() if k != "not"}
        negation = self.negate(schema["not"], path)
        if negation is None:
            if self.lenient:
                return rest
            raise self.fail(
                "keyword 'not' can only be enforced for types, bounds, lengths and counts, "
                "'required', 'properties', and anyOf/allOf/not of those (pass lenient=True)",
                path,
            )
        return {"allOf": [rest, negation]} if set(rest) - ANNOTATIONS else negation

    def negate(self, schema: Any, path: str, refs: frozenset[str] = frozenset()) -> Any:
        """A schema matching exactly the values ``schema`` rejects (or a subset of them, only
        where noted), or None when we cannot express it. ``refs``: the ``$ref``s being negated
        (a cycle through them is not followed).

        A schema is the conjunction of its keywords, so its negation is the union of the
        keywords' negations, each limited to the types the keyword constrains, and of the
        values of other types than ``type`` allows."""
        schema = self.flatten(schema, path)
        if isinstance(schema, dict):
            self.check_shapes(schema, f"{path}/not")
        if schema is True or schema == {}:
            return False
        if schema is False:
            return True
        if not isinstance(schema, dict):
            return None
        keys = (set(schema) & KNOWN_KEYWORDS) - ANNOTATIONS
        if keys == {"not"}:
            return schema["not"]
        if "uniqueItems" in keys and schema["uniqueItems"] is not True:
            keys.discard("uniqueItems")  # uniqueItems false constrains nothing
        if "if" not in keys:
            keys -= {"then", "else"}  # ignored without if
        if "contains" not in keys:
            keys -= {"minContains", "maxContains"}
        declared = schema.get("type")
        types = (
            set(_TYPES) if declared is None else set(declared if isinstance(declared, list) else [declared])
        )
        if "number" in types:
            types.add("integer")
        branches: list[Any] = []
        others = set(_TYPES) - types
        if "integer" in types and "number" not in types:
            others.discard("number")
            branches.append({"type": "number", NOT_MULTIPLE_KEY: [1]})  # numbers with a fraction
        if others:
            branches.append({"type": sorted(others)})
        for key in sorted(keys - {"type", "then", "else", "minContains", "maxContains"}):
            negated = self.negate_keyword(key, schema, types, path, refs)
            if negated is None:
                return None
            if negated is not False:
                branches.append(negated)
        return {"anyOf": branches} if branches else False

    def negate_keyword(self, key: str, schema: dict, types: set[str], path: str, refs: frozenset[str]) -> Any:
        """The values of ``types`` (or any values, for keywords not tied to a type) that
        keyword ``key`` of ``schema`` rejects: a schema, False for none, None if not expressible."""
        value = schema[key]
        if key in _FAMILY or key in _VALUE_FAMILY:
            family = _FAMILY.get(key) or _VALUE_FAMILY[key]
            in_family = sorted(t for t in types if t in family)
            if not in_family:
                return False
            if key in _FAMILY:
                negated = _negate_keyword(key, value, self, path)[1]
            elif key == "pattern":
                negated = {NOT_PATTERN_KEY: [value]}
            elif key == "multipleOf":
                negated = {NOT_MULTIPLE_KEY: [value]}
            elif key == NOT_STRINGS_KEY:
                negated = {"enum": list(value)}
            elif key == NOT_NUMBERS_KEY:
                negated = {"enum": list(value)}
            elif key == NOT_PATTERN_KEY:
                negated = {"anyOf": [{"pattern": p} for p in value]}
            else:  # NOT_MULTIPLE_KEY
                negated = {"anyOf": [{"multipleOf": m} for m in value]}
            if negated is None or negated is False:
                return negated
            if isinstance(negated, dict) and "type" not in negated:
                return {"type": in_family, **negated}
            return {"allOf": [{"type": in_family}, negated]}
        if key == "contains":
            low, high = schema.get("minContains", 1), schema.get("maxContains")
            options: list[Any] = []
            if _is_int(low) and low >= 1:  # fewer matches than minContains
                options.append({"type": "array", "contains": value, "minContains": 0, "maxContains": low - 1})
            if _is_int(high):  # more than maxContains
                options.append({"type": "array", "contains": value, "minContains": high + 1})
            return {"anyOf": options} if options else False
        if key == "items":
            if isinstance(value, list) or schema.get("prefixItems"):
                return None  # positions: not expressible here
            other = self.negate(value, path, refs)
            return None if other is None else other and {"type": "array", "contains": other}
        if key in ("enum", "const"):
            values = [value] if key == "const" else value
            if not isinstance(values, list):
                return None
            return self.negate_values(values, path)
        if key == "not":
            return value
        if key in ("anyOf", "allOf", "oneOf"):
            if not isinstance(value, list) or not value:
                return None
            parts = [self.negate(x, path, refs) for x in value]
            if any(p is None for p in parts):
                return None
            if key == "anyOf":
                return {"allOf": parts}
            if key == "allOf":
                return {"anyOf": parts}
            # not exactly one: none of them, or two at once
            n = len(value)
            pairs = [{"allOf": [value[i], value[j]]} for i in range(n) for j in range(i + 1, n)]
            return {"anyOf": [{"allOf": parts}, *pairs]}
        if key == "$ref":
            ref = value
            if not isinstance(ref, str) or ref in refs:
                return None
            return self.negate(self.resolve(ref, path), path, refs | {ref})
        if key == "if":
            condition, then, otherwise = value, schema.get("then", True), schema.get("else", True)
            not_condition, not_then, not_else = (
                self.negate(x, path, refs) for x in (condition, then, otherwise)
            )
            options = []
            if not_then is None or not_else is None or (not_condition is None and not_else is not False):
                return None
            if not_then is not False:
                options.append({"allOf": [condition, not_then]})
            if not_else is not False:
                options.append({"allOf": [not_condition, not_else]})
            return {"anyOf": options} if options else False
        if key in _DEPENDENCY_KEYS:
            if not isinstance(value, dict):
                return None
            options = []
            for name, need in value.items():
                if isinstance(need, list):
                    options += [
                        {"type": "object", "required": [name], "properties": {other: False}} for other in need
                    ]
                else:
                    negated = self.negate(need, path, refs)
                    if negated is None:
                        return None
                    if negated is not False:
                        options.append({"allOf": [{"type": "object", "required": [name]}, negated]})
            return {"anyOf": options} if options else False
        return None

    def negate_values(self, values: list, path: str) -> Any:
        """Every JSON value except ``values`` (numbers written without an exponent: a subset)."""
        branches: list[Any] = []
        if not any(v is None for v in values):
            branches.append({"type": "null"})
        booleans = [b for b in (True, False) if not any(v is b for v in values)]
        if booleans:
            branches.append({"enum": booleans})
        numbers = [v for v in values if _is_number(v)]
        branches.append({"type": "number", NOT_NUMBERS_KEY: numbers} if numbers else {"type": "number"})
        strings = [v for v in values if isinstance(v, str)]
        branches.append({"type": "string", NOT_STRINGS_KEY: strings} if strings else {"type": "string"})
        for kind, negate_one in (("array", self.not_array), ("object", self.not_object)):
            listed = [v for v in values if isinstance(v, list if kind == "array" else dict)]
            if not listed:
                branches.append({"type": kind})
                continue
            parts = [negate_one(v, path) for v in listed]
            branches.append(parts[0] if len(parts) == 1 else {"allOf": parts})
        return {"anyOf": branches}

    def not_array(self, value: list, path: str) -> dict:
        """Arrays other than ``value``: another length, or another item somewhere."""
        n = len(value)
        options: list[Any] = [{"minItems": n + 1}]
        if n:
            options.append({"maxItems": n - 1})
        for i, item in enumerate(value):
            other = self.negate_values([item], path)
            options.append({"minItems": i + 1, "prefixItems": [*([True] * i), other]})
        return {"type": "array", "anyOf": options}

    def not_object(self, value: dict, path: str) -> dict:
        """Objects other than ``value``: a key missing, a key with another value, or a key more."""
        options: list[Any] = [{"required": list(value), "minProperties": len(value) + 1}]
        for name, item in value.items():
            options.append({"properties": {name: False}})
            options.append({"required": [name], "properties": {name: self.negate_values([item], path)}})
        return {"type": "object", "anyOf": options}

    # -- enum / const -------------------------------------------------------------------------

    def enum(self, schema: dict, path: str, depth: int) -> Fragment | None:
        values = [schema["const"]] if "const" in schema else schema["enum"]
        if not isinstance(values, list):
            raise self.fail("enum must be an array", path)
        rest = {k: v for k, v in schema.items() if k not in ("enum", "const") and k not in ANNOTATIONS}
        if "enum" in schema and "const" in schema:
            values = [v for v in values if json_equal(v, schema["const"])]
        return self.listed(values, rest, path, depth)

    def listed(self, values: list, rest: Any, path: str, depth: int) -> Fragment | None:
        """The ``values`` (of an enum or const) that satisfy ``rest``, each exactly.

        Each value is checked by :class:`~outlines_gguf.json_schema.validate.Validator`, so the result
        is exact whatever keywords ``rest`` holds; where the validator cannot decide (a keyword
        it does not know), by the automaton of ``rest`` (a valid subset)."""
        fragments = []
        check: ByteDFA | None = None
        validator = Validator(self.root, self.marker_checks())
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

    def marker_checks(self) -> dict[str, Callable[[Any, Any], bool]]:
        """How the validator reads the compiler's own keywords (see :meth:`negate`)."""
        numeric = _is_number
        return {
            NOT_STRINGS_KEY: lambda excluded, v: not isinstance(v, str) or v not in excluded,
            NOT_PATTERN_KEY: lambda found, v: not isinstance(v, str)
            or not any(pattern_matches(p, v) for p in found),
            NOT_NUMBERS_KEY: lambda listed, v: not numeric(v) or not any(json_equal(v, x) for x in listed),
            NOT_MULTIPLE_KEY: lambda steps, v: not numeric(v)
            or all((exact_value(v) / exact_value(m)).denominator != 1 for m in steps),
        }

    def literal_value(self, v: Any) -> Fragment:
        """One JSON value, exactly, with the structural whitespace allowed between tokens."""
        if isinstance(v, dict):
            items = [
                self.b.seq([self.lit(json.dumps(k, ensure_ascii=False)), self.colon(), self.literal_value(x)])
                for k, x in v.items()
            ]
            return self.b.seq([self.open("{"), *_interleave(items, self.comma), self.close("}")])  # type: ignore[return-value]
        if isinstance(v, list):
            items = [self.literal_value(x) for x in v]
            return self.b.seq([self.open("["), *_interleave(items, self.comma), self.close("]")])  # type: ignore[return-value]
        if isinstance(v, float) and v == int(v) and abs(v) < 1e16:
            return self.b.alt([self.lit(str(int(v))), self.lit(json.dumps(v))])  # type: ignore[return-value]
        return self.lit(json.dumps(v, ensure_ascii=False))

    # -- leaves --------------------------------------------------------------------------------

    def number(self, schema: dict, path: str, integer: bool) -> Fragment | None:
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
                raise self.fail(f"{name} must be a number", path)
        step = schema.get("multipleOf")
        filters: list[Callable[[], ByteDFA | None]] = []  # conditions on the value (plain numbers)
        if step is not None and not _is_int(step):
            filters.append(lambda step=step: multiple_of_dfa(step))  # a decimal step (0.01): by value
            step = None
        for other in schema.get(NOT_MULTIPLE_KEY, []):
            filters.append(lambda other=other: not_multiple_of_dfa(other))
        if NOT_NUMBERS_KEY in schema:
            filters.append(lambda: numbers_except_dfa(schema[NOT_NUMBERS_KEY]))
        base = self.number_base(lo, hi, lo_x, hi_x, step, path, integer)
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
        self,
        lo: float | None,
        hi: float | None,
        lo_x: bool,
        hi_x: bool,
        step: int | float | None,
        path: str,
        integer: bool,
    ) -> Fragment | None:
        """Numbers within the bounds (integers if ``integer``), multiples of an integer ``step``."""
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
        # unbounded numbers are shared fragments; a schema's own bounds are not kept past its compile
        return shared_regex(self.b, pattern) if pattern in _GENERIC_NUMBERS else self.b.regex(pattern)

    def multiple_of(
        self, step: int, lo: int | None, hi: int | None, path: str, integer: bool
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

    def string(self, schema: dict, path: str) -> Fragment | None:
        body = self.string_body(schema, path)
        if body is None:
            return None
        if isinstance(body, ByteDFA):
            return self.b.seq([self.lit('"'), self.b.dfa(body), self.lit('"')])
        return body

    def string_body(self, schema: dict, path: str) -> ByteDFA | Fragment | None:
        """The content automaton of a string schema (between the quotes), or, for a string
        with no pattern, format or length, the whole string as a fragment; None if none fits."""
        min_len = schema.get("minLength", 0)
        max_len = schema.get("maxLength")
        if isinstance(max_len, int) and max_len > MAX_LENGTH_CAP:
            max_len = max(MAX_LENGTH_CAP, int(min_len) if _is_int(min_len) else 0)
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
        for label, make in self.string_parts(pattern, fmt_regex, 0, None, path):
            helper = NFABuilder(label)
            part = helper.build(make(helper))
            shape = part if shape is None else intersect(shape, part)
            if shape is None:
                return None
        if NOT_STRINGS_KEY in negations:
            shape = _strings_except(schema[NOT_STRINGS_KEY], shape)
        if NOT_PATTERN_KEY in negations:
            shape = _strings_not_matching(schema[NOT_PATTERN_KEY], shape, path)
        if shape is None:
            return None
        longest = _longest(shape)
        if not min_len and (max_len is None or (longest is not None and longest <= max_len)):
            return shape  # no match is longer than max_len bytes, so none has more characters
        # counted characters laid out in layers over the pattern automaton; an unbounded
        # pattern's maxLength is capped where the layers would not fit (a valid subset)
        return layered_body(int(min_len), None if max_len is None else int(max_len), shape, fit=True)

    def string_parts(
        self, pattern: str | None, fmt_regex: str | None, min_len: int, max_len: int | None, path: str
    ) -> Iterable[tuple[str, Callable[[NFABuilder], Fragment | None]]]:
        if min_len or max_len is not None:
            yield "string length", lambda b: b.repeat(lambda: any_string_char(b), min_len, max_len)
        if pattern is not None:
            if not isinstance(pattern, str):
                raise self.fail("pattern must be a string", path)
            searched = _searched(pattern)
            yield f"pattern {pattern!r}", lambda b: b.regex(searched, lambda r: json_chars(b, r))
        if fmt_regex is not None:
            yield "format", lambda b: b.regex(fmt_regex, lambda r: json_chars(b, r))

    # -- arrays and objects ---------------------------------------------------------------------

    def array(self, schema: dict, path: str, depth: int) -> Fragment | None:
        self._nest += 1
        try:
            return self._array(schema, path, depth)
        finally:
            self._nest -= 1

    def _array(self, schema: dict, path: str, depth: int) -> Fragment | None:
        if depth <= 0 and not schema:
            return None
        if "contains" in schema:
            return self.contains_array(schema, path, depth)
        domain = _unique_domain(schema) if schema.get("uniqueItems") is True else None
        if domain is not None:
            return self.unique_array(domain, schema)
        prefix = schema.get("prefixItems")
        items = schema.get("items", True)
        if isinstance(items, list):  # draft 4: items as a tuple
            prefix, items = items, schema.get("additionalItems", True)
        prefix = prefix or []
        min_items = int(schema.get("minItems", 0))
        max_items = schema.get("maxItems")
        next_depth = depth - 1 if not schema or items is True else depth

        def item(i: int) -> Fragment | None:
            if i < len(prefix):
                return self.value(prefix[i], f"{path}/prefixItems/{i}", next_depth)
            return self.value(items, f"{path}/items", next_depth)

        # prefix positions one by one, then the repeated items
        n_prefix = len(prefix)
        top = None if max_items is None else int(max_items)
        runs = self.calls is not None  # split mode: long counts are chains of runs, not states
        if top is not None and top > MAX_ITEMS_CAP and not runs:
            top = max(MAX_ITEMS_CAP, min_items)
        if top is not None and top < min_items:
            return None
        options: list[Fragment | None] = []
        if min_items == 0:
            options.append(self.b.seq([self.open("["), self.close("]")]))
        # sequences of length k >= 1
        first_len = max(1, min_items)

        def tail(start: int) -> Fragment | None:
            """Items start.. with a comma before each, obeying the count limits."""
            parts: list[Fragment | None] = []
            for i in range(start, n_prefix):
                if top is not None and i >= top:
                    break
                required = i < min_items
                piece = self.b.seq([self.comma(), item(i)])
                if required:
                    parts.append(piece)
                else:
                    # optional from here on: the rest is nested inside
                    rest = tail(i + 1)
                    return self.b.seq(
                        [*parts, self.b.optional(self.b.seq([piece, rest]) if rest is not None else piece)]
                    )
            done = max(start, n_prefix)
            if top is not None and done >= top:
                return self.b.seq(parts) if parts else self.b.empty()
            extra_min = max(0, min_items - done)
            extra_max = None if top is None else top - done
            if items is False:
                if extra_min:
                    return None
                return self.b.seq(parts) if parts else self.b.empty()
            if runs and max(extra_min, extra_max or 0) > MAX_ITEMS_CAP:
                run = {ITEMS_RUN_KEY: [extra_min, extra_max], "items": items}
                return self.b.seq([*parts, self.call_maker(run, f"{path}/items")()])
            repeated = self.b.repeat(lambda: self.b.seq([self.comma(), item(done)]), extra_min, extra_max)
            return self.b.seq([*parts, repeated])

        if top is None or top >= 1:
            first = item(0)
            if first is not None:
                rest = tail(1)
                nonempty = (
                    self.b.seq([self.open("["), first, rest, self.close("]")]) if rest is not None else None
                )
                if nonempty is not None and first_len >= 1:
                    options.append(nonempty)
        return self.b.alt(options)

    def contains_array(self, schema: dict, path: str, depth: int) -> Fragment | None:
        """An array with ``contains``: each item matches the ``contains`` schema or its negation,
        and the automaton counts items and matches (minContains/maxContains, minItems/maxItems).
        Refused (a SchemaError naming the keyword) with ``prefixItems``, ``uniqueItems``, or a
        ``contains`` schema that cannot be negated."""
        where = f"{path}/contains"
        wanted = schema["contains"]
        unwanted = self.negate(wanted, where)
        refusal = None
        if schema.get("prefixItems") or isinstance(schema.get("items"), list):
            refusal = "keyword 'contains' beside prefixItems (an items array) cannot be enforced"
        elif schema.get("uniqueItems") is True:
            refusal = "keyword 'contains' beside uniqueItems cannot be enforced"
        elif unwanted is None:
            refusal = "keyword 'contains': its schema cannot be negated (for the other items)"
        if refusal is not None:
            if not self.lenient:
                raise self.fail(f"{refusal} (pass lenient=True to ignore it)", where)
            return self._array({k: v for k, v in schema.items() if k not in _CONTAINS_KEYS}, path, depth)
        items = schema.get("items", True)
        low, high = int(schema.get("minContains", 1)), schema.get("maxContains")
        min_items, max_items = int(schema.get("minItems", 0)), schema.get("maxItems")
        if max_items is not None:
            max_items = max(min(int(max_items), MAX_ITEMS_CAP), min_items)
        if (high is not None and high < low) or (max_items is not None and max_items < max(low, min_items)):
            return None
        count_cap = max(1, min_items, max_items or 0)  # items written, counted up to here
        match_cap = low if high is None else int(high) + 1  # matches: high + 1 is dead
        choices = [(1, {"allOf": [items, wanted]}), (0, {"allOf": [items, unwanted]})]
        b = self.b
        entry = self.open("[")
        end = b.nfa.state()
        state: dict[tuple[int, int], int] = {(0, 0): entry[1]}
        for k in range(count_cap + 1):
            for c in range(match_cap + 1):
                source = state.get((k, c))
                if source is None:
                    continue
                if k >= min_items and c >= low:
                    close = self.close("]")
                    b.nfa.eps[source].append(close[0])
                    b.nfa.eps[close[1]].append(end)
                if max_items is not None and k >= max_items:
                    continue
                for matched, item_schema in choices:
                    nk, nc = min(k + 1, count_cap), min(c + matched, match_cap)
                    if high is not None and nc > high:
                        continue
                    item = self.value(item_schema, f"{path}/items", depth)
                    if item is None:
                        continue
                    piece = b.seq([self.comma(), item]) if k else item
                    if (nk, nc) not in state:
                        state[(nk, nc)] = b.nfa.state()
                    b.nfa.eps[source].append(piece[0])  # type: ignore[index]
                    b.nfa.eps[piece[1]].append(state[(nk, nc)])  # type: ignore[index]
        return entry[0], end

    def items_run(self, schema: dict, path: str, depth: int) -> Fragment | None:
        """``, item`` min..max times (split mode): up to ``ITEMS_RUN`` of them, or exactly that
        many and then a call to the run of the rest, so that ``maxItems: 1000`` is a chain of
        small nodes, compiled as generation reaches them, the count kept by the return stack."""
        low, high = schema[ITEMS_RUN_KEY]
        items = schema["items"]
        self._nest += 1  # the items are nested values
        try:

            def piece() -> Fragment | None:
                return self.b.seq([self.comma(), self.value(items, path, depth)])

            if (high is not None and high <= ITEMS_RUN) or (high is None and low <= ITEMS_RUN):
                return self.b.repeat(piece, low, high)
            rest = [max(low - ITEMS_RUN, 0), None if high is None else high - ITEMS_RUN]
            following = self.call_maker({**schema, ITEMS_RUN_KEY: rest}, path)
            full = self.b.seq([self.b.repeat(piece, ITEMS_RUN, ITEMS_RUN), following()])
            return self.b.alt([self.b.repeat(piece, low, ITEMS_RUN - 1) if low < ITEMS_RUN else None, full])
        finally:
            self._nest -= 1

    def object(self, schema: dict, path: str, depth: int) -> Fragment | None:
        self._nest += 1
        try:
            return self._object(schema, path, depth)
        finally:
            self._nest -= 1

    def unique_array(self, domain: list, schema: dict) -> Fragment | None:
        """An array of distinct items from a few values: one state per set of values used."""
        b = self.b
        low = int(schema.get("minItems", 0))
        top = schema.get("maxItems")
        high = len(domain) if top is None else min(int(top), len(domain))
        entry = self.open("[")
        end = b.nfa.state()
        state = {0: entry[1]}
        for used in range(1 << len(domain)):  # ascending: a set's subsets come first
            if used not in state:
                continue
            count = used.bit_count()
            if low <= count <= high:
                close = self.close("]")
                b.nfa.eps[state[used]].append(close[0])
                b.nfa.eps[close[1]].append(end)
            if count >= high:
                continue
            for i, value in enumerate(domain):
                if used >> i & 1:
                    continue
                nxt = used | 1 << i
                if nxt not in state:
                    state[nxt] = b.nfa.state()
                item = self.literal_value(value)
                parts = [self.comma(), item] if count else [item]
                piece = b.seq(parts)
                b.nfa.eps[state[used]].append(piece[0])  # type: ignore[index]
                b.nfa.eps[piece[1]].append(state[nxt])  # type: ignore[index]
        return entry[0], end

    def _object(self, schema: dict, path: str, depth: int) -> Fragment | None:
        if depth <= 0 and not schema:
            return None
        props = schema.get("properties", {}) or {}
        if not isinstance(props, dict):
            raise self.fail("properties must be an object", path)
        required = schema.get("required", [])
        if not isinstance(required, list):
            raise self.fail("required must be an array", path)
        for name in required:
            if name not in props:
                props = {**props, name: True}
        names = self.key_names(schema.get("propertyNames", True), f"{path}/propertyNames")
        if names is not None:  # keys propertyNames refuses cannot be written, declared or not
            allowed = {n for n in props if names.matches(json.dumps(n, ensure_ascii=False).encode())}
            if any(n not in allowed for n in required):
                return None
            props = {n: s for n, s in props.items() if n in allowed}
        additional = schema.get(
            "additionalProperties", True if self.extra_properties is None else self.extra_properties
        )
        if "additionalProperties" in schema:
            additional = schema["additionalProperties"]
        pattern_props = schema.get("patternProperties", {})
        min_p = int(schema.get("minProperties", 0))
        max_p = schema.get("maxProperties")
        if max_p is not None and max_p > MAX_ITEMS_CAP:
            # counted members are states: cap like maxItems (a valid subset)
            max_p = min(int(max_p), max(MAX_ITEMS_CAP, min_p, len(props)))
        next_depth = depth - 1 if not schema else depth

        members: list[tuple[Callable[[], Fragment | None], bool]] = []
        for name, sub in props.items():

            def make(name: str = name, sub: Any = sub) -> Fragment | None:
                v = self.value(sub, f"{path}/properties/{_pointer(name)}", next_depth)
                if v is None:
                    return None
                return self.b.seq([self.lit(json.dumps(name, ensure_ascii=False)), self.colon(), v])

            members.append((make, name in required))

        part = schema.get(CHUNK_KEY)
        if part is not None:  # a run of another object's members (see chunked_object)
            link = schema.get(EXTRA_KEY)
            extra = None if link is None else self.call_maker(link, f"{path}/additionalProperties")
            return self.object_body(members, extra, 1 if part == "first" else 2, None, part=part)
        if EXTRA_KEY in schema:  # one extra member of another object, as a node of its own
            self._nest += 1  # its value is nested
            try:
                member = self.extra_member(
                    props, additional, pattern_props, path, next_depth, schema.get("propertyNames", True)
                )
                return None if member is None else member()
            finally:
                self._nest -= 1
        names_schema = schema.get("propertyNames", True)
        extra = self.extra_member(props, additional, pattern_props, path, next_depth, names_schema)
        link = None
        if extra is not None and self.calls is not None:
            link = {
                EXTRA_KEY: True,
                "type": "object",
                "properties": props,
                "additionalProperties": additional,
                "patternProperties": pattern_props,
                "propertyNames": schema.get("propertyNames", True),
            }
            extra = self.call_maker(link, f"{path}/additionalProperties")
        if self.calls is not None and len(members) > MEMBER_CHUNK and min_p == 0 and max_p is None:
            return self.chunked_object(props, required, extra, link, path)
        if self.calls is not None and 1 < len(members) <= ANY_ORDER_MAX and min_p == 0 and max_p is None:
            return self.any_order_body(members, extra)
        return self.object_body(members, extra, min_p, None if max_p is None else int(max_p))

    def any_order_body(
        self,
        members: list[tuple[Callable[[], Fragment | None], bool]],
        extra: Callable[[], Fragment | None] | None,
    ) -> Fragment | None:
        """``{`` the declared members in any order (each at most once), extra members anywhere
        between them, ``}``: one state per set of members written (2^n for n members, so only
        for small objects, see :data:`ANY_ORDER_MAX`). Real documents do not always list keys in
        the order of ``properties``."""
        b = self.b
        required = sum(1 << i for i, (_, must) in enumerate(members) if must)
        entry = self.open("{")
        end = b.nfa.state()
        state: dict[int, int] = {0: entry[1]}  # set of members written -> NFA state
        extras_only = b.nfa.state() if extra is not None else None  # only extra members so far

        def link(source: int, fragment: Fragment | None, target: int, comma: bool) -> None:
            if fragment is None:
                return
            if comma:
                sep = self.comma()
                b.nfa.eps[source].append(sep[0])
                b.nfa.eps[sep[1]].append(fragment[0])
            else:
                b.nfa.eps[source].append(fragment[0])
            b.nfa.eps[fragment[1]].append(target)

        def close(source: int) -> None:
            piece = self.close("}")
            b.nfa.eps[source].append(piece[0])
            b.nfa.eps[piece[1]].append(end)

        if extras_only is not None:
            link(state[0], extra(), extras_only, comma=False)  # type: ignore[misc]
            link(extras_only, extra(), extras_only, comma=True)  # type: ignore[misc]
            if not required:
                close(extras_only)
        called, self._leaves_called = self._leaves_called, True  # each value once, as a call
        try:
            self.any_order_states(members, extra, state, extras_only, required, link, close)
        finally:
            self._leaves_called = called
        return entry[0], end

    def any_order_states(
        self,
        members: list[tuple[Callable[[], Fragment | None], bool]],
        extra: Callable[[], Fragment | None] | None,
        state: dict[int, int],
        extras_only: int | None,
        required: int,
        link: Callable[[int, Fragment | None, int, bool], None],
        close: Callable[[int], None],
    ) -> None:
        """The member edges of :meth:`any_order_body`, from each set of members written."""
        b = self.b
        n = len(members)
        for written in range(1 << n):  # ascending: a set comes after its subsets
            source = state.get(written)
            if source is None:
                continue
            if written and extra is not None:
                link(source, extra(), source, comma=True)
            if written & required == required:
                close(source)
            for i, (make, _) in enumerate(members):
                if written >> i & 1:
                    continue
                if written | 1 << i not in state:
                    state[written | 1 << i] = b.nfa.state()
                target = state[written | 1 << i]
                member = make()
                if member is None:
                    continue
                if written:
                    link(source, member, target, comma=True)
                    continue
                link(source, member, target, comma=False)  # the first thing written
                if extras_only is not None:
                    sep = self.comma()
                    b.nfa.eps[extras_only].append(sep[0])
                    b.nfa.eps[sep[1]].append(member[0])

    def call_maker(self, schema: Any, path: str) -> Callable[[], Fragment | None]:
        """A function writing a call to the node for ``schema`` (registered once, now)."""
        assert self.calls is not None
        marker = call_marker(self.calls(schema, path))
        return lambda: self.b.literal(marker)

    def extra_loops(
        self, nothing: int | None, something: int | None, extra: Callable[[], Fragment | None] | None
    ) -> None:
        """Extra members between runs: the first one written moves ``nothing`` to ``something``."""
        if extra is None or something is None:
            return
        b = self.b
        if nothing is not None:
            member = extra()
            if member is not None:
                b.nfa.eps[nothing].append(member[0])
                b.nfa.eps[member[1]].append(something)
        comma, member = self.comma(), extra()
        if member is not None:
            b.nfa.eps[something].append(comma[0])
            b.nfa.eps[comma[1]].append(member[0])
            b.nfa.eps[member[1]].append(something)

    def chunked_object(
        self,
        props: dict,
        required: list,
        extra: Callable[[], Fragment | None] | None,
        link: dict | None,
        path: str,
    ) -> Fragment | None:
        """An object with many properties, in split mode: its members in runs of
        :data:`MEMBER_CHUNK`, each run a call. Optional members written in order make the keys
        that may come next a different set after every member, so one automaton for all of
        them grows with the square of their number; runs keep that square small.

        Each run is two nodes: ``first`` (nothing written before it: no comma before its
        first member) and ``after`` (a comma before each member); both write at least one
        member, and a run without required members may be skipped.
        """
        b = self.b
        names = list(props)
        entry = self.open("{")
        nothing: int | None = entry[1]  # no member written yet
        something: int | None = b.nfa.state()  # at least one member written (dead until reached)
        for lo in range(0, len(names), MEMBER_CHUNK):
            run = names[lo : lo + MEMBER_CHUNK]
            must = [n for n in run if n in required]
            base = {
                "type": "object",
                "properties": {n: props[n] for n in run},
                "required": must,
                "additionalProperties": False,
            }
            if link is not None:
                base[EXTRA_KEY] = link  # extra members may come between the run's members too
            self.extra_loops(nothing, something, extra)
            next_nothing = b.nfa.state() if nothing is not None and not must else None
            next_something = b.nfa.state()
            for source, part in ((nothing, "first"), (something, "after")):
                if source is None:
                    continue
                if not must:
                    b.nfa.eps[source].append(next_something if part == "after" else next_nothing)  # type: ignore[arg-type]
                marker = self.calls({**base, CHUNK_KEY: part}, f"{path}/properties/{_pointer(run[0])}..")  # type: ignore[misc]
                call = b.literal(call_marker(marker))
                b.nfa.eps[source].append(call[0])
                b.nfa.eps[call[1]].append(next_something)
            nothing, something = next_nothing, next_something
        self.extra_loops(nothing, something, extra)
        end = b.nfa.state()
        for source in (nothing, something):
            if source is not None:
                close = self.close("}")
                b.nfa.eps[source].append(close[0])
                b.nfa.eps[close[1]].append(end)
        return entry[0], end

    def key_names(self, names: Any, path: str) -> ByteDFA | None:
        """The keys ``propertyNames`` allows, as the automaton of their JSON strings, or None
        when it allows every key."""
        if names is True or names == {}:
            return None
        helper = NFABuilder("propertyNames")
        sub = _Compiler(self.root, self.ws, self.max_depth, self.lenient, None, builder=helper)
        fragment = sub.value({"allOf": [names, {"type": "string"}]}, path, self.max_depth)
        try:
            return helper.build(fragment)
        except EmptyLanguageError:
            return _NO_KEY

    def restrict_key(self, key: Fragment | None, names: ByteDFA | None) -> Fragment | None:
        """``key`` limited to what ``propertyNames`` allows."""
        if key is None or names is None:
            return key
        try:
            both = intersect(self.b.build(key), names)
        except EmptyLanguageError:
            return None
        return None if both is None else self.b.dfa(both)

    def extra_member(
        self, props: dict, additional: Any, pattern_props: dict, path: str, depth: int, names: Any = True
    ) -> Callable[[], Fragment | None] | None:
        """A function building one additional "key": value member, or None if none is allowed.
        ``names``: the object's propertyNames schema."""
        key_names = self.key_names(names, f"{path}/propertyNames")
        if pattern_props:
            patterns = list(pattern_props.items())

            def make_pattern() -> Fragment | None:
                options = []
                for pat, sub in patterns:
                    key = self.string({"pattern": pat}, f"{path}/patternProperties")
                    if key is None:
                        continue
                    key = self.restrict_key(self.key_excluding_dfa(key, props), key_names)
                    v = self.value(sub, f"{path}/patternProperties/{_pointer(pat)}", depth)
                    if key is not None and v is not None:
                        options.append(self.b.seq([key, self.colon(), v]))
                if additional is not False:
                    # a key that no pattern matches and no property declares: additionalProperties
                    other = self.key_outside([p for p, _ in patterns], props, path)
                    other = self.restrict_key(other, key_names)
                    if self.calls is None and (additional is True or additional == {}):
                        v = self.any_value(min(depth, EXTRA_VALUE_DEPTH if props else FREE_FORM_DEPTH))
                    else:
                        v = self.value(additional, f"{path}/additionalProperties", depth)
                    if other is not None and v is not None:
                        options.append(self.b.seq([other, self.colon(), v]))
                return self.b.alt(options)

            if len(patterns) > 1 and not self.lenient:
                self.check_disjoint_patterns([p for p, _ in patterns], path)
            return make_pattern
        if additional is False:
            return None

        def make_additional() -> Fragment | None:
            if self.calls is not None:
                v = self.value(additional, f"{path}/additionalProperties", depth)
            elif additional is True or additional == {}:
                # an object without declared properties is free-form: its values nest like {}
                limit = EXTRA_VALUE_DEPTH if props else FREE_FORM_DEPTH
                v = self.any_value(min(depth, limit))
            else:
                v = self.value(additional, f"{path}/additionalProperties", depth)
            if v is None:
                return None
            return self.b.seq([self.restrict_key(self.key_except(list(props)), key_names), self.colon(), v])

        return make_additional

    def check_disjoint_patterns(self, patterns: list[str], path: str) -> None:
        dfas = []
        for p in patterns:
            helper = NFABuilder("patternProperties")
            dfas.append(helper.build(helper.regex(_searched(p))))
        for i in range(len(dfas)):
            for j in range(i + 1, len(dfas)):
                both = intersect(dfas[i], dfas[j])
                if both is not None:
                    raise self.fail(
                        f"patternProperties {patterns[i]!r} and {patterns[j]!r} overlap: "
                        "cannot be enforced (pass lenient=True)",
                        path,
                    )

    def key_outside(self, patterns: list[str], props: dict, path: str) -> Fragment | None:
        """A JSON string key that matches none of ``patterns`` (searched, as JSON Schema says)
        and is none of the declared names: the keys ``additionalProperties`` governs."""
        helper = NFABuilder("patternProperties")
        sub = _Compiler(self.root, self.ws, self.max_depth, self.lenient, None, builder=helper)
        taken = [sub.string({"pattern": p}, f"{path}/patternProperties") for p in patterns]
        taken += [helper.literal(json.dumps(n, ensure_ascii=False)) for n in props]
        try:
            excluded = helper.build(helper.alt(taken))
        except EmptyLanguageError:
            excluded = None
        anykey = NFABuilder("key")  # written without escapes, so a declared name cannot hide in one
        plain = _complement(_RAW_FORBIDDEN)
        quote = anykey.literal('"')
        body = anykey.repeat(lambda: anykey.chars(plain), 0, None)
        every = anykey.build(anykey.seq([quote, body, anykey.literal('"')]))
        result = every if excluded is None else difference(every, excluded)
        return None if result is None else self.b.dfa(result)

    def key_excluding_dfa(self, key: Fragment, props: dict) -> Fragment | None:
        if not props:
            return key
        # keys matching a pattern must not also be declared properties: subtract them
        helper = NFABuilder("key")
        key_dfa = None
        try:
            key_dfa = self.b.build(key)  # determinize the pattern key alone
        except EmptyLanguageError:
            return None
        names = helper.build(helper.alt(helper.literal(json.dumps(n, ensure_ascii=False)) for n in props))
        result = difference(key_dfa, names)
        return None if result is None else self.b.dfa(result)

    def key_except(self, names: list[str]) -> Fragment:
        """A JSON string key (no escapes) that is none of ``names``."""
        plain = _complement(_RAW_FORBIDDEN)
        trie: dict = {}
        for name in names:
            node = trie
            for ch in name:
                node = node.setdefault(ch, {})
            node[None] = True
        b = self.b

        def build(node: dict) -> Fragment:
            options: list[Fragment | None] = []
            if None not in node:
                options.append(b.literal('"'))
            children = [c for c in node if c is not None]
            others = _intersect_ranges(plain, _complement(_normalize((ord(c), ord(c)) for c in children)))
            if others:
                options.append(
                    b.seq([b.chars(others), b.repeat(lambda: b.chars(plain), 0, None), b.literal('"')])
                )
            for c in children:
                if ord(c) in dict(_RAW_FORBIDDEN) or c in '"\\' or ord(c) < 0x20:
                    continue
                options.append(b.seq([b.literal(c), build(node[c])]))
            return b.alt(options)  # type: ignore[return-value]

        return b.seq([b.literal('"'), build(trie)])  # type: ignore[return-value]

    def object_body(
        self,
        members: list[tuple[Callable[[], Fragment | None], bool]],
        extra: Callable[[], Fragment | None] | None,
        min_p: int,
        max_p: int | None,
        part: str | None = None,
    ) -> Fragment | None:
        """``{`` members in order (optional ones may be skipped), extras after, ``}``.

        The NFA tracks how many members were written, capped where counts stop
        mattering, so commas go between members and min/maxProperties hold.
        """
        b = self.b
        cap = max(1, min_p, max_p if max_p is not None else 0)
        # ``part``: a run of members inside another object (no braces; "after": a member was
        # written before, so a comma comes first)
        entry = self.open("{") if part is None else self.b.empty()
        level: dict[int, int] = {1 if part == "after" else 0: entry[1]}

        def member_edge(
            source: int,
            c: int,
            make: Callable[[], Fragment | None],
            target: Callable[[int], int],
            shared: dict[int, Fragment | None],
        ) -> None:
            """From count ``c``: [comma] member -> count c+1. One member fragment serves every
            count that leads to the same next count (they continue alike)."""
            if max_p is not None and c >= max_p:
                return
            key = min(c + 1, cap)
            if key not in shared:
                shared[key] = make()
                if shared[key] is not None:
                    b.nfa.eps[shared[key][1]].append(target(key))  # type: ignore[index]
            member = shared[key]
            if member is None:
                return
            if c > 0:
                comma = self.comma()
                b.nfa.eps[source].append(comma[0])
                b.nfa.eps[comma[1]].append(member[0])
            else:
                b.nfa.eps[source].append(member[0])

        def states() -> tuple[dict[int, int], Callable[[int], int]]:
            nxt: dict[int, int] = {}

            def target(c: int) -> int:
                if c not in nxt:
                    nxt[c] = b.nfa.state()
                return nxt[c]

            return nxt, target

        def with_extras(level: dict[int, int], extra: Callable[[], Fragment | None]) -> dict[int, int]:
            """The same position, after any number of extra members."""
            nxt, target = states()
            for c, s in level.items():
                b.nfa.eps[s].append(target(c))
            shared: dict[int, Fragment | None] = {}
            c = min(nxt)
            while c <= cap:  # ascending, so counts created on the way are handled too
                if c in nxt:
                    member_edge(nxt[c], c, extra, target, shared)
                c += 1
            return nxt

        # In split mode an extra member is one call, so extras may come between declared members
        # too (as they do in real documents); inline, only after them (each copy would hold the
        # automaton of every key that is not declared).
        interleave = extra is not None and self.calls is not None
        for make, is_required in members:
            if interleave:
                level = with_extras(level, extra)  # type: ignore[arg-type]
            nxt, target = states()
            shared: dict[int, Fragment | None] = {}
            for c, s in level.items():
                if not is_required:
                    b.nfa.eps[s].append(target(c))
                member_edge(s, c, make, target, shared)
            level = nxt
            if not level:
                return None
        if extra is not None:
            level = with_extras(level, extra)
        end = b.nfa.state()
        closing = False
        for c, s in level.items():
            if c >= min_p:
                close = self.close("}") if part is None else self.b.empty()
                b.nfa.eps[s].append(close[0])
                b.nfa.eps[close[1]].append(end)
                closing = True
        return (entry[0], end) if closing else None


# -- helpers -------------------------------------------------------------------------------------


def _longest(dfa: ByteDFA) -> int | None:
    """The length in bytes of the longest string ``dfa`` accepts, None if unbounded."""
    table = dfa.transitions
    n = table.shape[0]
    succ = [sorted(set(row[row >= 0].tolist())) for row in table]
    depth: list[int | None] = [None] * n
    on_path = [False] * n
    stack: list[tuple[int, int]] = [(0, 0)]
    while stack:
        state, i = stack.pop()
        if i == 0:
            on_path[state] = True
        if i < len(succ[state]):
            stack.append((state, i + 1))
            nxt = succ[state][i]
            if on_path[nxt]:
                return None  # a cycle (every state is live, so it lies on some match)
            if depth[nxt] is None:
                stack.append((nxt, 0))
            continue
        on_path[state] = False
        depth[state] = max([0, *(1 + depth[t] for t in succ[state])])  # type: ignore[operator]
    return depth[0]


_NO_KEY = ByteDFA(np.full((1, 256), -1, dtype=np.int32), np.zeros(1, dtype=bool))
"""The automaton of no key at all (propertyNames false, or unsatisfiable)."""


MAX_DISTRIBUTED = 16
"""Alternatives one compile may create by spreading ``allOf``s over a union (``_distribute``);
past that, allOf parts are intersected as automata."""


def _distribute(parts: list[Any]) -> dict | None:
    """``allOf`` parts with one union among them (an ``anyOf``, or a ``oneOf`` over required
    sets) as a union of ``allOf``s, each of which may merge; None if there is none.

    Automata of the parts would each write an object's keys in their own order, so their
    product can lose every document; merged schemas write one order.
    """
    for i, part in enumerate(parts):
        if not isinstance(part, dict):
            continue
        options = None
        if isinstance(part.get("anyOf"), list):
            options = _alternatives({k: v for k, v in part.items() if k != "oneOf"})
            if "oneOf" in part:
                continue
        elif isinstance(part.get("oneOf"), list) and len(part["oneOf"]) > 1:
            exclusive = _exclusive_required(part["oneOf"])
            if exclusive is None:
                continue
            beside = {k: v for k, v in part.items() if k != "oneOf"}
            options = [{"allOf": [beside, b]} if beside else b for b in exclusive]
        if options is None:
            continue
        others = parts[:i] + parts[i + 1 :]
        return {"anyOf": [{"allOf": [*others, option]} for option in options]}
    return None


MAX_SPLICED = 256
"""Parts an ``allOf`` may gather from the ``allOf``s nested in it (see ``_spliced``)."""


def _spliced(parts: list[Any]) -> list[Any]:
    """``allOf`` parts with nested ``allOf``s opened (allOf is associative), so the parts the
    compiler itself nests (negations, oneOf branches) merge like the schema's own."""
    out: list[Any] = []
    stack = list(reversed(parts))
    while stack:
        part = stack.pop()
        nested = isinstance(part, dict) and isinstance(part.get("allOf"), list)
        if nested and len(out) + len(stack) < MAX_SPLICED:
            rest = {k: v for k, v in part.items() if k != "allOf"}
            stack.extend(reversed([rest, *part["allOf"]]))
            continue
        if part == {}:
            continue
        out.append(part)
    return out or [True]


def _listed_values(schema: Any) -> list | None:
    """The values an ``enum``/``const`` at the top of ``schema`` lists (a superset where it has
    both: the validator checks the schema itself too), or None if it has neither."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return [schema["const"]]
    values = schema.get("enum")
    return values if isinstance(values, list) else None


def _alternatives(schema: Any) -> list[Any]:
    """``schema`` as a list of alternatives without a top-level ``anyOf`` (distributed over the
    keywords beside it, two levels deep), so each can merge with other allOf parts."""
    if not isinstance(schema, dict) or "anyOf" not in schema or not isinstance(schema["anyOf"], list):
        return [schema]
    beside = {k: v for k, v in schema.items() if k != "anyOf"}
    out: list[Any] = []
    for option in schema["anyOf"]:
        for inner in _alternatives(option):
            if not beside:
                out.append(inner)
            elif isinstance(inner, dict) and not set(inner) & set(beside):
                out.append({**beside, **inner})
            else:
                out.append({"allOf": [beside, inner]})
    return out


def of_types(values: list, declared: Any) -> list:
    """The values whose JSON type the ``type`` keyword ``declared`` (None: any) admits."""
    if declared is None:
        return list(values)
    kinds = set(declared) if isinstance(declared, list) else {declared}
    if "number" in kinds:
        kinds.add("integer")
    return [v for v in values if _json_type(v) in kinds]


MAX_UNIQUE_VALUES = 8
"""uniqueItems is enforced for items drawn from at most this many values (2^8 sets of them)."""


def _unique_domain(schema: dict) -> list | None:
    """The few values the items of a ``uniqueItems`` array can take, or None if that is not
    known from the schema alone (or they are too many)."""
    if schema.get("prefixItems") or isinstance(schema.get("items"), list):
        return None
    items = schema.get("items", True)
    if not isinstance(items, dict):
        return None
    known = set(items) & KNOWN_KEYWORDS
    if known <= {"enum", "type"} and isinstance(items.get("enum"), list):
        values = of_types(items["enum"], items.get("type"))
    elif known <= {"const"} and "const" in items:
        values = [items["const"]]
    elif known == {"type"} and items["type"] in ("boolean", "null"):
        values = [True, False] if items["type"] == "boolean" else [None]
    else:
        return None
    distinct: list = []
    for v in values:
        if not any(json_equal(v, w) for w in distinct):
            distinct.append(v)
    return distinct if len(distinct) <= MAX_UNIQUE_VALUES else None


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
    found: the complement of each pattern's automaton (spelled as in ``json_chars``)."""
    body: ByteDFA | None = within if within is not None else _string_content()
    for pattern in patterns:
        if body is None:
            return None
        if not isinstance(pattern, str):
            raise SchemaError("pattern must be a string", path)
        helper = NFABuilder(f"pattern {pattern!r}")
        try:
            found = helper.build(helper.regex(_searched(pattern), lambda r, h=helper: json_chars(h, r)))
        except EmptyLanguageError:
            continue  # found nowhere: excludes nothing
        body = difference(body, found)
    return body


def _interleave(items: list, make_sep: Callable[[], Fragment]) -> list:
    out: list = []
    for i, it in enumerate(items):
        if i:
            out.append(make_sep())
        out.append(it)
    return out


def _searched(pattern: str) -> str:
    """A full-match regex for the strings in which ``pattern`` is found (JSON Schema searches)."""
    searched = pattern if pattern.startswith("^") else "(?s:.*?)" + f"(?:{pattern})"
    return searched if pattern.endswith("$") and not pattern.endswith("\\$") else searched + "(?s:.*)"


def _pointer(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _is_int(x: Any) -> bool:
    return (isinstance(x, int) and not isinstance(x, bool)) or (
        isinstance(x, float) and math.isfinite(x) and x == int(x)
    )


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_schema(x: Any) -> bool:
    return isinstance(x, (dict, bool))


_SHAPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "a non-negative integer": lambda v: _is_int(v) and v >= 0,
    "a number": _is_number,
    "a number (or a boolean, draft 4)": lambda v: _is_number(v) or isinstance(v, bool),
    "a positive number": lambda v: _is_number(v) and v > 0,
    "a string": lambda v: isinstance(v, str),
    "a boolean": lambda v: isinstance(v, bool),
    "a schema (an object or a boolean)": _is_schema,
    "a schema or an array of schemas": lambda v: _is_schema(v) or isinstance(v, list),
    "an object": lambda v: isinstance(v, dict),
    "an array": lambda v: isinstance(v, list),
    "a non-empty array": lambda v: isinstance(v, list) and len(v) > 0,
    "a string or an array of strings": lambda v: isinstance(v, (str, list)),
    "an array of strings (or a boolean, draft 3)": lambda v: isinstance(v, (list, bool)),
}
_SHAPES: dict[str, str] = {
    **dict.fromkeys(
        ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"),
        "a non-negative integer",
    ),
    **dict.fromkeys(("minimum", "maximum"), "a number"),
    **dict.fromkeys(("exclusiveMinimum", "exclusiveMaximum"), "a number (or a boolean, draft 4)"),
    "multipleOf": "a positive number",
    **dict.fromkeys(("pattern", "format", "$ref"), "a string"),
    "uniqueItems": "a boolean",
    **dict.fromkeys(("additionalProperties", "additionalItems", "not"), "a schema (an object or a boolean)"),
    "items": "a schema or an array of schemas",
    **dict.fromkeys(("properties", "patternProperties", "$defs", "definitions"), "an object"),
    **dict.fromkeys(("prefixItems", "enum", "allOf"), "an array"),
    **dict.fromkeys(("anyOf", "oneOf"), "a non-empty array"),
    "type": "a string or an array of strings",
    "required": "an array of strings (or a boolean, draft 3)",
}
"""The JSON type each keyword's value must have (checked before the keyword is used)."""


def _show(value: Any, limit: int = 60) -> str:
    """A short JSON rendering of a schema value, for error messages."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_FAMILY = {
    "minimum": ("integer", "number"),
    "maximum": ("integer", "number"),
    "exclusiveMinimum": ("integer", "number"),
    "exclusiveMaximum": ("integer", "number"),
    "minLength": ("string",),
    "maxLength": ("string",),
    "minItems": ("array",),
    "maxItems": ("array",),
    "minProperties": ("object",),
    "maxProperties": ("object",),
    "required": ("object",),
    "properties": ("object",),
}
_VALUE_FAMILY = {
    "pattern": ("string",),
    NOT_STRINGS_KEY: ("string",),
    NOT_PATTERN_KEY: ("string",),
    "multipleOf": ("integer", "number"),
    NOT_NUMBERS_KEY: ("integer", "number"),
    NOT_MULTIPLE_KEY: ("integer", "number"),
}
"""Keywords on a value of some types whose negation is a compiler marker (or its inverse)."""
_FLIP = {
    "minimum": "exclusiveMaximum",
    "maximum": "exclusiveMinimum",
    "exclusiveMinimum": "maximum",
    "exclusiveMaximum": "minimum",
}
_COUNT_FLIP = {
    "minLength": ("maxLength", -1),
    "maxLength": ("minLength", 1),
    "minItems": ("maxItems", -1),
    "maxItems": ("minItems", 1),
    "minProperties": ("maxProperties", -1),
    "maxProperties": ("minProperties", 1),
}


def _negate_keyword(key: str, value: Any, compiler: Any, path: str) -> tuple[tuple[str, ...], Any]:
    """(types the keyword constrains, keywords for "of those types, the ones it rejects").

    ``False`` means no value of those types is rejected; None, not expressible.
    """
    family = _FAMILY.get(key, ())
    if key in _FLIP:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return family, None  # draft-4 boolean exclusive bounds
        return family, {_FLIP[key]: value}
    if key in _COUNT_FLIP:
        other, step = _COUNT_FLIP[key]
        if not _is_int(value):
            return family, None
        bound = int(value) + step
        return family, (False if bound < 0 else {other: bound})
    if key == "required":
        if not isinstance(value, list) or not value:
            return family, False
        # some required property is absent
        return family, {"anyOf": [{"properties": {name: False}} for name in value]}
    if key == "properties":
        if not isinstance(value, dict) or not value:
            return family, False
        # some present property has a value its schema rejects
        options = []
        for name, sub in value.items():
            negated = compiler.negate(sub, path)
            if negated is None:
                return family, None
            if negated is not False:
                options.append({"properties": {name: negated}, "required": [name]})
        return family, ({"anyOf": options} if options else False)
    return family, None


def _type_set(schema: dict) -> set[str]:
    """The JSON types a (flattened) schema admits; "integer" implies part of "number"."""
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else schema.get("enum", [])
        return {_json_type(v) for v in values}
    declared = schema.get("type")
    if declared is None:
        return set(_TYPES)
    types = set(declared if isinstance(declared, list) else [declared])
    if "number" in types:
        types.add("integer")
    return types


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int) or (isinstance(v, float) and v == int(v)):
        return "integer"
    if isinstance(v, float):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(v)]


def _safely_disjoint(a: Any, b: Any) -> bool:
    """:func:`_disjoint`, False (not provably disjoint) where nested values are malformed."""
    try:
        return _disjoint(a, b)
    except (TypeError, AttributeError, KeyError, ValueError):
        return False


_DEPENDENCY_KEYS = ("dependentRequired", "dependentSchemas", "dependencies")
MAX_DEPENDENCY_BRANCHES = 64
"""Branches the dependencies of one object may expand into (six properties with dependencies)."""

MAX_ONEOF_EXCLUSIVE = 12
"""A oneOf with more branches than this that may overlap is refused: each branch would hold
the negation of every other (quadratic), and compiling them would take seconds."""

MAX_ONEOF_CHOICES = 64
"""Alternatives a oneOf over ``required`` sets may expand into (see ``_exclusive_required``)."""


def _exclusive_required(branches: list) -> list | None:
    """``oneOf`` branches that only require properties, rewritten as branches that exclude each
    other, or None if they are not of that form.

    Branch i holds when its names R_i are present and, for every other branch j, not all of
    R_j: some name of R_j - R_i is absent (a forbidden property). If R_j is inside R_i, branch i
    can never be the only one and is dropped.
    """
    sets: list[list[str]] = []
    for b in branches:
        if not isinstance(b, dict) or set(b) - ANNOTATIONS != {"required"}:
            return None
        names = b["required"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return None
        sets.append(list(dict.fromkeys(names)))
    out: list = []
    for i, mine in enumerate(sets):
        choices: list[list[str]] = [[]]
        for j, theirs in enumerate(sets):
            if j == i:
                continue
            missing = [n for n in theirs if n not in mine]
            if not missing:
                choices = []  # whenever branch i holds, branch j does too
                break
            choices = [[*c, n] for c in choices for n in missing]
            if len(choices) > MAX_ONEOF_CHOICES:
                return None
        for absent in choices:
            out.append({"required": mine, "properties": dict.fromkeys(absent, False)})
    return out or [False]


def _flat(schema: Any) -> Any:
    """A property's schema with a mergeable ``allOf`` merged (where a oneOf branch's ``const``
    discriminator was combined with the declared property it refines)."""
    if isinstance(schema, dict) and "allOf" in schema and isinstance(schema["allOf"], list):
        merged = _merge_all([{k: v for k, v in schema.items() if k != "allOf"}, *schema["allOf"]])
        if merged is not None:
            return merged
    return schema


def _disjoint(a: Any, b: Any) -> bool:
    """True only if no JSON value can satisfy both schemas (a sound, partial test)."""
    if a is False or b is False:
        return True
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    if {"anyOf", "oneOf", "allOf", "$ref", "not"} & (set(a) | set(b)):
        return False
    ta, tb = _type_set(a), _type_set(b)
    if "number" in ta and "integer" not in ta:
        ta.add("integer")
    if "number" in tb and "integer" not in tb:
        tb.add("integer")
    if not ta & tb:
        return True
    for x, y in ((a, b), (b, a)):
        if "const" in x or "enum" in x:
            values = [x["const"]] if "const" in x else x.get("enum", [])
            other = [y["const"]] if "const" in y else y.get("enum") if "enum" in y else None
            if other is not None and not any(json_equal(v, w) for v in values for w in other):
                return True
    if ta & tb == {"object"}:
        req_a, req_b = set(a.get("required", [])), set(b.get("required", []))
        props_a, props_b = a.get("properties", {}), b.get("properties", {})
        for name in req_a & req_b:
            if name in props_a and name in props_b and _disjoint(_flat(props_a[name]), _flat(props_b[name])):
                return True
        for y, req in ((b, req_a), (a, req_b)):
            closed = y.get("additionalProperties", True) is False and not y.get("patternProperties")
            if closed and req - set(y.get("properties", {})):
                return True  # one requires a property the other forbids
    return False


KNOWN_KEYWORDS = frozenset(
    {"type", "enum", "const", "$ref", "allOf", "anyOf", "oneOf", "not", "format", "pattern"}
    | {"if", "then", "else", "propertyNames", "dependentRequired", "dependentSchemas", "dependencies"}
    | {*_NEGATION_MARKERS, CHUNK_KEY, EXTRA_KEY, ITEMS_RUN_KEY}  # the compiler's own, never dropped
    | _OBJECT_KEYS | _ARRAY_KEYS | _CONTAINS_KEYS | _STRING_KEYS | _NUMBER_KEYS | UNSUPPORTED
)
"""Every keyword that constrains values (the others are annotations or unknown: ignored)."""

_ARRAY_SIBLINGS = frozenset({"items", "prefixItems", "additionalItems"})
_MERGEABLE = (
    _OBJECT_KEYS
    | _ARRAY_KEYS
    | _STRING_KEYS
    | _NUMBER_KEYS
    | {"type", "enum", "const", *_NEGATION_MARKERS}
    | ANNOTATIONS
)


def _merge_all(parts: list[Any]) -> dict | None:
    """Merge allOf parts into one schema when that is exact, else None.

    Not exact (None) when a part restricts additional properties but does
    not declare a property another part declares: that property is
    "additional" for it.
    """
    if any(p is False for p in parts):
        return {"enum": []}  # nothing satisfies false, whatever the other parts say
    dicts = [p for p in parts if isinstance(p, dict)]
    declared = [set(p.get("properties", {})) for p in dicts]
    everything = set().union(*declared) if declared else set()
    restricting = [p for p in dicts if p.get("additionalProperties", True) is not True]
    with_patterns = [p for p in dicts if "patternProperties" in p]
    for part in dicts:
        if part in restricting or part in with_patterns:
            if not everything <= set(part.get("properties", {})):
                return None
    # keywords whose meaning depends on their siblings keep it only beside them: a part's
    # patternProperties exempt keys from *its* additionalProperties, a part's prefixItems (or
    # draft-4 items array) limit *its* items/additionalItems to the later elements
    if any(q is not r for q in with_patterns for r in restricting):
        return None
    if sum(1 for p in dicts if _ARRAY_SIBLINGS & set(p)) > 1:
        return None
    merged: dict[str, Any] = {}
    for part in parts:
        if part is True:
            continue
        if part is False or not isinstance(part, dict):
            return None if part is not False else {"enum": []}
        if (set(part) & KNOWN_KEYWORDS) - _MERGEABLE:
            return None
        for key, value in part.items():
            if key in ANNOTATIONS or key not in KNOWN_KEYWORDS:
                continue
            if key not in merged:
                merged[key] = value
            elif key == "properties":
                common = set(merged[key]) & set(value)
                props = {**merged[key], **value}
                for name in common:
                    props[name] = {"allOf": [merged[key][name], value[name]]}
                merged[key] = props
            elif key == "required" or key in _NEGATION_MARKERS:
                merged[key] = [*merged[key], *(v for v in value if v not in merged[key])]
            elif key == "type":
                a = merged[key] if isinstance(merged[key], list) else [merged[key]]
                c = value if isinstance(value, list) else [value]
                both = [t for t in a if t in c or (t == "integer" and "number" in c)]
                both += [t for t in c if t == "integer" and "number" in a and t not in both]
                merged[key] = both
            elif key in ("minimum", "minLength", "minItems", "minProperties", "exclusiveMinimum"):
                if isinstance(value, bool) or isinstance(merged[key], bool):
                    return None
                merged[key] = max(merged[key], value)
            elif key in ("maximum", "maxLength", "maxItems", "maxProperties", "exclusiveMaximum"):
                if isinstance(value, bool) or isinstance(merged[key], bool):
                    return None
                merged[key] = min(merged[key], value)
            elif merged[key] != value:
                return None
    return merged


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


def load_schema(schema: Any) -> tuple[Any, bool]:
    """Accept a Pydantic model class, a dict/bool, or JSON text; returns (schema, is_pydantic)."""
    if isinstance(schema, type):
        dump = getattr(schema, "model_json_schema", None)
        if dump is None:
            raise SchemaError(f"{schema.__name__} is not a Pydantic model")
        return dump(), True
    if isinstance(schema, str):
        try:
            return json.loads(schema), False
        except json.JSONDecodeError as exc:
            raise SchemaError(f"the schema is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ConstraintTooComplexError("the schema is nested too deeply") from exc
    if isinstance(schema, (dict, bool)):
        return schema, False
    raise SchemaError(
        f"a schema must be a Pydantic model, a dict or a JSON string, got {type(schema).__name__}"
    )


def prepare_schema(schema: Any, extra_properties: bool | None = None) -> tuple[str, bool | None]:
    """The schema's canonical JSON text and the effective ``extra_properties``
    (a Pydantic model gets no extra properties unless asked: Pydantic ignores them)."""
    root, is_pydantic = load_schema(schema)
    if extra_properties is None and is_pydantic:
        extra_properties = False
    return canonical_schema(root), extra_properties


def canonical_schema(root: Any) -> str:
    """The schema as JSON text (the cache key). Key order is kept: property order is generation order."""
    try:
        return json.dumps(root, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"the schema is not plain JSON: {exc}") from exc
    except RecursionError as exc:
        raise ConstraintTooComplexError("the schema is nested too deeply") from exc


_MALFORMED = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, ZeroDivisionError)


def schema_to_dfa(
    canonical: str, whitespace_pattern: str | None, max_depth: int, lenient: bool, extra: bool | None
) -> ByteDFA:
    ws = Whitespace.from_pattern(whitespace_pattern)
    try:
        compiler = _Compiler(json.loads(canonical), ws, max_depth, lenient, extra)
        with compile_budget("JSON schema"):
            return compiler.compile()
    except RecursionError as exc:
        raise ConstraintTooComplexError("the schema is nested too deeply") from exc
    except OutlinesGGUFError:
        raise
    except _MALFORMED as exc:
        # a malformed value no check above anticipated: still a clear input error, never a crash
        raise SchemaError(f"the schema is malformed ({type(exc).__name__}: {exc})") from exc

"""Decide whether one JSON value satisfies a schema, exactly, with the compiler's semantics.

Why: a schema whose values an ``enum``/``const`` lists (beside any other keyword, or in an
``allOf`` part) is exactly those values that pass the rest of the schema. Checking each value
with a validator makes such schemas exact whatever the rest says (``not``, ``oneOf``,
``contains``, ``multipleOf`` 0.01, ...), where compiling the rest to an automaton would be a
subset, a refusal, or impossible.

Semantics follow JSON Schema 2020-12 with the draft-4/6/7 spellings the compiler accepts
(boolean ``exclusiveMinimum``, ``items`` as an array, ``dependencies``). Strings match
``pattern`` and ``format`` through the same automata the compiler builds (so a value passes
here exactly when the compiled constraint could write it); ``multipleOf`` is decimal
arithmetic. Keywords it cannot decide (``unevaluated*``, dynamic references, non-local
``$ref``, unknown compiler markers) raise :class:`Undecided`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from outlines_gguf.automata.dfa import ByteDFA
from outlines_gguf.automata.regex import NFABuilder
from outlines_gguf.errors import EmptyLanguageError, OutlinesGGUFError
from outlines_gguf.json_schema.keywords import (
    NOT_MULTIPLE_KEY,
    NOT_NUMBERS_KEY,
    NOT_PATTERN_KEY,
    NOT_STRINGS_KEY,
    SOME_MEMBER_KEY,
    _is_number,
)
from outlines_gguf.json_schema.leaves import STRING_FORMATS, UNENFORCEABLE_FORMATS
from outlines_gguf.json_schema.lexical import _searched  # the one "searched"
from outlines_gguf.json_schema.numbers import exact_value

MAX_REF_HOPS = 64
"""``$ref`` chains followed without reading deeper into the value (a cycle otherwise)."""

MarkerCheck = Callable[[Any, Any], bool]
"""A check for a compiler-internal keyword: (keyword value, instance) -> passes."""


class Undecided(Exception):  # noqa: N818 - an outcome, not a failure of the caller
    """The schema uses a keyword this validator cannot decide; ``keyword`` names it."""

    def __init__(self, keyword: str) -> None:
        super().__init__(keyword)
        self.keyword = keyword


_UNDECIDABLE = frozenset(
    {
        "unevaluatedProperties",
        "unevaluatedItems",
        "$dynamicRef",
        "$recursiveRef",
    }
)


def json_type(value: Any) -> str:
    """The JSON type of a Python value from ``json.loads`` ("integer" for 2 and 2.0)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if math.isfinite(value) and value == int(value) else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise Undecided(f"a value of Python type {type(value).__name__}")


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 equals 1.0, true does not equal 1, objects ignore key order."""
    ta, tb = json_type(a), json_type(b)
    if {ta, tb} <= {"integer", "number"}:
        return a == b
    if ta != tb:
        return False
    if ta == "array":
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if ta == "object":
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


@lru_cache(maxsize=256)
def pattern_dfa(regex: str, wide: bool = False, ecma: bool = False) -> ByteDFA | None:
    """The automaton of the UTF-8 strings a full-match ``regex`` accepts (None: none); ``wide``
    and ``ecma`` as :meth:`.NFABuilder.regex`'s ``negated`` and ``ecma`` read them."""
    builder = NFABuilder("pattern")
    try:
        return builder.build(builder.regex(regex, negated=wide, ecma=ecma))
    except EmptyLanguageError:
        return None


_SAME_UNDER_EVERY_READER = re.compile(r"[\t-\x0c -~]*(?<!\n)")
"""Texts on which the readers of a pattern agree: printable ASCII and ASCII spaces but ``\\r``
(ECMA-262's ``.`` misses it), not ending in a newline (Python's ``$`` matches before one);
``\\s``, ``\\d``, ``\\w`` and case folding differ only on other characters."""


def pattern_matches(pattern: str, text: str) -> bool:
    """Whether ``pattern`` is found in ``text`` (JSON Schema searches), by our regex automata.
    :class:`Undecided` where readers differ (``\\s`` and U+00A0: Python's ``re`` finds it, a
    narrower reading does not), so that no caller counts on either answer."""
    try:
        searched = _searched(pattern)
        data = text.encode("utf-8", "surrogatepass")
        narrow = pattern_dfa(searched, ecma=True)
        if narrow is not None and narrow.matches(data):
            return True
        if _SAME_UNDER_EVERY_READER.fullmatch(text):
            return False
        wide = pattern_dfa(searched, wide=True)
    except OutlinesGGUFError as exc:  # a pattern our regex automata cannot express
        raise Undecided(f"pattern {pattern!r}") from exc
    if wide is not None and wide.matches(data):
        raise Undecided(f"pattern {pattern!r} on {text!r}, where regex readers differ")
    return False


def format_matches(fmt: str, text: str) -> bool:
    """Whether ``text`` has format ``fmt`` as the compiler enforces it (unknown: annotation)."""
    if fmt in UNENFORCEABLE_FORMATS:
        raise Undecided(f"format {fmt!r}")
    regex = STRING_FORMATS.get(fmt)
    if regex is None:
        return True
    dfa = pattern_dfa(regex)
    return dfa is not None and dfa.matches(text.encode("utf-8", "surrogatepass"))


def resolve_local(root: Any, ref: str) -> Any:
    """The subschema of ``root`` a local ``$ref`` names: a JSON pointer (``#/$defs/a``) or a
    plain-name anchor (``#a``: ``$anchor``, or a draft-4/7 ``id``/``$id`` of ``#a``).
    Raises LookupError if there is none."""
    if not ref.startswith("#"):
        raise LookupError(f"$ref {ref!r} is not local")
    if ref in ("#", "#/"):
        return root
    if not ref.startswith("#/"):
        found = _find_anchor(root, ref[1:])
        if found is None:
            raise LookupError(f"no anchor {ref!r}")
        return found
    node: Any = root
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise LookupError(f"$ref {ref!r} points to nothing")
    return node


def _find_anchor(root: Any, name: str) -> Any:
    stack = [root]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            if node.get("$anchor") == name or f"#{name}" in (node.get("$id"), node.get("id")):
                return node
            stack.extend(v for k, v in node.items() if k not in ("enum", "const", "examples", "default"))
        elif isinstance(node, list):
            stack.extend(node)
    return None


def _is_draft4(root: Any) -> bool:
    """Draft 3/4 count only numbers written without a fraction as integers (1.0 is not)."""
    declared = root.get("$schema") if isinstance(root, dict) else None
    return isinstance(declared, str) and ("draft-04" in declared or "draft-03" in declared)


MARKER_CHECKS: dict[str, MarkerCheck] = {
    NOT_STRINGS_KEY: lambda excluded, v: not isinstance(v, str) or v not in excluded,
    NOT_PATTERN_KEY: lambda found, v: not isinstance(v, str) or not any(pattern_matches(p, v) for p in found),
    NOT_NUMBERS_KEY: lambda listed, v: not _is_number(v) or not any(json_equal(v, x) for x in listed),
    NOT_MULTIPLE_KEY: lambda steps, v: not _is_number(v)
    or all((exact_value(v) / exact_value(m)).denominator != 1 for m in steps),
}
"""How the compiler's own keywords (the negations it writes, see ``_Compiler.negate``) are read."""


class Validator:
    """Validates values against subschemas of ``root`` (local ``$ref`` resolved in it)."""

    def __init__(self, root: Any, markers: dict[str, MarkerCheck] | None = None) -> None:
        self.root = root
        self.markers = markers or {}
        self.draft4 = _is_draft4(root)

    def resolve(self, ref: str) -> Any:
        try:
            return resolve_local(self.root, ref)
        except LookupError as exc:
            raise Undecided(f"$ref {ref!r}") from exc

    def is_valid(self, schema: Any, value: Any, hops: int = 0) -> bool:
        if schema is True:
            return True
        if schema is False:
            return False
        if not isinstance(schema, dict):
            raise Undecided("a schema that is not an object or a boolean")
        for key in schema:
            ours = key.startswith("x-outlines-gguf-") and key not in self.markers and key != SOME_MEMBER_KEY
            if key in _UNDECIDABLE or ours:
                raise Undecided(key)
        kind = json_type(value)
        if kind == "integer" and self.draft4 and isinstance(value, float):
            kind = "number"
        ref = schema.get("$ref")
        if ref is not None:
            if hops >= MAX_REF_HOPS or not isinstance(ref, str):
                raise Undecided("$ref")
            if not self.is_valid(self.resolve(ref), value, hops + 1):
                return False
        checks = (
            self._generic,
            self._combinators,
            self._numeric if kind in ("integer", "number") else None,
            self._string if kind == "string" else None,
            self._array if kind == "array" else None,
            self._object if kind == "object" else None,
        )
        for check in checks:
            if check is not None and not check(schema, value, kind, hops):
                return False
        for key, test in self.markers.items():
            if key in schema and not test(schema[key], value):
                return False
        return True

    # -- keyword groups --------------------------------------------------------------------

    def _generic(self, schema: dict, value: Any, kind: str, hops: int) -> bool:
        declared = schema.get("type")
        if declared is not None:
            kinds = declared if isinstance(declared, list) else [declared]
            if not (kind in kinds or (kind == "integer" and "number" in kinds)):
                return False
        if "const" in schema and not json_equal(schema["const"], value):
            return False
        values = schema.get("enum")
        return not (isinstance(values, list) and not any(json_equal(v, value) for v in values))

    def _combinators(self, schema: dict, value: Any, kind: str, hops: int) -> bool:
        valid = self.is_valid
        if "allOf" in schema and not all(valid(s, value, hops) for s in schema["allOf"]):
            return False
        if "anyOf" in schema and not any(valid(s, value, hops) for s in schema["anyOf"]):
            return False
        if "oneOf" in schema and sum(1 for s in schema["oneOf"] if valid(s, value, hops)) != 1:
            return False
        if "not" in schema and valid(schema["not"], value, hops):
            return False
        if "if" in schema:
            branch = "then" if valid(schema["if"], value, hops) else "else"
            if branch in schema and not valid(schema[branch], value, hops):
                return False
        return True

    def _numeric(self, schema: dict, value: Any, kind: str, hops: int) -> bool:
        x = value
        lo, hi = schema.get("minimum"), schema.get("maximum")
        xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if lo is not None and (x < lo or (xlo is True and x == lo)):
            return False
        if hi is not None and (x > hi or (xhi is True and x == hi)):
            return False
        if not isinstance(xlo, bool) and xlo is not None and x <= xlo:
            return False
        if not isinstance(xhi, bool) and xhi is not None and x >= xhi:
            return False
        step = schema.get("multipleOf")
        if step is not None:
            try:
                quotient = exact_value(x) / exact_value(step)
            except (TypeError, ValueError) as exc:
                raise Undecided("multipleOf") from exc
            if quotient.denominator != 1:
                return False
        return True

    def _string(self, schema: dict, value: str, kind: str, hops: int) -> bool:
        n = len(value)
        if n < schema.get("minLength", 0):
            return False
        if "maxLength" in schema and n > schema["maxLength"]:
            return False
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and not pattern_matches(pattern, value):
            return False
        fmt = schema.get("format")
        return not (isinstance(fmt, str) and not format_matches(fmt, value))

    def _array(self, schema: dict, value: list, kind: str, hops: int) -> bool:
        valid = self.is_valid
        n = len(value)
        if n < schema.get("minItems", 0) or ("maxItems" in schema and n > schema["maxItems"]):
            return False
        if schema.get("uniqueItems") is True:
            for i in range(n):
                if any(json_equal(value[i], value[j]) for j in range(i)):
                    return False
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if isinstance(items, list):  # draft 4-2019: items as a tuple, then additionalItems
            prefix, items = items, schema.get("additionalItems")
        prefix = prefix if isinstance(prefix, list) else []
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else items
            if sub is not None and not valid(sub, item, 0):
                return False
        if "contains" in schema:
            matched = sum(1 for item in value if valid(schema["contains"], item, 0))
            low = schema.get("minContains", 1)
            if matched < low or ("maxContains" in schema and matched > schema["maxContains"]):
                return False
        return True

    def _object(self, schema: dict, value: dict, kind: str, hops: int) -> bool:
        valid = self.is_valid
        n = len(value)
        if n < schema.get("minProperties", 0):
            return False
        if "maxProperties" in schema and n > schema["maxProperties"]:
            return False
        required = schema.get("required", [])
        if isinstance(required, list) and any(name not in value for name in required):
            return False
        props = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        additional = schema.get("additionalProperties")
        names = schema.get("propertyNames")
        for key, item in value.items():
            if names is not None and not valid(names, key, 0):
                return False
            governed = False
            if key in props:
                governed = True
                if not valid(props[key], item, 0):
                    return False
            for pattern, sub in patterns.items():
                if pattern_matches(pattern, key):
                    governed = True
                    if not valid(sub, item, 0):
                        return False
            if not governed and additional is not None and not valid(additional, item, 0):
                return False
        for key_schema, value_schema in schema.get(SOME_MEMBER_KEY, []):
            if not any(valid(key_schema, k, 0) and valid(value_schema, v, 0) for k, v in value.items()):
                return False
        for key in ("dependentRequired", "dependentSchemas", "dependencies"):
            deps = schema.get(key)
            if not isinstance(deps, dict):
                continue
            for name, need in deps.items():
                if name not in value:
                    continue
                if isinstance(need, list):
                    if any(other not in value for other in need):
                        return False
                elif not valid(need, value, hops):
                    return False
        return True

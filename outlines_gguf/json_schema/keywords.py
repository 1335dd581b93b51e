"""JSON Schema keywords: the tables the compiler checks them against, the shapes their values
must have, the compiler's own marker keywords, and its limits."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

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
        "$dynamicAnchor",  # (an anchor: dynamic references to it are resolved in refs.py)
        "$recursiveAnchor",
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
        "$dynamicRef",  # (those whose target depends on the way evaluation came: refs.py)
        "$recursiveRef",
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

SOME_MEMBER_KEY = "x-outlines-gguf-some-member"
"""Objects with, for each ``[key schema, value schema]`` listed, some member whose key the first
and whose value the second accepts (declared or not): the negation of ``patternProperties``,
``propertyNames`` and ``additionalProperties`` (see ``_Compiler.negate``), enforced by the object's
automaton remembering which have been met (``_ObjectRules.object_body``)."""

MAX_SOME_MEMBERS = 4
"""Such requirements one object may hold (its automaton is a copy per set of those met)."""

_NEGATION_MARKERS = (NOT_STRINGS_KEY, NOT_PATTERN_KEY, NOT_NUMBERS_KEY, NOT_MULTIPLE_KEY, SOME_MEMBER_KEY)
"""The compiler's own keywords for negations: each a list; allOf parts merge by joining them."""

CHUNK_KEY = "x-outlines-gguf-run"
"""Marks the synthetic schema of such a run (its value: "first" or "after")."""

WRITTEN_KEY = "x-outlines-gguf-written"
"""Marks the synthetic schema of the rest of an object whose members come in any order: the
names of the members written so far (see ``_ObjectRules.members_after``)."""

OBJECT_KEY = "x-outlines-gguf-object"
"""Beside :data:`WRITTEN_KEY`: a number, one per compiled object, that names the object whose
members these are (rest nodes of two objects with the same members may differ in what they
require)."""

EXTRAS_WRITTEN_KEY = "x-outlines-gguf-extras-written"
"""Beside :data:`WRITTEN_KEY`, where min/maxProperties count the members: the extra members
written so far (as far as the counts tell them apart)."""

DISTINCT_KEYS_KEY = "x-outlines-gguf-distinct-keys"
"""Where undeclared members count towards ``minProperties`` (2 or more) one by one: on the
object's nodes and on its extra member's, the keys of the extra members written so far while
below the minimum (sorted; [] from "{" and once the minimum is reached). The extra member's
node holds them as declared names too (never an extra key again). Which keys a document has
written is generation state: the guide remembers them (:mod:`~outlines_gguf.json_schema.unique`)
and moves the object's frame to the node with one key more when a key is complete."""

DISTINCT_VARIANT_KEY = "x-outlines-gguf-distinct-variant"
"""``[object node, keys]``: the node of such an object from "{" (the same automaton) with its
calls to the extra member and to the rest nodes below the minimum leaving out ``keys``."""

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

WIDE_BRANCH = 8
"""In split mode, an object branch of a union at the top of an automaton with this many members
or more is a call to a node of its own (see ``_CombinatorRules.union_branch``)."""

CALL_BYTE = 0xFF
"""In a split automaton (see :mod:`~outlines_gguf.json_schema.pushdown`), a nested object or array value
is this byte followed by the callee's number in three bytes. 0xFF never occurs in UTF-8 text,
so the marker cannot be confused with a value's bytes; it is removed from the table that walks text."""


def call_marker(node: int) -> bytes:
    """The bytes that stand for a call to automaton ``node`` in a split automaton."""
    return bytes((CALL_BYTE, node >> 16 & 0xFF, node >> 8 & 0xFF, node & 0xFF))


MAX_DISTRIBUTED = 16
"""Alternatives one compile may create by spreading ``allOf``s over a union (``_distribute``);
past that, allOf parts are intersected as automata."""

MAX_CONDITIONAL_CHOICES = 256
"""Consistent choices of branches an ``allOf`` of conditionals may expand into (see
``_Compiler.conditional_choices``; k conditionals on one discriminator make k + 1)."""

MAX_SPLICED = 256
"""Parts an ``allOf`` may gather from the ``allOf``s nested in it (see ``_spliced``)."""

MAX_UNIQUE_VALUES = 8
"""uniqueItems is enforced for items drawn from at most this many values (2^8 sets of them)."""


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


_TYPE_KEYWORDS = {
    "object": frozenset(
        _OBJECT_KEYS
        | {"propertyNames", "dependentRequired", "dependentSchemas", "dependencies", SOME_MEMBER_KEY}
    ),
    "array": frozenset(_ARRAY_KEYS | _CONTAINS_KEYS),
    "string": frozenset(_STRING_KEYS | {"contentEncoding", "contentMediaType"}),
    "number": frozenset(_NUMBER_KEYS),
}
"""The keywords that constrain only values of one type (the others pass them by)."""

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

_DEPENDENCY_KEYS = ("dependentRequired", "dependentSchemas", "dependencies")

MAX_DEPENDENCY_BRANCHES = 64
"""Branches the dependencies of one object may expand into (six properties with dependencies)."""

MAX_ALLOF_PARTS = 64
"""Nested ``allOf`` schemas taken apart when merging one for a disjointness test or a negation
(``_Compiler.all_of_parts``); deeper ones stay whole (the test is partial anyway)."""

MAX_ONEOF_EXCLUSIVE = 12
"""A oneOf with more branches than this that may overlap is refused: each branch would hold
the negation of every other (quadratic), and compiling them would take seconds."""

MAX_ONEOF_CHOICES = 64
"""Alternatives a oneOf over ``required`` sets may expand into (see ``_exclusive_required``)."""

_REST_KEYS = (WRITTEN_KEY, OBJECT_KEY, EXTRAS_WRITTEN_KEY, DISTINCT_KEYS_KEY)
"""The compiler's own keywords of any-order objects' nodes."""

UNIQUE_ITEM_KEY = "x-outlines-gguf-unique-item"
"""Marks the item of an array with ``uniqueItems`` (split mode): ``{UNIQUE_ITEM_KEY:
items schema, UNIQUE_EXCLUDED_KEY: [texts]}``, its own node, spelled canonically (one text per
value) and without the texts already written (see :mod:`~outlines_gguf.json_schema.unique`)."""

UNIQUE_EXCLUDED_KEY = "x-outlines-gguf-unique-excluded"

UNIQUE_ARRAY_KEY = "x-outlines-gguf-unique-array"
"""Marks a node derived from one holding calls to a unique item: ``[node, item node, [texts]]``,
the same automaton with those calls going to the item without ``texts``."""

KNOWN_KEYWORDS = frozenset(
    {"type", "enum", "const", "$ref", "allOf", "anyOf", "oneOf", "not", "format", "pattern"}
    | {"if", "then", "else", "propertyNames", "dependentRequired", "dependentSchemas", "dependencies"}
    | {*_NEGATION_MARKERS, CHUNK_KEY, EXTRA_KEY, ITEMS_RUN_KEY, *_REST_KEYS}  # ours
    | {UNIQUE_ITEM_KEY, UNIQUE_EXCLUDED_KEY, UNIQUE_ARRAY_KEY, DISTINCT_VARIANT_KEY}
    | _OBJECT_KEYS | _ARRAY_KEYS | _CONTAINS_KEYS | _STRING_KEYS | _NUMBER_KEYS | UNSUPPORTED
)
"""Every keyword that constrains values (the others are annotations or unknown: ignored)."""

_ARRAY_SIBLINGS = frozenset({"items", "prefixItems", "additionalItems"})

_MERGEABLE = (
    _OBJECT_KEYS
    | _ARRAY_KEYS
    | _STRING_KEYS
    | _NUMBER_KEYS
    | {"type", "enum", "const", "propertyNames", *_NEGATION_MARKERS}
    | ANNOTATIONS
)

_MALFORMED = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, ZeroDivisionError)


def subsets_note(subsets: set[str]) -> str:
    """What to add to "no JSON value satisfies this schema" where valid subsets were taken (their
    paths): the schema may have values that the subsets leave out."""
    if not subsets:
        return ""
    return (
        "; the keywords at " + ", ".join(sorted(subsets)) + " are enforced as valid subsets "
        "(minProperties counts extra members once: their keys cannot be kept distinct), which may "
        "leave out every value; pass lenient=True to enforce less"
    )

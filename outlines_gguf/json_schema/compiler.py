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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from outlines_gguf.automata.budget import compile_budget
from outlines_gguf.automata.dfa import ByteDFA, language_size
from outlines_gguf.automata.nfa import Fragment
from outlines_gguf.automata.regex import NFABuilder, regex_may_be_refused
from outlines_gguf.errors import (
    ConstraintTooComplexError,
    OutlinesGGUFError,
    SchemaError,
)
from outlines_gguf.json_schema.algebra import _unique_domain
from outlines_gguf.json_schema.arrays import _ArrayRules, one_item_unique
from outlines_gguf.json_schema.combinators import _CombinatorRules
from outlines_gguf.json_schema.keywords import (
    _DEPENDENCY_KEYS,
    _MALFORMED,
    _SHAPE_CHECKS,
    _SHAPES,
    _TYPES,
    ANNOTATIONS,
    DEFAULT_MAX_DEPTH,
    FREE_FORM_DEPTH,
    HEAVY_LEAF_ENUM,
    HEAVY_LEAF_LENGTH,
    ITEMS_RUN_KEY,
    MAX_DISTRIBUTED,
    MAX_UNIQUE_VALUES,
    UNIQUE_ITEM_KEY,
    UNSUPPORTED,
    _is_int,
    _show,
    call_marker,
    subsets_note,
)
from outlines_gguf.json_schema.leaves import (
    NUMBER,
    UNENFORCEABLE_FORMATS,
)
from outlines_gguf.json_schema.lexical import Whitespace, _searched, shared_regex
from outlines_gguf.json_schema.objects import _ObjectRules
from outlines_gguf.json_schema.scalars import _ScalarRules
from outlines_gguf.json_schema.validate import (
    resolve_local,
)

_BEFORE_ONEOF = frozenset({*_DEPENDENCY_KEYS, "if", "then", "else", "$ref", "allOf", "anyOf"})
"""Keywords ``_Compiler.value`` handles before a ``oneOf`` (rewriting the schema into parts)."""


_UNEVALUATED_WHY = (
    ": what it leaves out depends on the value (an anyOf, oneOf, if, dependentSchemas or "
    "$dynamicRef beside it or in what applies in place) beyond what is split into exclusive "
    "branches (16 at most; not where a $ref points inside the schema)"
)
_UNSUPPORTED_WHY = {"unevaluatedProperties": _UNEVALUATED_WHY, "unevaluatedItems": _UNEVALUATED_WHY}
"""Why a keyword left as written cannot be enforced (the rewrites of ``unevaluated.py`` and
``refs.py`` took what they could)."""


class _Compiler(_ObjectRules, _ArrayRules, _CombinatorRules, _ScalarRules):
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
        self.split = calls is not None  # (the split engine's scan sets it too: it makes no calls)
        self._nest = 0  # objects and arrays entered so far in this automaton (split mode)
        self._leaves_called = False  # split mode: every nested value a call (any_order_body)
        self.needs: list[int] = []  # split mode: nodes that must be productive for this one to be
        self._spread = [MAX_DISTRIBUTED]  # allOf branches _distribute may still create (shared)
        self.ws = ws
        self.max_depth = max_depth
        self.lenient = lenient
        self.formats_unread = False  # while negating a oneOf branch with its formats unread
        self.negation_subset = False  # while negating a oneOf branch as a subset (negate_subset)
        self.member_negation = False  # while negating object keywords as "some member" (negate_members)
        self.subsets: set[str] = set()  # where a valid subset was taken (see SplitSchema.subsets; shared)
        # split mode: ids of unique arrays' items whose canonical automaton could not be built,
        # with why (SplitSchema._scan_unique_items; shared): their uniqueItems is not enforced
        self.unenforced_unique: dict[int, tuple[Any, str, bool]] = {}  # id -> (the items, why, too large)
        # the split schema's unique item automata, kept per items schema (None: build each anew)
        self.known_item_texts: Callable[[Any, str], ByteDFA | None] | None = None
        self.intersected = False  # an allOf part compiled on its own, for a product of automata
        self._within_depth = 0  # nested negate_within calls
        # one spelling per value (the items of a unique array): members in sorted order, an
        # extra member only alone; texts are then filtered by ``strings.canonical_json_dfa``
        self.canonical = False
        # split mode: the guide remembers extra keys, so objects may keep them distinct below
        # minProperties (DISTINCT_KEYS_KEY; without it, extra members count once)
        self.remember_keys = False
        self.extra_properties = extra_properties
        self.builder = builder or NFABuilder("JSON schema")
        self._ref_depth: dict[str, int] = {}

    # -- small helpers ------------------------------------------------------------------------

    def sub_compiler(
        self, builder: NFABuilder | None = None, extra_properties: bool | None = None
    ) -> _Compiler:
        """A fresh compiler with this one's root and settings, for an automaton built on its own
        (in ``builder``, or a new one): how the rule mixins make one without importing this module."""
        settings = (self.ws, self.max_depth, self.lenient, extra_properties)
        compiler = _Compiler(self.root, *settings, builder=builder)
        if builder is None:
            compiler.builder.label = self.builder.label  # (its errors name the piece, as this one's)
        compiler.canonical = self.canonical
        compiler.intersected = self.intersected
        compiler.subsets = self.subsets
        compiler.unenforced_unique = self.unenforced_unique
        compiler.known_item_texts = self.known_item_texts
        return compiler

    @property
    def b(self) -> NFABuilder:
        return self.builder

    @contextmanager
    def nested(self) -> Iterator[None]:
        """Inside an object or array: in split mode, values that may nest become calls."""
        self._nest += 1
        try:
            yield
        finally:
            self._nest -= 1

    def lit(self, text: str) -> Fragment:
        return self.b.literal(text)

    def token(self, text: str, before: str | None = None, after: str | None = None) -> Fragment:
        """A structural character with optional whitespace around it."""

        def make(b: NFABuilder) -> Fragment:
            parts = [b.regex(before) if before else None, b.literal(text), b.regex(after) if after else None]
            return b.seq([p for p in parts if p is not None])

        return self.b.shared(("token", text, before, after), make)

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
                f"no JSON value satisfies this schema (within the recursion depth limit {self.max_depth})"
                + subsets_note(self.subsets),
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


    def may_nest(self, schema: Any, path: str) -> bool:
        """Whether a value of ``schema`` may be an object or an array (or needs a ``$ref`` or a
        combinator resolved): in split mode such a value is a call to its own automaton."""
        if schema is True or schema == {}:
            return True
        if not isinstance(schema, dict):
            return False
        if any(key in schema for key in ("$ref", "allOf", "anyOf", "oneOf", "not", UNIQUE_ITEM_KEY)):
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
            or any(n is not None and _is_int(n) and n > HEAVY_LEAF_LENGTH for n in (max_len, min_len))
        )

    def check_keywords(self, schema: dict, path: str) -> None:
        listed = "enum" in schema or "const" in schema  # the validator checks listed values
        for key in schema:
            if key in UNSUPPORTED and not self.lenient:
                why = _UNSUPPORTED_WHY.get(key, "")
                raise self.fail(f"keyword {key!r} cannot be enforced{why} (pass lenient=True to ignore it)",
                                path)
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in UNENFORCEABLE_FORMATS and not self.lenient:
            raise self.fail(f"format {fmt!r} cannot be enforced (pass lenient=True to ignore it)", path)
        unique = schema.get("uniqueItems") is True and not listed
        enforced = _unique_domain(schema) is not None or self.unique_items(schema, path) is not None
        if unique and not enforced and self.one_unique_item(schema, path):
            self.subsets.add(f"{path}/uniqueItems")  # (at most one item, ``_ArrayRules.array``)
            enforced = True
        if unique and not self.lenient and not enforced:
            found = self.unenforced_unique.get(id(self.unique_items(schema, path, checked=False)))
            if found is not None:
                why = found[1]
                raise self.fail(
                    "keyword 'uniqueItems' cannot be enforced: its items are compared as one automaton "
                    f"of their canonical spellings, which cannot be built ({why}); pass lenient=True "
                    "to ignore it",
                    path,
                )
            raise self.fail(
                "keyword 'uniqueItems' can only be enforced for items from a few values (an enum or "
                f"boolean of at most {MAX_UNIQUE_VALUES}) or, by the default engine, not beside "
                "contains nor with a prefix whose required items may run out of values; pass "
                "lenient=True to ignore it",
                path,
            )

    def unique_too_large(self, schema: dict, path: str, exc: Exception) -> bool:
        """A unique array whose items' automaton passed the size limits when compiling met it
        (items the scan could not see, made by merging parts): recorded as the scan records
        it, then ignored with lenient, held to one item where it may (a valid subset), else a
        SchemaError. Returns False: the array is not compared item by item."""
        items = self.unique_items(schema, path, checked=False)
        why = str(exc) if isinstance(exc, OutlinesGGUFError) else "nested too deeply"
        self.unenforced_unique[id(items)] = (items, why, True)
        if self.lenient:
            return False
        if self.one_unique_item(schema, path):
            self.subsets.add(f"{path}/uniqueItems")
            return False
        raise self.fail(
            "keyword 'uniqueItems' cannot be enforced: its items are compared as one automaton of "
            f"their canonical spellings, which cannot be built ({why}); pass lenient=True to ignore it",
            path,
        )

    def one_unique_item(self, schema: dict, path: str) -> bool:
        """A unique array (not enforced by remembering its items) taken with at most one item, a
        valid subset (:func:`~outlines_gguf.json_schema.arrays.one_item_unique`): inside a
        canonically spelled item of another unique array (one automaton, no memory of its
        own), or where the automaton of its items' canonical spellings passed the size limits
        (Swagger 2.0's ``parameters``: a oneOf of a dozen kinds of object). Not with lenient,
        which ignores the keyword instead."""
        if self.lenient or not one_item_unique(schema):
            return False
        found = self.unenforced_unique.get(id(self.unique_items(schema, path, checked=False)))
        return self.canonical or (found is not None and found[2])

    def unique_items(self, schema: dict, path: str, checked: bool = True) -> Any:
        """The items schema of an array with ``uniqueItems`` that the split engine enforces
        (every item spelled canonically, :meth:`unique_item_dfa`, the guide remembering them),
        or None: not beside ``contains``, and with a prefix (``prefixItems``, an items array)
        only where every item ``minItems`` requires is sure to find a value not written before
        (position i of a language of more than i values), so that no array is left unable to
        go on; or whose items' automaton could not be built (``unenforced_unique``, unless not
        ``checked``)."""
        if not self.split or schema.get("uniqueItems") is not True or "contains" in schema:
            return None
        items = schema.get("items", {})
        prefix = schema.get("prefixItems", [])
        if isinstance(items, list):  # draft 4: items as a tuple
            prefix, items = items, schema.get("additionalItems", {})
        if not isinstance(items, (dict, bool)) or not isinstance(prefix, list):
            return None
        needed = schema.get("minItems", 0)
        if prefix and _is_int(needed) and needed > 0:
            for i in range(int(needed)):
                at = prefix[i] if i < len(prefix) else items
                dfa = self.item_texts(at, f"{path}/items")
                size = None if dfa is None else language_size(dfa, i + 1)
                if dfa is None or (size is not None and size <= i):
                    return None
        found = {} if items is True else items
        return None if checked and id(found) in self.unenforced_unique else found

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

    def check_decisions(self, schema: dict, path: str, negated: bool = False) -> None:
        """Take, on ``schema`` as it stands, the decisions that compiling it takes before any
        automaton is built and that raise a :class:`SchemaError` for a keyword that cannot be
        enforced: dependencies and ``if``/``then``/``else`` expanded, a ``oneOf`` made exclusive,
        ``not`` and ``contains`` negated, ``patternProperties`` checked disjoint (with
        ``lenient``, as leniently as compiling); and a ``pattern`` the regex compiler may
        refuse is compiled (a :class:`RegexError`). The split engine's scan runs this on every
        subschema, so that such a keyword deep inside is found before generation reaches it.

        Compiling may meet a subschema in a context where the decision differs (keywords of
        ``allOf`` parts merged beside a ``contains``); the scan treats an error here as a
        reason to compile eagerly, not as the answer. ``negated``: the schema a ``not`` holds,
        which is negated rather than compiled (its ``oneOf``, ``not``, ``if`` and dependencies
        are rewritten by :meth:`negate`, whose refusal is the ``not``'s own)."""
        if "enum" in schema or "const" in schema:
            return  # the listed values are checked by the validator
        if not negated and any(key in schema for key in _DEPENDENCY_KEYS):
            self.expand_dependencies(schema, path)
        if not negated and "if" in schema:
            self.expand_condition(schema, path)
        if not negated and isinstance(schema.get("oneOf"), list):
            # as compiling meets it: the keywords handled before it (dependencies, if/then/else,
            # $ref, allOf, anyOf) turn the schema into allOf parts, and a part with a oneOf never
            # merges, so the oneOf is compiled beside the other keywords only
            self.union_branches({k: v for k, v in schema.items() if k not in _BEFORE_ONEOF}, path)
        if not negated and "not" in schema:
            self.apply_not(schema, path)
        if "contains" in schema and "array" in self.types(schema, path):
            self.contains_negation(schema, path)
        patterns = schema.get("patternProperties")
        regexes = [schema["pattern"]] if isinstance(schema.get("pattern"), str) else []
        for regex in [*regexes, *(patterns if isinstance(patterns, dict) else ())]:
            searched = _searched(regex)
            if regex_may_be_refused(searched):  # (rare: only then is it built here)
                with compile_budget(f"JSON schema at {path}"):
                    NFABuilder("pattern").regex(searched)
        if isinstance(patterns, dict) and len(patterns) > 1 and not self.lenient:
            if "object" in self.types(schema, path):
                self.check_disjoint_patterns(list(patterns), path)

    def types(self, schema: dict, path: str) -> list[str]:
        """The JSON types a value of ``schema`` may have. Without ``type``, every type: a
        keyword constrains only values of its own type (``{"minLength": 3}`` admits 5 and
        ``null``, as every validator reads it), so nothing is inferred from the keywords."""
        declared = schema.get("type")
        if declared is None:
            return [t for t in _TYPES if t != "integer"]  # integers are numbers
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
        return self.container(kind, schema, path, depth)

    def container(self, kind: str, schema: dict, path: str, depth: int) -> Fragment | None:
        """An array or an object (``kind``): free-form ones end at depth 0; the values inside
        are nested (in split mode, calls where they may nest further)."""
        if depth <= 0 and not schema:
            return None
        with self.nested():
            return self.array(schema, path, depth) if kind == "array" else self.object(schema, path, depth)

    def any_value(self, depth: int) -> Fragment | None:
        """Any JSON value nested at most ``depth`` levels: an automaton built once per
        (depth, whitespace) and embedded, so schemas do not determinize it again."""
        ws, canonical = self.ws, self.canonical

        def build(b: NFABuilder) -> Fragment | None:
            compiler = _Compiler({}, ws, DEFAULT_MAX_DEPTH, False, None, builder=b)
            compiler.canonical = canonical
            return compiler.any_value_nfa(depth)

        return self.b.shared(("any value", depth, ws, canonical), build)

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
        containers = [self.container(kind, {}, "#", depth) for kind in ("array", "object")]
        return self.b.alt([*scalars, *containers])

    # -- references -----------------------------------------------------------------------------

    def resolve(self, ref: str, path: str) -> Any:
        if not ref.startswith("#"):
            raise self.fail(
                f"only local $ref ('#/...') is supported, got {ref!r}: nothing is fetched; pass the "
                "document it points to as refs={uri: schema} (on the command line: --ref URI=FILE), "
                "or copy it into the schema's $defs and point there",
                path,
            )
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


# -- the entry point -----------------------------------------------------------------------------


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

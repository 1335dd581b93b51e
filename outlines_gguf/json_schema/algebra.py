"""Schema algebra: merging allOf parts, negating keywords, distributing allOf over unions,
alternatives, disjointness, and the exclusive required sets of a oneOf."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from outlines_gguf.automata.ops import intersect
from outlines_gguf.errors import OutlinesGGUFError
from outlines_gguf.json_schema.keywords import (
    _ARRAY_SIBLINGS,
    _CONTAINS_KEYS,
    _COUNT_FLIP,
    _FAMILY,
    _FLIP,
    _MERGEABLE,
    _NEGATION_MARKERS,
    _TYPES,
    ANNOTATIONS,
    KNOWN_KEYWORDS,
    MAX_ALLOF_PARTS,
    MAX_ONEOF_CHOICES,
    MAX_SPLICED,
    MAX_UNIQUE_VALUES,
    NOT_MULTIPLE_KEY,
    _is_int,
    _is_number,
)
from outlines_gguf.json_schema.lexical import _searched
from outlines_gguf.json_schema.validate import Undecided, json_equal, pattern_dfa, pattern_matches


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
        # (options the other parts contradict are left out: "requires a" beside "a: false")
        kept = [option for option in options if not _provably_empty([*others, option])] or options[:1]
        facts = _merge_all(others)
        if facts is not None:
            # (options the other parts imply but for a type say only that type: "requires a"
            # beside "requires a", "b: false" beside "b: not {}"; the same option once)
            reduced = [_beyond(facts, option) for option in kept]
            if any(r is True for r in reduced):
                return {"anyOf": [{"allOf": others}]}  # the union holds wherever the others do
            unique = {json.dumps(r, sort_keys=True, default=str): r for r in reduced}
            kept = list(unique.values())
        return {"anyOf": [{"allOf": [*others, option]} for option in kept]}
    return None


def _beyond(facts: dict, option: Any) -> Any:
    """What ``option`` adds to ``facts`` (allOf parts merged): True where they imply all of it,
    ``{"type": ...}`` where they imply all but its type, else ``option`` itself. Decided for
    options of ``type``, ``required`` and ``properties`` only (what the negation of a
    closed branch writes: "base present", "length absent")."""
    if option is True or _always(option):
        return True
    if not isinstance(option, dict) or set(option) - ANNOTATIONS - {"type", "required", "properties"}:
        return option
    required, props = option.get("required", []), option.get("properties", {})
    held = facts.get("required", [])
    if not isinstance(required, list) or not isinstance(held, list) or not set(required) <= set(held):
        return option
    known = facts.get("properties", {})
    if not isinstance(props, dict) or not isinstance(known, dict):
        return option
    for name, schema in props.items():
        if _always(schema) or (name in known and _implies(known[name], schema)):
            continue
        return option
    return {"type": option["type"]} if "type" in option else True


def _implies(known: Any, schema: Any) -> bool:
    """A property's schema in the facts (``known``) implies the option's (``schema``): the same,
    or both false."""
    return known == schema or (_never(known) and _never(schema))


def _always(schema: Any) -> bool:
    """``schema`` holds for every value (``true``, or annotations only)."""
    return schema is True or (isinstance(schema, dict) and not set(schema) - ANNOTATIONS)


def _never(schema: Any) -> bool:
    """``schema`` holds for no value (``false``, ``not: {}``, an empty ``enum``)."""
    if schema is False:
        return True
    if not isinstance(schema, dict):
        return False
    rest = set(schema) - ANNOTATIONS
    return (rest == {"not"} and _always(schema["not"])) or (rest == {"enum"} and schema["enum"] == [])


def _provably_empty(parts: list[Any]) -> bool:
    """No value satisfies all of ``parts``, as far as merging the mergeable ones shows: a
    ``false`` part, no type in common, an empty ``enum``, or, where only objects are allowed, a
    required property whose schemas (gathered by the merge) are ``false`` or pairwise disjoint.
    A cheap, partial test (False: perhaps satisfiable) for pruning the combinations of
    conditionals."""
    spliced = _spliced(parts)
    if any(p is False for p in spliced):
        return True
    unmergeable = KNOWN_KEYWORDS - _MERGEABLE - {"not"}
    simple = [p for p in spliced if isinstance(p, dict) and not set(p) & unmergeable]
    merged = _merge_all(simple) if simple else None
    if merged is None:
        return False
    if merged.get("enum") == [] or merged.get("type") == []:
        return True
    if merged.get("type") not in ("object", ["object"]):
        return False  # (a required property constrains objects only: other values may fit)
    props = merged.get("properties", {})
    for name in merged.get("required", []) if isinstance(merged.get("required"), list) else []:
        sub = props.get(name, True) if isinstance(props, dict) else True
        if sub is False:
            return True
        schemas = _spliced([sub])
        if any(_safely_disjoint(_flat(a), _flat(b)) for i, a in enumerate(schemas) for b in schemas[i + 1 :]):
            return True
    return False


def _spliced(parts: list[Any]) -> list[Any]:
    """``allOf`` parts with nested ``allOf``s opened (allOf is associative), and ``anyOf``s of
    one branch too (that branch is a part), so the parts the compiler itself nests (negations,
    oneOf branches) merge like the schema's own."""
    out: list[Any] = []
    stack = list(reversed(parts))
    while stack:
        part = stack.pop()
        nested = isinstance(part, dict) and isinstance(part.get("allOf"), list)
        single = isinstance(part, dict) and isinstance(part.get("anyOf"), list) and len(part["anyOf"]) == 1
        if (nested or single) and len(out) + len(stack) < MAX_SPLICED:
            key = "allOf" if nested else "anyOf"
            rest = {k: v for k, v in part.items() if k != key}
            stack.extend(reversed([rest, *part[key]]))
            continue
        beside = _beside_ref(part)
        if beside is not None and len(out) + len(stack) < MAX_SPLICED:
            # ({"$ref": r, "type": ...}: the target and its siblings, as the compiler reads a
            # $ref, so the target can be inlined and merge with the other parts)
            stack.extend(reversed([{k: v for k, v in part.items() if k not in beside}, beside]))
            continue
        if part == {} or part in out:
            continue  # (a part twice is the part once: recursion through merged parts doubled them)
        out.append(part)
    return out or [True]


def _beside_ref(part: Any) -> dict | None:
    """The keywords beside a ``$ref`` (the compiler reads ``{$ref, ...}`` as an ``allOf`` of the
    target and them), or None where there are none to take apart: ``unevaluated*`` stays beside
    the ``$ref`` whose annotations it reads; ``$id``, ``$defs`` and annotations stay with it."""
    if not isinstance(part, dict) or "$ref" not in part:
        return None
    beside = {k: v for k, v in part.items() if k in KNOWN_KEYWORDS and k != "$ref"}
    if not beside or set(beside) & _UNEVALUATED:
        return None
    return beside


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
            elif isinstance(inner, dict) and _independent(beside, inner):
                out.append({**beside, **inner})
            else:
                out.append({"allOf": [beside, inner]})
    return out


_SIBLING_GROUPS = (
    frozenset({"properties", "patternProperties", "additionalProperties"}),
    _ARRAY_SIBLINGS,
    frozenset(_CONTAINS_KEYS),
    frozenset({"if", "then", "else"}),
)
"""Keywords whose meaning depends on which of the others stand beside them in one schema: a
part's ``additionalProperties`` is about the keys *its* ``properties`` leave out."""

_UNEVALUATED = frozenset({"unevaluatedProperties", "unevaluatedItems"})


def _independent(a: dict, b: dict) -> bool:
    """Whether two schemas written as one (``{**a, **b}``) mean what both together mean: no
    keyword in common, none whose meaning depends on a sibling that the other brings (``{"anyOf":
    [{"properties": {"b": true}}], "additionalProperties": false}`` does not admit ``{"b": 1}``),
    no ``unevaluated*`` (it reads every sibling), and none of the compiler's own structure keys."""
    keys_a, keys_b = set(a), set(b)
    if keys_a & keys_b:
        return False
    if (keys_a | keys_b) & _UNEVALUATED:
        return False
    if any(keys_a & group and keys_b & group for group in _SIBLING_GROUPS):
        return False
    ours = {k for k in keys_a | keys_b if k.startswith("x-outlines-gguf-")}
    return ours <= set(_NEGATION_MARKERS)


def of_types(values: list, declared: Any) -> list:
    """The values whose JSON type the ``type`` keyword ``declared`` (None: any) admits."""
    if declared is None:
        return list(values)
    kinds = set(declared) if isinstance(declared, list) else {declared}
    if "number" in kinds:
        kinds.add("integer")
    return [v for v in values if _json_type(v) in kinds]


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
            if len(distinct) > MAX_UNIQUE_VALUES:
                return None  # (at once: an enum of 1,200 icon names compared pairwise took 1.6 s)
    return distinct


def _negate_keyword(
    key: str, value: Any, compiler: Any, path: str, refs: frozenset[str] = frozenset()
) -> tuple[tuple[str, ...], Any]:
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
            negated = compiler.negate(sub, path, refs)
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
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names[type(v)]


def _safely_disjoint(a: Any, b: Any) -> bool:
    """:func:`_disjoint`, False (not provably disjoint) where nested values are malformed."""
    try:
        return _disjoint(a, b)
    except (TypeError, AttributeError, KeyError, ValueError):
        return False


def _exclusive_required(branches: list) -> list | None:
    """``oneOf`` branches that only require properties, rewritten as branches that exclude each
    other, or None if they are not of that form.

    Branch i holds when its names R_i are present and, for every other branch j, not all of
    R_j: some name of R_j - R_i is absent (a forbidden property). If R_j is inside R_i, branch i
    can never be the only one and is dropped. Only objects: a value of another type satisfies
    every branch (``required`` constrains objects only), so never exactly one (``1`` was
    accepted by ``oneOf: [{required: [a, b]}, {required: [a, c]}]``).
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
            out.append({"type": "object", "required": mine, "properties": dict.fromkeys(absent, False)})
    return out or [False]


_CLOSED_OBJECT_KEYS = frozenset({"type", "properties", "additionalProperties", "required"})


def _exclusive_closed_objects(resolved: list, combined: list, overlaps: set[tuple[int, int]]) -> list | None:
    """``oneOf`` branches that overlap only as closed objects with disjoint declared keys,
    rewritten to exclude each other, or None if they are not of that form.

    Branches i and j (``type: object``, ``additionalProperties: false``, no other keywords
    but ``properties`` and ``required``) whose declared names share none: an object of
    branch i with a key fails branch j (the key is not j's), so the only object both may
    accept is ``{}``. Branch i alone is then branch i with some key, where j accepts ``{}``
    (nothing required), and branch i as it is otherwise. Exact: appveyor's commands, a
    ``oneOf`` of a string and four objects of one optional key each (``ps``, ``cmd``, ...)."""
    keys: dict[int, set[str]] = {}
    for pair in overlaps:
        for i in pair:
            branch = resolved[i]
            if i in keys:
                continue
            if (
                not isinstance(branch, dict)
                or set(branch) - ANNOTATIONS - _CLOSED_OBJECT_KEYS
                or branch.get("additionalProperties") is not False
                or _type_set(branch) != {"object"}
                or not isinstance(branch.get("properties", {}), dict)
                or not isinstance(branch.get("required", []), list)
            ):
                return None
            keys[i] = set(branch.get("properties", {}))
    out = list(combined)
    for i, j in overlaps:
        if keys[i] & keys[j]:
            return None
    for i in keys:
        if any(not resolved[j].get("required") for a, j in overlaps if a == i):
            names = sorted(keys[i])  # some key of branch i: never one of j's
            some_key = {"anyOf": [{"required": [n]} for n in names]}
            out[i] = {"allOf": [combined[i], some_key]} if names else False
    return out


def _flat(schema: Any) -> Any:
    """A property's schema with a mergeable ``allOf`` merged (where a oneOf branch's ``const``
    discriminator was combined with the declared property it refines)."""
    if isinstance(schema, dict) and "allOf" in schema and isinstance(schema["allOf"], list):
        merged = _merge_all(conjuncts(schema))
        if merged is not None:
            return merged
    return schema


def conjuncts(schema: dict, inline: Callable[[Any], Any] = lambda part: part) -> list:
    """The conjuncts of ``schema``: its keywords but ``allOf``, and its ``allOf`` parts taken
    apart in turn (each after ``inline``, which may resolve a top-level ``$ref``), up to
    :data:`MAX_ALLOF_PARTS` nested ``allOf``s: a branch written as ``allOf: [{$ref: base}]``
    beside its own keywords merges like one written out."""
    parts: list[Any] = []
    stack: list[Any] = [schema]
    expanded = 0
    while stack:
        part = inline(stack.pop())
        if isinstance(part, dict) and isinstance(part.get("allOf"), list) and expanded < MAX_ALLOF_PARTS:
            expanded += 1
            parts.append({k: v for k, v in part.items() if k != "allOf"})
            stack.extend(reversed(part["allOf"]))
        else:
            parts.append(part)
    return parts


def _both(a: Any, b: Any) -> Any:
    """The schema of values that satisfy ``a`` and ``b``: one of them where they are the same
    (merging a recursive schema with itself, as pattern and declared properties do, would
    otherwise double its parts at every level: an automaton per level, each twice the last)."""
    return a if a == b else {"allOf": [a, b]}


def _scalar_key(v: Any) -> tuple | None:
    """A hashable key equal for JSON-equal scalars (1 and 1.0 alike), None for arrays and objects."""
    if isinstance(v, str):
        return ("string", v)
    if isinstance(v, bool) or v is None:
        return ("literal", v)
    if isinstance(v, (int, float)):
        return ("number", v)  # Python's 1 == 1.0 and hash(1) == hash(1.0), as JSON equality wants
    return None


def _share_a_value(values: list, other: list) -> bool:
    """Some value of ``values`` is JSON-equal to one of ``other`` (by hashing where all are
    scalars: two enums of hundreds of strings are compared in linear time)."""
    keys = [_scalar_key(v) for v in values]
    others = [_scalar_key(w) for w in other]
    if None not in keys and None not in others:
        return not set(keys).isdisjoint(others)
    return any(json_equal(v, w) for v in values for w in other)


def _disjoint(a: Any, b: Any) -> bool:
    """True only if no JSON value can satisfy both schemas (a sound, partial test)."""
    if a is False or b is False:
        return True
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    if "$ref" in a or "$ref" in b:  # (beside it, drafts 4-7 ignore the other keywords)
        return False
    # the other keywords read here constrain alone: what anyOf, oneOf, allOf or not add only
    # narrows a schema, so a pair disjoint without them is disjoint with them
    ta, tb = _type_set(a), _type_set(b)
    if "number" in ta and "integer" not in ta:
        ta.add("integer")
    if "number" in tb and "integer" not in tb:
        tb.add("integer")
    if not ta & tb:
        return True
    for x, ty in ((a, tb), (b, ta)):
        if ty <= {"integer"} and 1 in (x.get(NOT_MULTIPLE_KEY) or ()):
            return True  # numbers with a fraction, and integers
    if ta & tb == {"string"} and (_no_overlap(a, b, "minLength", "maxLength") or _no_common_match(a, b)):
        return True
    if ta & tb <= {"integer", "number"} and _no_overlap(a, b, "minimum", "maximum"):
        return True
    for x, y in ((a, b), (b, a)):
        if "const" in x or "enum" in x:
            values = [x["const"]] if "const" in x else x.get("enum", [])
            other = [y["const"]] if "const" in y else y.get("enum") if "enum" in y else None
            if other is not None and not _share_a_value(values, other):
                return True
    if ta & tb == {"object"}:
        req_a, req_b = set(a.get("required", [])), set(b.get("required", []))
        props_a, props_b = a.get("properties", {}), b.get("properties", {})
        for name in req_a & req_b:
            if name in props_a and name in props_b and _disjoint(_flat(props_a[name]), _flat(props_b[name])):
                return True
        for y, req in ((b, req_a), (a, req_b)):
            if any(_forbids(y, name) for name in req):
                return True  # one requires a property the other forbids
        if _needs_a_key(a) or _needs_a_key(b):
            return _no_common_key(a, b)
    return False


def _no_common_match(a: dict, b: dict) -> bool:
    """Both schemas have a ``pattern`` and no string matches both, under any reader's meaning of
    their classes (``bundleconfig``'s ``oneOf`` of ``\\.js$``, ``\\.css$`` and ``\\.html?$`` file
    names: disjoint branches, where making them exclusive multiplies their automata)."""
    p, q = a.get("pattern"), b.get("pattern")
    if not isinstance(p, str) or not isinstance(q, str):
        return False
    try:
        dp, dq = pattern_dfa(_searched(p), wide=True), pattern_dfa(_searched(q), wide=True)
    except OutlinesGGUFError:  # a pattern our automata cannot express
        return False
    return dp is None or dq is None or intersect(dp, dq) is None


def _no_overlap(a: dict, b: dict, low: str, high: str) -> bool:
    """One schema's inclusive bound ``low`` lies above the other's ``high``."""
    for x, y in ((a, b), (b, a)):
        lo: Any = x.get(low)
        hi: Any = y.get(high)
        if _is_number(lo) and _is_number(hi) and lo > hi:
            return True
    return False


def _needs_a_key(schema: dict) -> bool:
    """An object of ``schema`` has at least one property."""
    low = schema.get("minProperties", 0)
    return bool(schema.get("required")) or (isinstance(low, int) and not isinstance(low, bool) and low >= 1)


def _no_common_key(a: dict, b: dict) -> bool:
    """Both objects are closed (``additionalProperties: false``) and no key is allowed by both:
    none declared by one is allowed by the other, and no key matches a pattern of each."""
    if a.get("additionalProperties", True) is not False or b.get("additionalProperties", True) is not False:
        return False
    for x, y in ((a, b), (b, a)):
        if any(sub is not False and not _forbids(y, name) for name, sub in x.get("properties", {}).items()):
            return False
    try:
        for p in a.get("patternProperties") or {}:
            for q in b.get("patternProperties") or {}:
                dp, dq = pattern_dfa(_searched(p), wide=True), pattern_dfa(_searched(q), wide=True)
                if dp is not None and dq is not None and intersect(dp, dq) is not None:
                    return False
    except OutlinesGGUFError:  # a pattern our automata cannot express
        return False
    return True


def _forbids(schema: dict, name: str) -> bool:
    """An object of ``schema`` certainly cannot have the property ``name``: it is declared
    ``false``, or it is undeclared, matches no ``patternProperties`` and ``additionalProperties``
    is ``false``, or ``not: {"required": [..., name, ...]}`` (the one property alone)."""
    props = schema.get("properties", {})
    if name in props:
        return props[name] is False
    negated = schema.get("not")
    if isinstance(negated, dict) and set(negated) == {"required"} and negated["required"] == [name]:
        return True
    if schema.get("additionalProperties", True) is not False:
        return False
    patterns = schema.get("patternProperties") or {}
    try:
        return not any(pattern_matches(p, name) for p in patterns)
    except Undecided:
        return False


_VACUOUS_WHEN_TRUE = frozenset(
    {
        "additionalProperties",
        "items",
        "additionalItems",
        "unevaluatedProperties",
        "unevaluatedItems",
        "propertyNames",
    }
)
"""Keywords whose subschema ``true`` (or ``{}``) constrains nothing."""


def _without_free_patterns(part: Any) -> Any:
    """``part`` without the ``patternProperties`` whose schema is ``true``, where no
    ``additionalProperties`` of its own restricts the other keys (so they exempt none): they
    constrain nothing (OpenAPI's ``$ref: specification-extensions``, ``^x-: true``, beside an
    ``additionalProperties`` that every member then obeys, the extensions included)."""
    if not isinstance(part, dict) or part.get("additionalProperties", True) not in (True, {}):
        return part
    patterns = part.get("patternProperties")
    if not isinstance(patterns, dict) or not any(v is True or v == {} for v in patterns.values()):
        return part
    kept = {p: v for p, v in patterns.items() if not (v is True or v == {})}
    rest = {k: v for k, v in part.items() if k != "patternProperties"}
    return {**rest, "patternProperties": kept} if kept else rest


def _merge_all(parts: list[Any]) -> dict | None:
    """Merge allOf parts into one schema when that is exact, else None.

    A property another part declares is "additional" for a part that restricts additional
    properties without declaring it: merged, the property's schema takes that part's
    ``additionalProperties`` too (or, where that part has ``patternProperties``, the property
    must be one some part declares ``false``; else None). A part's ``patternProperties`` apply
    to every key they match, declared or not, so beside no restriction they merge as they are.
    """
    if any(p is False for p in parts):
        return {"enum": []}  # nothing satisfies false, whatever the other parts say
    parts = [_without_free_patterns(p) for p in parts]
    dicts = [p for p in parts if isinstance(p, dict)]
    declared = [set(p.get("properties", {})) for p in dicts]
    everything = set().union(*declared) if declared else set()
    restricting = [p for p in dicts if p.get("additionalProperties", True) is not True]
    with_patterns = [p for p in dicts if "patternProperties" in p]
    extras: dict[str, list[Any]] = {}
    for part in restricting:
        patterns = part.get("patternProperties", {})
        if not isinstance(patterns, dict):
            return None
        for name in everything - set(part.get("properties", {})):
            # a name one of the part's patterns matches is no additional property of it (its
            # pattern's schema applies, and still does merged: patterns apply to every key)
            try:
                if any(pattern_matches(p, name) for p in patterns):
                    continue
            except Undecided:
                return None
            extras.setdefault(name, []).append(part["additionalProperties"])
    # keywords whose meaning depends on their siblings keep it only beside them: a part's
    # patternProperties exempt keys from *its* additionalProperties, a part's prefixItems (or
    # draft-4 items array) limit *its* items/additionalItems to the later elements
    for q in with_patterns:
        for r in restricting:  # (unless q's patterns are r's own: then they exempt no other keys)
            if q is not r and not set(q["patternProperties"]) <= set(r.get("patternProperties", {})):
                return None
    with_items = [p for p in dicts if _ARRAY_SIBLINGS & set(p)]
    if len(with_items) > 1 and not all(
        set(p) & _ARRAY_SIBLINGS == {"items"} and isinstance(p["items"], (dict, bool)) for p in with_items
    ):
        return None  # (``items`` as a schema alone applies to every item: those merge)
    if sum(1 for p in dicts if _CONTAINS_KEYS & set(p)) > 1:
        return None  # (one part's contains merges: it reads every item, whatever the items say)
    merged: dict[str, Any] = {}
    for part in parts:
        if part is True:
            continue
        if part is False or not isinstance(part, dict):
            return None if part is not False else {"enum": []}
        if (set(part) & KNOWN_KEYWORDS) - _MERGEABLE - _CONTAINS_KEYS - {"not"}:
            return None
        for key, value in part.items():
            if key in ANNOTATIONS or key not in KNOWN_KEYWORDS:
                continue
            if key in _VACUOUS_WHEN_TRUE and (value is True or value == {}):
                continue  # (``additionalProperties: true`` beside a closed part: that part decides)
            if key not in merged:
                merged[key] = value
            elif key in ("properties", "patternProperties"):
                if not isinstance(value, dict) or not isinstance(merged[key], dict):
                    return None
                common = set(merged[key]) & set(value)
                props = {**merged[key], **value}
                for name in common:
                    props[name] = _both(merged[key][name], value[name])
                merged[key] = props
            elif key in ("items", "propertyNames"):  # (schemas for every item, every key)
                merged[key] = _both(merged[key], value)
            elif key == "not":  # not a and not b: not (a or b)
                merged[key] = {"anyOf": [merged[key], value]}
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
            elif key == "enum" and isinstance(value, list) and isinstance(merged[key], list):
                theirs = {_scalar_key(v) for v in value}
                if None in theirs or any(_scalar_key(v) is None for v in merged[key]):
                    return None  # (arrays and objects: no JSON equality here)
                merged[key] = [v for v in merged[key] if _scalar_key(v) in theirs]
            elif merged[key] != value:
                return None
    if extras:
        props = dict(merged["properties"])
        for name, more in extras.items():
            props[name] = {"allOf": [props[name], *more]}
        merged["properties"] = props
    return merged

"""``unevaluatedProperties``/``unevaluatedItems`` rewritten where what is evaluated is static.

A property (an item) is *evaluated* by the keywords of the schema and of the subschemas that
apply to the same value and pass: ``allOf`` parts, ``$ref`` targets (``not`` passes no
annotations on). Where none of those holds a keyword whose annotations depend on the value
(``anyOf``, ``oneOf``, ``if``, ``dependentSchemas``, ``contains``, dynamic references), the
evaluated names and patterns are the union of their ``properties`` and ``patternProperties``
(every name, beside an ``additionalProperties`` or a nested ``unevaluatedProperties``), and

    unevaluatedProperties: U  ==  properties += {name: true}, patternProperties += {p: true},
                                  additionalProperties: U

exactly (``additionalProperties`` governs the names neither lists). Items likewise: the longest
``prefixItems`` (every item beside ``items`` or a nested ``unevaluatedItems``), and
``unevaluatedItems: U`` is ``prefixItems`` padded with ``true`` to that length and ``items: U``.
Other uses are left as written (the compiler refuses them, naming the keyword).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

from outlines_gguf.json_schema.algebra import _provably_empty
from outlines_gguf.json_schema.keywords import ANNOTATIONS
from outlines_gguf.json_schema.refs import _LIST_KEYS, _MAP_KEYS, _SCHEMA_KEYS, _escape
from outlines_gguf.json_schema.validate import Undecided, pattern_matches, resolve_local

_DYNAMIC = frozenset(
    {
        "anyOf",
        "oneOf",
        "if",
        "then",
        "else",
        "dependentSchemas",
        "dependencies",
        "$dynamicRef",
        "$recursiveRef",
    }
)
_KEYWORDS = ("unevaluatedProperties", "unevaluatedItems")
_DEFINITIONS = ("$defs", "definitions")
_LIFTABLE = {
    "if": ("if", "then", "else"),
    "oneOf": ("oneOf",),
    "anyOf": ("anyOf",),
    "dependentSchemas": ("dependentSchemas",),
}
"""Keywords :func:`_lift` moves out of an ``allOf`` part (with those that go with them)."""
MAX_LIFTS = 8
"""At most this many keywords lifted (and ``$ref``s inlined) on the way to one rewrite."""
MAX_BRANCHES = 16
"""At most this many branches when an ``if``, ``anyOf`` or ``oneOf`` beside an unevaluated keyword
is split out (nested ones multiply)."""


MAX_CLOSING = 8
"""At most this many closing conditionals of their own (``_rewrite_by_conditions``); those folded
into a conditional with the same ``if`` are free."""


def _contributors(
    root: Any, node: Any, dynamic: list[Any] | None = None, resolve: Resolve | None = None
) -> list[dict] | None:
    """The node and the subschemas applied in place with it (allOf parts, $ref targets), or None
    where one of them evaluates what only the value can tell (or refs cycle in place). With
    ``dynamic`` (a list), those keywords do not stop it: their subschemas are added to it.
    ``$ref``s are resolved in ``root``, or by ``resolve`` (to their rewritten targets)."""
    out: list[dict] = []
    seen: set[int] = set()
    stack: list[Any] = [node]
    while stack:
        schema = stack.pop()
        if schema is True:
            continue
        if not isinstance(schema, dict):
            return None
        if id(schema) in seen:
            return None  # an in-place cycle
        seen.add(id(schema))
        found = _DYNAMIC & set(schema)
        if found:
            if dynamic is None:
                return None
            for key in sorted(found):
                value = schema[key]
                if key in ("$dynamicRef", "$recursiveRef"):
                    dynamic.append(None)  # (anything, as far as this reads)
                elif key in ("anyOf", "oneOf"):
                    dynamic.extend(value if isinstance(value, list) else [None])
                elif key in ("dependentSchemas", "dependencies"):  # (name lists evaluate nothing)
                    deps = value.values() if isinstance(value, dict) else [None]
                    dynamic.extend(v for v in deps if not isinstance(v, list))
                else:
                    dynamic.append(value)
        out.append(schema)
        parts = schema.get("allOf", [])
        if not isinstance(parts, list):
            return None
        stack.extend(parts)
        ref = schema.get("$ref")
        if ref is not None:
            if not isinstance(ref, str):
                return None
            try:
                target = resolve_local(root, ref) if resolve is None else resolve(ref)
            except LookupError:
                return None
            if target is None:
                return None
            stack.append(target)
    return out


def _possible_names(root: Any, schemas: list[Any]) -> tuple[set[str], set[str]] | None:
    """The property names and patterns that ``schemas`` and what they apply in place could
    evaluate, whichever of their branches pass; None: any name (``additionalProperties``, an
    unevaluated keyword, a dynamic reference, what cannot be read)."""
    names: set[str] = set()
    patterns: set[str] = set()
    seen: set[int] = set()
    stack = list(schemas)
    while stack:
        schema = stack.pop()
        if schema is True or schema is False:
            continue
        if not isinstance(schema, dict) or ({"$dynamicRef", "$recursiveRef", *_KEYWORDS} & set(schema)):
            return None
        if id(schema) in seen:
            continue
        seen.add(id(schema))
        if "additionalProperties" in schema:
            return None
        props, pats = schema.get("properties", {}), schema.get("patternProperties", {})
        if not isinstance(props, dict) or not isinstance(pats, dict):
            return None
        names.update(props)
        patterns.update(pats)
        for key in ("allOf", "anyOf", "oneOf"):
            parts = schema.get(key, [])
            if not isinstance(parts, list):
                return None
            stack.extend(parts)
        stack.extend(schema[k] for k in ("if", "then", "else") if k in schema)  # (not: none)
        for key in ("dependentSchemas", "dependencies"):
            deps = schema.get(key, {})
            if not isinstance(deps, dict):
                return None
            stack.extend(v for v in deps.values() if not isinstance(v, list))
        ref = schema.get("$ref")
        if ref is not None:
            try:
                stack.append(resolve_local(root, ref))
            except (LookupError, AttributeError):
                return None
    return names, patterns


def _covered(name: str, names: dict[str, None], patterns: dict[str, None]) -> bool:
    """``name`` is evaluated whenever it is present: listed, or found by a pattern."""
    if name in names:
        return True
    try:
        return any(pattern_matches(p, name) for p in patterns)
    except Undecided:
        return False


def _rewrite_properties(root: Any, node: dict, into: dict) -> dict | None:
    """``into`` (``node`` with its subschemas rewritten) without ``unevaluatedProperties``, or
    None where it cannot be rewritten.

    Keywords whose annotations depend on the value (``if``, ``oneOf``, ``dependentSchemas``, ...)
    do not matter where every name their subschemas could evaluate is evaluated anyway, by the
    rest (OpenAPI 3.1's parameter: its ``in``/``style`` conditionals name properties the
    parameter declares): they stay, for what they check, and the rewrite is static."""
    dynamic: list[Any] = []
    contributors = _contributors(root, node, dynamic)
    if contributors is None:
        return None
    names: dict[str, None] = {}
    patterns: dict[str, None] = {}
    for i, schema in enumerate(contributors):
        if "additionalProperties" in schema or (i > 0 and "unevaluatedProperties" in schema):
            if dynamic:
                return None  # (every name, but only where the dynamic parts allow it: branch)
            return {k: v for k, v in into.items() if k != "unevaluatedProperties"}  # every name
        props, pats = schema.get("properties", {}), schema.get("patternProperties", {})
        if not isinstance(props, dict) or not isinstance(pats, dict):
            return None
        names.update(dict.fromkeys(props))
        patterns.update(dict.fromkeys(pats))
    if dynamic:
        possible = _possible_names(root, dynamic)
        if possible is None or not possible[1] <= set(patterns):
            return None
        if not all(_covered(name, names, patterns) for name in possible[0]):
            return None
    out = {k: v for k, v in into.items() if k != "unevaluatedProperties"}
    own_props, own_pats = into.get("properties", {}), into.get("patternProperties", {})
    extra_names = {n: True for n in names if n not in own_props}
    extra_pats = {p: True for p in patterns if p not in own_pats}
    if extra_names:
        out["properties"] = {**own_props, **extra_names}
    if extra_pats:
        out["patternProperties"] = {**own_pats, **extra_pats}
    out["additionalProperties"] = into["unevaluatedProperties"]
    return out


def _rewrite_items(root: Any, node: dict, into: dict) -> dict | None:
    """As :func:`_rewrite_properties`, for items: a prefix (``prefixItems``, or a 2019-09
    ``items`` array) evaluates its positions; ``items`` (a schema), ``additionalItems`` beside
    an array, or a nested ``unevaluatedItems`` every item; ``contains`` the items it matches
    (so an item after the prefix matches one of them or ``unevaluatedItems``)."""
    contributors = _contributors(root, node)
    if contributors is None:
        return None
    longest = 0
    arrays = prefixes = False  # which way prefixes are written
    matched: list[Any] = []
    for i, schema in enumerate(contributors):
        if "contains" in schema:  # (under 2019-09 too, as the suite and python-jsonschema read it)
            matched.append(schema["contains"])
        items = schema.get("items")
        every = "items" in schema and not isinstance(items, list)
        every = every or (isinstance(items, list) and "additionalItems" in schema)
        if every or (i > 0 and "unevaluatedItems" in schema):
            return {k: v for k, v in into.items() if k != "unevaluatedItems"}  # every item
        prefix = items if isinstance(items, list) else schema.get("prefixItems", [])
        if not isinstance(prefix, list):
            return None
        arrays |= isinstance(items, list)
        prefixes |= "prefixItems" in schema
        longest = max(longest, len(prefix))
    if arrays and prefixes:
        return None  # two drafts' ways at once
    out = {k: v for k, v in into.items() if k != "unevaluatedItems"}
    key, rest = ("items", "additionalItems") if arrays else ("prefixItems", "items")
    own = into.get(key, [])
    if longest > len(own):
        out[key] = [*own, *([True] * (longest - len(own)))]
    unevaluated = into["unevaluatedItems"]
    out[rest] = {"anyOf": [*matched, unevaluated]} if matched else unevaluated
    return out


def rewrite_unevaluated(root: Any) -> Any:
    """``root`` with each ``unevaluatedProperties``/``unevaluatedItems`` whose evaluated set is
    static rewritten as above (a new schema where anything changed; refs must be local pointers,
    as :func:`.refs.localize_refs` leaves them)."""
    if not isinstance(root, dict) or not any(k in json.dumps(root) for k in _KEYWORDS):
        return root

    targets = _ref_pointers(root)  # where $refs lead (a node split into branches is rebuilt)

    def transform(node: Any, pointer: str) -> Any:
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            here = f"{pointer}/{_escape(key)}"
            if key in _MAP_KEYS and isinstance(value, dict):
                out[key] = {
                    name: transform(child, f"{here}/{_escape(name)}") for name, child in value.items()
                }
            elif key in _LIST_KEYS and isinstance(value, list):
                out[key] = [transform(child, f"{here}/{i}") for i, child in enumerate(value)]
            elif key in _SCHEMA_KEYS or key in _LIST_KEYS:
                out[key] = transform(value, here)
            else:
                out[key] = value
        # (a node split into branches keeps its definitions where they are: only references
        # to its other parts would lose their way, unless they are all its own: inlined)
        kept = tuple(f"{pointer}/{key}/" for key in _DEFINITIONS)

        def into_node(t: str) -> bool:
            return t.startswith(pointer + "/") and not t.startswith(kept)

        inside = any(into_node(t) for t in targets)
        if inside and sorted(filter(into_node, targets)) == sorted(filter(into_node, _ref_pointers(node))):
            inlined = _inline_refs(out, into_node, resolved)
            if inlined is not None:
                out, inside = inlined, False
        rewritten = _rewrite(root, node, out, _Leaves(0 if inside else MAX_BRANCHES - 1), resolved)
        if "unevaluatedProperties" in rewritten and "unevaluatedProperties" in node:
            rewritten = _rewrite_by_conditions(rewritten, resolved) or rewritten
        return rewritten

    done: dict[str, Any] = {}
    busy: set[str] = set()

    def resolved(ref: str) -> Any:
        """The target of a local ``$ref``, rewritten (None: none, or met inside itself)."""
        if ref not in done:
            if ref in busy:
                return None
            busy.add(ref)
            try:
                done[ref] = transform(resolve_local(root, ref), ref[1:])
            except LookupError:
                done[ref] = None
            finally:
                busy.discard(ref)
        return done[ref]

    return transform(root, "")


def _rewrite_by_conditions(into: dict, resolved: Resolve) -> dict | None:
    """``into`` without ``unevaluatedProperties: U``, where what branches cannot split holds its
    value-dependent keywords one level deep (``if``/``then``/``else``, ``oneOf``/``anyOf``
    branches, ``dependentSchemas``, none nested in another, no patterns of their own): a name
    such a part declares is evaluated exactly when a condition holds (``if`` for the names of
    ``if`` and ``then``, ``not if`` for those of ``else``, the branch itself, the dependency's
    name present: the rest holds since the value is valid), and U applies to it otherwise. The
    conditional whose ``if`` is that condition gets ``properties: {name: U}`` in its ``else``
    (in its ``then`` for ``not if``); other conditions a closing conditional of their own, one
    per set (OpenAPI 3.1's security schemes: five ``type`` conditionals whose names
    ``unevaluatedProperties: false`` closes). The other names are as in
    :func:`_rewrite_properties`. None where the parts are not so."""
    flat = _inline_in_place(into, resolved)
    dynamic: list[Any] = []
    contributors = None if flat is None else _contributors(None, flat, dynamic, resolve=resolved)
    if contributors is None or None in dynamic:  # (a dynamic reference: anything)
        return None
    names: dict[str, None] = {}
    patterns: dict[str, None] = {}
    parts: list[tuple[Any, Any]] = []  # (condition, part)
    holders: list[dict] = []  # the conditionals (copies: their branches may be closed)
    for i, schema in enumerate(contributors):
        if "additionalProperties" in schema or (i > 0 and "unevaluatedProperties" in schema):
            return None
        props, pats = schema.get("properties", {}), schema.get("patternProperties", {})
        if not isinstance(props, dict) or not isinstance(pats, dict):
            return None
        names.update(dict.fromkeys(props))
        patterns.update(dict.fromkeys(pats))
        if "if" in schema:
            condition = schema["if"]
            parts += [(condition, condition), (condition, schema.get("then", True))]
            parts.append(({"not": condition}, schema.get("else", True)))
            holders.append(schema)
        for key in ("oneOf", "anyOf"):
            parts += [(branch, branch) for branch in schema.get(key, [])]
        for key in ("dependentSchemas", "dependencies"):
            deps = schema.get(key, {})
            parts += [({"required": [k]}, v) for k, v in deps.items() if not isinstance(v, list)]
    conditions: dict[str, list[Any]] = {}  # name -> the conditions under which it is evaluated
    for condition, part in parts:
        found = _contributors(None, part, resolve=resolved)
        if found is None:
            return None  # (a cycle, a nested value-dependent keyword: not one level deep)
        for schema in found:
            if "additionalProperties" in schema or "unevaluatedProperties" in schema:
                return None
            if set(schema.get("patternProperties", {})) - set(patterns):
                return None
            for name in schema.get("properties", {}):
                if not _covered(name, names, patterns) and condition not in conditions.setdefault(name, []):
                    conditions[name].append(condition)
    if not conditions:
        return None  # (nothing value-dependent: the other rewrites decide)
    unevaluated = flat["unevaluatedProperties"]
    groups: dict[str, tuple[list[Any], list[str]]] = {}
    for name, held in conditions.items():
        held = [c for c in held if not any(d is not c and _implies(c, d) for d in held)]  # (the weakest)
        groups.setdefault(json.dumps(held, sort_keys=True), (held, []))[1].append(name)
    closing = []
    for held, group in groups.values():
        closed = {"properties": dict.fromkeys(group, unevaluated)}
        holder = _holder(holders, held)
        if holder is not None:  # "if c then ..., else (or then, for not c) the names closed"
            branch = "else" if held[0] is holder["if"] or held[0] == holder["if"] else "then"
            holder[branch] = {"allOf": [holder.get(branch, True), closed]}
        else:
            closing.append({"if": held[0] if len(held) == 1 else {"anyOf": held}, "else": closed})
    if len(closing) > MAX_CLOSING:
        return None  # (their combinations would pass the compiler's limits: refused as before)
    # (built once the conditionals are closed: the node itself may be one)
    out = {k: v for k, v in flat.items() if k != "unevaluatedProperties"}
    declared = flat.get("properties", {})
    out["properties"] = {**dict.fromkeys(names, True), **dict.fromkeys(conditions, True), **declared}
    if patterns:
        out["patternProperties"] = {**dict.fromkeys(patterns, True), **flat.get("patternProperties", {})}
    out["additionalProperties"] = unevaluated
    if closing:
        out["allOf"] = [*out.get("allOf", []), *closing]
    return out


def _holder(holders: list[dict], held: list[Any]) -> dict | None:
    """The conditional whose ``if`` is the one condition ``held`` (or whose negation it is)."""
    if len(held) != 1:
        return None
    condition = held[0]
    for holder in holders:
        if condition == holder["if"] or condition == {"not": holder["if"]}:
            return holder
    return None


def _implies(a: Any, b: Any) -> bool:
    """``a`` holds only where ``b`` does, as far as plain ``properties``/``required`` tell (the
    condition of ``scheme: bearer`` beside ``type: http`` implies that of ``type: http``)."""
    plain = {"properties", "required"}
    if not (isinstance(a, dict) and isinstance(b, dict) and set(a) <= plain and set(b) <= plain):
        return False
    props_a, props_b = a.get("properties", {}), b.get("properties", {})
    required_a, required_b = a.get("required", []), b.get("required", [])
    if not all(isinstance(x, dict) for x in (props_a, props_b)) or not isinstance(required_a, list):
        return False
    if not isinstance(required_b, list) or not set(required_b) <= set(required_a):
        return False
    return all(name in props_a and props_a[name] == sub for name, sub in props_b.items())


def _inline_in_place(schema: Any, resolved: Resolve, depth: int = 0) -> Any:
    """A copy of ``schema`` whose ``$ref``s applied in place (its own, its ``allOf`` parts') are
    ``allOf`` parts holding copies of their (rewritten) targets; None past a depth of 32 (a
    cycle) or where a target cannot be had."""
    if not isinstance(schema, dict):
        return schema
    if depth > 32:
        return None
    out = dict(schema)
    allof = out.get("allOf", [])
    if not isinstance(allof, list):
        return None
    parts = []
    for part in allof:
        copied = _inline_in_place(part, resolved, depth + 1)
        if copied is None:
            return None
        parts.append(copied)
    ref = out.pop("$ref", None)
    if ref is not None:
        target = resolved(ref) if isinstance(ref, str) else None
        copied = _inline_in_place(target, resolved, depth + 1) if target is not None else None
        if copied is None:
            return None
        parts.append(copied)
    if parts:
        out["allOf"] = parts
    return out


def _inline_refs(schema: Any, inlined: Callable[[str], bool], resolved: Resolve) -> Any:
    """``schema`` with each ``$ref`` (alone beside annotations) whose pointer ``inlined`` holds
    replaced by its target, rewritten; None if one cannot be (a cycle, keywords beside it)."""
    if isinstance(schema, list):
        items = [_inline_refs(x, inlined, resolved) for x in schema]
        return None if any(x is None and y is not None for x, y in zip(items, schema, strict=True)) else items
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#") and inlined(ref[1:]):
        if set(schema) - {"$ref"} - ANNOTATIONS:
            return None
        return resolved(ref)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("enum", "const", "examples", "default"):  # (values, not schemas)
            out[key] = value
            continue
        found = _inline_refs(value, inlined, resolved)
        if found is None and value is not None:
            return None
        out[key] = found
    return out


class _Leaves:
    """How many more branches one rewrite may add (shared by all its branches, nested ones
    too: n discriminated ``if``/``then`` pairs make n + 1 branches, the others being empty,
    where a share per branch ran out after four)."""

    def __init__(self, left: int) -> None:
        self.left = left


def _without_unevaluated(schema: dict) -> dict:
    return {k: v for k, v in schema.items() if k not in _KEYWORDS}


Resolve = Callable[[str], Any]
"""A local ``$ref`` to its target with its own unevaluated keywords rewritten (None: cannot)."""


def _rewrite(
    root: Any, node: dict, out: dict, budget: _Leaves, resolved: Resolve, lifts: int = MAX_LIFTS
) -> dict:
    """``out`` (``node`` with its subschemas rewritten) with its unevaluated keywords rewritten,
    through branches where ``node`` itself holds an ``if``, ``anyOf``, ``oneOf`` or
    ``dependentSchemas`` (or one of the subschemas applied in place with it does: lifted)."""
    if not any(k in node for k in _KEYWORDS):
        return out
    if "unevaluatedItems" not in node:  # (the value-dependent parts may not matter: static)
        static = _rewrite_properties(root, node, out)
        if static is not None:
            return static
    branches = _branches(node, out, budget.left + 1) if budget.left > 0 else None
    if branches is not None:
        # (branches no value satisfies are left out: "type is t0" beside "type is t1", where
        # discriminated if/thens would otherwise multiply past the budget)
        # (tested without the unevaluated keywords, which the merge does not read: fewer
        # constraints, so a branch empty without them is empty with them)
        kept = [b for b in branches if not _provably_empty([_without_unevaluated(b)])]
        branches = kept or branches[:1]
    if branches is None and budget.left > 0 and lifts and _contributors(root, node) is None:
        lifted = _lift(out, resolved)
        if lifted is not None:
            return _rewrite(root, lifted, lifted, budget, resolved, lifts - 1)
    if branches is not None and len(branches) - 1 <= budget.left:
        budget.left -= len(branches) - 1
        definitions = {k: out[k] for k in _DEFINITIONS if k in out}
        branches = [{k: v for k, v in b.items() if k not in definitions} for b in branches]
        rewritten = [_rewrite(root, b, b, budget, resolved, lifts) for b in branches]
        if not any(k in b for b in rewritten for k in _KEYWORDS):
            return {"anyOf": rewritten, **definitions}
        return out  # some branch stays dynamic: refused, naming the keyword
    if "unevaluatedProperties" in node:
        out = _rewrite_properties(root, node, out) or out
    if "unevaluatedItems" in out:
        out = _rewrite_items(root, node, out) or out
    return out


def _lift(out: dict, resolved: Resolve) -> dict | None:
    """``out`` with a value-dependent keyword of a subschema applied in place (an ``allOf``
    part, a ``$ref`` target: inlined as a part) moved up beside the others, or None. The same
    value meets the same keywords, so what passes and what is evaluated stay the same; a
    part with an unevaluated keyword of its own keeps its keywords (they are what it sees)."""
    if isinstance(out.get("$ref"), str):
        target = resolved(out["$ref"])
        if target is None:
            return None
        rest = {k: v for k, v in out.items() if k != "$ref"}
        return {**rest, "allOf": [*rest.get("allOf", []), target]}
    parts = out.get("allOf")
    if not isinstance(parts, list):
        return None
    for i, part in enumerate(parts):
        if not isinstance(part, dict) or any(k in part for k in _KEYWORDS):
            continue
        group = _LIFTABLE.get(next((k for k in _LIFTABLE if k in part), ""))
        if group is not None and not any(k in out for k in group):
            moved = {k: part[k] for k in group if k in part}
            left = {k: v for k, v in part.items() if k not in group}
            return {**out, "allOf": [*parts[:i], left, *parts[i + 1 :]], **moved}
        if "$ref" in part or "allOf" in part:
            inner = _lift(part, resolved)
            if inner is not None:
                return {**out, "allOf": [*parts[:i], inner, *parts[i + 1 :]]}
    return None


def _branches(node: dict, out: dict, budget: int) -> list[dict] | None:
    """Schemas whose union is ``out`` (or, for ``anyOf``, a subset of it: see below), each with
    one in-place keyword whose annotations depend on the value fewer, or None.

    - ``if``/``then``/``else``: (if, then) or (not if, else): exclusive, so exact; ``not if``
      passes no annotations on, as a failed ``if`` does not.
    - ``oneOf``: branch i and none of the others: exact.
    - ``anyOf``: every non-empty set of branches, all passing: exact (a valid value is accepted
      by the set of its passing branches; an accepted one is valid, as the names a set evaluates
      are among those every passing branch does). Beyond the ``budget``, branch i alone, for
      each i: a subset (a value whose names need two passing branches is not accepted).
    - ``dependentSchemas`` (one name ``k`` at a time): (``k`` present, its schema) or (``k``
      absent): exclusive, so exact.
    """
    rest = {k: v for k, v in out.items()}
    parts = list(out.get("allOf", [])) if isinstance(out.get("allOf", []), list) else None
    if parts is None:
        return None

    def with_parts(extra: list, negated: Any = None) -> dict:
        """``rest`` and ``extra`` (and ``not negated``: beside the rest where it has no ``not``,
        so the compiler negates it with the rest instead of intersecting automata)."""
        branch = {**rest, "allOf": [*parts, *extra]}
        if negated is not None:
            if "not" in branch:
                branch["allOf"].append({"not": negated})
            else:
                branch["not"] = negated
        return branch

    if "if" in node:
        for key in ("if", "then", "else"):
            rest.pop(key, None)
        condition = out["if"]
        return [
            with_parts([condition, out.get("then", True)]),
            with_parts([out.get("else", True)], condition),
        ]
    if "if" not in node:
        for key in ("then", "else"):  # without if they do nothing
            rest.pop(key, None)
    dependent = out.get("dependentSchemas")
    if "dependentSchemas" in node and isinstance(dependent, dict) and dependent:
        name, schema = next(iter(dependent.items()))
        others = {k: v for k, v in dependent.items() if k != name}
        if others:
            rest["dependentSchemas"] = others
        else:
            rest.pop("dependentSchemas")
        return [with_parts([{"required": [name]}, schema]), with_parts([], {"required": [name]})]
    for key in ("oneOf", "anyOf"):
        options = out.get(key)
        if key not in node:
            continue
        if not isinstance(options, list) or not options:
            return None
        rest.pop(key)
        if key == "anyOf":
            if 2 ** len(options) - 1 <= budget:
                sets = itertools.chain.from_iterable(
                    itertools.combinations(options, n) for n in range(1, len(options) + 1)
                )
                return [with_parts(list(chosen)) for chosen in sets]
            return [with_parts([b]) for b in options]
        return [
            with_parts(
                [b], {"anyOf": [o for j, o in enumerate(options) if j != i]} if len(options) > 1 else None
            )
            for i, b in enumerate(options)
        ]
    return None


def _ref_pointers(root: Any) -> list[str]:
    """The JSON pointers of every local ``$ref`` anywhere in ``root``."""
    out = []
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#"):
                out.append(ref[1:])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out

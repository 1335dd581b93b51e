"""Keywords of later drafts in a schema that declares an earlier one: annotations there.

A schema whose ``$schema`` names draft 4, 6 or 7 (or 2019-09) is read as a validator of that
draft reads it: a keyword the draft does not define is an unknown keyword, which constrains
nothing. Enforcing it anyway can be wrong both ways: ``minContains: 0`` relaxes ``contains``
in 2019-09 and later, but under draft 7 ``contains`` still needs a match; ``prefixItems`` beside
``items`` exempts the first items from it in 2020-12, but under draft 7 ``items`` applies to
every item; an ``$anchor`` names a schema in 2019-09 and later, and nothing under draft 7.
:func:`drop_undefined_keywords` removes such keywords (a copy where anything changed).

In drafts 4, 6 and 7 a ``$ref`` also makes the keywords beside it be ignored (yamllint's
schema extends a definition by writing ``properties`` beside a ``$ref``, which its validators
do not read): :func:`ignore_ref_siblings` removes them.
"""

from __future__ import annotations

import copy
from typing import Any

from outlines_gguf.json_schema.keywords import ANNOTATIONS, KNOWN_KEYWORDS
from outlines_gguf.json_schema.refs import (
    _LIST_KEYS,
    _MAP_KEYS,
    _OLD_DRAFTS,
    _SCHEMA_KEYS,
    _escape,
    subschema_dicts,
)

_LATER_THAN_7 = frozenset(
    {
        "$anchor",
        "$dynamicAnchor",
        "$dynamicRef",
        "$recursiveAnchor",
        "$recursiveRef",
        "dependentRequired",
        "dependentSchemas",
        "maxContains",
        "minContains",
        "prefixItems",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
_UNDEFINED = {
    "draft-04": _LATER_THAN_7 | {"const", "contains", "propertyNames", "if", "then", "else"},
    "draft-06": _LATER_THAN_7 | {"if", "then", "else"},
    "draft-07": _LATER_THAN_7,
    "draft/2019-09": frozenset({"prefixItems", "$dynamicAnchor", "$dynamicRef"}),
}
"""Per draft (as its meta-schema URI spells it), the keywords it does not define."""


def undefined_keywords(root: Any) -> frozenset[str]:
    """The keywords the draft ``root`` declares in ``$schema`` does not define (none when it
    declares none, or a later draft)."""
    dialect = root.get("$schema") if isinstance(root, dict) else None
    if isinstance(dialect, str):
        for draft, undefined in _UNDEFINED.items():
            if draft in dialect:
                return undefined
    return frozenset()


def drop_undefined_keywords(root: Any) -> Any:
    """``root`` without the keywords its declared draft does not define, wherever a subschema
    sits (property names and the like are left alone); ``root`` itself is never modified."""
    undefined = undefined_keywords(root)
    if not undefined:
        return root
    found = [node for node in subschema_dicts(root) if undefined & set(node)]
    if not found:
        return root
    memo: dict[int, Any] = {}
    out = copy.deepcopy(root, memo)
    for node in found:
        twin = memo[id(node)]
        for key in undefined & set(twin):
            del twin[key]
    return out

_KEPT_BESIDE_REF = frozenset({"$ref", "$defs", "definitions"})
"""Beside a ``$ref`` in drafts 4-7: the reference, and definitions (they constrain nothing)."""


def ignore_ref_siblings(root: Any) -> Any:
    """``root`` without the keywords beside a ``$ref``, where its declared draft (4, 6 or 7)
    ignores them; ``root`` itself is never modified. Run after ``localize_refs``: a keyword
    that a reference points into (``#/properties/a`` beside a ``$ref`` at the root) is kept,
    which enforces more than the draft says (its values are a subset), never less."""
    dialect = root.get("$schema") if isinstance(root, dict) else None
    if not (isinstance(dialect, str) and any(d in dialect for d in _OLD_DRAFTS)):
        return root
    found: list[tuple[tuple[str, ...], dict]] = []
    refs: list[str] = []
    stack: list[tuple[tuple[str, ...], Any]] = [((), root)]
    seen: set[int] = set()
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict) or id(node) in seen:
            continue
        seen.add(id(node))
        ref = node.get("$ref")
        if isinstance(ref, str):
            refs.append(ref)
            if (set(node) & KNOWN_KEYWORDS) - ANNOTATIONS - _KEPT_BESIDE_REF:
                found.append((path, node))
        for key, value in node.items():
            if key in _MAP_KEYS and isinstance(value, dict):
                stack.extend(((*path, key, name), sub) for name, sub in value.items())
            elif key in _LIST_KEYS and isinstance(value, list):
                stack.extend(((*path, key, str(i)), sub) for i, sub in enumerate(value))
            elif key in _SCHEMA_KEYS or key in _LIST_KEYS:
                stack.append(((*path, key), value))
    if not found:
        return root
    memo: dict[int, Any] = {}
    out = copy.deepcopy(root, memo)
    for path, node in found:
        pointer = "#" + "".join("/" + _escape(part) for part in path)
        twin = memo[id(node)]
        for key in (set(twin) & KNOWN_KEYWORDS) - ANNOTATIONS - _KEPT_BESIDE_REF:
            inside = f"{pointer}/{_escape(key)}"
            if not any(r == inside or r.startswith(inside + "/") for r in refs):
                del twin[key]
    return out

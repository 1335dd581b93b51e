"""``$ref`` resolved against ``$id`` base URIs and anchors, rewritten as local JSON pointers.

JSON Schema resolves a ``$ref`` as a URI reference against the base URI of the schema resource
it sits in: the nearest enclosing ``$id`` (itself resolved against its parent's base), or the
document's. Fragments are JSON pointers (percent-encoded, as URI fragments are) or plain-name
anchors (``$anchor``, ``$dynamicAnchor``, or a draft-6/7 ``$id`` of ``#name``) of that resource.
:func:`localize_refs` walks the schema once, records where every resource and anchor is, and
rewrites each ``$ref`` it can resolve inside the document as ``#`` and the JSON pointer from the
root, which the compiler and the validator follow as they always did. A ``$ref`` to a resource the
document does not embed is left as written (the compiler then refuses it).
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

DEFAULT_BASE = "https://outlines-gguf.invalid/schema.json"
"""The base URI of a document without an ``$id`` (any absolute URI: only relative
references resolved against it are ever compared)."""

# keywords whose value is a schema, a list of schemas, or a map of names to schemas
_SCHEMA_KEYS = frozenset(
    {
        "additionalItems",
        "additionalProperties",
        "contains",
        "contentSchema",
        "else",
        "if",
        "items",
        "not",
        "propertyNames",
        "then",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
_LIST_KEYS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems", "items"})
_MAP_KEYS = frozenset(
    {"$defs", "definitions", "dependentSchemas", "patternProperties", "properties", "dependencies"}
)
# drafts in which $ref makes its siblings (a sibling $id included) be ignored
_OLD_DRAFTS = ("draft-04", "draft-06", "draft-07")


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _absolute(uri: str) -> bool:
    return bool(urlsplit(uri).scheme)


def _join(base: str, ref: str) -> str:
    if ref.startswith("#"):
        return urldefrag(base)[0] + ref
    if _absolute(ref):
        return ref
    return urljoin(base, ref)


def localize_refs(root: Any) -> Any:
    """``root`` with every ``$ref`` that resolves inside it written as ``#/json/pointer`` (a copy
    where anything changed; ``root`` itself is never modified)."""
    if not isinstance(root, dict):
        return root
    dialect = root.get("$schema")
    old_draft = isinstance(dialect, str) and any(d in dialect for d in _OLD_DRAFTS)
    resources: dict[str, str] = {}  # base URI (no fragment) -> JSON pointer
    anchors: dict[tuple[str, str], str] = {}  # (base URI, anchor name) -> JSON pointer
    refs: list[tuple[tuple[str, ...], str, str]] = []  # (path of keys, base URI, $ref)

    def walk(node: Any, base: str, pointer: str, path: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            return
        ident = node.get("$id")
        if isinstance(ident, str) and not (old_draft and "$ref" in node):
            if ident.startswith("#"):
                if len(ident) > 1:  # a draft-6/7 plain-name fragment
                    anchors.setdefault((base, ident[1:]), pointer)
            else:
                uri, fragment = urldefrag(_join(base, ident))
                base = uri
                resources.setdefault(uri, pointer)
                if fragment and not fragment.startswith("/"):
                    anchors.setdefault((uri, fragment), pointer)
        for key in ("$anchor", "$dynamicAnchor"):
            name = node.get(key)
            if isinstance(name, str):
                anchors.setdefault((base, name), pointer)
        ref = node.get("$ref")
        if isinstance(ref, str):
            refs.append((path, base, ref))
        for key, value in node.items():
            here = f"{pointer}/{_escape(key)}"
            if key in _MAP_KEYS and isinstance(value, dict):
                for name, sub in value.items():
                    walk(sub, base, f"{here}/{_escape(name)}", (*path, key, name))
            elif key in _LIST_KEYS and isinstance(value, list):
                for i, sub in enumerate(value):
                    walk(sub, base, f"{here}/{i}", (*path, key, str(i)))
            elif key in _SCHEMA_KEYS or key in _LIST_KEYS:
                walk(value, base, here, (*path, key))

    root_id = root.get("$id")
    start = DEFAULT_BASE
    if isinstance(root_id, str) and not root_id.startswith("#") and not (old_draft and "$ref" in root):
        start = urldefrag(_join(DEFAULT_BASE, root_id))[0]
    resources[urldefrag(DEFAULT_BASE)[0]] = ""
    resources.setdefault(start, "")
    walk(root, start, "", ())

    rewrites: list[tuple[tuple[str, ...], str]] = []
    for path, base, ref in refs:
        uri, fragment = urldefrag(_join(base, ref))
        where = resources.get(uri)
        if where is None:
            continue  # not in this document: left for the compiler to refuse
        if not fragment:
            target: str | None = where
        elif fragment.startswith("/"):
            target = where + unquote(fragment)
        else:
            target = anchors.get((uri, unquote(fragment)))
        if target is not None and "#" + target != ref:
            rewrites.append((path, "#" + target))
    if not rewrites:
        return root
    out = copy.deepcopy(root)
    for path, new in rewrites:
        node = out
        for key in path:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node["$ref"] = new
    return out

"""``$ref`` resolved against ``$id`` base URIs and anchors, rewritten as local JSON pointers.

JSON Schema resolves a ``$ref`` as a URI reference against the base URI of the schema resource
it sits in: the nearest enclosing ``$id`` (itself resolved against its parent's base; draft 4
spells it ``id``), or the document's. Fragments are JSON pointers (percent-encoded, as URI
fragments are) or plain-name anchors (``$anchor``, ``$dynamicAnchor``, or a draft-4/6/7
``id``/``$id`` of ``#name``) of that resource.
:func:`localize_refs` walks the schema once, records where every resource and anchor is, and
rewrites each ``$ref`` it can resolve inside the document as ``#`` and the JSON pointer from the
root, which the compiler and the validator follow as they always did. A ``$ref`` to a resource the
document does not embed is left as written (the compiler then refuses it).

``$dynamicRef`` (2020-12) and ``$recursiveRef`` (2019-09) resolve through the *dynamic scope*: the
schema resources evaluation entered on its way to them. :func:`localize_refs` follows every way
through the document at the grain of resources (nested ones and those a reference enters; a
superset of the real ways), and where all of them give one target, the dynamic reference is
written as that ``$ref``; where they differ it is left as written (the compiler refuses it,
naming the keyword).
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
_DEFINITIONS = frozenset({"$defs", "definitions"})
# drafts in which $ref makes its siblings (a sibling $id included) be ignored
_OLD_DRAFTS = ("draft-04", "draft-06", "draft-07")


def subschema_dicts(root: Any) -> list[dict]:
    """Every dict of ``root`` that sits where a subschema sits (property names, enum values
    and the like are not visited), each once."""
    found: list[dict] = []
    stack: list[Any] = [root]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or id(node) in seen:
            continue
        seen.add(id(node))
        found.append(node)
        for key, value in node.items():
            if key in _MAP_KEYS and isinstance(value, dict):
                stack.extend(value.values())
            elif key in _LIST_KEYS and isinstance(value, list):
                stack.extend(value)
            elif key in _SCHEMA_KEYS or key in _LIST_KEYS:
                stack.append(value)
    return found


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
    index = _Index(root)
    # draft 4's ``id`` is also a property name real schemas misuse (``"id": "/items"`` from
    # schema generators): a reference it leaves unresolved is resolved as if no ``id`` were there
    plain: _Index | None = None  # (walked only where the ids leave a reference unresolved)
    rewrites: list[tuple[tuple[str, ...], str]] = []
    for i, (path, base, ref) in enumerate(index.refs):
        target = index.target_of(base, ref)  # (None: not in this document: the compiler refuses it)
        if target is None and index.id_key == "id":
            plain = plain or _Index(root, draft4_ids=False)
            _, plain_base, _ = plain.refs[i]  # (both walks meet the same references in order)
            target = plain.target_of(plain_base, ref)
        if target is not None and "#" + target != ref:
            rewrites.append((path, "#" + target))
    resolved: list[tuple[tuple[str, ...], str, str]] = []
    for path, base, ref, keyword, resource in index.dynamic:
        fragment = urldefrag(_join(base, ref))[1]
        initial = index.target_of(base, ref)
        target = index.scopes.resolve(keyword, initial, fragment, resource, index.target_of)
        if target is not None:
            resolved.append((path, keyword, "#" + target))
    if not rewrites and not resolved:
        return root
    out = _unshared_copy(root)
    for path, new in rewrites:
        _at(out, path)["$ref"] = new
    for path, keyword, new in resolved:
        node = _at(out, path)
        del node[keyword]
        if "$ref" in node:  # (beside a $ref of its own: both apply)
            node["allOf"] = [*node.get("allOf", []), {"$ref": new}]
        else:
            node["$ref"] = new
    return out


def _unshared_copy(value: Any) -> Any:
    """A copy of a schema's dicts and lists in which none is met twice: a schema built in
    Python may hold one dict at several places, whose references are rewritten per place
    (``copy.deepcopy`` keeps it shared: the second rewrite of a ``$dynamicRef`` met it gone)."""
    if isinstance(value, dict):
        return {k: _unshared_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unshared_copy(v) for v in value]
    return copy.deepcopy(value)


def external_documents(root: Any) -> list[str]:
    """The absolute URIs (without fragment) of the documents ``root``'s references lead to
    that it does not embed, in the order met."""
    if not isinstance(root, dict):
        return []
    index = _Index(root)
    found: dict[str, None] = {}
    for base, ref in [(b, r) for _, b, r in index.refs] + [(b, r) for _, b, r, _, _ in index.dynamic]:
        uri = urldefrag(_join(base, ref))[0]
        if uri not in index.resources:
            found[uri] = None
    return list(found)


class _Index:
    """Where a document's resources, anchors and references are (one walk)."""

    def __init__(self, root: dict, draft4_ids: bool = True) -> None:
        """``draft4_ids``: in a draft-4 schema, read ``id`` as the identifier (as that draft
        does) rather than ``$id``."""
        dialect = root.get("$schema")
        self.old_draft = isinstance(dialect, str) and any(d in dialect for d in _OLD_DRAFTS)
        draft4 = draft4_ids and isinstance(dialect, str) and "draft-04" in dialect
        self.id_key = "id" if draft4 else "$id"  # (embedded documents have "$id": read it too)
        self.resources: dict[str, str] = {}  # base URI (no fragment) -> JSON pointer
        self.anchors: dict[tuple[str, str], str] = {}  # (base URI, anchor name) -> JSON pointer
        self.scopes = _Scopes()
        self.refs: list[tuple[tuple[str, ...], str, str]] = []  # (path of keys, base URI, $ref)
        # ... and dynamic ones: (path, base URI, reference, keyword, resource pointer)
        self.dynamic: list[tuple[tuple[str, ...], str, str, str, str]] = []
        root_id = self._identifier(root)
        start = DEFAULT_BASE
        if isinstance(root_id, str) and not root_id.startswith("#"):
            if not (self.old_draft and "$ref" in root):
                start = urldefrag(_join(DEFAULT_BASE, root_id))[0]
        self.resources[urldefrag(DEFAULT_BASE)[0]] = ""
        self.resources.setdefault(start, "")
        self._walk(root, start, "", (), "", False)
        self.scopes.resources = set(self.resources.values())

    def _identifier(self, node: dict) -> Any:
        ident = node.get(self.id_key)
        return ident if isinstance(ident, str) else node.get("$id")

    def _walk(
        self, node: Any, base: str, pointer: str, path: tuple[str, ...], resource: str, stored: bool
    ) -> None:
        """``stored``: the way from ``resource`` here passes through ``$defs``/``definitions``
        (a resource there is entered only by a reference, not with its enclosing one)."""
        if not isinstance(node, dict):
            return
        anchors, scopes = self.anchors, self.scopes
        ident = self._identifier(node)
        if isinstance(ident, str) and not (self.old_draft and "$ref" in node):
            if ident.startswith("#"):
                if len(ident) > 1:  # a draft-6/7 plain-name fragment
                    anchors.setdefault((base, ident[1:]), pointer)
            else:
                uri, fragment = urldefrag(_join(base, ident))
                base = uri
                self.resources.setdefault(uri, pointer)
                if pointer != resource:
                    if not stored:
                        scopes.nest(resource, pointer)
                    resource, stored = pointer, False
                if fragment and not fragment.startswith("/"):
                    anchors.setdefault((uri, fragment), pointer)
        for key in ("$anchor", "$dynamicAnchor"):
            name = node.get(key)
            if isinstance(name, str):
                anchors.setdefault((base, name), pointer)
        name = node.get("$dynamicAnchor")
        if isinstance(name, str):
            scopes.dynamic_anchors.setdefault((resource, name), pointer)
        if node.get("$recursiveAnchor") is True and pointer == resource:
            scopes.recursive.add(resource)
        ref = node.get("$ref")
        if isinstance(ref, str):
            self.refs.append((path, base, ref))
            scopes.refs.append((resource, base, ref, "$ref"))
        for keyword in ("$dynamicRef", "$recursiveRef"):
            if isinstance(node.get(keyword), str):
                self.dynamic.append((path, base, node[keyword], keyword, resource))
                scopes.refs.append((resource, base, node[keyword], keyword))
        for key, value in node.items():
            here = f"{pointer}/{_escape(key)}"
            if key in _MAP_KEYS and isinstance(value, dict):
                inside = stored or key in _DEFINITIONS
                for name, sub in value.items():
                    self._walk(sub, base, f"{here}/{_escape(name)}", (*path, key, name), resource, inside)
            elif key in _LIST_KEYS and isinstance(value, list):
                for i, sub in enumerate(value):
                    self._walk(sub, base, f"{here}/{i}", (*path, key, str(i)), resource, stored)
            elif key in _SCHEMA_KEYS or key in _LIST_KEYS:
                self._walk(value, base, here, (*path, key), resource, stored)

    def target_of(self, base: str, ref: str) -> str | None:
        """The JSON pointer ``ref`` (resolved against ``base``) leads to, None if not here."""
        uri, fragment = urldefrag(_join(base, ref))
        where = self.resources.get(uri)
        if where is None:
            return None
        if not fragment:
            return where
        if fragment.startswith("/"):
            return where + unquote(fragment)
        return self.anchors.get((uri, unquote(fragment)))


def _at(root: Any, path: tuple[str, ...]) -> Any:
    node = root
    for key in path:
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


class _Scopes:
    """The schema resources of a document (by JSON pointer) and the ways evaluation goes from
    one to another, for the targets of dynamic references."""

    def __init__(self) -> None:
        self.resources: set[str] = set()
        self.nested: dict[str, set[str]] = {}  # resource -> resources directly inside it
        self.refs: list[tuple[str, str, str, str]] = []  # (resource holding it, base URI, reference, keyword)
        self.dynamic_anchors: dict[tuple[str, str], str] = {}  # (resource, name) -> JSON pointer
        self.recursive: set[str] = set()  # resources whose root says $recursiveAnchor: true

    def nest(self, outer: str, inner: str) -> None:
        self.nested.setdefault(outer, set()).add(inner)

    def resource_of(self, pointer: str) -> str:
        """The innermost resource holding ``pointer``."""
        best = ""
        for resource in self.resources:
            if (pointer == resource or pointer.startswith(resource + "/")) and len(resource) > len(best):
                best = resource
        return best

    def resolve(
        self, keyword: str, initial: str | None, fragment: str, resource: str, target_of: Any
    ) -> str | None:
        """The one target of a dynamic reference (held in ``resource``, ``initial``: where it
        leads as a ``$ref``) whatever way evaluation came, or None.

        ``$dynamicRef`` whose initial target is a ``$dynamicAnchor`` of its fragment's name
        goes to that anchor in the outermost resource in scope that has one; ``$recursiveRef``
        whose resource says ``$recursiveAnchor: true`` goes to the outermost of the resources
        in scope that say so without a break (python-jsonschema's reading); else as ``$ref``.
        """
        if initial is None:
            return None
        if keyword == "$dynamicRef":
            name = unquote(fragment)
            bookend = self.dynamic_anchors.get((self.resource_of(initial), name)) == initial
            if fragment.startswith("/") or not bookend:
                return initial
            defines = {r for (r, n) in self.dynamic_anchors if n == name}

            def enter(scope: str | None, inner: str) -> str | None:
                return scope if scope is not None else (inner if inner in defines else None)

            def target(scope: str | None) -> str:
                return initial if scope is None else self.dynamic_anchors[(scope, name)]
        else:
            if fragment or resource not in self.recursive:
                return initial

            def enter(scope: str | None, inner: str) -> str | None:
                return (scope if scope is not None else inner) if inner in self.recursive else None

            def target(scope: str | None) -> str:
                return initial if scope is None else scope

        reached = self._scopes_at(resource, enter(None, ""), enter, target_of)
        targets = {target(scope) for scope in reached} or {initial}
        return targets.pop() if len(targets) == 1 else None

    def _scopes_at(self, resource: str, first: str | None, enter: Any, target_of: Any) -> set[str | None]:
        """Every scope value (``enter`` folds each resource entered into it) evaluation can hold
        in ``resource``, over the ways from the root through nested resources and references."""
        edges: dict[str, set[str]] = {r: set(self.nested.get(r, ())) for r in self.resources}
        for holder, base, ref, keyword in self.refs:
            target = target_of(base, ref)
            if target is not None:
                edges.setdefault(holder, set()).add(self.resource_of(target))
            # a dynamic reference may also enter any resource it could resolve to
            if keyword == "$dynamicRef":
                name = unquote(urldefrag(ref)[1])
                edges.setdefault(holder, set()).update(r for (r, n) in self.dynamic_anchors if n == name)
            elif keyword == "$recursiveRef":
                edges.setdefault(holder, set()).update(self.recursive)
        seen = {("", first)}
        stack = [("", first)]
        while stack:
            here, scope = stack.pop()
            for inner in edges.get(here, ()):
                step = (inner, enter(scope, inner))
                if step not in seen:
                    seen.add(step)
                    stack.append(step)
        return {scope for where, scope in seen if where == resource}

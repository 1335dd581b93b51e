"""JSON Schema -> Lark grammar, for schemas whose recursion a DFA cannot hold.

The automaton path (:mod:`~outlines_gguf.json_schema.compiler`) unrolls a recursive
``$ref`` to a fixed depth. This module writes the schema as a Lark grammar
instead, so a tree or a linked list can nest as deep as the model wants; the
grammar engine (:class:`~outlines_gguf.guides.grammar.CFGGuide`) enforces it.

Supported: ``type`` (one or a list), ``properties`` / ``required``
(properties in declared order, optional ones may be left out; no other
properties are generated), ``items``, ``enum`` / ``const``, ``anyOf``,
``$ref`` to ``#/$defs/...`` or ``#/definitions/...`` (recursion included),
``{}`` (any JSON value), and annotations. Every other keyword raises
:class:`~outlines_gguf.json_schema.compiler.SchemaError` naming it and its path:
nothing is silently left unenforced. Whitespace: an optional space after
``:`` and ``,`` (``json.dumps`` and compact output).
"""

from __future__ import annotations

import json
from typing import Any

from outlines_gguf.errors import SchemaError
from outlines_gguf.json_schema.compiler import load_schema

_ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment", "$defs",
                "definitions", "deprecated", "readOnly", "writeOnly"}
_SUPPORTED = _ANNOTATIONS | {"type", "properties", "required", "items", "enum", "const", "anyOf", "$ref",
                             "additionalProperties"}

_TERMINALS = r"""
STRING: /"(?:[^"\\\x00-\x1f]|\\["\\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/
NUMBER: /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/
INTEGER: /-?(?:0|[1-9][0-9]*)/
"""

_ANY = """
any_value: any_object | any_array | STRING | NUMBER | "true" | "false" | "null"
any_object: "{" [STRING ":" " "? any_value ("," " "? STRING ":" " "? any_value)*] "}"
any_array: "[" [any_value ("," " "? any_value)*] "]"
"""


def _literal(value: Any) -> str:
    """A JSON value as a Lark string literal."""
    text = json.dumps(value, ensure_ascii=False)
    return json.dumps(text, ensure_ascii=False)


class _Writer:
    def __init__(self, root: dict) -> None:
        self.root = root
        self.rules: dict[str, str] = {}
        self.refs: dict[str, str] = {}
        self.uses_any = False
        self.counter = 0

    def fresh(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}_{self.counter}"

    def value(self, schema: Any, path: str) -> str:
        """A rule name (or inline expression) for ``schema``."""
        if schema is True or schema == {}:
            self.uses_any = True
            return "any_value"
        if not isinstance(schema, dict):
            raise SchemaError(f"{path}: a schema must be an object or a boolean, got {schema!r}")
        unknown = sorted(set(schema) - _SUPPORTED)
        if unknown:
            raise SchemaError(
                f"{path}: keyword {unknown[0]!r} is not supported on the grammar path (recursive schemas)"
            )
        if "$ref" in schema:
            return self.ref(schema["$ref"], path)
        if "const" in schema:
            return _literal(schema["const"])
        if "enum" in schema:
            return "(" + " | ".join(_literal(v) for v in schema["enum"]) + ")"
        if "anyOf" in schema:
            branches = [self.value(s, f"{path}/anyOf/{i}") for i, s in enumerate(schema["anyOf"])]
            return "(" + " | ".join(branches) + ")"
        types = schema.get("type")
        if types is None:
            if any(k in schema for k in ("properties", "required")):
                types = "object"
            elif "items" in schema:
                types = "array"
            else:
                self.uses_any = True
                return "any_value"
        if isinstance(types, list):
            return "(" + " | ".join(self.typed(schema, t, path) for t in types) + ")"
        return self.typed(schema, types, path)

    def typed(self, schema: dict, kind: str, path: str) -> str:
        if kind == "string":
            return "STRING"
        if kind == "number":
            return "NUMBER"
        if kind == "integer":
            return "INTEGER"
        if kind == "boolean":
            return '("true" | "false")'
        if kind == "null":
            return '"null"'
        if kind == "array":
            name = self.fresh("array")
            item = self.value(schema.get("items", {}), f"{path}/items")
            self.rules[name] = f'"[" [{item} ("," " "? {item})*] "]"'
            return name
        if kind == "object":
            return self.object(schema, path)
        raise SchemaError(f"{path}: unknown type {kind!r}")

    def object(self, schema: dict, path: str) -> str:
        if schema.get("additionalProperties", False) not in (False,):
            raise SchemaError(
                f"{path}: additionalProperties other than false is not supported on the grammar path"
            )
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        if not set(required) <= set(props):
            raise SchemaError(f"{path}: required names a property that is not declared")
        name = self.fresh("object")
        keys = list(props)
        members = [
            f'{_literal(k)} ":" " "? {self.value(props[k], f"{path}/properties/{k}")}' for k in keys
        ]
        n = len(keys)
        # first_i: members from i on, none written yet; rest_i: members from i on, after one
        for i in range(n, -1, -1):
            first, rest = f"{name}_first{i}", f"{name}_rest{i}"
            if i == n:
                self.rules[first] = ""
                self.rules[rest] = ""
                continue
            optional = keys[i] not in required
            skip_first = f" | {name}_first{i + 1}" if optional else ""
            skip_rest = f" | {name}_rest{i + 1}" if optional else ""
            self.rules[first] = f"{members[i]} {name}_rest{i + 1}{skip_first}"
            self.rules[rest] = f'"," " "? {members[i]} {name}_rest{i + 1}{skip_rest}'
        self.rules[name] = f'"{{" {name}_first0 "}}"'
        return name

    def ref(self, ref: Any, path: str) -> str:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaError(f"{path}: only local $ref is supported, got {ref!r}")
        if ref in self.refs:
            return self.refs[ref]
        target: Any = self.root
        for part in ref.lstrip("#").strip("/").split("/") if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise SchemaError(f"{path}: $ref {ref!r} does not resolve")
            target = target[part]
        name = self.refs[ref] = self.fresh("ref")
        self.rules[name] = "PENDING"
        self.rules[name] = self.value(target, ref)
        return name


def schema_to_lark(schema: Any) -> str:
    """The Lark grammar of ``schema`` (a dict, JSON text or Pydantic model class).

    Raises :class:`SchemaError` for keywords the grammar path does not enforce.
    """
    root, _ = load_schema(schema)
    writer = _Writer(root)
    start = writer.value(root, "#")
    lines = [f"start: {start}"]
    for name, body in writer.rules.items():
        lines.append(f"{name}: {body}" if body else f"{name}:")
    if writer.uses_any:
        lines.append(_ANY)
    lines.append(_TERMINALS)
    return "\n".join(lines) + "\n"

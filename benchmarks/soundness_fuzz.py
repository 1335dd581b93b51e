"""Hunt soundness bugs in the JSON Schema constraint: texts it accepts that the schema refuses.

The loop, until ``--seconds`` are spent:

1. generate a random schema (seeded, recursive, small domains: keys ``a``-``d`` and a few that
   need escapes, short strings with non-ASCII and astral characters, numbers near 0, simple
   patterns with anchors and lookarounds) combining most JSON Schema 2020-12 keywords:
   object, array, string and number keywords, ``enum``/``const``, the combinators,
   ``if``/``then``/``else``, ``$defs``/``$ref`` (recursive too), ``unevaluated*``, booleans;
2. compile it with ``JSONLogitsProcessor(schema, vocab)`` under a time limit (``--compile-limit``,
   5 s): a refusal (``OutlinesGGUFError``) skips it, a slower compile is reported as ``slow``,
   any other exception as a ``crash``;
3. generate many values biased toward the schema (mostly valid, with random mutations at single
   nodes) and write each as JSON text with the variations a language model could write: a repeated
   key whose first value is a decoy (``json.loads`` keeps the last, as JSON Schema validators do),
   other separators, number spellings of the same value (``1.0``, ``1e0``, ``10E-1``, ``-0``),
   string and key escapes (``\\u0041``, ``\\/``, surrogate pairs);
4. judge each text: ``proc.accepts(text)`` against ``jsonschema`` (the dialect's validator over
   exact numbers: decimals as ``Decimal``, ``multipleOf`` and ``integer`` by exact value; formats
   asserted; ``$`` in patterns as the end of the text), with patterns read both as Python's ``re``
   reads them (``jsonschema``'s way: Unicode ``\\d``, ``\\w``, ``\\s``) and as ECMA-262 does (ASCII
   ``\\d``, ``\\w``; its own ``\\s``; ``.`` without line terminators). Accepted but refused by both
   readings is ``unsound``; by ECMA-262's alone ``unsound-ecma``, by Python's alone
   ``regex-dialect``. Valid but rejected is only counted (the engine enforces documented valid
   subsets); a schema refused as having no value although a generated value is valid is
   ``wrong-empty`` (a completeness finding);
5. also walk the guide's token masks at random, as generation does (``--walks`` per schema), and
   judge the completed texts: a mask may allow what ``accepts`` is never asked about. A walk that
   reaches a state where no token can continue is a ``dead-end`` (recorded with what was asked of
   the guide before, which decides what it had compiled); one over the time limit ``slow-walk``;
6. shrink every finding (delete keywords, subschemas, list members; drop object members and array
   items from the text, undo its spelling variations, shorten strings and numbers) while it stays
   one, deduplicate by a signature (the keywords of the minimal schema and the ones the value
   fails), and append it to ``--out`` (JSON lines).

Run from the repository root::

    .venv/bin/python benchmarks/soundness_fuzz.py --seconds 600 --seed 0 --out /tmp/fuzz/bugs.jsonl

Progress is printed every 30 s; the summary at the end lists every distinct bug with its minimal
schema and text. Re-check one with::

    from outlines_gguf import JSONLogitsProcessor, Vocabulary
    import json, jsonschema
    vocab = Vocabulary.from_gguf("models/vocab/ggml-vocab-llama-bpe.gguf")
    print(JSONLogitsProcessor(schema, vocab).accepts(text))             # True: accepted
    print(jsonschema.Draft202012Validator(schema).is_valid(json.loads(text)))  # False: invalid
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

os.environ["OUTLINES_GGUF_CACHE"] = "0"  # thousands of throwaway schemas: keep them off the disk

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_VOCAB = REPO / "models" / "vocab" / "ggml-vocab-llama-bpe.gguf"

# -- the small universe values and schemas are drawn from ----------------------------------------

KEYS = ["a", "b", "c", "d"]
ODD_KEYS = ['a"b', "é", "a/b", "", "😀", "a\\b", "A", "a b", "aa", "ab", "ca", "0", "٣", "\u212a", "a\u00a0"]
STRINGS = [
    "",
    "a",
    "b",
    "c",
    "d",
    "ab",
    "ba",
    "abc",
    "aaa",
    "abcd",
    "A",
    "é",
    "😀",
    "a😀",
    "é😀",
    "1",
    "12",
    "a1",
    "0a",
    " ",
    "a b",
    "\n",
    "a\nb",
    '"',
    'a"b',
    "\\",
    "/",
    "a/b",
    "\t",
    "dd",
    "cab",
    "x",
    "\u2028",
    "٣",
    "１２",
    "a\u00a0b",
    "\u212a",
    "ß",
    "\x1f",
    "\ufeff",
    "\u3000",
    "\u2029",
    "\r",
]
CHARS = 'abcd1 é😀"\\/\nA_-.٣\u00a0\u212a\ufeff\u3000\r'
"""Non-ASCII digits, spaces and letters too: Python's ``re`` reads ``\\d``, ``\\s``, ``\\w`` as Unicode."""
NUMBERS: list[int | float] = [0, 1, -1, 2, 3, 4, 5, 10, 100, -5, 0.5, 1.5, -0.5, 2.5, 1.0, 0.25, 7, 0.1, 1000]
BOUNDS: list[int | float] = [0, 1, 2, 3, -1, 0.5, 1.5, 2.5, -0.5, 10, 100, 0.1]
WIDE_BOUNDS: list[int | float] = [
    7,
    9,
    10,
    19,
    99,
    100,
    101,
    123,
    999,
    1000,
    1001,
    -10,
    -99,
    -123,
    0.001,
    0.01,
    12.34,
    -12.34,
    99.5,
    0.015,
    1e5,
    123456789,
    9007199254740993,
    -0.001,
    2.75,
    1e-5,
]
WIDE_STEPS: list[int | float] = [0.01, 0.05, 0.1, 0.2, 0.25, 0.3, 0.5, 1, 2, 3, 7, 10, 12, 0.001, 2.5]
DIALECTS = ["http://json-schema.org/draft-07/schema#", "https://json-schema.org/draft/2019-09/schema"]
STEPS: list[int | float] = [1, 2, 3, 5, 10, 0.5, 0.25, 0.1, 0.01, 1.5]
PATTERNS = [
    "^a",
    "b$",
    "^[cd]",
    "^a+$",
    "^\\d+$",
    "\\d",
    "^[a-c]{2}$",
    "^(?!a)",
    "a(?=b)",
    "^[^a]*$",
    "^.{2}$",
    "é",
    "😀",
    "^$",
    "^[a-z]*$",
    "^\\w+$",
    "\\s",
    "^(a|bc)$",
    "^a.*b$",
    "(?<!a)b",
    "^\\S+$",
    "x|y",
    '"',
    "\\\\",
    "/",
    "^\\u0061",
    "^.$",
    '^[^"]+$',
    "^(?=.*1)",
    "^[ab]*c?$",
    "^\\D*$",
]
KEY_PATTERNS = ["^a", "b$", "^[cd]", "a", "^a$", "^[a-c]+$", "é", "^(?!a)", "\\d", "^.$", "/", '"', "^$"]
FORMATS = {
    "date": ["2024-02-29", "2023-02-29", "2024-13-01", "2024-01-01", "2024-1-01", "20240101"],
    "ipv4": ["1.2.3.4", "256.1.1.1", "01.2.3.4", "0.0.0.0", "1.2.3", "255.255.255.255"],
    "uuid": [
        "12345678-1234-1234-1234-123456789abc",
        "12345678-1234-1234-1234-123456789ABC",
        "12345678123412341234123456789abc",
        "{12345678-1234-1234-1234-123456789abc}",
    ],
}
LARGE_KEYS = [f"k{i}" for i in range(18)]
LONG_LENGTHS = [5, 15, 16, 17, 31, 32, 33, 40, 64, 300]
FILL: list[Any] = []
"""A placeholder for an ``enum``/``const`` drawn later from the rest of its schema (by identity)."""
BOUND_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
TYPES = ["object", "array", "string", "integer", "number", "boolean", "null"]
TYPE_HINTS = {
    "object": {
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "dependentRequired",
        "dependentSchemas",
        "unevaluatedProperties",
    },
    "array": {
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "contains",
        "minContains",
        "maxContains",
        "uniqueItems",
        "unevaluatedItems",
    },
    "string": {"minLength", "maxLength", "pattern", "format"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"},
}
SUBSCHEMA_MAPS = {"properties", "patternProperties", "$defs", "dependentSchemas"}
SUBSCHEMA_LISTS = {"allOf", "anyOf", "oneOf", "prefixItems"}
SUBSCHEMA_ONE = {
    "additionalProperties",
    "propertyNames",
    "items",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "unevaluatedProperties",
    "unevaluatedItems",
}
LITERAL_KEYWORDS = {"enum", "const", "required", "dependentRequired", "type", "examples", "default"}


def as_json(value: Any) -> Any:
    """``value`` with its ``Decimal`` numbers as floats (a schema literal)."""
    return json.loads(json.dumps(value, default=float))


def pick_weighted(rng: random.Random, table: dict[str, float]) -> str:
    """One key of ``table``, with probability proportional to its weight."""
    return rng.choices(list(table), weights=list(table.values()))[0]


# -- schemas ------------------------------------------------------------------------------------


class SchemaGen:
    """Random schemas combining many keywords, over small domains.

    One schema in five is *large*: more keys, lengths, counts and enum members around the sizes
    where the compiler changes strategy (16 and 32 characters, 16 items or members, 3 and 5
    declared properties, 8 values of unique items, 16 enum members)."""

    def __init__(self, rng: random.Random, max_depth: int) -> None:
        self.rng = rng
        self.max_depth = max_depth
        self.defs: list[str] = []
        self.large = False
        self.keys = KEYS

    def root(self) -> Any:
        rng = self.rng
        self.defs = []
        self.large = rng.random() < 0.2
        self.keys = KEYS + LARGE_KEYS if self.large else KEYS
        if rng.random() < 0.08:
            schema = self.tree()
        else:
            if rng.random() < 0.25:
                self.defs = rng.sample(["A", "B", "c d"], rng.randint(1, 2))
            schema = self.schema(self.max_depth)
            if self.defs:
                if not isinstance(schema, dict):
                    schema = {"allOf": [schema]}
                schema["$defs"] = {name: self.schema(self.max_depth - 1, top_ref=False) for name in self.defs}
        self.fill_literals(schema)
        if isinstance(schema, dict) and rng.random() < 0.1:  # an earlier draft: its own keywords
            schema = {"$schema": rng.choice(DIALECTS), **schema}
            if "2019-09" in schema["$schema"]:  # (jsonschema's 2019-09 unevaluatedProperties takes an
                for _, node in list(json_paths(schema)):  # additionalProperties schema for properties,
                    if isinstance(node, dict):  # its unevaluatedItems fails on items: false)
                        node.pop("unevaluatedProperties", None)
                        node.pop("unevaluatedItems", None)
            if rng.random() < 0.6:
                for _, node in list(json_paths(schema)):
                    if isinstance(node, dict) and isinstance(node.get("prefixItems"), list):
                        if "items" in node:
                            node["additionalItems"] = node.pop("items")
                        node["items"] = node.pop("prefixItems")
        return schema

    def fill_literals(self, schema: Any) -> None:
        """Give every ``enum``/``const`` placed beside other keywords values drawn from the rest
        of its schema (so that some pass it): a random literal gives mostly empty schemas."""
        values = ValueGen(self.rng, schema, self.keys)
        for _, node in list(json_paths(schema)):
            if isinstance(node, dict) and node.get("enum") is FILL:
                rest = {k: v for k, v in node.items() if k != "enum"}
                node["enum"] = [as_json(values.value(rest)) for _ in range(self.rng.randint(1, 3))]
                if self.rng.random() < 0.3:
                    node["enum"].append(self.literal(1))
            if isinstance(node, dict) and node.get("const") is FILL:
                rest = {k: v for k, v in node.items() if k != "const"}
                node["const"] = as_json(values.value(rest))

    def tree(self) -> dict[str, Any]:
        """A recursive tree, with random leaves and bounds."""
        rng = self.rng
        node: dict[str, Any] = {
            "type": "object",
            "properties": {
                "v": self.schema(1),
                "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
        }
        if rng.random() < 0.5:
            node["properties"]["kids"]["maxItems"] = rng.randint(1, 3)
        if rng.random() < 0.5:
            node["required"] = rng.sample(["v", "kids"], rng.randint(1, 2))
        if rng.random() < 0.4:
            node["additionalProperties"] = rng.choice([False, {"type": "integer"}])
        if rng.random() < 0.2:
            node["unevaluatedProperties"] = False
            node.pop("additionalProperties", None)
        if rng.random() < 0.2:
            other = {"type": "integer"} if rng.random() < 0.5 else self.schema(0)
            node = {rng.choice(["anyOf", "oneOf"]): [node, other]}
        if rng.random() < 0.3:
            return {"$ref": "#", **node} if rng.random() < 0.2 else {"$defs": {"node": node}, **node}
        return {"$defs": {"node": node}, "$ref": "#/$defs/node"}

    def schema(self, depth: int, top_ref: bool = True) -> Any:
        rng = self.rng
        kinds = {
            "object": 3.0,
            "array": 2.0,
            "string": 2.0,
            "number": 2.0,
            "enum": 1.0,
            "const": 0.7,
            "combinator": 2.0 if depth > 0 else 0.0,
            "multi": 1.0,
            "bool": 0.3,
            "empty": 0.3,
            "simple": 0.5,
            "ref": 1.2 if self.defs and top_ref else 0.0,
            "unevaluated": 0.8 if depth > 0 else 0.0,
            "overlap": 1.0 if depth > 0 else 0.0,
        }
        if depth <= 0:
            for kind in ("object", "array"):
                kinds[kind] *= 0.15
        kind = pick_weighted(rng, kinds)
        if kind == "bool":
            return rng.random() < 0.7
        if kind == "empty":
            return {}
        schema: dict[str, Any] = getattr(self, f"make_{kind}")(depth)
        if depth > 0 and rng.random() < 0.2:
            self.add_combinator(schema, depth)
        if rng.random() < 0.08:
            schema["enum"] = FILL
        elif rng.random() < 0.04:
            schema["const"] = FILL
        if rng.random() < 0.1:  # a keyword of another type, which constrains only its own type
            other = pick_weighted(rng, {"string": 1, "number": 1, "object": 1, "array": 1})
            extra = getattr(self, f"make_{other}")(0)
            extra.pop("type", None)
            for key, value in extra.items():
                schema.setdefault(key, value)
        return schema

    def literal(self, depth: int) -> Any:
        """A random small JSON value."""
        rng = self.rng
        kind = pick_weighted(rng, {"str": 3, "num": 3, "bool": 1, "null": 1, "arr": depth, "obj": depth})
        if kind == "str":
            return rng.choice(STRINGS)
        if kind == "num":
            return rng.choice(NUMBERS)
        if kind == "bool":
            return rng.random() < 0.5
        if kind == "null":
            return None
        most = 6 if self.large else 2
        if kind == "arr":
            return [self.literal(depth - 1) for _ in range(rng.randint(0, most))]
        return {rng.choice(self.keys): self.literal(depth - 1) for _ in range(rng.randint(0, most))}

    def key(self) -> str:
        return self.rng.choice(ODD_KEYS) if self.rng.random() < 0.12 else self.rng.choice(self.keys)

    def count(self, small: tuple[int, int], large: tuple[int, int]) -> int:
        return self.rng.randint(*(large if self.large else small))

    def make_simple(self, depth: int) -> dict[str, Any]:
        return {"type": self.rng.choice(["boolean", "null", "integer", "string"])}

    def make_enum(self, depth: int) -> dict[str, Any]:
        schema: dict[str, Any] = {"enum": [self.literal(2) for _ in range(self.count((1, 4), (6, 20)))]}
        if self.rng.random() < 0.3:
            schema["type"] = self.rng.choice(TYPES)
        return schema

    def make_const(self, depth: int) -> dict[str, Any]:
        return {"const": self.literal(2)}

    def make_number(self, depth: int) -> dict[str, Any]:
        rng = self.rng
        wide = rng.random() < 0.4  # multi-digit bounds and decimal steps (the range automata)
        schema: dict[str, Any] = {"type": rng.choice(["integer", "number"])} if rng.random() < 0.85 else {}
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if rng.random() < 0.3:
                schema[key] = rng.choice(WIDE_BOUNDS if wide else BOUNDS)
        if rng.random() < 0.3:
            schema["multipleOf"] = rng.choice(WIDE_STEPS if wide else STEPS)
        return schema

    def make_string(self, depth: int) -> dict[str, Any]:
        rng = self.rng
        schema: dict[str, Any] = {"type": "string"} if rng.random() < 0.85 else {}
        if rng.random() < 0.4:
            schema["minLength"] = rng.choice(LONG_LENGTHS) if self.large else rng.randint(0, 3)
        if rng.random() < 0.4:
            schema["maxLength"] = rng.choice(LONG_LENGTHS) if self.large else rng.randint(0, 4)
        if rng.random() < 0.35:
            schema["pattern"] = rng.choice(PATTERNS)
        if rng.random() < 0.06:
            schema["format"] = rng.choice(sorted(FORMATS))
        return schema

    def make_object(self, depth: int) -> dict[str, Any]:
        rng = self.rng
        schema: dict[str, Any] = {"type": "object"} if rng.random() < 0.85 else {}
        declared: list[str] = []
        if rng.random() < 0.8:
            declared = list(dict.fromkeys(self.key() for _ in range(self.count((1, 3), (3, 8)))))
            schema["properties"] = {k: self.schema(depth - 1) for k in declared}
        if rng.random() < 0.5:
            pool = [*declared, self.key()]
            required = [rng.choice(pool) for _ in range(self.count((1, 2), (1, 6)))]
            schema["required"] = list(dict.fromkeys(required))
        choice = pick_weighted(rng, {"none": 4, "false": 2, "true": 0.5, "schema": 1.5})
        if choice == "schema":
            schema["additionalProperties"] = self.schema(depth - 1)
        elif choice != "none":
            schema["additionalProperties"] = choice == "true"
        if rng.random() < 0.25:
            schema["patternProperties"] = {
                p: self.schema(depth - 1) for p in rng.sample(KEY_PATTERNS, self.count((1, 2), (1, 5)))
            }
        if rng.random() < 0.15:
            schema["propertyNames"] = rng.choice(
                [
                    {"pattern": rng.choice(KEY_PATTERNS)},
                    {"maxLength": 1},
                    {"minLength": 2},
                    {"enum": rng.sample(self.keys + ODD_KEYS[:3], 3)},
                    {"const": "a"},
                    {"not": {"const": "b"}},
                ]
            )
        if rng.random() < 0.25:
            low = self.count((0, 3), (3, 18))
            if rng.random() < 0.7:
                schema["minProperties"] = low
            if rng.random() < 0.7:
                schema["maxProperties"] = low + rng.randint(0, 2)
        if rng.random() < 0.15:
            schema["dependentRequired"] = {self.key(): [self.key()]}
        if rng.random() < 0.12:
            if rng.random() < 0.5:
                schema["dependentSchemas"] = {self.key(): {"properties": {self.key(): self.schema(0)}}}
            else:
                schema["dependentSchemas"] = {self.key(): {"required": [self.key()]}}
        if rng.random() < 0.15:
            schema["unevaluatedProperties"] = False if rng.random() < 0.6 else self.schema(0)
        return schema

    def make_array(self, depth: int) -> dict[str, Any]:
        rng = self.rng
        schema: dict[str, Any] = {"type": "array"} if rng.random() < 0.85 else {}
        if rng.random() < 0.3:
            schema["prefixItems"] = [self.schema(depth - 1) for _ in range(rng.randint(1, 2))]
            if rng.random() < 0.4:
                schema["items"] = False
        if "items" not in schema and rng.random() < 0.7:
            if self.large and rng.random() < 0.4:  # items from a few values (unique ones: up to 8)
                schema["items"] = {"enum": list(range(rng.randint(6, 10)))}
            else:
                schema["items"] = self.schema(depth - 1)
        if rng.random() < 0.3:
            schema["minItems"] = self.count((0, 2), (6, 18))
        if rng.random() < 0.3:
            schema["maxItems"] = self.count((1, 4), (8, 18))
        if rng.random() < 0.2:
            schema["contains"] = self.schema(max(depth - 1, 0))
            if rng.random() < 0.4:
                schema["minContains"] = self.count((0, 2), (0, 17))
            if rng.random() < 0.4:
                schema["maxContains"] = self.count((1, 2), (1, 17))
        if rng.random() < 0.25:
            schema["uniqueItems"] = rng.random() < 0.85
        if rng.random() < 0.1:
            schema["unevaluatedItems"] = False if rng.random() < 0.6 else self.schema(0)
        return schema

    def make_multi(self, depth: int) -> dict[str, Any]:
        rng = self.rng
        schema: dict[str, Any] = {"type": rng.sample(TYPES, rng.randint(2, 3))}
        for kind in rng.sample(["string", "number", "object", "array"], 2):
            part = getattr(self, f"make_{kind}")(max(depth - 1, 0))
            part.pop("type", None)
            schema.update(part)
        return schema

    def make_ref(self, depth: int) -> dict[str, Any]:
        name = self.rng.choice(self.defs).replace("~", "~0").replace("/", "~1")
        schema: dict[str, Any] = {"$ref": "#/$defs/" + name}
        if self.rng.random() < 0.3:  # beside other keywords (2019-09 and later)
            schema.update(self.make_number(0) if self.rng.random() < 0.5 else self.make_string(0))
            schema.pop("type", None)
        return schema

    def make_combinator(self, depth: int) -> dict[str, Any]:
        schema: dict[str, Any] = {}
        self.add_combinator(schema, depth)
        return schema

    def add_combinator(self, schema: dict[str, Any], depth: int) -> None:
        rng = self.rng
        kind = pick_weighted(rng, {"anyOf": 2, "oneOf": 2, "allOf": 2, "not": 1, "if": 1.5})
        if kind in ("anyOf", "oneOf", "allOf"):
            schema[kind] = [self.schema(depth - 1) for _ in range(rng.randint(1, 3))]
        elif kind == "not":
            schema["not"] = self.schema(depth - 1)
        else:
            key = self.key()
            schema["if"] = rng.choice(
                [
                    {"properties": {key: {"const": self.literal(0)}}, "required": [key]},
                    {"type": rng.choice(TYPES)},
                    {"minimum": rng.choice(BOUNDS)},
                    {"required": [key]},
                    self.schema(0),
                ]
            )
            if rng.random() < 0.85:
                schema["then"] = self.schema(depth - 1)
            if rng.random() < 0.7:
                schema["else"] = self.schema(depth - 1)

    def make_overlap(self, depth: int) -> dict[str, Any]:
        """A combinator over variants of one schema: branches that overlap, negations of near-misses."""
        rng = self.rng
        base = self.schema(depth - 1)
        if not isinstance(base, dict):
            base = self.make_number(0)
        variants = [self.variant(base) for _ in range(rng.randint(1, 3))]
        kind = pick_weighted(rng, {"oneOf": 3, "anyOf": 1, "not": 2, "if": 2, "allOf": 1})
        if kind == "not":
            return {"allOf": [base, {"not": variants[0]}]} if rng.random() < 0.5 else {"not": variants[0]}
        if kind == "if":
            schema = {"if": variants[0], "then": base}
            if len(variants) > 1:
                schema["else"] = variants[1]
            return schema
        return {kind: [base, *variants]}

    def variant(self, schema: dict[str, Any]) -> Any:
        """``schema`` with one keyword changed, dropped or added."""
        rng = self.rng
        out = dict(schema)
        numeric = [k for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        action = rng.random()
        if numeric and action < 0.4:
            key = rng.choice(numeric)
            changed = out[key] + rng.choice([-1, 1, 0.5, -0.5])
            out[key] = max(changed, 0) if isinstance(out[key], int) and "Length" in key else changed
            if key == "multipleOf" and out[key] <= 0:
                out[key] = 2
            elif key.startswith(("min", "max")) and not key.endswith("imum"):
                out[key] = int(abs(out[key]))
        elif out and action < 0.7:
            del out[rng.choice(sorted(out))]
        else:
            kind = self.rng.choice(["number", "string", "object", "array"])
            extra = getattr(self, f"make_{kind}")(0)
            extra.pop("type", None)
            out.update(extra)
        if "const" in out or "enum" in out:
            if rng.random() < 0.5:
                out.pop("const", None)
                out["enum"] = FILL
        return out

    def make_unevaluated(self, depth: int) -> dict[str, Any]:
        """``unevaluatedProperties``/``unevaluatedItems`` beside the keywords that evaluate: in
        ``allOf``/``anyOf``/``oneOf`` parts, ``if``/``then``/``else``, ``dependentSchemas``, ``$ref``."""
        rng = self.rng
        if rng.random() < 0.35:
            return self.unevaluated_items(depth)
        keys = rng.sample(self.keys, min(len(self.keys), 4))

        def part(require: bool = False) -> dict[str, Any]:
            key = rng.choice(keys)
            out: dict[str, Any] = {"properties": {key: self.schema(0)}}
            if require or rng.random() < 0.4:
                out["required"] = [key]
            if rng.random() < 0.2:
                out["patternProperties"] = {rng.choice(KEY_PATTERNS): self.schema(0)}
            if rng.random() < 0.15:
                out["additionalProperties"] = rng.choice([False, True, {"type": "integer"}])
            if rng.random() < 0.15:
                out["unevaluatedProperties"] = rng.choice([False, True])
            return out

        schema: dict[str, Any] = {"type": "object"} if rng.random() < 0.8 else {}
        if rng.random() < 0.6:
            schema.update(part())
        kinds = ["allOf", "anyOf", "oneOf", "if", "dependentSchemas", "ref"]
        for kind in rng.sample(kinds, rng.randint(1, 2)):
            if kind in ("allOf", "anyOf", "oneOf"):
                schema[kind] = [part(kind != "allOf") for _ in range(rng.randint(1, 3))]
            elif kind == "if":
                key = rng.choice(keys)
                schema["if"] = {"properties": {key: {"const": self.literal(0)}}, "required": [key]}
                schema["then"] = part()
                if rng.random() < 0.7:
                    schema["else"] = part()
            elif kind == "dependentSchemas":
                schema["dependentSchemas"] = {rng.choice(keys): part()}
            elif self.defs:
                schema["$ref"] = "#/$defs/" + rng.choice(self.defs).replace("~", "~0").replace("/", "~1")
        schema["unevaluatedProperties"] = rng.choice([False, False, {"type": "integer"}, {"const": 1}, True])
        return schema

    def unevaluated_items(self, depth: int) -> dict[str, Any]:
        rng = self.rng

        def part() -> dict[str, Any]:
            out: dict[str, Any] = {"prefixItems": [self.schema(0) for _ in range(rng.randint(1, 3))]}
            if rng.random() < 0.3:
                out["items"] = self.schema(0)
            if rng.random() < 0.3:
                out["contains"] = self.schema(0)
            return out

        schema: dict[str, Any] = {"type": "array"} if rng.random() < 0.8 else {}
        if rng.random() < 0.5:
            schema.update(part())
        kind = rng.choice(["allOf", "anyOf", "oneOf", "if"])
        if kind == "if":
            schema["if"] = part()
            schema["then"] = part()
            if rng.random() < 0.6:
                schema["else"] = part()
        else:
            schema[kind] = [part() for _ in range(rng.randint(1, 3))]
        schema["unevaluatedItems"] = rng.choice([False, False, {"type": "integer"}, {"const": 1}])
        return schema


# -- values -------------------------------------------------------------------------------------


def merge(a: dict[str, Any], b: Any) -> dict[str, Any]:
    """The keywords of two schemas in one (roughly their conjunction, for generating values)."""
    if not isinstance(b, dict):
        return a
    out = dict(a)
    for key, value in b.items():
        if (
            key in out
            and key in ("properties", "patternProperties", "$defs", "dependentSchemas")
            and isinstance(out[key], dict)
            and isinstance(value, dict)
        ):
            out[key] = {**out[key], **value}
        elif key == "required" and isinstance(out.get(key), list) and isinstance(value, list):
            out[key] = list(dict.fromkeys(out[key] + value))
        elif key == "type" and key in out:
            mine = out[key] if isinstance(out[key], list) else [out[key]]
            theirs = value if isinstance(value, list) else [value]
            both = [t for t in mine if t in theirs or (t == "integer" and "number" in theirs)]
            out[key] = both or value
        elif key == "allOf" and isinstance(out.get(key), list) and isinstance(value, list):
            out[key] = out[key] + value
        else:
            out[key] = value
    return out


def resolve_pointer(root: Any, ref: str) -> Any:
    """The target of a local ``$ref`` (``#``, a JSON pointer or an anchor), or None."""
    from outlines_gguf.json_schema.validate import resolve_local  # (imported after the cache is off)

    try:
        return resolve_local(root, ref)
    except LookupError:
        return None


def searches(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def to_number(value: Fraction) -> int | float:
    return int(value) if value.denominator == 1 else float(value)


class ValueGen:
    """Values biased toward a schema: mostly valid, with random mutations at single nodes."""

    def __init__(self, rng: random.Random, root: Any, keys: list[str]) -> None:
        self.rng = rng
        self.root = root
        self.keys = keys + ODD_KEYS
        self.wild_rate = 0.0
        self.universe: list[Any] = list(self.collect(root))

    def collect(self, node: Any) -> Iterator[Any]:
        """Literal values the schema mentions (enum members, consts, keys, bounds)."""
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "enum" and isinstance(value, list):
                    yield from value
                elif key == "const":
                    yield value
                elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
                    yield value
                if key in ("properties", "patternProperties") and isinstance(value, dict):
                    yield from value
                yield from self.collect(value)
        elif isinstance(node, list):
            for value in node:
                yield from self.collect(value)

    def wild(self, depth: int = 1) -> Any:
        """A random value from the universe (the schema's literals and the small pools)."""
        rng = self.rng
        kind = rng.random()
        if kind < 0.3 and self.universe:
            return rng.choice(self.universe)
        if kind < 0.5:
            return rng.choice(STRINGS)
        if kind < 0.7:
            return rng.choice(NUMBERS)
        if kind < 0.8:
            return rng.choice([True, False, None])
        if kind < 0.9 or depth <= 0:
            return [self.wild(depth - 1) for _ in range(rng.randint(0, 2))]
        return {rng.choice(KEYS): self.wild(depth - 1) for _ in range(rng.randint(0, 2))}

    def value(self, schema: Any, depth: int = 0) -> Any:
        rng = self.rng
        if depth > 8 or schema is True or schema is False or rng.random() < self.wild_rate:
            return self.wild()
        if not isinstance(schema, dict):
            return self.wild()
        schema = self.flatten(schema)
        if "const" in schema and schema["const"] is not FILL and rng.random() < 0.8:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"] and rng.random() < 0.85:
            return rng.choice(schema["enum"])
        kind = self.pick_type(schema)
        if kind == "object":
            return self.object_value(schema, depth)
        if kind == "array":
            return self.array_value(schema, depth)
        if kind == "string":
            return self.string_value(schema)
        if kind in ("integer", "number"):
            return self.number_value(schema, kind == "integer")
        if kind == "boolean":
            return rng.random() < 0.5
        return None

    def flatten(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Fold ``$ref``, ``allOf``, one branch of ``anyOf``/``oneOf`` and of ``if`` into one schema."""
        rng = self.rng
        for _ in range(10):
            if "$ref" in schema:
                rest = {k: v for k, v in schema.items() if k != "$ref"}
                target = resolve_pointer(self.root, schema["$ref"])
                schema = merge(rest, target) if isinstance(target, dict) else rest
            elif isinstance(schema.get("allOf"), list):
                rest = {k: v for k, v in schema.items() if k != "allOf"}
                for part in schema["allOf"]:
                    rest = merge(rest, part)
                schema = rest
            elif any(isinstance(schema.get(k), list) and schema[k] for k in ("anyOf", "oneOf")):
                key = "anyOf" if isinstance(schema.get("anyOf"), list) and schema["anyOf"] else "oneOf"
                rest = {k: v for k, v in schema.items() if k != key}
                schema = merge(rest, rng.choice(schema[key]))
            elif "if" in schema:
                rest = {k: v for k, v in schema.items() if k not in ("if", "then", "else")}
                if rng.random() < 0.5:
                    schema = merge(merge(rest, schema["if"]), schema.get("then", True))
                else:
                    schema = merge(rest, schema.get("else", True))
            else:
                break
        return schema

    def pick_type(self, schema: dict[str, Any]) -> str:
        rng = self.rng
        declared = schema.get("type")
        if isinstance(declared, str):
            return declared if rng.random() < 0.95 else rng.choice(TYPES)
        if isinstance(declared, list) and declared:
            return str(rng.choice(declared))
        hinted = [kind for kind, keys in TYPE_HINTS.items() if keys & schema.keys()]
        if hinted and rng.random() < 0.8:
            return rng.choice(hinted)
        return rng.choice(TYPES)

    def object_value(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        rng = self.rng
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        patterns = schema.get("patternProperties")
        patterns = patterns if isinstance(patterns, dict) else {}
        extra = schema.get("additionalProperties", True)
        keys = [k for k in schema.get("required", []) if isinstance(k, str)]
        keys += [k for k in props if rng.random() < 0.6]
        for pattern in patterns:
            matching = [k for k in self.keys if searches(pattern, k)]
            if matching and rng.random() < 0.6:
                keys.append(rng.choice(matching))
        if extra is not False and rng.random() < 0.25:
            keys.append(rng.choice(self.keys))
        dependent = schema.get("dependentRequired")
        if isinstance(dependent, dict):
            for key, needs in dependent.items():
                if key in keys and isinstance(needs, list) and rng.random() < 0.8:
                    keys += [k for k in needs if isinstance(k, str)]
        low, high = schema.get("minProperties"), schema.get("maxProperties")
        keys = list(dict.fromkeys(keys))
        while isinstance(low, int) and len(keys) < low and rng.random() < 0.9:
            keys = list(dict.fromkeys([*keys, rng.choice(list(props) + self.keys)]))
        if isinstance(high, int) and len(keys) > high and rng.random() < 0.8:
            keys = rng.sample(keys, high)
        rng.shuffle(keys)
        out: dict[str, Any] = {}
        for key in keys:
            if key in props:
                sub = props[key]
            else:
                matched = [s for p, s in patterns.items() if searches(p, key)]
                sub = rng.choice(matched) if matched else extra
            out[key] = self.value(sub, depth + 1)
        return out

    def array_value(self, schema: dict[str, Any], depth: int) -> list[Any]:
        rng = self.rng
        prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else []
        items = schema.get("items", True)
        low = schema.get("minItems", 0) if isinstance(schema.get("minItems"), int) else 0
        high = schema.get("maxItems") if isinstance(schema.get("maxItems"), int) else low + 3
        size = rng.choice([low, high, rng.randint(min(low, high), max(low, high)), low - 1, high + 1])
        size = max(0, min(size, 6))
        if items is False and rng.random() < 0.8:
            size = min(size, len(prefix))
        out = [self.value(prefix[i] if i < len(prefix) else items, depth + 1) for i in range(size)]
        if "contains" in schema and rng.random() < 0.7:
            low_c = schema.get("minContains", 1)
            low_c = low_c if isinstance(low_c, int) else 1
            high_c = schema.get("maxContains", low_c + 1)
            high_c = high_c if isinstance(high_c, int) else low_c + 1
            for _ in range(rng.choice([low_c, high_c, high_c + 1, max(low_c - 1, 0)])):
                out.insert(rng.randint(0, len(out)), self.value(schema["contains"], depth + 1))
        if out and rng.random() < (0.3 if schema.get("uniqueItems") else 0.1):
            out.insert(rng.randint(0, len(out)), rng.choice(out))  # a duplicate (written alike or not)
        elif schema.get("uniqueItems") and rng.random() < 0.7:
            seen: dict[str, Any] = {}
            for item in out:
                seen.setdefault(json.dumps(item, sort_keys=True, default=str), item)
            out = list(seen.values())
        return out

    def string_value(self, schema: dict[str, Any]) -> str:
        rng = self.rng
        fmt, pattern = schema.get("format"), schema.get("pattern")
        if fmt in FORMATS and rng.random() < 0.7:
            return rng.choice(FORMATS[fmt])
        low = schema.get("minLength") if isinstance(schema.get("minLength"), int) else None
        high = schema.get("maxLength") if isinstance(schema.get("maxLength"), int) else None
        if isinstance(pattern, str) and rng.random() < 0.8:
            alphabet = CHARS + "".join(ch for ch in pattern if ch.isalnum() or ord(ch) > 127)
            found = [s for s in STRINGS if searches(pattern, s)]
            for _ in range(40):
                text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5)))
                if searches(pattern, text):
                    found.append(text)
            if high is not None:
                found = [s for s in found if len(s) <= high] or found
            if low is not None:
                found = [s for s in found if len(s) >= low] or found
            if found:
                return rng.choice(found)
        if low is None and high is None:
            return rng.choice(STRINGS)
        lengths = [n for n in (low, high) if n is not None]
        size = max(0, rng.choice(lengths) + rng.choice([0, 0, 0, 1, -1]))
        return "".join(rng.choice(CHARS) for _ in range(size))

    def number_value(self, schema: dict[str, Any], integer: bool) -> int | float | Decimal:
        rng = self.rng
        bounds = [schema.get(k) for k in BOUND_KEYWORDS]
        numbers = [Fraction(str(b)) for b in bounds if is_number(b)]
        step = schema.get("multipleOf")
        candidates = [Fraction(n) for n in (0, 1, -1, 2)]
        for b in numbers:
            candidates += [b, b + 1, b - 1, b + Fraction(1, 2), b - Fraction(1, 2)]
            candidates += [b + rng.choice([1, -1]) * Fraction(1, 10 ** rng.randint(1, 3)), b * 10, -b]
        if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0:
            m = Fraction(str(step))
            anchors = numbers or [Fraction(0)]
            for b in anchors:
                k = (b / m).__floor__()
                candidates += [m * (k + d) for d in (-1, 0, 1, 2)]
            if rng.random() < 0.7:
                candidates = [c for c in candidates if (c / m).denominator == 1] or candidates
        value = rng.choice(candidates)
        if integer and value.denominator != 1 and rng.random() < 0.8:
            value = Fraction(value.__floor__())
        if rng.random() < 0.15:  # a hair off: more digits than a float holds
            value += rng.choice([1, -1]) * Fraction(1, 10 ** rng.choice([3, 16, 17, 20]))
            with localcontext() as context:
                context.prec = 60
                return Decimal(value.numerator) / Decimal(value.denominator)
        return to_number(value)


# -- text ---------------------------------------------------------------------------------------


def plain_number(value: int | float | Decimal) -> str:
    return format(value, "f") if isinstance(value, Decimal) else json.dumps(value)


def number_spellings(value: int | float | Decimal) -> list[str]:
    """Valid JSON spellings of ``value``'s exact decimal (the plain one first)."""
    plain = plain_number(value)
    sign, digits, exponent = Decimal(plain).as_tuple()
    assert isinstance(exponent, int)
    mantissa = "".join(map(str, digits)).lstrip("0") or "0"
    exp = exponent
    minus = "-" if sign else ""
    out = [plain]
    if mantissa == "0":
        out += ["0", "-0", "0.0", "-0.0", "0e0", "0E+3", "-0e-2", "0.00"]
        return out
    while mantissa.endswith("0"):  # normalize: value = mantissa * 10 ** exp
        mantissa, exp = mantissa[:-1], exp + 1
    n = len(mantissa)
    out.append(f"{minus}{mantissa}e{exp}")
    out.append(f"{minus}{mantissa}0E{exp - 1:+d}")
    out.append(f"{minus}{mantissa[0]}.{mantissa[1:] or '0'}e{exp + n - 1}")
    out.append(f"{minus}0.{mantissa}e{exp + n}")
    if exp >= 0:
        out.append(f"{minus}{mantissa}{'0' * exp}.0")
        out.append(f"{minus}{mantissa}{'0' * exp}.00")
    else:
        whole, frac = (mantissa[:exp] or "0"), mantissa[exp:].rjust(-exp, "0")
        out.append(f"{minus}{whole}.{frac}0")
    return [s for s in out if Fraction(Decimal(s)) == Fraction(Decimal(plain))]


ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f", '"': '\\"', "\\": "\\\\"}


class Writer:
    """JSON text for a value, with the variations a language model could write."""

    def __init__(self, rng: random.Random, decoy: Callable[[], Any]) -> None:
        self.rng = rng
        self.decoy = decoy
        self.p = 0.0
        self.comma, self.colon = ", ", ": "

    def text(self, value: Any, p: float) -> str:
        rng = self.rng
        self.p = p
        if rng.random() < 0.03:
            try:
                return json.dumps(value, indent=rng.choice([None, 1, 2]), ensure_ascii=rng.random() < 0.5)
            except TypeError:  # a Decimal
                pass
        self.comma, self.colon = rng.choice([(", ", ": "), (",", ":"), (", ", ":"), (",", ": ")])
        if rng.random() < 0.02:
            self.comma, self.colon = rng.choice([(" , ", " : "), (",\n", ":\t")])
        out = self.write(value)
        if rng.random() < 0.02:
            out = rng.choice([" ", "\n"]) + out if rng.random() < 0.5 else out + rng.choice([" ", "\n"])
        return out

    def hit(self, scale: float = 1.0) -> bool:
        return self.rng.random() < self.p * scale

    def write(self, value: Any) -> str:
        if value is None or isinstance(value, bool):
            return json.dumps(value)
        if isinstance(value, (int, float, Decimal)):
            return self.rng.choice(number_spellings(value)) if self.hit() else plain_number(value)
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, list):
            return "[" + self.comma.join(self.write(v) for v in value) + "]"
        members = [(k, v) for k, v in value.items()]
        for key, _ in list(members):
            if self.hit(0.5):  # a decoy written first: json.loads keeps the last value
                at = self.rng.randint(0, next(i for i, (k, _) in enumerate(members) if k == key))
                members.insert(at, (key, self.decoy()))
            if self.hit(0.2):  # the same member twice
                members.append((key, value[key]))
        return "{" + self.comma.join(self.string(k) + self.colon + self.write(v) for k, v in members) + "}"

    def string(self, value: str) -> str:
        out = ['"']
        for ch in value:
            code = ord(ch)
            if 0xD800 <= code <= 0xDFFF:
                out.append(f"\\u{code:04x}")
            elif code > 0xFFFF:
                if self.hit(0.7):
                    high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
                    spelled = f"\\u{high:04x}\\u{low:04x}"
                    out.append(spelled.upper().replace("\\U", "\\u") if self.hit(0.5) else spelled)
                else:
                    out.append(ch)
            elif ch in ESCAPES or code < 0x20:
                if self.hit(0.5) or ch not in ESCAPES:
                    out.append(f"\\u{code:04X}" if self.hit(0.5) else f"\\u{code:04x}")
                else:
                    out.append(ESCAPES[ch])
            elif ch == "/" and self.hit(0.7):
                out.append("\\/")
            elif self.hit(0.3 if code < 128 else 0.6):
                out.append(f"\\u{code:04X}" if self.hit(0.5) else f"\\u{code:04x}")
            else:
                out.append(ch)
        out.append('"')
        return "".join(out)


# -- judging ------------------------------------------------------------------------------------


class NotJSONError(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise NotJSONError(f"{name} is not JSON")


class NumberOutOfRangeError(ValueError):
    pass


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError as exc:  # an exponent past Decimal's range
        raise NumberOutOfRangeError(text[:40]) from exc


def parse(text: str) -> Any:
    """The exact value of a JSON text: numbers with a fraction or an exponent as ``Decimal`` (a float
    would round ``0.99999999999999999`` to 1, or a 40-digit number with a fraction to an integer).
    ``ValueError`` for what JSON or ``json.loads`` refuses (``NaN`` and ``Infinity`` included)."""
    return json.loads(text, parse_float=_decimal, parse_constant=_no_constant)


def float_judge(schema: Any, text: str) -> bool | None:
    """The plain judge (``json.loads`` floats, the dialect's validator as it comes), or None where
    it cannot say (a non-finite float): reported beside the exact one."""
    try:
        value = json.loads(text)
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        return bool(cls(schema).is_valid(value))
    except Exception:
        return None


def is_integer(checker: Any, instance: Any) -> bool:
    """JSON Schema's integer: any number with a zero fraction (``1.0``, ``1e2``), exactly."""
    if isinstance(instance, bool):
        return False
    if isinstance(instance, int):
        return True
    if isinstance(instance, float):
        return instance.is_integer()
    if isinstance(instance, Decimal):
        if not instance.is_finite():
            return False
        return int(instance.as_tuple().exponent) >= 0 or instance == instance.to_integral_value()
    return False


def exact_multiple_of(validator: Any, step: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """``multipleOf`` by exact decimal value (jsonschema divides floats: 0.07 / 0.01 fails)."""
    if not validator.is_type(instance, "number"):
        return
    if isinstance(instance, Decimal) and abs(int(instance.as_tuple().exponent)) > 2000:
        return  # too large to divide exactly here (never generated; walks rarely)
    value = Fraction(repr(instance)) if isinstance(instance, float) else Fraction(instance)
    if (value / Fraction(str(step))).denominator != 1:
        yield jsonschema.ValidationError(f"{instance!r} is not a multiple of {step}")


def map_patterns(schema: Any, fix: Callable[[str], str]) -> Any:
    """``schema`` with ``fix`` applied to every regex (``pattern``, ``patternProperties`` names)."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "pattern" and isinstance(value, str):
            out[key] = fix(value)
        elif key == "patternProperties" and isinstance(value, dict):
            out[key] = {fix(p): map_patterns(sub, fix) for p, sub in value.items()}
        elif key in (*SUBSCHEMA_MAPS, "definitions", "dependencies") and isinstance(value, dict):
            out[key] = {name: map_patterns(sub, fix) for name, sub in value.items()}
        elif key in (*SUBSCHEMA_LISTS, "items") and isinstance(value, list):
            out[key] = [map_patterns(sub, fix) for sub in value]
        elif key in (*SUBSCHEMA_ONE, "additionalItems"):
            out[key] = map_patterns(value, fix)
        else:
            out[key] = value
    return out


ECMA_SPACE = "\\t\\n\\x0b\\x0c\\r \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
r"""ECMA-262's ``\s`` (WhiteSpace and LineTerminator), as the inside of a Python character class."""


def ecma_end(pattern: str, ecma: bool) -> str:
    r"""A pattern for Python's ``re`` with ``$`` meaning the end of the text, as in ECMA-262 (Python's
    ``$`` also matches before a final newline). With ``ecma``, the rest of ECMA-262's reading too:
    ASCII ``\d``, ``\w`` and ``\b`` (``re.ASCII``), ``\s`` as ECMA-262's set of spaces (Unicode, but
    not Python's: U+FEFF is one, U+001F is not), ``.`` excluding every line terminator."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            if ecma and escaped == "s":
                out.append(ECMA_SPACE if in_class else f"[{ECMA_SPACE}]")
            elif ecma and escaped == "S" and not in_class:
                out.append(f"[^{ECMA_SPACE}]")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
            out.append(ch)
        elif ch == "[":
            in_class = True
            out.append(ch)
        elif ch == "$":
            out.append("\\Z")
        elif ch == "." and ecma:
            out.append("[^\\n\\r\\u2028\\u2029]")
        else:
            out.append(ch)
        i += 1
    text = "".join(out)
    if not ecma:
        return text
    # ASCII as a scoped flag, not a global one: jsonschema joins patternProperties keys with "|"
    # (for additionalProperties), where a global flag after the first is an error
    leading = re.match(r"\(\?([imsx]+)\)", text)
    if leading is not None:  # (the pattern's own global flags, scoped with it)
        return f"(?a{leading.group(1)}:{text[leading.end():]})"
    return f"(?a:{text})"


def make_validator(schema: Any, ecma: bool = False) -> Any:
    """The judge: the schema's dialect (2020-12 by default) over exact numbers (the schema's and the
    instance's decimals as ``Decimal``, ``multipleOf`` and ``integer`` by exact value), formats
    asserted, ``$`` in patterns as the end of the text (:func:`ecma_end`). Raises
    ``jsonschema.SchemaError`` for a schema the meta-schema refuses."""
    exact_schema = json.loads(json.dumps(schema), parse_float=Decimal)
    exact_schema = map_patterns(exact_schema, lambda p: ecma_end(p, ecma))
    base = jsonschema.validators.validator_for(exact_schema, default=jsonschema.Draft202012Validator)
    base.check_schema(exact_schema)
    checker = base.TYPE_CHECKER.redefine("integer", is_integer)
    exact = jsonschema.validators.extend(base, {"multipleOf": exact_multiple_of}, type_checker=checker)
    return exact(exact_schema, format_checker=base.FORMAT_CHECKER)


def failing_keywords(validator: Any, value: Any) -> list[str]:
    return sorted({str(error.validator) for error in validator.iter_errors(value)})


class Judge:
    """A schema's two readings of its patterns: Python's (``jsonschema``'s: Unicode ``\\d``, ``\\w``,
    ``\\s``) and ECMA-262's (which JSON Schema names: ASCII ``\\d``, ``\\w``; its own ``\\s``). Both
    read ``$`` as the end of the text. A text the engine accepts is ``unsound`` where both refuse it,
    ``unsound-ecma`` where ECMA-262's reading alone does (Python's ``jsonschema`` would pass it) and
    ``regex-dialect`` where Python's alone does (valid as JSON Schema says, refused by ``jsonschema``;
    the README promises outputs that match both)."""

    def __init__(self, schema: Any) -> None:
        self.python = make_validator(schema)
        self.has_patterns = '"pattern' in json.dumps(schema)
        self._ecma: Any = None
        self.schema = schema

    @property
    def ecma(self) -> Any:
        if not self.has_patterns:
            return self.python
        if self._ecma is None:
            self._ecma = make_validator(self.schema, ecma=True)
        return self._ecma

    def valid(self, value: Any) -> bool:
        """Python's reading (the one the statistics count)."""
        return bool(self.python.is_valid(value))

    def valid_both(self, value: Any) -> bool:
        return self.valid(value) and bool(self.ecma.is_valid(value))

    def verdict(self, value: Any, valid: bool | None = None) -> str | None:
        """``unsound``, ``unsound-ecma``, ``regex-dialect`` or None (valid both ways) for a value the
        engine accepts."""
        if valid is None:
            valid = self.valid(value)
        valid_ecma = bool(self.ecma.is_valid(value)) if self.has_patterns else valid
        if valid and valid_ecma:
            return None
        if not valid and not valid_ecma:
            return "unsound"
        return "regex-dialect" if valid_ecma else "unsound-ecma"

    def failing(self, value: Any) -> Any:
        """The validator (of the two) that refuses ``value``."""
        return self.ecma if self.python.is_valid(value) else self.python


# -- the engine, under a time limit -------------------------------------------------------------


class Deadline(BaseException):
    """Raised by SIGALRM when a step runs past its limit (a BaseException: library code that catches
    ``Exception`` must not swallow it)."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise Deadline


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


@dataclass
class Outcome:
    """What the engine did: ``ok`` (with ``value``), ``refused``, ``slow`` or ``crash``."""

    status: str
    value: Any = None
    detail: str = ""
    seconds: float = 0.0


def describe(exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first[:200]}"


class Engine:
    """Compiles schemas and asks the constraint about texts, classifying every failure."""

    def __init__(self, vocab_path: Path, engine: str, limit: float) -> None:
        from outlines_gguf import JSONLogitsProcessor, OutlinesGGUFError, Vocabulary

        self.processor_class = JSONLogitsProcessor
        self.library_error = OutlinesGGUFError
        self.vocab = Vocabulary.from_gguf(str(vocab_path))
        self.engine = engine
        self.limit = limit

    def run(self, step: Callable[[], Any], limit: float | None = None) -> Outcome:
        start = time.perf_counter()
        try:
            with time_limit(limit or self.limit):
                value = step()
        except Deadline:
            seconds = time.perf_counter() - start
            return Outcome("slow", detail=f"over {limit or self.limit:g} s", seconds=seconds)
        except self.library_error as exc:
            return Outcome("refused", detail=describe(exc), seconds=time.perf_counter() - start)
        except RecursionError as exc:
            return Outcome("crash", detail=describe(exc) + "\n" + traceback.format_exc(limit=-8))
        except Exception as exc:
            return Outcome("crash", detail=describe(exc) + "\n" + traceback.format_exc(limit=-8))
        return Outcome("ok", value, seconds=time.perf_counter() - start)

    def compile(self, schema: Any) -> Outcome:
        return self.run(lambda: self.compile_unlimited(schema))

    def compile_unlimited(self, schema: Any) -> Any:
        """The processor, its root compiled and its first mask built (as generation would)."""
        processor = self.processor_class(schema, self.vocab, engine=self.engine)
        processor.guide.mask(processor.guide.initial_state)
        return processor

    def accepts(self, processor: Any, text: str) -> Outcome:
        return self.run(lambda: bool(processor.accepts(text)))


def replay(guide: Any, history: list[Any], ids: list[int]) -> None:
    """Ask ``guide`` what it was asked before (``history``: ``["text", text]`` for ``accepts``,
    ``["walk", ids]`` for a walk through the masks), then walk ``ids`` through the masks: raises
    ``ConstraintViolationError`` where a mask allows no token; ``ValueError`` where ``ids`` leave them."""
    from outlines_gguf.llama_cpp.completion_check import accepts

    for what, item in history:
        if what == "text":
            accepts(guide, item)
        else:
            state = guide.initial_state
            for token in item:
                guide.mask(state)
                state = guide.next_state(state, token)
    state = guide.initial_state
    for token in ids:
        if not guide.mask(state).allows_any(np.array([token])):
            raise ValueError(f"token {token} is not in the mask")
        state = guide.next_state(state, token)
    guide.mask(state)


class Walker:
    """Random walks through a guide's token masks, as generation with random logits goes."""

    def __init__(self, vocab: Any) -> None:
        self.vocab = vocab
        tokens = vocab.tokens
        special = np.zeros(vocab.size, dtype=bool)
        special[list(vocab.special_ids | vocab.eog_ids)] = True
        lengths = np.array([len(t) for t in tokens])
        self.eog = special
        self.single = (lengths == 1) & ~special
        closers = [bool(t) and set(t) <= set(b'"]}') for t in tokens]
        self.closer = np.array(closers) & ~special
        self.ids: list[int] = []

    def walk(
        self, guide: Any, rng: random.Random, steps: int = 48, closing: int = 40
    ) -> tuple[list[int], bool]:
        """Token ids of a random walk, and whether it ended where the guide allows the end."""
        state = guide.initial_state
        ids: list[int] = []
        self.ids = ids  # (what was walked, where the guide raises)
        for step in range(steps + closing):
            mask = guide.mask(state)
            if mask.eog_allowed and (step >= steps or rng.random() < 0.25):
                return ids, True
            allowed = mask.allowed_ids(self.vocab.size)
            allowed = allowed[~self.eog[allowed]]
            if allowed.size == 0:
                return ids, False
            if step >= steps and rng.random() < 0.85:
                pool = allowed[self.closer[allowed]]
                if pool.size == 0:
                    pool = allowed[self.single[allowed]]
            elif rng.random() < 0.35:
                pool = allowed[self.single[allowed]]
            else:
                pool = allowed
            if pool.size == 0:
                pool = allowed
            token = int(pool[rng.randrange(pool.size)])
            ids.append(token)
            state = guide.next_state(state, token)
        return ids, False


# -- shrinking ----------------------------------------------------------------------------------


GENERATION_SECONDS = 10.0
"""Time to draw one schema and its judge, past which the schema is skipped."""

MAX_SHRINK_NODES = 5_000
"""Nodes of a schema the shrinker tries to delete, replace or hoist (a schema sized near the
engine's limits has hundreds of thousands: listing every hoisting took gigabytes)."""


def json_paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every node of a JSON value with its path, the root first, parents before children."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from json_paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from json_paths(value, (*path, i))


def replaced(root: Any, path: tuple[Any, ...], new: Any, delete: bool = False) -> Any:
    """A copy of ``root`` with the node at ``path`` replaced (or deleted from its parent)."""
    if not path:
        return new
    copy = json.loads(json.dumps(root))
    parent = copy
    for part in path[:-1]:
        parent = parent[part]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return copy


def schema_candidates(schema: Any) -> Iterator[Any]:
    """Smaller schemas: a key or list member deleted, a node replaced by ``true``/``{}`` or by one
    of its children (hoisted)."""
    nodes = list(itertools.islice(json_paths(schema), MAX_SHRINK_NODES))
    for path, _ in nodes:
        if path:
            yield replaced(schema, path, None, delete=True)
    for path, node in nodes:
        if isinstance(node, (dict, list)) and node:
            for new in (True, {}):
                yield replaced(schema, path, new)
            # hoisted: {"anyOf": [X]} -> X (lazily: a large schema has quadratically many)
            for _, inner in itertools.islice(json_paths(node), 1, MAX_SHRINK_NODES):
                if isinstance(inner, (dict, bool)):
                    yield replaced(schema, path, inner)


def value_spans(text: str) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Spans ``(start, end, removable)`` of every value and key in a JSON text; ``removable`` lists
    the spans that delete one member or item of an object or array (with its comma)."""
    decoder = json.JSONDecoder()
    spans: list[tuple[int, int, list[tuple[int, int]]]] = []
    ws = re.compile(r"[ \t\n\r]*")

    def skip(at: int) -> int:
        match = ws.match(text, at)
        assert match is not None
        return match.end()

    def value(at: int) -> int:
        at = skip(at)
        if text[at] in "{[":
            close = "}" if text[at] == "{" else "]"
            start, at = at, skip(at + 1)
            parts: list[tuple[int, int]] = []
            while text[at] != close:
                begin = at
                if close == "}":
                    _, at = decoder.raw_decode(text, at)
                    spans.append((begin, at, []))  # the key
                    at = skip(at) + 1  # the colon
                end = value(at)
                parts.append((begin, end))
                at = skip(end)
                if text[at] == ",":
                    at = skip(at + 1)
            removable = []
            for i, (begin, end) in enumerate(parts):
                if i + 1 < len(parts):
                    removable.append((begin, parts[i + 1][0]))
                elif i > 0:
                    removable.append((parts[i - 1][1], end))
                else:
                    removable.append((begin, end))
            spans.append((start, at + 1, removable))
            return at + 1
        _, end = decoder.raw_decode(text, at)
        spans.append((at, end, []))
        return end

    value(0)
    return spans


def simpler_leaves(piece: str) -> Iterator[str]:
    """Simpler texts for one string or number: shorter strings, small numbers."""
    try:
        value = json.loads(piece)
    except ValueError:
        return
    if isinstance(value, str) and len(value) > 1:
        half = len(value) // 2
        for shorter in (value[:1], value[:half], value[half:], value[-1:], "a"):
            yield json.dumps(shorter, ensure_ascii=False)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and piece not in ("0", "1"):
        yield from ("0", "1", piece[: len(piece) // 2])


def text_candidates(text: str) -> Iterator[str]:
    """Smaller or plainer texts: a member or item dropped, a value written as ``json.dumps`` does,
    a string or a number made shorter."""
    try:
        spans = value_spans(text)
    except (ValueError, IndexError):
        return
    spans.sort(key=lambda span: span[0] - span[1])  # the largest first
    for _, _, removable in spans:
        for begin, end in removable:
            yield text[:begin] + text[end:]
    for start, end, _ in spans:
        piece = text[start:end]
        try:
            plain = json.dumps(json.loads(piece), ensure_ascii=False)
        except ValueError:
            continue
        if plain != piece:
            yield text[:start] + plain + text[end:]
        if re.fullmatch(r"-?\d+\.0+", plain):  # 5.0 -> 5
            yield text[:start] + plain.split(".")[0] + text[end:]
    for start, end, _ in spans:
        for simpler in simpler_leaves(text[start:end]):
            yield text[:start] + simpler + text[end:]
    if text != text.strip():
        yield text.strip()


# -- the fuzzer ---------------------------------------------------------------------------------


SCHEMA_KEYWORDS = (
    set().union(*TYPE_HINTS.values())
    | SUBSCHEMA_MAPS
    | SUBSCHEMA_LISTS
    | SUBSCHEMA_ONE
    | LITERAL_KEYWORDS
    | {"$ref", "$defs"}
)


def keywords(schema: Any) -> set[str]:
    """The keywords a schema uses, at every level (not the names under ``properties`` & co)."""
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.add(key)
            if key in SUBSCHEMA_MAPS and isinstance(value, dict):
                for sub in value.values():
                    found |= keywords(sub)
            elif key in SUBSCHEMA_LISTS and isinstance(value, list):
                for sub in value:
                    found |= keywords(sub)
            elif key in SUBSCHEMA_ONE:
                found |= keywords(value)
    elif schema is False:
        found.add("false")
    return found


def text_features(text: str) -> list[str]:
    """How a text differs from plain ``json.dumps``: repeated keys, escapes, number spellings."""
    features = []
    repeated = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        repeated = repeated or len({k for k, _ in pairs}) < len(pairs)
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    if repeated:
        features.append("repeated-key")
    if "\\u" in text or "\\/" in text:
        features.append("escape")
    if re.search(r'(?<![\w"])-?\d+(\.\d+)?[eE]|\.\d*0(?!\d)|-0(?![.\d])', text):
        features.append("number-spelling")
    return features


@dataclass
class Stats:
    counts: Counter = field(default_factory=Counter)
    refusals: Counter = field(default_factory=Counter)

    def line(self, elapsed: float, bugs: int) -> str:
        c = self.counts
        judged = c["accepted valid"] + c["accepted INVALID"] + c["rejected valid"] + c["rejected invalid"]
        accepted = c["accepted valid"] + c["accepted INVALID"]
        share = accepted / judged if judged else 0.0
        return (
            f"[{elapsed:6.0f} s] schemas {c['schemas']} (compiled {c['compiled']}, refused {c['refused']}, "
            f"slow {c['slow']}, crash {c['crash']}) texts {judged} (accepted {share:.0%}, "
            f"valid {c['valid']}, "
            f"rejected-valid {c['rejected valid']}) walks {c['walks']} (complete {c['walk complete']}) "
            f"bugs {c['bug hits']} hits / {bugs} distinct"
        )


class Fuzzer:
    def __init__(self, engine: Engine, args: argparse.Namespace) -> None:
        self.engine = engine
        self.args = args
        self.rng = random.Random(args.seed)
        self.stats = Stats()
        self.walker = Walker(engine.vocab) if args.walks else None
        self.found: dict[str, dict[str, Any]] = {}  # signature -> the record
        self.shrunk_by_key: Counter = Counter()
        self.keys = KEYS
        self.history: list[Any] = []
        self.out = open(args.out, "a", encoding="utf-8")  # closed in finish()

    # one bug ------------------------------------------------------------------------------------

    def is_unsound(self, schema: Any, text: str, kind: str) -> bool:
        """Whether the constraint accepts ``text`` while ``schema`` refuses its value (with the
        verdict ``kind``: ``unsound`` or ``regex-dialect``)."""
        try:
            with time_limit(self.args.compile_limit):
                if Judge(schema).verdict(parse(text)) != kind:
                    return False
        except (Deadline, Exception):
            return False
        compiled = self.engine.compile(schema)
        if compiled.status != "ok":
            return False
        outcome = self.engine.accepts(compiled.value, text)
        return outcome.status == "ok" and outcome.value is True

    def crashes_alike(self, schema: Any, text: str | None, detail: str) -> bool:
        """Whether the engine still crashes with the same exception type (at compile or on ``text``)."""
        kind = detail.split(":")[0]
        try:
            make_validator(schema)
        except Exception:
            return False
        compiled = self.engine.compile(schema)
        if compiled.status == "crash":
            return compiled.detail.split(":")[0] == kind
        if compiled.status != "ok" or text is None:
            return False
        outcome = self.engine.accepts(compiled.value, text)
        return outcome.status == "crash" and outcome.detail.split(":")[0] == kind

    def slower_than(self, schema: Any, seconds: float) -> bool:
        """Whether compiling ``schema`` takes longer than ``seconds`` (the judge must take it too)."""
        try:
            make_validator(schema)
        except Exception:
            return False
        return self.engine.run(lambda: self.engine.compile_unlimited(schema), limit=seconds).status == "slow"

    def dead_end(self, schema: Any, history: list[Any], ids: list[int]) -> bool:
        """Whether a fresh guide, after ``history`` (what was asked of it before: texts and walks,
        which decide what it has compiled), lets the masks take ``ids`` into a state where no token
        can continue."""
        from outlines_gguf.compiler import clear_guide_cache

        try:
            make_validator(schema)
        except Exception:
            return False
        clear_guide_cache()  # a fresh guide: what it computed before depends on its history
        compiled = self.engine.compile(schema)
        if compiled.status != "ok":
            return False
        guide = compiled.value.guide
        reached = self.engine.run(lambda: replay(guide, history, ids))
        return reached.status == "refused" and "no token of this vocabulary can continue" in reached.detail

    def slow_on(self, schema: Any, text: str | None, seconds: float) -> bool:
        """Whether ``accepts(text)`` (with the compiles it needs) takes longer than ``seconds``."""
        try:
            make_validator(schema)
        except Exception:
            return False
        compiled = self.engine.run(lambda: self.engine.compile_unlimited(schema), limit=seconds)
        if compiled.status != "ok" or text is None:
            return compiled.status == "slow"
        return self.engine.accepts(compiled.value, text).status == "slow"

    def shrink(
        self, schema: Any, text: str | None, still: Callable[[Any, str | None], bool], seconds: float = 0
    ) -> tuple[Any, str | None]:
        """Greedy: take any smaller schema or text that keeps the bug, until none does."""
        deadline = time.monotonic() + (seconds or self.args.shrink_seconds)
        tries = 0
        progress = True
        while progress and time.monotonic() < deadline:
            progress = False
            for candidate in schema_candidates(schema):
                if time.monotonic() > deadline or tries > 2000:
                    break
                tries += 1
                if len(json.dumps(candidate)) < len(json.dumps(schema)) and still(candidate, text):
                    schema, progress = candidate, True
                    break
            if text is None:
                continue
            for smaller in dict.fromkeys(text_candidates(text)):
                if time.monotonic() > deadline or tries > 2000:
                    break
                tries += 1
                if still(schema, smaller):
                    text, progress = smaller, True
                    break
        return schema, text

    def report(self, kind: str, schema: Any, text: str | None, **extra: Any) -> None:
        """Shrink a bug, deduplicate it by signature and record it (printed at the end, written at once)."""
        self.stats.counts["bug hits"] += 1
        if kind in ("unsound", "unsound-ecma", "regex-dialect"):
            assert text is not None
            value = parse(text)
            error = jsonschema.exceptions.best_match(Judge(schema).failing(value).iter_errors(value))
            where = sorted(error.schema) if error is not None and isinstance(error.schema, dict) else []
            failed = error.validator if error is not None else ""
            key = f"{kind}|{failed}|{'+'.join(where)}|{'+'.join(text_features(text))}"
        else:
            key = f"{kind}|{extra.get('detail', '').splitlines()[0][:80]}"
        self.shrunk_by_key[key] += 1
        if self.shrunk_by_key[key] > self.args.shrinks_per_key:
            return
        original = {"schema": schema, "text": text}
        if kind in ("unsound", "unsound-ecma", "regex-dialect"):
            schema, text = self.shrink(
                schema, text, lambda s, t: t is not None and self.is_unsound(s, t, kind)
            )
            assert text is not None
            fails = failing_keywords(Judge(schema).failing(parse(text)), parse(text))
            signature = f"{kind}: {' '.join(sorted(keywords(schema)))} | fails: {' '.join(fails)}"
            signature += f" | text: {' '.join(text_features(text))}"
            extra["fails"] = fails
            extra["float_judge_valid"] = float_judge(schema, text)
        elif kind == "wrong-empty":
            schema, text = self.shrink(
                schema, text, lambda s, t: t is not None and self.is_wrongly_empty(s, t)
            )
            signature = f"{kind}: {' '.join(sorted(keywords(schema)))}"
        elif kind == "crash":
            detail = extra["detail"]
            schema, text = self.shrink(schema, text, lambda s, t: self.crashes_alike(s, t, detail))
            signature = f"crash: {detail.splitlines()[0][:120]}"
        elif kind == "slow-compile":
            measured = self.engine.run(lambda: self.engine.compile_unlimited(schema), limit=60)
            extra["detail"] = f"{measured.status} after {measured.seconds:.1f} s ({measured.detail})"
            half = self.args.compile_limit / 2
            schema, _ = self.shrink(schema, None, lambda s, t: self.slower_than(s, half), seconds=150)
            measured = self.engine.run(lambda: self.engine.compile_unlimited(schema), limit=60)
            extra["detail"] += f"; shrunk: {measured.status} after {measured.seconds:.1f} s"
            signature = f"{kind}: {' '.join(sorted(keywords(schema)))}"
        elif kind == "dead-end":
            history, ids = extra["history"], extra["token_ids"]
            if not self.dead_end(schema, history, ids):
                self.stats.counts["dead-ends not reproduced"] += 1
                return
            for i in reversed(range(len(history))):  # what the guide did before that it needs
                if self.dead_end(schema, history[:i] + history[i + 1 :], ids):
                    history = history[:i] + history[i + 1 :]
            extra["history"] = history
            schema, _ = self.shrink(schema, None, lambda s, t: self.dead_end(s, history, ids), seconds=60)
            signature = f"{kind}: {' '.join(sorted(keywords(schema)))}"
        elif kind == "slow-accepts":
            assert text is not None
            half = self.args.compile_limit / 2
            schema, text = self.shrink(schema, text, lambda s, t: self.slow_on(s, t, half), seconds=150)
            signature = f"{kind}: {' '.join(sorted(keywords(schema)))}"
        else:
            signature = f"{kind}: {' '.join(sorted(keywords(schema)))}"
        record = {
            "kind": kind,
            "signature": signature,
            "schema": schema,
            "text": text,
            **extra,
            "original": original,
            "seed": self.args.seed,
            "hits": 1,
        }
        size = len(json.dumps(schema)) + len(text or "")
        known = self.found.get(signature)
        if known is not None:
            known["hits"] += 1
            if size >= len(json.dumps(known["schema"])) + len(known["text"] or ""):
                return
            record["hits"] = known["hits"]
        else:
            print(
                f"  NEW {signature}\n      schema {json.dumps(schema)}\n      text   {json.dumps(text)}",
                flush=True,
            )
        self.found[signature] = record
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    # one schema ---------------------------------------------------------------------------------

    def texts_for(self, schema: Any) -> list[str]:
        values = ValueGen(self.rng, schema, self.keys)
        writer = Writer(self.rng, values.wild)
        texts: dict[str, None] = {}
        for _ in range(self.args.texts):
            values.wild_rate = self.rng.choice([0.0, 0.0, 0.05, 0.15, 0.3])
            try:
                value = values.value(schema)
                texts[writer.text(value, self.rng.choice([0.0, 0.0, 0.1, 0.3, 0.6]))] = None
            except RecursionError:  # (a bug of this generator: counted, the schema kept to look at)
                self.stats.counts["generator recursion errors"] += 1
                self.stats.refusals["(generator recursion) " + json.dumps(schema)[:300]] += 1
                break
        return list(texts)

    def judge(self, schema: Any, validator: Judge, processor: Any, text: str) -> bool:
        """Judge one text; False where the constraint refused to compile a part it needed."""
        c = self.stats.counts
        try:
            value = parse(text)
        except ValueError:
            c["texts skipped"] += 1
            return True
        try:
            with time_limit(self.args.compile_limit):
                valid = validator.valid(value)
        except (Deadline, Exception):  # (jsonschema's own bugs: its 2019-09 unevaluatedItems and others)
            c["judge errors"] += 1
            return True
        c["valid"] += valid
        self.history.append(["text", text])
        outcome = self.engine.accepts(processor, text)
        if outcome.status == "refused":
            c["refused late"] += 1
            self.stats.refusals["(late) " + outcome.detail[:100]] += 1
            return False
        if outcome.status == "slow":
            self.report("slow-accepts", schema, text, detail=outcome.detail)
            return False
        if outcome.status == "crash":
            self.report("crash", schema, text, detail=outcome.detail)
            return False
        accepted = outcome.value
        verdict = None
        if accepted:
            try:
                with time_limit(self.args.compile_limit):
                    verdict = validator.verdict(value, valid)
            except (Deadline, Exception):
                c["judge errors"] += 1
                return True
        outcome_name = "valid" if valid else "INVALID" if accepted else "invalid"
        c[f"{'accepted' if accepted else 'rejected'} {outcome_name}"] += 1
        if verdict is not None:
            self.report(verdict, schema, text)
        return True

    def walk(self, schema: Any, validator: Judge, processor: Any) -> None:
        assert self.walker is not None
        c = self.stats.counts
        vocab = self.engine.vocab
        for _ in range(self.args.walks):
            walked = self.engine.run(lambda: self.walker.walk(processor.guide, self.rng))  # type: ignore[union-attr]
            c["walks"] += 1
            if walked.status == "refused":
                c["refused late"] += 1
                self.stats.refusals["(late, walk) " + walked.detail[:100]] += 1
                if "no token of this vocabulary can continue" in walked.detail:
                    ids = list(self.walker.ids)  # type: ignore[union-attr]
                    prefix = vocab.decode(ids).decode("latin-1")
                    self.report(
                        "dead-end",
                        schema,
                        None,
                        detail=walked.detail,
                        prefix=prefix,
                        token_ids=ids,
                        history=list(self.history),
                    )
                return
            if walked.status != "ok":
                kind = "crash" if walked.status == "crash" else "slow-walk"
                ids = list(self.walker.ids)  # type: ignore[union-attr]
                history = list(self.history)
                self.report(kind, schema, None, detail=walked.detail, token_ids=ids, history=history)
                continue
            ids, complete = walked.value
            self.history.append(["walk", ids])
            if not complete:
                continue
            c["walk complete"] += 1
            data = vocab.decode(ids)
            try:
                text = data.decode("utf-8")
                value = parse(text)
            except NumberOutOfRangeError:
                c["walk number out of range"] += 1
                continue
            except ValueError as exc:
                self.report(
                    "walk-not-json",
                    schema,
                    data.decode("utf-8", "backslashreplace"),
                    detail=describe(exc),
                    token_ids=ids,
                )
                continue
            self.history.append(["text", text])
            accepted = self.engine.accepts(processor, text)
            if accepted.status == "ok" and not accepted.value:
                self.report(
                    "walk-accepts-mismatch",
                    schema,
                    text,
                    detail="mask walk complete, accepts False",
                    token_ids=ids,
                )
            try:
                with time_limit(self.args.compile_limit):
                    verdict = validator.verdict(value)
            except (Deadline, Exception):
                c["judge errors"] += 1
                continue
            c["walk valid"] += verdict is None
            if verdict is not None:
                if accepted.status == "ok" and accepted.value:
                    self.report(verdict, schema, text)
                else:
                    self.report("walk-" + verdict, schema, text, token_ids=ids)

    def one_schema(self) -> None:
        c = self.stats.counts
        generator = SchemaGen(self.rng, self.args.max_depth)
        try:  # (a literal drawn for a large nested schema can be huge: skip such a schema)
            with time_limit(GENERATION_SECONDS):
                schema = generator.root()
                validator = Judge(schema)
        except Deadline:
            c["generation too slow"] += 1
            return
        except Exception:
            c["judge refuses schema"] += 1
            return
        self.keys = generator.keys
        c["schemas"] += 1
        compiled = self.engine.compile(schema)
        if compiled.status == "refused":
            c["refused"] += 1
            self.stats.refusals[compiled.detail[:100]] += 1
            if compiled.detail.startswith("SchemaError: #: no JSON value satisfies this schema"):
                self.check_empty(schema, validator, compiled.detail)
            return
        if compiled.status == "slow":
            c["slow"] += 1
            self.report("slow-compile", schema, None, detail=compiled.detail)
            return
        if compiled.status == "crash":
            c["crash"] += 1
            self.report("crash", schema, None, detail=compiled.detail)
            return
        c["compiled"] += 1
        processor = compiled.value
        self.history = []  # what was asked of the guide, in order (its lazy compiles follow it)
        failures = 0
        for text in self.texts_for(schema):
            failures += not self.judge(schema, validator, processor, text)
            if failures >= 3:  # a part it cannot compile: the next texts would only reach it again
                return
        if self.walker is not None:
            self.walk(schema, validator, processor)

    def check_empty(self, schema: Any, validator: Judge, detail: str) -> None:
        """A schema refused as having no value: look for a valid one (a completeness finding, not a
        soundness bug; where the refusal says the keywords are enforced as subsets it is documented)."""
        values = ValueGen(self.rng, schema, self.keys)
        for _ in range(30):
            text = Writer(self.rng, values.wild).text(values.value(schema), 0.0)
            try:
                value = parse(text)
                if validator.valid_both(value):
                    self.stats.counts["refused as empty, yet valid"] += 1
                    if "valid subsets" not in detail:
                        self.report("wrong-empty", schema, text, detail=detail)
                    return
            except Exception:
                continue

    def is_wrongly_empty(self, schema: Any, text: str) -> bool:
        try:
            judge, value = Judge(schema), parse(text)
            if not judge.valid_both(value):
                return False
        except Exception:
            return False
        refused = self.engine.compile(schema)
        return refused.status == "refused" and "no JSON value satisfies" in refused.detail

    def run(self) -> None:
        start = time.monotonic()
        last = start
        while time.monotonic() - start < self.args.seconds:
            try:
                self.one_schema()
            except BaseException as exc:
                # jsonschema recursing without end on a schema that refers to itself in place
                # (a RecursionError, or a Rust panic of its referencing library around one)
                if not isinstance(exc, RecursionError) and type(exc).__name__ != "PanicException":
                    raise
                self.stats.counts["judge recursion errors"] += 1
            if time.monotonic() - last >= 30:
                last = time.monotonic()
                print(self.stats.line(last - start, len(self.found)), flush=True)
        print(self.stats.line(time.monotonic() - start, len(self.found)), flush=True)

    def finish(self) -> None:
        self.out.close()
        c = self.stats.counts
        print("\n== counts")
        for key, count in sorted(c.items()):
            print(f"  {key}: {count}")
        judged = sum(
            c[f"{a} {v}"]
            for a, v in (
                ("accepted", "valid"),
                ("accepted", "INVALID"),
                ("rejected", "valid"),
                ("rejected", "invalid"),
            )
        )
        accepted = c["accepted valid"] + c["accepted INVALID"]
        print(
            f"\n  texts judged: {judged}, accepted: {accepted} ({accepted / max(judged, 1):.1%}), "
            f"walk texts complete: {c['walk complete']}"
        )
        print("\n== findings per raw signature (each shrunk up to --shrinks-per-key times)")
        for key, count in self.shrunk_by_key.most_common():
            print(f"  {count:5d}  {key[:150]}")
        print("\n== most common refusals")
        for reason, count in self.stats.refusals.most_common(12):
            print(f"  {count:5d}  {reason}")
        for reason in self.stats.refusals:
            if reason.startswith("(generator recursion)"):
                print(f"  {reason}")
        print(f"\n== {len(self.found)} distinct findings")
        for record in sorted(self.found.values(), key=lambda r: r["signature"]):
            print(f"\n[{record['kind']}] {record['signature']}  ({record['hits']} hits)")
            print(f"  schema: {json.dumps(record['schema'])}")
            print(f"  text:   {json.dumps(record['text'])}")
            if record.get("prefix") is not None:
                print(f"  prefix (bytes as latin-1): {json.dumps(record['prefix'])}")
            if record.get("detail"):
                print("  detail: " + record["detail"].replace("\n", "\n          "))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600, help="how long to fuzz (default 600)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/fuzz/bugs.jsonl"), help="findings, JSON lines")
    parser.add_argument("--vocab", type=Path, default=DEFAULT_VOCAB)
    parser.add_argument("--engine", choices=["pushdown", "dfa"], default="pushdown")
    parser.add_argument("--texts", type=int, default=100, help="candidate texts per schema")
    parser.add_argument("--walks", type=int, default=8, help="random mask walks per schema (0: none)")
    parser.add_argument("--max-depth", type=int, default=3, help="schema nesting")
    parser.add_argument(
        "--compile-limit", type=float, default=5.0, help="seconds a compile (or a text) may take"
    )
    parser.add_argument("--shrink-seconds", type=float, default=60.0, help="time to shrink one bug")
    parser.add_argument(
        "--shrinks-per-key",
        type=int,
        default=4,
        help="bugs shrunk per raw signature (the failing keyword and its schema)",
    )
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("")
    signal.signal(signal.SIGALRM, _on_alarm)
    engine = Engine(args.vocab, args.engine, args.compile_limit)
    fuzzer = Fuzzer(engine, args)
    try:
        fuzzer.run()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    fuzzer.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The constraints ``benchmarks/bench.py`` measures: one regex, three JSON Schemas, two grammars.

Each workload carries the same constraint in every notation an engine needs (a regex; a JSON Schema;
Lark for ours and llguidance, GBNF for llama.cpp, EBNF for xgrammar), a valid reference document
(replayed token by token through each engine's processor) and a validator for generated text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGEX, JSON, GRAMMAR = "regex", "json", "grammar"
KINDS = (REGEX, JSON, GRAMMAR)

_VALIDATORS: dict[str, Any] = {}

CORPUS_FILE = "Snowplow---sp_16_Normalized.json"
"""The real-world schema of the ``json-corpus`` workload (JSONSchemaBench, dev split): a CallRail "call
completed" event, 2,092 bytes: 42 properties, most of them nullable strings, two required,
``additionalProperties: false``; its valid instance is about 400 tokens long.

Chosen by a fixed rule, not by results: among the dev split's schemas of at least 1.5 KB with a valid
test instance and at least one required top-level property (so that generation cannot end at ``{}``,
which a random-weight model otherwise writes at once), largest first, the first that every engine here
compiles (Qwen2 vocabulary) and accepts its first valid instance with. Each larger one failed in at
least one engine: ours raised ``ConstraintTooComplexError`` on some; llama.cpp's GBNF parser rejected or
crashed on what ``LlamaGrammar.from_json_schema`` writes for others (strings with ``maxLength`` in the
thousands, a pattern it does not support); outlines-core took over 90 s on several.
"""


@dataclass(frozen=True)
class Workload:
    """One constraint, written for every engine, with a valid reference document."""

    name: str
    kind: str  # REGEX, JSON or GRAMMAR
    title: str
    reference: str  # a valid document: its tokens are replayed through every processor
    regex: str | None = None
    schema: dict[str, Any] | None = None
    lark: str | None = None  # ours' CFG engine and llguidance
    gbnf: str | None = None  # llama.cpp (regex and grammars; JSON Schemas go through from_json_schema)
    ebnf: str | None = None  # xgrammar (grammars)
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def schema_json(self) -> str:
        assert self.schema is not None
        return json.dumps(self.schema)

    @property
    def _validator(self) -> Any:
        """Built once per workload name and process (kept out of the object, which is pickled)."""
        if self.name not in _VALIDATORS:
            _VALIDATORS[self.name] = self._make_validator()
        return _VALIDATORS[self.name]

    def _make_validator(self) -> Any:
        if self.kind == JSON:
            import jsonschema

            cls = jsonschema.validators.validator_for(self.schema)
            return cls(self.schema, format_checker=cls.FORMAT_CHECKER)
        if self.kind == GRAMMAR:
            import lark

            return lark.Lark(self.lark, start="start", parser="earley", lexer="dynamic")
        return re.compile(self.regex or "")

    def check(self, text: str) -> str | None:
        """None when ``text`` is a complete, valid document; else why not."""
        try:
            if self.kind == REGEX:
                return None if self._validator.fullmatch(text) else "no full match"
            if self.kind == JSON:
                try:
                    value = json.loads(text)
                except ValueError as exc:
                    return f"not JSON: {exc}"
                errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.path))
                return None if not errors else f"schema: {errors[0].message[:200]}"
            self._validator.parse(text)
            return None
        except Exception as exc:  # lark's parse errors and anything unexpected
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"

    def reference_for(self, engine: str) -> str:
        """The reference document in the serialization ``engine`` generates. llama-cpp-python's
        ``from_json_schema`` puts required properties before optional ones (the others keep the
        order of ``properties``), so GBNF gets the same instance with its keys in that order."""
        if engine != "gbnf" or self.kind != JSON or self.schema is None:
            return self.reference
        return json.dumps(required_first(json.loads(self.reference), self.schema), ensure_ascii=False)

    def describe(self) -> str:
        """One line for the report: what the constraint is and how big."""
        if self.kind == REGEX:
            return f"`{self.regex}`"
        if self.kind == JSON:
            size = len(self.schema_json)
            return f"JSON Schema, {size:,} bytes" + (f" (`{self.source}`)" if self.source else "")
        return f"Lark grammar, {len(self.lark or '')} bytes; GBNF {len(self.gbnf or '')} bytes"


def required_first(value: Any, schema: Any) -> Any:
    """``value`` with each object's keys ordered as llama.cpp's JSON-Schema-to-GBNF converter writes
    them: required properties, then the others, each group in the order of ``properties``."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        order = [k for k in props if k in required] + [k for k in props if k not in required]
        keys = [k for k in order if k in value] + [k for k in value if k not in props]
        return {k: required_first(value[k], props.get(k, {})) for k in keys}
    if isinstance(value, list):
        return [required_first(v, schema.get("items", {})) for v in value]
    return value


# -- the regex ---------------------------------------------------------------------------------------------

PHONE = Workload(
    name="regex-phone",
    kind=REGEX,
    title="phone number (regex)",
    regex=r"\+?[1-9][0-9]{7,14}",
    gbnf='root ::= "+"? [1-9] [0-9]{7,14}',
    reference="+14155552671",
)

# -- JSON Schemas of growing size ----------------------------------------------------------------------------

FLAT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 1, "maximum": 999999},
        "name": {"type": "string", "minLength": 1, "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "city": {"type": "string", "maxLength": 20},
        "active": {"type": "boolean"},
    },
    "required": ["id", "name", "age", "city", "active"],
    "additionalProperties": False,
}

NESTED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": "integer", "minimum": 1, "maximum": 99999999},
        "status": {"enum": ["pending", "paid", "shipped", "delivered", "cancelled"]},
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 24},
                "tier": {"enum": ["free", "pro", "enterprise"]},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
            },
            "required": ["name", "tier"],
            "additionalProperties": False,
        },
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": 4,
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
                    "unit": {"enum": ["piece", "kg", "litre"]},
                },
                "required": ["sku", "quantity", "unit"],
                "additionalProperties": False,
            },
        },
        "gift": {"type": "boolean"},
    },
    "required": ["order_id", "status", "customer", "items"],
    "additionalProperties": False,
}

JSON_FLAT = Workload(
    name="json-flat",
    kind=JSON,
    title="flat object (JSON Schema)",
    schema=FLAT_SCHEMA,
    reference=json.dumps({"id": 4182, "name": "Ada Lovelace", "age": 36, "city": "London", "active": True}),
)

JSON_NESTED = Workload(
    name="json-nested",
    kind=JSON,
    title="nested object with arrays and enums (JSON Schema)",
    schema=NESTED_SCHEMA,
    reference=json.dumps({
        "order_id": 1048576, "status": "shipped",
        "customer": {"name": "Grace Hopper", "tier": "pro", "tags": ["navy", "cobol"]},
        "items": [{"sku": "ABC-1234", "quantity": 2, "unit": "piece"},
                  {"sku": "XYZ-0042", "quantity": 1, "unit": "kg"}],
        "gift": False,
    }),
)


def corpus_workload(folder: Path) -> Workload:
    """The real-world schema: ``CORPUS_FILE`` from a JSONSchemaBench folder; its first valid test
    instance (serialized like ``json.dumps``) is the reference document."""
    raw = json.loads((folder / CORPUS_FILE).read_text(encoding="utf-8"))
    instance = next(t["data"] for t in raw["tests"] if t["valid"])
    return Workload(
        name="json-corpus",
        kind=JSON,
        title="real-world schema (JSONSchemaBench)",
        schema=raw["schema"],
        reference=json.dumps(instance, ensure_ascii=False),
        source=CORPUS_FILE,
    )


# -- grammars ----------------------------------------------------------------------------------------------

ARITH_LARK = r"""
start: expr
expr: term (("+" | "-") term)*
term: factor (("*" | "/") factor)*
factor: NUMBER | "(" expr ")"
NUMBER: /[0-9]{1,6}/
"""

ARITH_GBNF = r"""
root ::= expr
expr ::= term (("+" | "-") term)*
term ::= factor (("*" | "/") factor)*
factor ::= number | "(" expr ")"
number ::= [0-9]{1,6}
"""

ARITH = Workload(
    name="cfg-arith",
    kind=GRAMMAR,
    title="arithmetic expressions (grammar)",
    lark=ARITH_LARK,
    gbnf=ARITH_GBNF,
    ebnf=ARITH_GBNF,  # xgrammar's EBNF reads this GBNF as it is
    reference="(12+345)*6-78/(9+10)",
)

JSON_GRAMMAR_LARK = r"""
start: object
value: object | array | string | number | ("true" | "false" | "null") WS?
object: "{" WS? (string ":" WS? value ("," WS? string ":" WS? value)*)? "}" WS?
array: "[" WS? (value ("," WS? value)*)? "]" WS?
string: STRING WS?
number: NUMBER WS?
STRING: /"([^"\\\x7f\x00-\x1f]|\\(["\\bfnrt]|u[0-9a-fA-F]{4}))*"/
NUMBER: /-?(0|[1-9][0-9]{0,15})(\.[0-9]+)?([eE][-+]?[0-9][1-9]{0,15})?/
WS: / |\n[ \t]{0,20}/
"""
"""llama.cpp's ``grammars/json.gbnf`` (``llama_cpp.llama_grammar.JSON_GBNF``) rule for rule, in Lark.

``[0-9] | [1-9] [0-9]{0,15}`` is written ``0|[1-9][0-9]{0,15}`` (the same strings): Python's regex
alternation is ordered, so Lark's validator would otherwise match one digit only."""


def json_gbnf() -> str:
    """The JSON grammar llama.cpp ships (the copy inside llama-cpp-python)."""
    from llama_cpp.llama_grammar import JSON_GBNF

    return JSON_GBNF


def json_ebnf(gbnf: str) -> str:
    """The same grammar for xgrammar, whose EBNF has no empty alternative (``ws ::= | ...``)."""
    fixed = re.sub(r"^ws\s*::=\s*\|", 'ws ::= "" |', gbnf, flags=re.MULTILINE)
    if fixed == gbnf:
        raise ValueError("llama.cpp's JSON grammar changed: its `ws` rule was not found")
    return fixed


def json_grammar_workload() -> Workload:
    gbnf = json_gbnf()
    return Workload(
        name="cfg-json",
        kind=GRAMMAR,
        title="JSON (grammar: llama.cpp's json.gbnf)",
        lark=JSON_GRAMMAR_LARK,
        gbnf=gbnf,
        ebnf=json_ebnf(gbnf),
        reference=json.dumps({"name": "Ada", "langs": ["en", "fr"], "born": 1815, "ok": True,
                              "ratio": -0.25, "note": None}),
    )


ALL_WORKLOADS = ("regex-phone", "json-flat", "json-nested", "json-corpus", "cfg-arith", "cfg-json")


def load_workloads(names: tuple[str, ...], corpus: Path | None) -> tuple[list[Workload], list[str]]:
    """The named workloads, in the canonical order, and messages for those skipped."""
    skipped: list[str] = []
    out: list[Workload] = []
    for name in ALL_WORKLOADS:
        if name not in names:
            continue
        if name == "regex-phone":
            out.append(PHONE)
        elif name == "json-flat":
            out.append(JSON_FLAT)
        elif name == "json-nested":
            out.append(JSON_NESTED)
        elif name == "json-corpus":
            if corpus is None or not (corpus / CORPUS_FILE).is_file():
                where = "no --corpus folder given" if corpus is None else f"{corpus / CORPUS_FILE} not found"
                skipped.append(f"`json-corpus` skipped: {where} (JSONSchemaBench dev split, `--corpus DIR`).")
            else:
                out.append(corpus_workload(corpus))
        elif name == "cfg-arith":
            out.append(ARITH)
        elif name == "cfg-json":
            out.append(json_grammar_workload())
    return out, skipped

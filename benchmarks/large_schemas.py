"""Generate large JSON Schemas of the shapes real-world schemas grow into, and time them.

Kinds (each scaled by ``--scale``, 1.0 = the sizes below):

- ``wide``: one object with 2,000 properties of mixed leaf types;
- ``deep``: 20 levels of nested objects, each level with a few leaves;
- ``shared-refs``: 200 ``$ref``s into 20 shared definitions (Kubernetes-style ``definitions``);
- ``tree``: a recursive tree (``$ref`` cycle) with an array of children;
- ``array-of-objects``: an array of up to 1,000 objects (``maxItems``);
- ``big-enum``: a 5,000-value string enum;
- ``mixed``: a random mixture of all of the above (seeded).

Run from the repository root::

    .venv/bin/python benchmarks/large_schemas.py --vocab models/vocab/ggml-vocab-llama-bpe.gguf
    .venv/bin/python benchmarks/large_schemas.py --write /tmp/large   # the schemas as .json files

For every schema it prints the time from a cold start to the first mask (compile + first mask,
in a fresh guide cache), the number of automata compiled by then, and whether a valid random
instance generated from the schema is accepted token by token.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's package

LEAVES: list[dict[str, Any]] = [
    {"type": "string"},
    {"type": "string", "maxLength": 40},
    {"type": "integer", "minimum": 0},
    {"type": "number"},
    {"type": "boolean"},
    {"type": "string", "enum": ["alpha", "beta", "gamma"]},
    {"type": "string", "format": "date-time"},
    {"type": ["string", "null"]},
]


def wide(n: int, rng: random.Random) -> dict[str, Any]:
    props = {f"field_{i}": dict(rng.choice(LEAVES)) for i in range(n)}
    return {"type": "object", "properties": props, "required": [f"field_{i}" for i in range(0, n, 50)]}


def deep(levels: int, rng: random.Random) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {"leaf": {"type": "integer"}}}
    for level in range(levels):
        schema = {
            "type": "object",
            "properties": {
                f"name{level}": {"type": "string"},
                f"flag{level}": {"type": "boolean"},
                "child": schema,
            },
            "required": ["child"],
        }
    return schema


def shared_refs(n_refs: int, n_defs: int, rng: random.Random) -> dict[str, Any]:
    defs = {}
    for d in range(n_defs):
        props = {f"p{k}": dict(rng.choice(LEAVES)) for k in range(rng.randint(3, 12))}
        if d:
            props["link"] = {"$ref": f"#/definitions/def{rng.randrange(d)}"}
        defs[f"def{d}"] = {"type": "object", "properties": props, "additionalProperties": False}
    props = {f"use{i}": {"$ref": f"#/definitions/def{rng.randrange(n_defs)}"} for i in range(n_refs)}
    return {"definitions": defs, "type": "object", "properties": props}


def tree() -> dict[str, Any]:
    return {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "value": {"type": "number"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["name"],
            }
        },
        "$ref": "#/$defs/node",
    }


def array_of_objects(n: int) -> dict[str, Any]:
    item = {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "label": {"type": "string"}, "ok": {"type": "boolean"}},
        "required": ["id"],
    }
    return {"type": "array", "items": item, "maxItems": n}


def big_enum(n: int, rng: random.Random) -> dict[str, Any]:
    words = sorted({"".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(3, 14)))
                    for _ in range(n * 2)})[:n]
    return {"type": "object", "properties": {"code": {"enum": words}}, "required": ["code"]}


def mixed(rng: random.Random, scale: float) -> dict[str, Any]:
    parts = {
        "wide": wide(max(1, int(300 * scale)), rng),
        "deep": deep(max(1, int(8 * scale)), rng),
        "items": array_of_objects(max(1, int(100 * scale))),
        "enum": big_enum(max(1, int(500 * scale)), rng),
    }
    return {"type": "object", "properties": parts, "required": list(parts)[: rng.randint(1, 4)]}


def generate(scale: float = 1.0, seed: int = 0) -> dict[str, dict[str, Any]]:
    """The named large schemas at ``scale``."""
    rng = random.Random(seed)
    return {
        "wide-2000": wide(max(1, int(2000 * scale)), rng),
        "deep-20": deep(max(1, int(20 * scale)), rng),
        "shared-refs-200": shared_refs(max(1, int(200 * scale)), max(1, int(20 * scale)), rng),
        "tree": tree(),
        "array-of-objects-1000": array_of_objects(max(1, int(1000 * scale))),
        "big-enum-5000": big_enum(max(1, int(5000 * scale)), rng),
        "mixed": mixed(rng, scale),
    }


def instance(schema: Any, root: Any, rng: random.Random, depth: int = 0) -> Any:
    """A small valid instance of the schemas this module writes (not of JSON Schema in general)."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"][2:].split("/"):
            target = target[part]
        return instance(target, root, rng, depth + 1)
    if "enum" in schema:
        return rng.choice(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        out = {}
        for name, sub in props.items():
            if name in required or (depth < 4 and rng.random() < 0.3):
                out[name] = instance(sub, root, rng, depth + 1)
        return out
    if kind == "array":
        n = 0 if depth > 4 else rng.randint(0, min(3, schema.get("maxItems", 3)))
        return [instance(schema["items"], root, rng, depth + 1) for _ in range(n)]
    if kind == "string":
        if schema.get("format") == "date-time":
            return "2024-05-06T07:08:09Z"
        return "text"[: schema.get("maxLength", 4)]
    if kind == "integer":
        return rng.randint(0, 99)
    if kind == "number":
        return rng.randint(0, 999) / 8
    if kind == "boolean":
        return rng.random() < 0.5
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocab", type=Path, default=Path("models/vocab/ggml-vocab-llama-bpe.gguf"))
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", type=Path, default=None, help="write the schemas here instead of timing")
    parser.add_argument("--engine", default="pushdown", help="JSONLogitsProcessor engine")
    parser.add_argument("--repeat", type=int, default=5, help="cold runs per schema (the median is shown)")
    opts = parser.parse_args(argv)
    schemas = generate(opts.scale, opts.seed)
    if opts.write is not None:
        opts.write.mkdir(parents=True, exist_ok=True)
        for name, schema in schemas.items():
            (opts.write / f"{name}.json").write_text(json.dumps(schema, indent=1), encoding="utf-8")
        print(f"wrote {len(schemas)} schemas to {opts.write}")
        return 0

    import numpy as np
    from bench_common import make_cold
    from bench_engines import load_vocab_only

    from outlines_gguf import JSONLogitsProcessor, Vocabulary

    vocab = Vocabulary.from_gguf(opts.vocab).prepare()
    tokenizer = load_vocab_only(opts.vocab)
    rng = random.Random(opts.seed)

    def first_mask(schema: dict[str, Any]) -> tuple[float, Any]:
        make_cold(vocab)
        t0 = time.perf_counter()
        processor = JSONLogitsProcessor(schema, vocab, engine=opts.engine)
        guide = processor.guide
        guide.mask(guide.initial_state)
        return time.perf_counter() - t0, guide

    # A process builds its constraint-independent tables once (shared JSON pieces, Unicode
    # classes); the peers' one-time initialisation is likewise outside their figures. Shown apart.
    startup, _ = first_mask({"type": "object", "properties": {"a": {"type": "string"}}})
    print(f"process warm-up (first schema of the process, a one-property object): {startup * 1e3:.1f} ms")
    print(f"first mask: median of {opts.repeat} cold runs (every compile cache cleared before each)\n")
    print("| schema | schema bytes | first mask (cold) | automata compiled | valid instance accepted |")
    print("|---|---|---|---|---|")
    failures = 0
    for name, schema in schemas.items():
        try:
            runs = [first_mask(schema) for _ in range(opts.repeat)]
        except Exception as exc:  # a refusal is a result here
            size = len(json.dumps(schema))
            print(f"| {name} | {size} | refused: {type(exc).__name__}: {str(exc)[:80]} | | |")
            failures += 1
            continue
        first = statistics.median(seconds for seconds, _ in runs)
        guide = runs[-1][1]
        split = getattr(guide, "schema", None)
        compiled = getattr(split, "n_compiled", 1)
        doc = instance(schema, schema, rng)
        ids = tokenizer.tokenize(json.dumps(doc).encode(), add_bos=False, special=False)
        state, ok = guide.initial_state, True
        for token in ids:
            allowed = guide.mask(state).allowed_ids(vocab.size)
            if not np.isin(token, allowed):
                ok = False
                break
            state = guide.next_state(state, token)
        ok = ok and guide.is_final(state)
        failures += not ok
        verdict = "yes" if ok else "NO"
        print(f"| {name} | {len(json.dumps(schema))} | {first * 1e3:.1f} ms | {compiled} | {verdict} |")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main())

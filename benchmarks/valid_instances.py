"""Completeness on schemas without test instances: valid documents drawn by an independent
generator must be accepted token by token.

    .venv/bin/python benchmarks/valid_instances.py SCHEMAS... [--per-schema 20] [--seconds 20]
        [--generator-python PYTHON]

``SCHEMAS`` are schema files or folders of them (``*.json``: a bare schema, or a MaskBench file
whose ``schema`` is used). For each schema, ``hypothesis-jsonschema`` (the ``bench`` extra) draws
documents; those ``jsonschema`` judges valid are serialized as MaskBench serializes instances
(``json.dumps``, ``ensure_ascii=False``), tokenized by llama.cpp, and walked through
``JSONLogitsProcessor`` the way llama-cpp-python calls it (maskbench's walk). Every valid
document must be accepted: a rejection is a schema our engine reads more narrowly than the
standard, reported with the token where it happened.

hypothesis-jsonschema 0.23 needs ``hypothesis<6.130`` (newer ones changed an internal API it
uses), older than the test suite's: give ``--generator-python`` an interpreter of an environment
that has it (``python -m venv G && G/bin/pip install "hypothesis==6.112" hypothesis-jsonschema
jsonschema``); documents are then drawn there, in a subprocess per schema.

A document counts as valid when ``jsonschema`` accepts it under both readings of ``\\d``, ``\\w``
and ``\\s`` (Python's Unicode ones, and ASCII as ECMA-262 reads the first two): the engine enforces
what every reader agrees on, and the generator draws Unicode digits for ``\\d``.

Schemas the generator cannot handle (it supports a subset of the keywords, draft 4 to 7, and
gives up on some large or contradictory schemas) are counted apart; so are schemas we refuse
(their error is the report's business, not this check's). The soundness side (outputs we
produce are valid) is ``soundness_fuzz.py``'s; this script is its converse.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


DEFAULT_VOCAB = ROOT / "models" / "vocab" / "ggml-vocab-llama-bpe.gguf"


def schema_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        out += sorted(path.glob("*.json")) if path.is_dir() else [path]
    return out


def load_schema(path: Path) -> Any:
    raw = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(raw, dict) and "schema" in raw and "tests" in raw:  # a MaskBench file
        return raw["schema"]
    return raw


def draw_documents(schema: Any, count: int, seconds: float) -> list[Any]:
    """Up to ``count`` distinct documents from hypothesis-jsonschema, within ``seconds``
    (an empty list where it cannot generate for this schema)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import HypothesisException
    from hypothesis_jsonschema import from_schema

    found: dict[str, Any] = {}
    deadline = time.monotonic() + seconds

    @settings(
        max_examples=count * 3,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    @given(from_schema(schema))
    def collect(value: Any) -> None:
        if len(found) < count and time.monotonic() < deadline:
            found.setdefault(json.dumps(value, sort_keys=True), value)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            collect()
        except (HypothesisException, Exception):  # (the generator's own limits)
            pass
    return list(found.values())


def documents_for(path: Path, count: int, seconds: float, generator: str) -> list[Any]:
    """Documents drawn for the schema in ``path`` (by ``generator``, a Python with
    hypothesis-jsonschema, in a subprocess; here when it is this interpreter)."""
    if generator == sys.executable:
        return draw_documents(load_schema(path), count, seconds)
    command = [generator, __file__, "--draw", str(path)]
    command += ["--per-schema", str(count), "--seconds", str(seconds)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds * 3 + 30, check=False)
    except subprocess.TimeoutExpired:
        return []
    return json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else []


def both_readings(cls: Any, schema: Any) -> list[Any]:
    """Validators of ``schema`` that read ``pattern`` (and ``patternProperties``) as Python's
    ``re`` does, and with ``\\d``, ``\\w``, ``\\s`` in ASCII as ECMA-262 reads the first two: a
    document is valid for this check when both accept it, as the engine enforces what every
    reader agrees on (the generator draws Unicode digits for ``\\d``, which ECMA-262 refuses)."""
    import re

    import jsonschema

    def ascii_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
        if validator.is_type(instance, "string") and not re.search(pattern, instance, re.ASCII):
            yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r} read in ASCII")

    def ascii_pattern_properties(validator: Any, patterns: dict, instance: Any, schema: Any) -> Any:
        if not validator.is_type(instance, "object"):
            return
        for pattern, sub in patterns.items():
            for key, value in instance.items():
                if re.search(pattern, key, re.ASCII):
                    yield from validator.descend(value, sub, path=key, schema_path=pattern)

    ascii_cls = jsonschema.validators.extend(
        cls, {"pattern": ascii_pattern, "patternProperties": ascii_pattern_properties}
    )
    return [cls(schema), ascii_cls(schema)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--vocab", type=Path, default=DEFAULT_VOCAB)
    parser.add_argument("--per-schema", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0, help="generation time limit per schema")
    parser.add_argument("--lenient", action="store_true", help="compile with lenient=True")
    parser.add_argument(
        "--generator-python", default=sys.executable, help="a Python with hypothesis-jsonschema"
    )
    parser.add_argument("--draw", action="store_true", help=argparse.SUPPRESS)  # (the subprocess's mode)
    args = parser.parse_args()
    if args.draw:
        json.dump(draw_documents(load_schema(args.paths[0]), args.per_schema, args.seconds), sys.stdout)
        return

    import jsonschema
    from bench_engines import OursMaskEngine, first_line, load_vocab_only
    from maskbench import serialize, walk

    engine = OursMaskEngine(args.vocab)
    tokenizer = load_vocab_only(args.vocab)
    counts: Counter[str] = Counter()
    rejected: list[tuple[str, str, str]] = []
    for path in schema_files(args.paths):
        schema = load_schema(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # (an unknown $schema: the latest draft judges)
                judges = both_readings(jsonschema.validators.validator_for(schema), schema)
        except Exception:
            counts["judge cannot read"] += 1
            continue
        drawn = documents_for(path, args.per_schema, args.seconds, args.generator_python)
        documents = [d for d in drawn if all(judge.is_valid(d) for judge in judges)]
        if not documents:
            counts["no document drawn"] += 1
            continue
        engine.clear_cache()
        try:
            processor = engine.processor_class(schema, engine.vocab, lenient=args.lenient)
        except Exception as exc:  # (refusals: maskbench reports them, not this)
            counts["refused"] += 1
            print(f"refused  {path.name}: {first_line(exc)[:160]}", flush=True)
            continue
        counts["checked"] += 1
        bad = 0
        for document in documents:
            text, _ = serialize(document)
            tokens = [int(t) for t in tokenizer.tokenize(text.encode("utf-8"), add_bos=False, special=False)]
            result = walk(engine.session(processor, len(tokens)), tokens, engine.eos_id, True)
            counts["documents"] += 1
            if not result.accepted:
                bad += 1
                step = result.step if result.step is not None else len(tokens)
                prefix = tokenizer.detokenize(tokens[:step]).decode("utf-8", "replace")
                rejected.append((path.name, text, f"after {prefix[-80:]!r} {result.note}"))
        counts["documents rejected"] += bad
        counts["schemas with a rejection"] += bad > 0
        verdict = "REJECTS" if bad else "ok"
        print(f"{verdict:8} {path.name}: {len(documents) - bad}/{len(documents)} accepted", flush=True)
    print()
    for key, value in counts.items():
        print(f"{key}: {value}")
    for name, text, where in rejected[:40]:
        print(f"\n{name}\n  document: {text[:300]}\n  rejected {where}")


if __name__ == "__main__":
    main()

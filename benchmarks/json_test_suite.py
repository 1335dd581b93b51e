"""Run the official JSON-Schema-Test-Suite against the JSON constraint.

The suite (``json-schema-org/JSON-Schema-Test-Suite``, third-party data: keep it out of this
repository) is a folder of files, one per keyword, each a list of groups ``{description, schema,
tests: [{description, data, valid}]}``. For every group the schema is compiled with
``JSONLogitsProcessor(schema, vocab, engine=...)``; for every test ``data`` is serialized with
``json.dumps(data, ensure_ascii=False)`` (separators ``", "`` and ``": "``, numbers as Python
writes them: ``1.0`` stays ``1.0``) and its bytes are fed through the guide (``accepts``: the text
is complete under the constraint). The suite's draft-7 (and older) files leave the draft implied:
their schemas get the ``$schema`` of the folder's draft (``--dialect``). Outcomes per test:

- ``correct``: a valid instance accepted, or an invalid one rejected;
- ``invalid accepted``: a soundness bug (generation could produce a document the schema refuses);
- ``valid rejected``: a completeness gap (generation could never produce that document);
- a schema refused because no value satisfies it (``false``, ``not: {}``) counts as having
  rejected every instance: ``correct`` for the invalid ones, ``valid rejected`` otherwise (the
  totals say how many tests that was);
- ``refused``: the schema was refused with a ``SchemaError``/``ConstraintTooComplexError`` (or a
  ``RegexError`` for a pattern) at construction, or when the walk reached a lazily compiled part
  (a declared limit, not a bug); any other exception is counted here too, its reason marked CRASH.

``--tokens`` also walks the tokens of each instance through the masks (the way generation goes:
each token must be in the mask, then an end-of-generation token), with a vocab-only
``llama_cpp.Llama`` tokenizer; a difference from the byte walk is reported as a mask bug.

Usage, from the repository root::

    .venv/bin/python benchmarks/json_test_suite.py /path/to/JSON-Schema-Test-Suite/tests/draft2020-12
    .venv/bin/python benchmarks/json_test_suite.py DIR --engine dfa --jsonl /tmp/suite.jsonl
    .venv/bin/python benchmarks/json_test_suite.py DIR/optional/format --only date,time

The folder is read recursively (``optional/`` too unless ``--no-optional``). Prints a Markdown table
per file and the totals; the invalid-accepted cases are listed at the end.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_VOCAB = REPO / "models" / "vocab" / "ggml-vocab-llama-bpe.gguf"
DIALECTS = {
    "draft4": "http://json-schema.org/draft-04/schema#",
    "draft6": "http://json-schema.org/draft-06/schema#",
    "draft7": "http://json-schema.org/draft-07/schema#",
}
EMPTY = "no JSON value satisfies this schema"
OUTCOMES = ("correct", "invalid accepted", "valid rejected", "refused")


class _TimeoutError(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _TimeoutError


@dataclass
class FileResult:
    name: str
    counts: Counter = field(default_factory=Counter)
    refusals: Counter = field(default_factory=Counter)  # first line of the refusal -> tests
    empty: int = 0  # tests of schemas refused as having no value


def serialize(data: Any) -> str:
    """The instance as JSON text; with ``\\u`` escapes where it holds a lone surrogate, which
    UTF-8 cannot write (valid JSON text all the same)."""
    text = json.dumps(data, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(data)
    return text


def refusal_reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {text[:160]}"


class TokenWalker:
    """Walks tokenized text through a processor's guide masks, as generation would."""

    def __init__(self, vocab_path: Path) -> None:
        import llama_cpp

        self.llm = llama_cpp.Llama(model_path=str(vocab_path), vocab_only=True, verbose=False)

    def accepts(self, processor: Any, text: str) -> bool:
        import numpy as np

        guide = processor.guide
        state = guide.initial_state
        for token in self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False):
            if not guide.mask(state).allows_any(np.array([int(token)])):
                return False
            state = guide.next_state(state, int(token))
        return bool(guide.mask(state).eog_allowed)


def run_file(
    path: Path,
    vocab: Any,
    engine: str,
    timeout: float,
    jsonl: Any,
    bad: list[dict],
    walker: TokenWalker | None,
    dialect: str | None,
) -> FileResult:
    from outlines_gguf import JSONLogitsProcessor
    from outlines_gguf.errors import ConstraintTooComplexError, RegexError, SchemaError

    refused_errors = (SchemaError, ConstraintTooComplexError, RegexError)
    result = FileResult(path.stem)
    for group in json.loads(path.read_text()):
        schema = group["schema"]
        if dialect and isinstance(schema, dict) and "$schema" not in schema:
            schema = {"$schema": dialect, **schema}  # the suite's files leave the draft implied
        processor = None
        reason = ""
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            processor = JSONLogitsProcessor(schema, vocab, engine=engine)
        except refused_errors as exc:
            reason = refusal_reason(exc)
        except _TimeoutError:
            reason = f"timeout: construction over {timeout:g} s"
        except Exception as exc:  # a crash is reported, the run goes on
            reason = "CRASH " + refusal_reason(exc)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for test in group["tests"]:
            text = serialize(test["data"])
            valid = bool(test["valid"])
            outcome, detail = "refused", reason
            if EMPTY in reason:  # the engine proved that no value satisfies the schema
                outcome = "valid rejected" if valid else "correct"
                result.empty += 1
            if processor is not None:
                signal.setitimer(signal.ITIMER_REAL, timeout)
                try:
                    accepted = processor.accepts(text)
                    outcome = (
                        "correct"
                        if accepted == valid
                        else ("invalid accepted" if accepted else "valid rejected")
                    )
                    detail = ""
                    if walker is not None:
                        by_tokens = walker.accepts(processor, text)
                        if by_tokens != accepted:
                            detail = f"mask bug: the byte walk says {accepted}, the token walk {by_tokens}"
                            if by_tokens and not valid:
                                outcome = "invalid accepted"
                except refused_errors as exc:
                    outcome, detail = "refused", "late " + refusal_reason(exc)
                except _TimeoutError:
                    outcome, detail = "refused", f"timeout: walk over {timeout:g} s"
                except Exception as exc:
                    outcome, detail = "refused", "CRASH late " + refusal_reason(exc)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            result.counts[outcome] += 1
            if outcome == "refused":
                result.refusals[detail] += 1
            record = {
                "file": str(path),
                "group": group["description"],
                "test": test["description"],
                "schema": schema,
                "data": text,
                "valid": valid,
                "outcome": outcome,
                "detail": detail,
            }
            if outcome == "invalid accepted" or detail.startswith("mask bug"):
                bad.append(record)
            if jsonl is not None:
                jsonl.write(json.dumps(record, ensure_ascii=False) + "\n")
    return result


def table(results: list[FileResult]) -> str:
    lines = [
        "| file | tests | correct | invalid accepted | valid rejected | refused |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    total: Counter = Counter()
    for r in results:
        total.update(r.counts)
        n = sum(r.counts.values())
        lines.append(f"| {r.name} | {n} | " + " | ".join(str(r.counts[o]) for o in OUTCOMES) + " |")
    n = sum(total.values())
    lines.append(f"| **total** | {n} | " + " | ".join(f"**{total[o]}**" for o in OUTCOMES) + " |")
    if n:
        share = " | ".join(f"{100 * total[o] / n:.1f}%" for o in OUTCOMES)
        lines.append(f"| share | | {share} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="a folder of the suite, e.g. tests/draft2020-12")
    parser.add_argument(
        "--vocab", type=Path, default=DEFAULT_VOCAB, help="a GGUF file (vocabulary only is read)"
    )
    parser.add_argument("--engine", choices=("pushdown", "dfa"), default="pushdown")
    parser.add_argument("--jsonl", type=Path, help="write one line per test here")
    parser.add_argument("--only", help="comma-separated file stems to run (e.g. enum,oneOf)")
    parser.add_argument("--no-optional", action="store_true", help="skip the optional/ subfolder")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per construction or walk")
    parser.add_argument("--tokens", action="store_true", help="also walk the tokens through the masks")
    parser.add_argument(
        "--dialect", help="$schema given to schemas without one (default: from the folder name, e.g. draft7)"
    )
    parser.add_argument("--reasons", type=int, default=25, help="refusal reasons listed")
    args = parser.parse_args(argv)

    from outlines_gguf.tokens.cache import as_vocabulary

    dialect = args.dialect
    if dialect is None:  # the draft a folder of the suite is for, where its schemas do not say
        drafts = [d for d in DIALECTS if d in args.folder.resolve().parts]
        dialect = DIALECTS[drafts[0]] if drafts else None

    vocab = as_vocabulary(str(args.vocab))
    walker = TokenWalker(args.vocab) if args.tokens else None
    files = sorted(args.folder.rglob("*.json"))
    if args.no_optional:
        files = [f for f in files if "optional" not in f.relative_to(args.folder).parts]
    if args.only:
        wanted = set(args.only.split(","))
        files = [f for f in files if f.stem in wanted]
    signal.signal(signal.SIGALRM, _alarm)
    jsonl = args.jsonl.open("w") if args.jsonl else None
    results: list[FileResult] = []
    bad: list[dict] = []
    start = time.perf_counter()
    try:
        for path in files:
            r = run_file(path, vocab, args.engine, args.timeout, jsonl, bad, walker, dialect)
            r.name = str(path.relative_to(args.folder).with_suffix(""))
            results.append(r)
            print(f"{r.name}: {dict(r.counts)}", file=sys.stderr, flush=True)
    finally:
        if jsonl is not None:
            jsonl.close()
    print(
        f"## {args.folder} (engine {args.engine}, {args.vocab.name}, {time.perf_counter() - start:.0f} s)\n"
    )
    print(table(results))
    empty = sum(r.empty for r in results)
    if empty:
        print(f"\n{empty} tests are of schemas refused as having no value (every instance rejected).")
    reasons: Counter = Counter()
    for r in results:
        reasons.update(r.refusals)
    if reasons:
        print("\n### Refusals (tests)\n")
        for reason, n in reasons.most_common(args.reasons):
            print(f"- {n}: {reason}")
    if bad:
        print("\n### Invalid accepted / mask bugs\n")
        for b in bad:
            schema = json.dumps(b["schema"], ensure_ascii=False)
            where = f"{Path(b['file']).stem} / {b['group']} / {b['test']}"
            detail = f" ({b['detail']})" if b["detail"] else ""
            print(f"- {where}: `{schema[:300]}` data `{b['data'][:200]}`{detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

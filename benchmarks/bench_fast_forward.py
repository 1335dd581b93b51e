"""Fast-forward end to end: ``generate.*`` with and without it, against unconstrained text of as
many tokens, on the realistic-shape model.

Per round (seed) and workload (``bench_workloads.py``: a regex, the JSON Schemas, the grammars):

- ``ff``: the generator with fast-forward (the default), timed whole (prompt included);
- ``no-ff``: the same generator with ``fast_forward=False``, same seed;
- ``floor``: ``generate.text`` for exactly N tokens (end-of-generation banned, so a random model
  cannot stop early), N = the model's own tokenization of the ``ff`` output: what an unconstrained
  model writing that document would cost.

Speed is output tokens per second counted in the model's tokenization of each output, as a ratio to
the floor of the same round: ``ratio = (N_out / t) / (N_floor / t_floor)``. Medians over rounds;
calls rotate order each round; an untimed warm-up call of each generator. Every output is
checked (schema, regex, lark). Forward passes and tokens come from ``generator.last_result``.
The same ratios from process CPU time (``cpu``) are steadier than wall time on a machine other
jobs share.

    .venv/bin/python benchmarks/bench_fast_forward.py --rounds 5
    .venv/bin/python benchmarks/bench_fast_forward.py --quick --workloads json-flat
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_stats import median  # noqa: E402
from bench_workloads import GRAMMAR, JSON, REGEX, Workload, load_workloads  # noqa: E402

from outlines_gguf import generate, models  # noqa: E402

PROMPT = "The answer is: "
DEFAULT_WORKLOADS = ("json-flat", "json-nested", "json-corpus", "regex-phone", "cfg-arith", "cfg-json")


def generator(model: Any, w: Workload, fast_forward: bool) -> Any:
    if w.kind == JSON:
        return generate.json(model, w.schema, fast_forward=fast_forward)
    if w.kind == REGEX:
        return generate.regex(model, w.regex, fast_forward=fast_forward)
    assert w.kind == GRAMMAR
    return generate.cfg(model, w.lark, fast_forward=fast_forward)


def timed(gen: Any, seed: int, max_tokens: int) -> dict[str, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    gen(PROMPT, seed=seed, max_tokens=max_tokens, on_incomplete="return")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    r = gen.last_result
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "text": r.text,
        "complete": r.complete,
        "tokens": len(r.token_ids),
        "forward_passes": r.forward_passes,
        "forced": r.n_forced,
        "largest_batch": max(r.batch_sizes, default=0),
    }


def main(argv: list[str] | None = None) -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "realistic-qwen2.gguf")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "jsonschemabench-dev")
    parser.add_argument("--workloads", nargs="+", default=list(DEFAULT_WORKLOADS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=300)
    parser.add_argument(
        "--grammar-tokens", type=int, default=None, help="max tokens for regex and grammar workloads"
    )
    parser.add_argument("--threads", type=int, default=2, help="1 on a machine others load heavily")
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    parser.add_argument("--json", type=Path, default=None, help="write the raw calls here")
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    corpus = args.corpus if args.corpus.is_dir() else None
    workloads, skipped = load_workloads(tuple(args.workloads), corpus)
    for why in skipped:
        print(f"skipped: {why}", file=sys.stderr)
    model = models.llamacpp(
        str(args.model), n_ctx=max(1024, args.max_tokens + 128), n_threads=args.threads, n_batch=512
    )
    llm = model.llm
    eog = model.vocabulary.eog_array

    def ban_eog(_ids: Any, scores: np.ndarray) -> np.ndarray:
        scores[eog[eog < scores.shape[-1]]] = -np.inf
        return scores

    floor_gen = generate.text(model)
    floor_gen.logits_processor = ban_eog
    gens = {(w.name, ff): generator(model, w, ff) for w in workloads for ff in (True, False)}
    calls: dict[str, list[dict[str, Any]]] = {}

    def n_model_tokens(text: str) -> int:
        return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def one_round(seed: int, keep: bool) -> None:
        order = list(workloads)
        shift = seed % len(order)
        for w in order[shift:] + order[:shift]:
            limit = args.max_tokens if w.kind == JSON or args.grammar_tokens is None else args.grammar_tokens
            on = timed(gens[(w.name, True)], seed, limit)
            off = timed(gens[(w.name, False)], seed, limit)
            n = max(2, n_model_tokens(on["text"]))
            t0, c0 = time.perf_counter(), time.process_time()
            floor_gen(PROMPT, seed=seed, max_tokens=n)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            floor = {"seconds": wall, "cpu_seconds": cpu, "tokens": n}
            for call in (on, off):
                call["model_tokens"] = n_model_tokens(call["text"])
                call["valid"] = call["complete"] and w.check(call["text"]) is None
                call["ratio"] = (call["model_tokens"] / call["seconds"]) / (n / floor["seconds"])
                call["cpu_ratio"] = (call["model_tokens"] / call["cpu_seconds"]) / (n / floor["cpu_seconds"])
            if keep:
                calls.setdefault(w.name, []).append({"seed": seed, "ff": on, "no-ff": off, "floor": floor})
                print(
                    f"  {w.name} seed {seed}: ff {on['ratio']:.2f}x cpu {on['cpu_ratio']:.2f}x "
                    f"({on['tokens']} tokens, {on['forward_passes']} passes, valid {on['valid']}), "
                    f"no-ff {off['ratio']:.2f}x cpu {off['cpu_ratio']:.2f}x "
                    f"({off['tokens']} tokens, valid {off['valid']}), "
                    f"floor {n} tokens {floor['seconds']:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
                if args.json is not None:
                    args.json.write_text(json.dumps(calls, indent=1))

    for gen in gens.values():  # warm-up: compile every constraint, load the model's pages
        gen(PROMPT, seed=999, max_tokens=4, on_incomplete="return")
    for r in range(rounds):
        one_round(1000 + r, keep=True)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)

    def med(name: str, mode: str, field: str) -> float:
        return median([c[mode][field] for c in calls[name]])

    print(f"model {args.model.name}, {args.threads} threads, {rounds} rounds (medians)\n")
    print(
        "| workload | ff ratio (cpu) | no-ff ratio (cpu) | ff tokens / forward passes (forced) "
        "| no-ff tokens | model tokens | valid ff / no-ff |"
    )
    print("|---|---|---|---|---|---|---|")
    for w in workloads:
        rows = calls[w.name]
        valid_on = sum(c["ff"]["valid"] for c in rows)
        valid_off = sum(c["no-ff"]["valid"] for c in rows)
        print(
            f"| {w.name} | {med(w.name, 'ff', 'ratio'):.2f}x ({med(w.name, 'ff', 'cpu_ratio'):.2f}x) "
            f"| {med(w.name, 'no-ff', 'ratio'):.2f}x ({med(w.name, 'no-ff', 'cpu_ratio'):.2f}x) "
            f"| {med(w.name, 'ff', 'tokens'):.0f} / {med(w.name, 'ff', 'forward_passes'):.0f} "
            f"({med(w.name, 'ff', 'forced'):.0f}) | {med(w.name, 'no-ff', 'tokens'):.0f} "
            f"| {med(w.name, 'ff', 'model_tokens'):.0f} | {valid_on}/{len(rows)} / {valid_off}/{len(rows)} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(calls, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Fast-forward end to end: ``generate.*`` with and without it, against unconstrained text of as
many tokens, on the realistic-shape model (``benchmarks/bench.py --phases fast-forward`` runs the same).

Per round (seed) and workload (``bench_workloads.py``: a regex, the JSON Schemas, the grammars):

- ``ff``: the generator with fast-forward (the default), timed whole (prompt included);
- ``no-ff``: the same generator with ``fast_forward=False``, same seed;
- ``split`` (JSON workloads): fast-forward with ``fast_forward_min_batch=SPLIT_BELOW`` (batches
  of fewer tokens evaluated one by one), for CPUs where a few tokens in one batch cost more than
  as many single steps;
- ``floor``: ``generate.text`` for exactly N tokens (end-of-generation banned, so a random model
  cannot stop early), N = the model's own tokenization of the ``ff`` output: what an unconstrained
  model writing that document would cost.

Speed is output tokens per second counted in the model's tokenization of each output, as a ratio to
the floor of the same round: ``ratio = (N_out / t) / (N_floor / t_floor)``. Medians over rounds;
calls rotate order each round; an untimed warm-up call of each generator. Every output is
checked (schema, regex, lark). Forward passes and tokens come from ``generator.last_result``.
The same ratios from process CPU time (``cpu``) are steadier than wall time on a machine other
jobs share.

Two figures say what bounds the ratio on the machine at hand:

- **batch costs**: ``Llama.eval`` of k tokens in one batch, in single-token steps (interleaved,
  median): fast-forward gains only where a batch of k costs less than k steps;
- **pass ceiling**: model tokens ÷ forward passes, the ratio fast-forward would reach if every
  batch cost one step (the floor takes one pass per token). Tokens the model samples (string
  contents, numbers, each choice of key or whitespace) each take a pass whatever is forced.
- **own-tokenization ceiling**: the same for a model that writes the document in its tokenizer's
  own tokens (as a trained model roughly does): the model's tokenization of the output replayed
  through the guide and the fast-forward planner, each token either sampled or forced.

    .venv/bin/python benchmarks/bench_fast_forward.py --rounds 5
    .venv/bin/python benchmarks/bench_fast_forward.py --quick --workloads json-flat
    .venv/bin/python benchmarks/bench_fast_forward.py --threads 1 --report BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
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
TARGET = 1.3
"""Issue #17: fast-forward JSON at least this many times unconstrained tokens/s."""
SECTION = "## Fast-forward: `generate.*`"
"""The heading of the report section (bench.py keeps it when it does not measure it again)."""
BATCH_SIZES = (1, 2, 3, 4, 8, 16)
SPLIT_BELOW = 5
"""``fast_forward_min_batch`` of the ``split`` calls."""


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
        "prompt_forced": r.n_prompt_forced,
        "one_by_one": r.n_one_by_one,
        "batch_sizes": list(r.batch_sizes),
        "largest_batch": max(r.batch_sizes, default=0),
    }


def own_tokenization_passes(model: Any, gen: Any, text: str) -> int | None:
    """Forward passes after the prompt if the model had written ``text`` in its tokenizer's own
    tokens: replayed through the guide, a token is forced when the planner would have forced it
    there (the run it plans starts with it), sampled otherwise; None if the replay leaves the
    constraint (a tokenization the guide refuses)."""
    from outlines_gguf.errors import ConstraintViolationError

    guide = gen.logits_processor.guide
    planner = model.fast_forward_planner(guide)
    tokens = model.vocabulary.tokens
    ids = model.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    state, sampled, run = guide.initial_state, 0, planner.plan(guide.initial_state, b"", len(ids))
    planned = list(run.tokens) if run is not None else []
    try:
        for token in ids:
            forced = bool(planned) and planned[0] == token
            planned = planned[1:] if forced else []
            state = guide.next_state(state, token)
            if not forced:
                sampled += 1
                run = planner.plan(state, tokens[token], len(ids))
                planned = list(run.tokens) if run is not None else []
    except ConstraintViolationError:
        return None
    return max(0, sampled - 1) + 1  # one pass per sampled token, the last one's for end of generation


def batch_costs(llm: Any, sizes: Sequence[int] = BATCH_SIZES, rounds: int = 5) -> dict[str, Any]:
    """``Llama.eval`` of k tokens in one batch after a short context, in single-token steps
    (medians of interleaved rounds, wall and process CPU time)."""
    prompt = llm.tokenize(PROMPT.encode(), add_bos=False, special=False)
    wall: dict[int, list[float]] = {k: [] for k in sizes}
    cpu: dict[int, list[float]] = {k: [] for k in sizes}
    for r in range(rounds):
        for k in sizes:
            llm.reset()
            llm.eval(prompt)
            for j in range(16):
                llm.eval([1000 + j])
            batch = [2000 + 37 * r + i for i in range(k)]
            t0, c0 = time.perf_counter(), time.process_time()
            llm.eval(batch)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    llm.reset()
    one, one_cpu = median(wall[1]), median(cpu[1])
    return {
        "step_ms": one * 1000,
        "step_cpu_ms": one_cpu * 1000,
        "wall_steps": {str(k): median(wall[k]) / one for k in sizes},
        "cpu_steps": {str(k): median(cpu[k]) / one_cpu for k in sizes},
    }


def measure(
    model_path: Path,
    workloads: Sequence[Workload],
    rounds: int,
    max_tokens: int,
    threads: int,
    grammar_tokens: int | None = None,
    progress: Callable[[str], None] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the interleaved rounds and the batch-cost probe; the raw calls and the probe."""
    say = progress or (lambda message: print(message, file=sys.stderr, flush=True))
    model = models.llamacpp(
        str(model_path), n_ctx=max(1024, max_tokens + 128), n_threads=threads, n_batch=512
    )
    llm = model.llm
    eog = model.vocabulary.eog_array

    def ban_eog(_ids: Any, scores: np.ndarray) -> np.ndarray:
        scores[eog[eog < scores.shape[-1]]] = -np.inf
        return scores

    floor_gen = generate.text(model)
    floor_gen.logits_processor = ban_eog
    gens = {(w.name, ff): generator(model, w, ff) for w in workloads for ff in (True, False)}
    split_model = models.llamacpp(llm, fast_forward_min_batch=SPLIT_BELOW)  # the same Llama
    split = {w.name: generator(split_model, w, True) for w in workloads if w.kind == JSON}
    results: dict[str, Any] = {
        "model": model_path.name, "threads": threads, "rounds": rounds, "max_tokens": max_tokens,
        "grammar_tokens": grammar_tokens, "machine": platform.processor() or platform.machine(),
        "calls": {}, "batch_costs": None,
    }
    calls: dict[str, list[dict[str, Any]]] = results["calls"]

    def n_model_tokens(text: str) -> int:
        return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def one_round(seed: int) -> None:
        order = list(workloads)
        shift = seed % len(order)
        for w in order[shift:] + order[:shift]:
            limit = max_tokens if w.kind == JSON or grammar_tokens is None else grammar_tokens
            on = timed(gens[(w.name, True)], seed, limit)
            off = timed(gens[(w.name, False)], seed, limit)
            both = timed(split[w.name], seed, limit) if w.name in split else None
            n = max(2, n_model_tokens(on["text"]))
            t0, c0 = time.perf_counter(), time.process_time()
            floor_gen(PROMPT, seed=seed, max_tokens=n)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            floor = {"seconds": wall, "cpu_seconds": cpu, "tokens": n}
            for call in (on, off, both):
                if call is None:
                    continue
                call["model_tokens"] = n_model_tokens(call["text"])
                call["valid"] = call["complete"] and w.check(call["text"]) is None
                call["ratio"] = (call["model_tokens"] / call["seconds"]) / (n / floor["seconds"])
                call["cpu_ratio"] = (call["model_tokens"] / call["cpu_seconds"]) / (n / floor["cpu_seconds"])
                # passes had every batch been one call: the evaluations one by one counted once
                batched_passes = call["forward_passes"] - call["one_by_one"]
                call["pass_ceiling"] = call["model_tokens"] / max(1, batched_passes)
            if w.kind == JSON:
                own = own_tokenization_passes(model, gens[(w.name, True)], on["text"])
                on["own_passes"] = own
                on["own_ceiling"] = None if own is None else on["model_tokens"] / max(1, own)
            row = {"seed": seed, "ff": on, "no-ff": off, "floor": floor}
            if both is not None:
                row["split"] = both
            calls.setdefault(w.name, []).append(row)
            say(
                f"  {w.name} seed {seed}: ff {on['ratio']:.2f}x cpu {on['cpu_ratio']:.2f}x "
                f"({on['tokens']} tokens, {on['forward_passes']} passes, valid {on['valid']}), "
                f"no-ff {off['ratio']:.2f}x cpu {off['cpu_ratio']:.2f}x "
                f"({off['tokens']} tokens, valid {off['valid']}), "
                f"floor {n} tokens {floor['seconds']:.1f}s"
            )
            if save is not None:
                save(results)

    for gen in [*gens.values(), *split.values()]:  # warm-up: compile every constraint, page the model in
        gen(PROMPT, seed=999, max_tokens=4, on_incomplete="return")
    for r in range(rounds):
        one_round(1000 + r)
        say(f"fast-forward: round {r + 1}/{rounds} done")
    results["batch_costs"] = batch_costs(llm)
    if save is not None:
        save(results)
    return results


def summary(results: dict[str, Any], workload: str) -> dict[str, float]:
    """Medians of one workload's calls (ff, no-ff) and how many outputs were valid."""
    rows = results["calls"][workload]

    def med(mode: str, key: str) -> float:
        return median([c[mode][key] for c in rows])

    out = {f"{mode}_{key}": med(mode, key) for mode in ("ff", "no-ff") for key in (
        "ratio", "cpu_ratio", "tokens", "model_tokens", "forward_passes", "forced", "pass_ceiling")}
    out["ff_prompt_forced"] = med("ff", "prompt_forced")
    out["ff_one_by_one"] = med("ff", "one_by_one")
    with_split = [c for c in rows if "split" in c]
    out["split_ratio"] = median([c["split"]["ratio"] for c in with_split])
    out["split_cpu_ratio"] = median([c["split"]["cpu_ratio"] for c in with_split])
    own = [c["ff"]["own_ceiling"] for c in rows if c["ff"].get("own_ceiling") is not None]
    out["own_ceiling"] = median(own)
    out["floor_tokens"] = median([c["floor"]["tokens"] for c in rows])
    out["valid_ff"] = sum(c["ff"]["valid"] for c in rows)
    out["valid_no_ff"] = sum(c["no-ff"]["valid"] for c in rows)
    out["complete_ff"] = sum(c["ff"]["complete"] for c in rows)
    out["complete_no_ff"] = sum(c["no-ff"]["complete"] for c in rows)
    out["n"] = len(rows)
    sizes = [s for c in rows for s in c["ff"]["batch_sizes"]]
    out["multi_batches"] = sum(1 for s in sizes if s > 1) / max(1, len(rows))
    out["mean_batch"] = float(np.mean([s for s in sizes if s > 1])) if any(s > 1 for s in sizes) else 1.0
    return out


def ordered(results: dict[str, Any]) -> list[str]:
    """The measured workloads in the canonical order."""
    from bench_workloads import ALL_WORKLOADS

    names = list(results["calls"])
    return sorted(names, key=lambda n: ALL_WORKLOADS.index(n) if n in ALL_WORKLOADS else len(names))


def target_status(results: dict[str, Any]) -> tuple[str, str]:
    """Issue #17's target on the JSON workloads measured: status and the figures."""
    found, bad = [], []
    for name in results["calls"]:
        if not name.startswith("json-"):
            continue
        s = summary(results, name)
        found.append(f"{name} {s['ff_ratio']:.2f}× ({s['ff_cpu_ratio']:.2f}× CPU), "
                     f"pass ceiling {s['ff_pass_ceiling']:.2f}×")
        if min(s["ff_ratio"], s["ff_cpu_ratio"]) < TARGET:
            bad.append(name)
    if not found:
        return "NOT MEASURED", ""
    return ("FAIL" if bad else "PASS"), "; ".join(found)


def markdown(results: dict[str, Any], command: str = "") -> str:
    """The report section."""
    head = (
        f"{SECTION} on `{results['model']}` (CPU, {results['threads']} thread(s), issue #17)\n\n"
        + (f"Measured by `{command}`. " if command else "")
        + f"{results['rounds']} interleaved rounds (medians), `max_tokens` {results['max_tokens']}"
        + (f" ({results['grammar_tokens']} for regex and grammars)" if results.get("grammar_tokens") else "")
        + f". Each round times the generator with fast-forward (the default: every batch in one "
        f"call), the same with batches under {SPLIT_BELOW} tokens evaluated one by one "
        f"(`fast_forward_min_batch={SPLIT_BELOW}`; JSON only), the same with `fast_forward=False` "
        "(same seed), "
        "and unconstrained `generate.text` for exactly as many tokens "
        "as the model's own tokenization of the fast-forward output (end of generation banned). "
        "Ratio: output tokens/s in the model's tokenization ÷ the floor's, same round; in brackets "
        "the same from process CPU time. Pass ceiling: model tokens ÷ forward passes "
        "(batches one call each), the ratio if a "
        "batch cost no more than one step; own-tokenization ceiling: the same had the model written "
        "the document in its tokenizer's own tokens (the output's tokenization replayed through the guide "
        "and the planner: a token is forced where fast-forward would have forced it). "
        "Valid / complete: outputs the validator accepts / outputs "
        "the constraint had finished (the others stopped at `max_tokens`)."
    )
    rows = [
        f"| workload | fast-forward | batches under {SPLIT_BELOW} one by one | without "
        "| tokens: model / generated "
        "| forward passes (forced; at the start) | batches > 1 per doc (mean size) "
        "| pass ceiling "
        "| own-tokenization ceiling | valid / complete: ff, no-ff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ordered(results):
        s = summary(results, name)
        rows.append(
            f"| {name} | {s['ff_ratio']:.2f}× ({s['ff_cpu_ratio']:.2f}×) "
            + (f"| {s['split_ratio']:.2f}× ({s['split_cpu_ratio']:.2f}×) "
               if s["split_ratio"] == s["split_ratio"] else "| – ")
            + f"| {s['no-ff_ratio']:.2f}× ({s['no-ff_cpu_ratio']:.2f}×) "
            f"| {s['ff_model_tokens']:.0f} / {s['ff_tokens']:.0f} "
            f"| {s['ff_forward_passes']:.0f} ({s['ff_forced']:.0f}; {s['ff_prompt_forced']:.0f}) "
            f"| {s['multi_batches']:.1f} ({s['mean_batch']:.1f}) | {s['ff_pass_ceiling']:.2f}× "
            + (f"| {s['own_ceiling']:.2f}× " if s["own_ceiling"] == s["own_ceiling"] else "| – ")
            + f"| {s['valid_ff']}/{s['complete_ff']}, {s['valid_no_ff']}/{s['complete_no_ff']} |"
        )
    parts = [head, "\n".join(rows)]
    costs = results.get("batch_costs")
    if costs:
        sizes = list(costs["wall_steps"])
        parts.append(
            f"Cost of one `Llama.eval` of k tokens, in single-token steps (one step: "
            f"{costs['step_ms']:.0f} ms wall, {costs['step_cpu_ms']:.0f} ms CPU):\n\n"
            + "| k | " + " | ".join(sizes) + " |\n|---|" + "---|" * len(sizes) + "\n"
            + "| wall | " + " | ".join(f"{costs['wall_steps'][k]:.2f}" for k in sizes) + " |\n"
            + "| CPU | " + " | ".join(f"{costs['cpu_steps'][k]:.2f}" for k in sizes) + " |"
        )
    status, detail = target_status(results)
    parts.append(f"Target ≥ {TARGET}× unconstrained on the JSON workloads: **{status}** ({detail}). "
                 "What bounds these ratios (batch costs, tokens sampled, text forced): docs/architecture.md, "
                 "\"Fast-forward\".")
    return "\n\n".join(parts)


def replace_section(path: Path, section: str) -> None:
    """Put ``section`` in the report at ``path`` in place of its fast-forward section (appended
    when there is none)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    blocks = ("\n" + text).split("\n## ")
    kept: list[str] = []
    done = False
    for block in ("## " + b.strip("\n") for b in blocks[1:]):
        if block.startswith(SECTION):
            if not done:
                kept.append(section.strip())
            done = True
        else:
            kept.append(block)
    if not done:
        kept.append(section.strip())
    path.write_text("\n\n".join(p for p in (blocks[0].strip("\n"), *kept) if p) + "\n")


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
    parser.add_argument("--report", type=Path, default=None,
                        help="write the Markdown section into this report (BENCHMARKS.md)")
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    corpus = args.corpus if args.corpus.is_dir() else None
    workloads, skipped = load_workloads(tuple(args.workloads), corpus)
    for why in skipped:
        print(f"skipped: {why}", file=sys.stderr)

    def save(results: dict[str, Any]) -> None:
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=1))

    results = measure(args.model, workloads, rounds, args.max_tokens, args.threads, args.grammar_tokens,
                      save=save)
    words = argv if argv is not None else sys.argv[1:]
    section = markdown(results, " ".join(["python benchmarks/bench_fast_forward.py", *words]))
    print(section)
    if args.report is not None:
        replace_section(args.report, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

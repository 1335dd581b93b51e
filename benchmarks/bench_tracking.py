"""Overhead of LogitTrackingProcessor on a JSON generation, end to end.

    python benchmarks/bench_tracking.py [--model models/realistic-qwen2.gguf] [--rounds 7]

Runs the same JSON generation (same seed, hence the same tokens) untracked,
tracked with the defaults (top-10 per position, last 8 full rows) and tracked
with full rows for every position, interleaved round by round, and reports
the median time per token of each and the paired ratio to untracked.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench_stats import median
from llama_cpp import Llama, LogitsProcessorList
from pydantic import BaseModel, Field

from outlines_gguf import JSONLogitsProcessor, LogitTrackingProcessor

ROOT = Path(__file__).resolve().parent.parent


class Order(BaseModel):
    customer: str = Field(max_length=16)
    quantity: int = Field(ge=1, le=99)
    express: bool
    notes: str = Field(max_length=24)


def run(llm: Llama, processor, seed: int, max_tokens: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = llm.create_completion(
        "Order as JSON: ",
        max_tokens=max_tokens,
        seed=seed,
        temperature=0.8,
        logits_processor=LogitsProcessorList([processor]),
    )
    elapsed = time.perf_counter() - t0
    return elapsed, out["usage"]["completion_tokens"] + 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "realistic-qwen2.gguf")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    llm = Llama(model_path=str(args.model), n_ctx=512, n_threads=2, verbose=False)
    inner = JSONLogitsProcessor(Order, llm)
    variants = {
        "untracked": lambda: inner,
        "tracked (top-10, last 8 rows)": lambda: LogitTrackingProcessor(inner),
        "tracked (full rows, all positions)": lambda: LogitTrackingProcessor(inner, full_rows=None),
    }
    run(llm, inner, 0, args.max_tokens)  # warm up: masks computed, prompt cached
    per_token: dict[str, list[float]] = {name: [] for name in variants}
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        base = None
        for name, make in variants.items():
            elapsed, tokens = run(llm, make(), 1000 + r, args.max_tokens)
            per_token[name].append(elapsed / tokens)
            base = base if base is not None else elapsed / tokens
            ratios[name].append((elapsed / tokens) / base)
    print(f"model {args.model.name}, {args.rounds} interleaved rounds, medians")
    print(f"{'variant':<38} {'ms/token':>9} {'vs untracked':>13}")
    for name in variants:
        print(
            f"{name:<38} {median(per_token[name]) * 1000:9.2f} "
            f"{median(ratios[name]):12.3f}x"
        )


if __name__ == "__main__":
    main()

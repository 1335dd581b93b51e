"""Start-up: from a loaded model to the first constrained token's mask, in a fresh process.

Each run is a new Python process that loads the model with llama-cpp-python (not timed), then
times what a constrained generation needs before its first token: for ours, reading the
vocabulary (``as_vocabulary(llm)``), building the processor and its first mask; for llguidance,
its tokenizer from the llama.cpp vocabulary (``lltokenizer_from_vocab``), the matcher and its
first mask. Ours runs three ways: without the disk cache (``OUTLINES_GGUF_CACHE=0``), with a cold
cache (the first process, which also writes it) and with a warm one (every later process). The
imports are timed apart (``import``): a server pays them once, a command line every time.

    .venv/bin/python benchmarks/bench_startup.py --model models/tiny-qwen2.gguf --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_stats import median

REPO = Path(__file__).resolve().parent.parent
PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
MODES = ("ours-no-cache", "ours-cold-cache", "ours-warm-cache", "llguidance")


def child(model: str, engine: str) -> dict[str, float]:
    """One fresh process's timings (seconds); printed as JSON by ``--child``."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_ctx=256, n_threads=1, verbose=False)
    scores = np.zeros(llm.n_vocab(), dtype=np.float32)
    prompt = np.array(llm.tokenize(b"Today is "), dtype=np.intc)
    eog: list[int] = []
    if engine == "llguidance":  # the end-of-generation set, found before timing (not llguidance's work)
        import llama_cpp

        vocab_ptr = llama_cpp.llama_model_get_vocab(llm.model)
        eog = [i for i in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab_ptr, i)]
    t0 = time.perf_counter()
    if engine == "ours":
        from outlines_gguf import RegexLogitsProcessor
        from outlines_gguf.tokens.cache import as_vocabulary

        t1 = time.perf_counter()
        vocab = as_vocabulary(llm)
        t2 = time.perf_counter()
        proc = RegexLogitsProcessor(PATTERN, vocab)
        t3 = time.perf_counter()
        proc(prompt, scores)
        t4 = time.perf_counter()
        assert np.isfinite(scores).sum() > 0
    else:
        import llguidance
        import llguidance.llamacpp

        t1 = time.perf_counter()
        tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(vocab_ptr, eos_token=eog)
        t2 = time.perf_counter()
        matcher = llguidance.LLMatcher(
            tokenizer, llguidance.LLMatcher.grammar_from_regex(PATTERN), log_level=0
        )
        t3 = time.perf_counter()
        mask = np.zeros((llm.n_vocab() + 31) // 32, dtype=np.int32)
        matcher.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
        t4 = time.perf_counter()
        assert mask.any()
    return {
        "import": t1 - t0,
        "vocabulary": t2 - t1,
        "constraint": t3 - t2,
        "first_mask": t4 - t3,
        "after_import": t4 - t1,
    }


def run_once(model: Path, engine: str, env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", engine, "--model", str(model)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} start-up run failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(model: Path, runs: int) -> dict[str, Any]:
    """Median timings per mode (each run a fresh process); the cold cache is measured ``runs``
    times too, each time into an emptied folder."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    folder = Path(tempfile.mkdtemp(prefix="bench-startup-cache-"))
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    try:
        for _ in range(runs):
            shutil.rmtree(folder, ignore_errors=True)
            cached = {**env, "OUTLINES_GGUF_CACHE_DIR": str(folder), "OUTLINES_GGUF_CACHE": "json"}
            results["ours-no-cache"].append(run_once(model, "ours", {**env, "OUTLINES_GGUF_CACHE": "0"}))
            results["ours-cold-cache"].append(run_once(model, "ours", cached))
            results["ours-warm-cache"].append(run_once(model, "ours", cached))
            results["llguidance"].append(run_once(model, "llguidance", env))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        mode: {key: median([r[key] for r in rows]) for key in rows[0]}
        for mode, rows in results.items()
    } | {"model": model.name, "runs": runs, "pattern": PATTERN}


def markdown(result: dict[str, Any]) -> str:
    """The start-up figures as a Markdown section."""
    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    rows = [
        "| engine | vocabulary / tokenizer | constraint | first mask | **total after import** | import |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode in MODES:
        r = result[mode]
        rows.append(
            f"| {mode} | {ms(r['vocabulary'])} | {ms(r['constraint'])} | {ms(r['first_mask'])} | "
            f"**{ms(r['after_import'])}** | {ms(r['import'])} |"
        )
    return (
        f"## Start-up: a fresh process to its first constrained token ({result['model']})\n\n"
        f"Median of {result['runs']} fresh processes each, after the model is loaded: the vocabulary "
        f"(ours: `as_vocabulary(llm)`; llguidance: `lltokenizer_from_vocab`), the regex "
        f"`{result['pattern']}` and its first mask (`benchmarks/bench_startup.py`). The cold cache is the "
        "first process on a machine (it builds and writes the vocabulary cache); every later one "
        "finds it warm.\n\n" + "\n".join(rows)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "tiny-qwen2.gguf")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", choices=["ours", "llguidance"], help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(str(args.model), args.child)))
        return 0
    result = measure(args.model, max(1, args.runs))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

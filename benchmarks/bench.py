"""One benchmark command: ours against every peer, on every workload, written up in BENCHMARKS.md.

Engines: unconstrained llama.cpp (the floor), ours (``outlines_gguf`` Regex/JSON/CFG logits
processors), llama.cpp's grammar sampler (GBNF), outlines with outlines-core (through outlines' own
llama.cpp integration), llguidance and xgrammar. Workloads: a regex, three JSON Schemas of growing
size (the third a real-world one from JSONSchemaBench), and two grammars (``bench_workloads.py``).

Figures, per vocabulary (Llama-2 32k, Llama-3 128k, Qwen2 152k): engine setup, cold and warm
construction, time to the first mask, per-token processor time (median, p99) replaying a valid token
sequence the way llama-cpp-python calls a processor; on Qwen2: peak memory of each construction in a
fresh process; on the realistic-shape model (Qwen2.5-0.5B shape, Q8_0): end-to-end tokens/s as a ratio
to unconstrained, from interleaved rounds, and whether every output was valid; and the library's own
generation loop (``generate.*``) with fast-forward, beside the same without it and unconstrained text of
as many tokens, with forward passes and the cost of a batch (phase ``fast-forward``,
``bench_fast_forward.py``; issue #17).

Run from the repository root::

    .venv/bin/pip install -e ".[bench]"       # the peers (see pyproject.toml)
    .venv/bin/python benchmarks/bench.py --corpus ../shared/jsonschemabench-dev
    .venv/bin/python benchmarks/bench.py --quick --vocabs qwen2 --workloads json-flat --out /tmp/b.md

It writes ``BENCHMARKS.md`` (``--out``), plots and the raw results (``--plots``, default
``docs/bench/``), and prints a Targets section. A full run takes 30 to 40 minutes on two idle cores
(phases ``construction`` ~10, ``memory`` ~2, ``e2e`` 15-25, ``startup`` ~2: fresh processes from a
loaded model to the first constrained mask, beside llguidance's tokenizer set-up; ``fast-forward``
5-10: JSON documents up to 300 tokens; ``--phases`` picks some); ``--gpu`` is the
end-to-end part with every layer on the GPU (``benchmarks/bench_gpu.sh``). Timings depend on the machine
and on whatever else runs on it: compare the columns of one report, not reports of different runs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_common import ProcessWorker, WorkerGoneError, git_revision, load_average, usable_cores
from bench_engines import ENGINES, tokenize, vocab_facts, worker_main
from bench_workloads import ALL_WORKLOADS, Workload, load_workloads

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VOCABS = {
    "llama-spm": ("Llama-2 32k", "ggml-vocab-llama-spm.gguf"),
    "llama-bpe": ("Llama-3 128k", "ggml-vocab-llama-bpe.gguf"),
    "qwen2": ("Qwen2 152k", "ggml-vocab-qwen2.gguf"),
}
VOCAB_DIR = REPO / "models" / "vocab"
REALISTIC_MODEL = REPO / "models" / "realistic-qwen2.gguf"
DEFAULT_CORPUS = REPO.parent / "shared" / "jsonschemabench-dev"
PHASES = ("construction", "memory", "e2e", "fast-forward", "startup")
STARTUP_MODEL = REPO / "models" / "tiny-qwen2.gguf"  # Qwen2 152k: the largest test vocabulary

_T0 = time.perf_counter()


def progress(message: str) -> None:
    print(f"[bench {time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# -- options ---------------------------------------------------------------------------------------


@dataclass
class Options:
    out: Path
    plots: Path
    results: Path
    corpus: Path | None
    runs: int
    rounds: int
    max_tokens: int
    threads: int
    engines: tuple[str, ...]
    workloads: tuple[str, ...]
    vocabs: tuple[str, ...]
    phases: tuple[str, ...]
    model: Path
    timeout: float
    gpu: bool
    quick: bool
    build_models: bool
    argv: list[str] = field(default_factory=list)


def parse_list(text: str, allowed: Sequence[str], what: str,
               parser: argparse.ArgumentParser) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    unknown = [x for x in items if x not in allowed]
    if unknown or not items:
        parser.error(f"unknown {what} {unknown}; choose from {','.join(allowed)}")
    return items


def parse_options(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md", help="the Markdown report")
    parser.add_argument("--plots", type=Path, default=None,
                        help="folder for the PNG plots and results.json (default: docs/bench beside --out)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS if DEFAULT_CORPUS.is_dir() else None,
                        help="JSONSchemaBench folder for the json-corpus workload (skipped when absent)")
    parser.add_argument("--runs", type=int, default=None, help="runs per construction/per-token figure (5)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved end-to-end rounds (default: --runs, at least 5)")
    parser.add_argument("--max-tokens", type=int, default=None, help="end-to-end max_tokens (128)")
    parser.add_argument("--threads", type=int, default=usable_cores(), help="llama.cpp threads")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"subset of {','.join(ENGINES)}")
    parser.add_argument("--workloads", default=",".join(ALL_WORKLOADS),
                        help=f"subset of {','.join(ALL_WORKLOADS)}")
    parser.add_argument("--vocabs", default=",".join(VOCABS), help=f"subset of {','.join(VOCABS)}")
    parser.add_argument("--phases", default=None, help=f"subset of {','.join(PHASES)} (default: all)")
    parser.add_argument("--model", type=Path, default=REALISTIC_MODEL, help="end-to-end model")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds one engine may take on one run of one workload before it is killed")
    parser.add_argument("--gpu", action="store_true",
                        help="end to end with every layer offloaded (n_gpu_layers=-1); implies --phases e2e")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1 run, 1 round, 8 tokens (figures are not meaningful)")
    parser.add_argument("--no-build", action="store_true",
                        help="do not run build_test_models.py when a vocabulary or the model is missing")
    args = parser.parse_args(argv)
    runs = args.runs if args.runs is not None else (1 if args.quick else 5)
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else max(5, runs))
    max_tokens = args.max_tokens if args.max_tokens is not None else (8 if args.quick else 128)
    phases_default = "e2e" if args.gpu else ",".join(PHASES)
    if args.gpu and args.phases and "fast-forward" in args.phases.split(","):
        parser.error("the fast-forward phase runs on the CPU: leave it out of --gpu runs")
    plots = args.plots if args.plots is not None else args.out.parent / "docs" / "bench"
    return Options(
        out=args.out, plots=plots, results=plots / "results.json", corpus=args.corpus,
        runs=max(1, runs), rounds=max(1, rounds), max_tokens=max(2, max_tokens), threads=max(1, args.threads),
        engines=parse_list(args.engines, ENGINES, "engine(s)", parser),
        workloads=parse_list(args.workloads, ALL_WORKLOADS, "workload(s)", parser),
        vocabs=parse_list(args.vocabs, tuple(VOCABS), "vocabulary(ies)", parser),
        phases=parse_list(args.phases or phases_default, PHASES, "phase(s)", parser),
        model=args.model, timeout=args.timeout, gpu=args.gpu, quick=args.quick,
        build_models=not args.no_build, argv=list(argv),
    )


# -- test models -----------------------------------------------------------------------------------


def ensure_models(opts: Options) -> list[str]:
    """Build the missing vocabularies / realistic model with build_test_models.py; notes on what is used."""
    missing = [VOCAB_DIR / VOCABS[v][1] for v in opts.vocabs if not (VOCAB_DIR / VOCABS[v][1]).is_file()]
    need_model = bool({"e2e", "fast-forward"} & set(opts.phases)) and not opts.model.is_file()
    if (missing or need_model) and opts.build_models:
        command = [sys.executable, str(REPO / "scripts" / "build_test_models.py")]
        if need_model and opts.model == REALISTIC_MODEL:
            command.append("--realistic")
        progress("building test models: " + " ".join(command[1:]))
        subprocess.run(command, cwd=REPO, check=True)
    notes: list[str] = []
    for v in opts.vocabs:
        if not vocab_path(v).is_file():
            raise SystemExit(f"bench: {vocab_path(v)} is missing (python scripts/build_test_models.py)")
    if "e2e" in opts.phases and not opts.model.is_file():
        raise SystemExit(f"bench: {opts.model} is missing (python scripts/build_test_models.py --realistic)")
    return notes


# -- worker processes ------------------------------------------------------------------------------


class WorkerError(Exception):
    """The worker crashed, timed out or could not start."""


class Worker(ProcessWorker):
    """One engine on one vocabulary in its own process (a crash or a hang costs only that job)."""

    def __init__(self, engine: str, gguf: Path) -> None:
        super().__init__(worker_main, (engine, str(gguf)), f"bench-{engine}")
        self.engine = engine
        self.gguf = gguf
        self.ready: dict[str, Any] = {}

    def start(self, timeout: float) -> dict[str, Any]:
        self.spawn()
        message = self.receive(timeout)
        if "fatal" in message:
            self.stop()
            raise WorkerError(f"setup failed: {message['fatal']}")
        self.ready = message
        return message

    def receive(self, timeout: float) -> dict[str, Any]:
        try:
            return self.wait(timeout)
        except WorkerGoneError as exc:
            self.stop()
            raise WorkerError(f"crashed or timed out (killed): {exc}") from exc

    def ask(self, job: tuple[Any, ...], timeout: float) -> dict[str, Any]:
        if self.process is None:
            self.start(timeout)
        assert self.conn is not None
        self.conn.send(job)
        return self.receive(timeout)


# -- phases ----------------------------------------------------------------------------------------


def vocab_path(vocab: str) -> Path:
    return VOCAB_DIR / VOCABS[vocab][1]


def reference_tokens(workloads: Sequence[Workload], engines: Sequence[str],
                     gguf: Path) -> dict[str, dict[str, list[int]]]:
    """workload -> engine -> the reference document's tokens (see ``Workload.reference_for``)."""
    from bench_engines import load_vocab_only

    from outlines_gguf import Vocabulary

    llm = load_vocab_only(gguf)
    vocab = Vocabulary.from_gguf(gguf)
    return {w.name: {e: tokenize(llm, vocab, w.reference_for(e)) for e in engines} for w in workloads}


def run_construction(opts: Options, workloads: Sequence[Workload], vocab: str) -> dict[str, Any]:
    """Every engine and workload on one vocabulary, ``opts.runs`` interleaved runs."""
    gguf = vocab_path(vocab)
    facts = vocab_facts(gguf)
    tokens = reference_tokens(workloads, opts.engines, gguf)
    out: dict[str, Any] = {"n_vocab": facts["n_vocab"], "eog": facts["eog"], "tokens": tokens,
                           "setup": {}, "cells": {w.name: {} for w in workloads}}
    workers: dict[str, Worker] = {}
    for name in opts.engines:
        progress(f"{vocab}: starting {name}")
        worker = Worker(name, gguf)
        try:
            out["setup"][name] = worker.start(opts.timeout)
            workers[name] = worker
        except WorkerError as exc:
            out["setup"][name] = {"failure": str(exc)}
            for w in workloads:
                out["cells"][w.name][name] = {"runs": [], "failure": f"engine setup: {exc}"}
    blocked: set[tuple[str, str]] = set()
    for run in range(opts.runs):
        for wi, w in enumerate(workloads):
            order = list(workers)
            shift = (run + wi) % max(1, len(order))
            for name in order[shift:] + order[:shift]:
                cell = out["cells"][w.name].setdefault(name, {"runs": []})
                if (name, w.name) in blocked:
                    continue
                job = ("measure", w, tokens[w.name][name], facts["n_vocab"], facts["eog"], run)
                try:
                    reply = workers[name].ask(job, opts.timeout)
                except WorkerError as exc:
                    cell["failure"] = str(exc)
                    blocked.add((name, w.name))
                    continue
                if "unsupported" in reply:
                    cell["unsupported"] = reply["unsupported"]
                    blocked.add((name, w.name))
                elif "error" in reply and "cold" not in reply:
                    cell["failure"] = reply["error"]
                    blocked.add((name, w.name))
                else:
                    cell["runs"].append(reply)
            progress(f"{vocab}: run {run + 1}/{opts.runs}, {w.name} done")
    for worker in workers.values():
        worker.close()
    return out


def run_memory(opts: Options, workloads: Sequence[Workload], vocab: str) -> dict[str, Any]:
    """Peak memory of one cold construction + one replay, each in a fresh worker process."""
    gguf = vocab_path(vocab)
    facts = vocab_facts(gguf)
    tokens = reference_tokens(workloads, opts.engines, gguf)
    out: dict[str, Any] = {"vocab": vocab, "cells": {}}
    for w in workloads:
        for name in opts.engines:
            worker = Worker(name, gguf)
            try:
                ready = worker.start(opts.timeout)
                job = ("memory", w, tokens[w.name][name], facts["n_vocab"], facts["eog"], 0)
                reply = worker.ask(job, opts.timeout)
                reply["rss_setup"] = ready.get("rss_setup", 0)
                reply["rss_start"] = ready.get("rss_start", 0)
            except WorkerError as exc:
                reply = {"failure": str(exc)}
            finally:
                worker.close()
            out["cells"].setdefault(w.name, {})[name] = reply
        progress(f"memory: {w.name} done")
    return out


def e2e_blocked(construction: dict[str, Any], vocab: str | None) -> dict[str, str]:
    """Engine/workload pairs that failed, crashed or timed out in the construction workers (on the
    model's vocabulary): they are not run inside the end-to-end process, which they could bring down."""
    from bench_e2e import key

    blocked: dict[str, str] = {}
    if vocab is None or vocab not in construction:
        return blocked
    for w, cells in construction[vocab]["cells"].items():
        for engine, cell in cells.items():
            if cell.get("failure"):
                blocked[key(engine, w)] = "failed in the construction phase: " + cell["failure"]
    for engine, setup in construction[vocab]["setup"].items():
        if setup.get("failure"):
            blocked[engine] = setup["failure"]
    return blocked


def preflight(opts: Options, workloads: Sequence[Workload]) -> dict[str, str]:
    """Build every constraint once in worker processes on the model's own vocabulary (without the
    construction phase, nothing else tells whether a build crashes the process)."""
    from bench_e2e import key

    blocked: dict[str, str] = {}
    facts = vocab_facts(opts.model)
    tokens = reference_tokens(workloads, opts.engines, opts.model)
    for name in opts.engines:
        worker = Worker(name, opts.model)
        try:
            worker.start(opts.timeout)
        except WorkerError as exc:
            blocked[name] = str(exc)
            continue
        for w in workloads:
            job = ("memory", w, tokens[w.name][name], facts["n_vocab"], facts["eog"], 0)
            try:
                reply = worker.ask(job, opts.timeout)
            except WorkerError as exc:
                blocked[key(name, w.name)] = str(exc)
                continue
            if "error" in reply:
                blocked[key(name, w.name)] = reply["error"]
        worker.close()
    return blocked


# -- main ------------------------------------------------------------------------------------------


def environment(opts: Options) -> dict[str, Any]:
    from bench_common import cpu_model, package_version

    import outlines_gguf

    packages = ["llama_cpp_python", "numpy", "outlines", "outlines-core", "llguidance", "xgrammar", "torch",
                "numba", "lark", "jsonschema", "matplotlib", "pydantic"]
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 0
    gpu = ""
    if opts.gpu:
        try:
            gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=30,
                                 check=True).stdout.strip().replace("\n", "; ")
        except (OSError, subprocess.SubprocessError):
            gpu = "unknown (nvidia-smi failed)"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "gpu": gpu,
        "cpu": cpu_model(),
        "cores_usable": usable_cores(),
        "cores_online": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "os": __import__("platform").platform(),
        "python": sys.version.split()[0],
        "outlines_gguf": f"{outlines_gguf.__version__} (git {git_revision(REPO)})",
        "packages": {p: package_version(p) for p in packages},
        "command": " ".join(shlex.quote(a) for a in [sys.executable, "benchmarks/bench.py", *opts.argv]),
        "load_start": load_average(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_options(sys.argv[1:] if argv is None else argv)
    from bench_report import print_targets, write_outputs

    notes = ensure_models(opts)
    workloads, skipped = load_workloads(opts.workloads, opts.corpus)
    notes += skipped
    for message in skipped:
        progress(message)
    cache_dir = tempfile.mkdtemp(prefix="bench-dfa-cache-")
    os.environ["OUTLINES_GGUF_CACHE_DIR"] = cache_dir
    os.environ["OUTLINES_GGUF_BENCH_OWNS_CACHE"] = "1"
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": environment(opts), "options": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in opts.__dict__.items() if k != "argv"},
        "workloads": {w.name: {"kind": w.kind, "title": w.title, "describe": w.describe(),
                               "reference": w.reference, "source": w.source} for w in workloads},
        "notes": notes, "construction": {}, "memory": None, "e2e": None}
    try:
        if "construction" in opts.phases:
            for vocab in opts.vocabs:
                results["construction"][vocab] = run_construction(opts, workloads, vocab)
        if "memory" in opts.phases:
            vocab = "qwen2" if "qwen2" in opts.vocabs else opts.vocabs[0]
            results["memory"] = run_memory(opts, workloads, vocab)
        if "e2e" in opts.phases:
            from bench_e2e import run_e2e

            if "qwen2" in results["construction"]:
                blocked = e2e_blocked(results["construction"], "qwen2")
            else:
                progress("end to end: preflight builds in worker processes")
                blocked = preflight(opts, workloads)
            progress(f"end to end on {opts.model.name}")
            e2e = run_e2e(opts.model, workloads, opts.engines, opts.rounds, opts.max_tokens, opts.threads,
                          -1 if opts.gpu else 0, blocked, progress)
            results["e2e"] = e2e.__dict__
        if "fast-forward" in opts.phases:
            from bench_fast_forward import measure as measure_fast_forward

            progress(f"fast-forward: generate.* with and without it on {opts.model.name}")
            json_tokens = opts.max_tokens if opts.quick else max(300, opts.max_tokens)
            results["fast_forward"] = measure_fast_forward(
                opts.model, workloads, opts.rounds, json_tokens, opts.threads,
                grammar_tokens=opts.max_tokens, progress=progress)
        if "startup" in opts.phases:
            from bench_startup import measure as measure_startup

            progress(f"start-up: fresh processes on {STARTUP_MODEL.name}, ours beside llguidance")
            results["startup"] = measure_startup(STARTUP_MODEL, opts.runs)
    finally:
        import shutil

        shutil.rmtree(cache_dir, ignore_errors=True)
    results["meta"]["seconds"] = time.perf_counter() - started
    results["meta"]["load_end"] = load_average()
    write_outputs(results, opts, workloads)
    print_targets(results, workloads)
    progress(f"report written to {opts.out}; plots and results.json in {opts.plots}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


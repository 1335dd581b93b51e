"""End-to-end runs for ``benchmarks/bench.py``: ``Llama.create_completion`` with each engine's constraint.

Method (the one ``bench_regex.py`` introduced, extended to every engine):

- every call reuses the cached prompt (llama-cpp-python re-decodes only its last token), so a call is
  ``steps`` × (one 1-token decode + one sample) plus a fixed overhead; steps = completion tokens, plus
  one when generation stopped on an end-of-generation token (sampled but not counted in ``usage``);
- each round has two unconstrained calls of ``max_tokens`` and 2 tokens, from which the fixed per-call
  overhead is fitted (not 1 token: that leaves exactly the prompt's logits cached and makes the next
  call skip its prompt decode); per-token time = (wall − overhead) / steps;
- random-weight models stop early under a constraint, so every workload also gets, in every round, an
  unconstrained call of exactly as many steps as ours takes with that round's seed (found by an untimed
  pre-pass): the ratio of an engine to unconstrained compares its per-token time with that call of the
  same round, and the median over rounds is reported;
- all calls of a round (the two floor calls, every engine on every workload, the same-length
  unconstrained calls) run round-robin, the order rotated by one each round; one untimed warm-up round
  comes first;
- the per-request work of each engine is inside the timed call: ours builds a new processor (a
  guide-cache hit), outlines resets its processor (as its ``Generator`` does), llguidance's and
  xgrammar's processors reset their matcher on the new prompt, llama.cpp parses the GBNF.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bench_engines import ENGINE_CLASSES, Engine
from bench_stats import Floor, fit_floor, median, paired
from bench_workloads import Workload

PROMPT = "The answer is: "
TEMPERATURE = 0.8
SHORT_TOKENS = 2
WARMUP_SEED = 999
FIRST_SEED = 1000


@dataclass
class Call:
    """One timed ``create_completion`` call."""

    seconds: float
    steps: int
    tokens: int
    finish: str
    text: str = ""
    verdict: str = ""  # "valid", "invalid: why", "truncated", or "" (unconstrained)
    failure: str = ""  # an error the engine's processor kept


@dataclass
class E2EResult:
    model: str = ""
    load_seconds: float = 0.0
    n_gpu_layers: int = 0
    gpu_offload: bool = False  # whether this llama-cpp-python build can offload at all
    threads: int = 0
    max_tokens: int = 0
    rounds: int = 0
    calls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "engine|workload" -> calls
    warmup: dict[str, dict[str, Any]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # "engine|workload" or "engine" -> why
    reference_engine: dict[str, str] = field(default_factory=dict)  # workload -> engine setting steps


def key(engine: str, workload: str) -> str:
    return f"{engine}|{workload}"


FLOOR_LONG, FLOOR_SHORT = "floor-long", "floor-short"


def completion(llm: Any, vocab: Any, max_tokens: int, seed: int,
               prepare: Callable[[], tuple[dict[str, Any], Any]] | None = None,
               engine: Engine | None = None, workload: Workload | None = None) -> Call:
    """One timed call; for a constrained one, the generated tokens are decoded exactly and checked."""
    t0 = time.perf_counter()
    kwargs, checked = prepare() if prepare is not None else ({}, None)
    result = llm.create_completion(PROMPT, max_tokens=max_tokens, temperature=TEMPERATURE, seed=seed,
                                   **kwargs)
    seconds = time.perf_counter() - t0
    usage = result["usage"]
    finish = str(result["choices"][0]["finish_reason"])
    tokens = int(usage["completion_tokens"])
    text = result["choices"][0]["text"]
    call = Call(seconds, tokens + (1 if finish == "stop" else 0), tokens, finish, text)
    if workload is None or engine is None:
        return call
    call.failure = engine.failure(checked) if checked is not None else ""
    if finish != "stop":
        call.verdict = "truncated"
        return call
    # every generated token was decoded into the context before the end-of-generation token was sampled
    ids = [int(t) for t in llm.input_ids[int(usage["prompt_tokens"]):llm.n_tokens]]
    try:
        text = vocab.decode(ids).decode("utf-8")
    except UnicodeDecodeError as exc:
        call.verdict = f"invalid: not UTF-8 ({exc})"
        return call
    call.text = text
    problem = workload.check(text)
    call.verdict = "valid" if problem is None else f"invalid: {problem}"
    return call


def run_e2e(model: Path, workloads: Sequence[Workload], engines: Sequence[str], rounds: int,
            max_tokens: int, threads: int, n_gpu_layers: int, blocked: dict[str, str],
            progress: Callable[[str], None]) -> E2EResult:
    """Interleaved rounds of every (engine, workload) call. ``blocked`` maps "engine|workload" (or an
    engine) to the reason it must not run here (it failed or crashed in a worker process)."""
    from llama_cpp import Llama, llama_supports_gpu_offload

    from outlines_gguf import Vocabulary

    out = E2EResult(model=model.name, n_gpu_layers=n_gpu_layers, threads=threads, max_tokens=max_tokens,
                    rounds=rounds, gpu_offload=bool(llama_supports_gpu_offload()))
    t0 = time.perf_counter()
    llm = Llama(str(model), n_ctx=max(512, max_tokens + 64), n_threads=threads, n_threads_batch=threads,
                n_batch=512, n_gpu_layers=n_gpu_layers, seed=1, verbose=False)
    out.load_seconds = time.perf_counter() - t0
    vocab = Vocabulary.from_gguf(model)

    live: dict[str, Engine] = {}
    for name in engines:
        if name in blocked:
            out.unavailable[name] = blocked[name]
            continue
        try:
            live[name] = ENGINE_CLASSES[name](model, llm)
        except Exception as exc:
            out.unavailable[name] = f"setup failed: {type(exc).__name__}: {exc}"[:300]
    built: dict[str, Any] = {}
    for w in workloads:
        for name, engine in live.items():
            k = key(name, w.name)
            reason = engine.unsupported(w) or blocked.get(k)
            if reason is not None:
                out.unavailable[k] = reason
                continue
            try:
                built[k] = engine.build(w)
            except Exception as exc:
                out.unavailable[k] = f"build failed: {type(exc).__name__}: {exc}"[:300]

    def constrained(name: str, w: Workload, seed: int) -> Call:
        engine, b = live[name], built[key(name, w.name)]
        return completion(llm, vocab, max_tokens, seed, lambda: engine.completion_kwargs(w, b), engine, w)

    def reference(w: Workload) -> str | None:
        for name in ("ours", *live):
            if name in live and key(name, w.name) in built:
                return name
        return None

    for w in workloads:
        ref = reference(w)
        if ref is not None:
            out.reference_engine[w.name] = ref

    tasks: list[tuple[str, Workload | None]] = [(FLOOR_LONG, None), (FLOOR_SHORT, None)]
    for w in workloads:
        names = [n for n in live if key(n, w.name) in built]
        tasks += [(n, w) for n in names]
        if names:
            tasks.append(("unconstrained", w))

    def run_round(seed: int, record: Callable[[str, Call], None]) -> None:
        steps = {w.name: constrained(out.reference_engine[w.name], w, seed).steps
                 for w in workloads if w.name in out.reference_engine}
        shift = (seed - FIRST_SEED) % len(tasks) if seed >= FIRST_SEED else 0
        for name, w in tasks[shift:] + tasks[:shift]:
            if name == FLOOR_LONG:
                record(key("unconstrained", FLOOR_LONG), completion(llm, vocab, max_tokens, seed))
            elif name == FLOOR_SHORT:
                record(key("unconstrained", FLOOR_SHORT), completion(llm, vocab, SHORT_TOKENS, seed))
            elif name == "unconstrained":
                assert w is not None
                n = max(SHORT_TOKENS, steps[w.name])
                record(key("unconstrained", w.name), completion(llm, vocab, n, seed))
            else:
                assert w is not None
                record(key(name, w.name), constrained(name, w, seed))

    def keep_warmup(k: str, call: Call) -> None:
        out.warmup[k] = call.__dict__

    def keep(k: str, call: Call) -> None:
        out.calls.setdefault(k, []).append(call.__dict__)

    run_round(WARMUP_SEED, keep_warmup)
    progress("end to end: warm-up round done")
    for r in range(rounds):
        run_round(FIRST_SEED + r, keep)
        progress(f"end to end: round {r + 1}/{rounds} done")
    llm.close()
    return out


# -- figures ---------------------------------------------------------------------------------------


def floor_of(result: E2EResult) -> Floor:
    """The unconstrained floor of ``result`` (``bench_stats.fit_floor`` on its floor calls)."""
    long = result.calls.get(key("unconstrained", FLOOR_LONG), [])
    short = result.calls.get(key("unconstrained", FLOOR_SHORT), [])
    return fit_floor(timings(long), timings(short))


def timings(calls: Sequence[dict[str, Any]]) -> list[tuple[float, int]]:
    """(seconds, steps) of recorded calls."""
    return [(c["seconds"], c["steps"]) for c in calls]


def step_time(call: dict[str, Any], floor: Floor) -> float:
    return floor.step_time(call["seconds"], call["steps"])


@dataclass
class EngineFigures:
    """One engine on one workload, over the timed rounds."""

    calls: int = 0
    steps: float = float("nan")
    per_token: float = float("nan")
    tokens_per_s: float = float("nan")
    ratio: float = float("nan")  # unconstrained per-token time / this engine's (paired by round)
    overhead: float = float("nan")  # per token, engine − unconstrained (paired)
    valid: int = 0
    invalid: int = 0
    truncated: int = 0
    failures: int = 0
    invalid_examples: list[str] = field(default_factory=list)


def engine_figures(result: E2EResult, engine: str, workload: str, floor: Floor) -> EngineFigures | None:
    calls = result.calls.get(key(engine, workload))
    if not calls:
        return None
    base = result.calls.get(key("unconstrained", workload), [])
    f = EngineFigures(calls=len(calls))
    f.steps = median([c["steps"] for c in calls])
    f.per_token = median([step_time(c, floor) for c in calls])
    f.tokens_per_s = 1.0 / f.per_token if f.per_token > 0 else float("nan")
    if engine != "unconstrained" and base:
        f.ratio, f.overhead = paired(timings(calls), timings(base), floor)
    warm = result.warmup.get(key(engine, workload))
    for c in [*calls, *([warm] if warm else [])]:
        verdict = c.get("verdict", "")
        if verdict == "valid":
            f.valid += 1
        elif verdict == "truncated":
            f.truncated += 1
        elif verdict.startswith("invalid"):
            f.invalid += 1
            if len(f.invalid_examples) < 3:
                f.invalid_examples.append(f"{c['text'][:120]!r}: {verdict[:160]}")
        if c.get("failure"):
            f.failures += 1
    return f


def floor_figures(result: E2EResult, floor: Floor) -> dict[str, float]:
    long = result.calls.get(key("unconstrained", FLOOR_LONG), [])
    return {"per_step": floor.per_step, "overhead": floor.overhead,
            "tokens_per_s": 1.0 / floor.per_step if floor.per_step > 0 else float("nan"),
            "steps": median([c["steps"] for c in long]), "wall": median([c["seconds"] for c in long])}


def identical_share(result: E2EResult, a: str, b: str, workload: str) -> tuple[int, int]:
    """(same text, pairs) over same-seed calls of engines ``a`` and ``b``."""
    xs, ys = result.calls.get(key(a, workload), []), result.calls.get(key(b, workload), [])
    pairs = list(zip(xs, ys, strict=False))
    return sum(x["text"] == y["text"] for x, y in pairs), len(pairs)


def nan_to_none(value: float) -> float | None:
    return None if value != value or np.isinf(value) else value

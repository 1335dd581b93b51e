"""Benchmark regex-constrained generation on the Qwen2 vocabulary (152k tokens), side by side.

Engines: ours (``outlines_gguf.RegexLogitsProcessor``), outlines-core (``Index`` / ``Guide``),
llama.cpp's GBNF grammar sampler (``llama_cpp.LlamaGrammar``) and unconstrained llama.cpp (the floor).
Figures: vocabulary load time, construction time (cold and warm), per-token mask time with the
processor called directly the way llama-cpp-python calls it, end-to-end tokens/s through
``Llama.create_completion`` on ``models/realistic-qwen2.gguf``, and validity of every constrained output.

Run from the repository root (the test models come from ``scripts/build_test_models.py``)::

    .venv/bin/pip install outlines-core          # optional: the outlines-core columns
    .venv/bin/python benchmarks/bench_regex.py --out /tmp/bench_regex.md
    .venv/bin/python benchmarks/bench_regex.py --quick --skip-e2e --engines ours,gbnf

Timings are medians over several interleaved runs: the absolute numbers depend on the machine and on
whatever else runs on it, so compare columns of one report, not reports of different runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import (
    cpu_model,
    fmt_ratio,
    fmt_time,
    git_revision,
    load_average,
    make_cold,
    package_version,
    table,
    timed,
)
from bench_engines import (
    OursRegexStepper,
    OutlinesCoreBitmaskStepper,
    OutlinesCoreListStepper,
    RegexStepper,
    import_outlines_core,
    llama_like_scores,
    load_vocab_only,
    outlines_core_vocabulary,
)
from bench_stats import Floor, fit_floor, median, paired, percentile

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import outlines_gguf  # noqa: E402
from outlines_gguf import RegexLogitsProcessor, Vocabulary  # noqa: E402

VOCAB_GGUF = REPO / "models" / "vocab" / "ggml-vocab-qwen2.gguf"
REALISTIC_GGUF = REPO / "models" / "realistic-qwen2.gguf"
TINY_GGUF = REPO / "models" / "tiny-qwen2.gguf"
ALL_ENGINES = ("ours", "outlines-core", "gbnf")

WORDS = (
    "apple", "banana", "cherry", "dragon", "eagle", "falcon", "guitar", "harbor", "island", "jungle",
    "kettle", "lemon", "marble", "nectar", "orange", "pepper", "quartz", "raven", "salmon", "tiger",
    "umbrella", "violet", "walnut", "window", "yellow", "zebra", "anchor", "bridge", "candle", "desert",
)  # fmt: skip


@dataclass(frozen=True)
class Pattern:
    """A benchmark constraint: a regex and a hand-written GBNF grammar for the same language."""

    name: str
    regex: str
    gbnf: str


PATTERNS = (
    Pattern("year", r"[0-9]{4}", "root ::= [0-9]{4}"),
    Pattern("phone", r"\+?[1-9][0-9]{7,14}", 'root ::= "+"? [1-9] [0-9]{7,14}'),
    Pattern(
        "email",
        r"[a-z0-9._%+-]{1,20}@[a-z0-9-]{1,15}\.(?:com|org|net|io)",
        'root ::= [a-z0-9._%+-]{1,20} "@" [a-z0-9-]{1,15} "." ("com" | "org" | "net" | "io")',
    ),
    Pattern(
        "words",
        "(?:" + "|".join(WORDS) + ")",
        "root ::= " + " | ".join(f'"{w}"' for w in WORDS),
    ),
)

MICRO_MAX_TOKENS = 64
E2E_PROMPT = "The answer is: "
E2E_MAX_TOKENS = 32
E2E_SHORT_TOKENS = 2
"""The short floor call. Not 1: a call that samples one token and stops leaves exactly the prompt's
logits cached, and llama-cpp-python then skips the next call's prompt decode, which would make whatever
call comes next look one decode faster."""
E2E_TEMPERATURE = 0.8


# -- small helpers ---------------------------------------------------------------------------------


_T0 = time.perf_counter()


def progress(message: str) -> None:
    print(f"[bench {time.perf_counter() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def fully_matches(pattern: str, data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return re.fullmatch(pattern, text) is not None


# -- environment -------------------------------------------------------------------------------------


def environment_section(argv: Sequence[str]) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = [
        ("CPU", f"{cpu_model()}, {cores} cores usable ({os.cpu_count()} online)"),
        ("OS", platform.platform()),
        ("python", platform.python_version()),
        ("numpy", np.__version__),
        ("llama-cpp-python", package_version("llama_cpp_python")),
        ("outlines-core", package_version("outlines-core")),
        ("outlines-gguf", f"{outlines_gguf.__version__} (git {git_revision(REPO)})"),
        ("command", "`" + " ".join(shlex.quote(a) for a in [sys.executable, sys.argv[0], *argv]) + "`"),
    ]
    return "## Machine and versions\n\n" + table(["", ""], rows)


# -- options --------------------------------------------------------------------------------------


@dataclass
class Options:
    out: Path
    runs: int
    e2e_rounds: int
    quick: bool
    skip_e2e: bool
    engines: tuple[str, ...]
    model: Path
    argv: list[str] = field(default_factory=list)


def parse_options(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_regex.md"), help="report path")
    parser.add_argument("--runs", type=int, default=None, help="runs per construction/per-token figure (5)")
    parser.add_argument("--e2e-rounds", type=int, default=None,
                        help="interleaved end-to-end rounds (default 3 x runs, at least 5; 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="2 runs, tiny model for end-to-end")
    parser.add_argument("--skip-e2e", action="store_true", help="skip the end-to-end llama.cpp runs")
    parser.add_argument("--engines", default=",".join(ALL_ENGINES),
                        help=f"comma-separated subset of {','.join(ALL_ENGINES)}")
    args = parser.parse_args(argv)
    engines = tuple(e.strip() for e in args.engines.split(",") if e.strip())
    unknown = [e for e in engines if e not in ALL_ENGINES]
    if unknown:
        parser.error(f"unknown engine(s) {unknown}; choose from {ALL_ENGINES}")
    runs = args.runs if args.runs is not None else (2 if args.quick else 5)
    rounds = args.e2e_rounds if args.e2e_rounds is not None else (2 if args.quick else max(5, 3 * runs))
    return Options(
        out=args.out,
        runs=max(1, runs),
        e2e_rounds=max(1, rounds),
        quick=args.quick,
        skip_e2e=args.skip_e2e,
        engines=engines,
        model=TINY_GGUF if args.quick else REALISTIC_GGUF,
        argv=list(argv),
    )


# -- outlines-core ------------------------------------------------------------------------------


def outlines_core_note(vocab: Vocabulary) -> str:
    emittable = [t for i, t in enumerate(vocab.tokens) if i not in vocab.special_ids]
    not_utf8 = 0
    for token in emittable:
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            not_utf8 += 1
    return (
        f"outlines-core gets the same {len(emittable)} emittable tokens as ours, keyed by their exact bytes: "
        f"{not_utf8} of them are not valid UTF-8 on their own (byte pieces of multi-byte characters) and "
        "are passed as `bytes` keys, which outlines-core accepts, so no token was dropped or altered. "
        f"It knows one EOS id ({vocab.eos_id}) where ours allows every end-of-generation id "
        f"{sorted(vocab.eog_ids)}; the special/control ids are left out of its map."
    )


# -- vocabulary load ---------------------------------------------------------------------------


@dataclass
class VocabFigures:
    from_gguf: list[float] = field(default_factory=list)
    from_llama: list[float] = field(default_factory=list)
    llama_vocab_only_load: list[float] = field(default_factory=list)
    trie: list[float] = field(default_factory=list)
    hash: list[float] = field(default_factory=list)
    first_mask: list[float] = field(default_factory=list)
    oc_vocabulary: list[float] = field(default_factory=list)
    n_tokens: int = 0
    n_trie_nodes: int = 0


def measure_vocabulary(runs: int, oc: Any | None) -> tuple[VocabFigures, Vocabulary, Any]:
    """Time Vocabulary.from_gguf / from_llama, the trie and hash; return the vocabulary and a
    vocab-only Llama (used for GBNF parse timing)."""
    figs = VocabFigures()
    vocab: Vocabulary | None = None
    llm: Any = None
    for _ in range(runs):
        dt, vocab = timed(lambda: Vocabulary.from_gguf(VOCAB_GGUF))
        figs.from_gguf.append(dt)
        dt, _ = timed(lambda v=vocab: v.trie)
        figs.trie.append(dt)
        dt, _ = timed(lambda v=vocab: v.hash)
        figs.hash.append(dt)
        make_cold(vocab)  # the guide cache is keyed by the vocabulary's hash, the same every run
        dt, _ = timed(lambda v=vocab: RegexLogitsProcessor(r"[0-9]", v).guide.mask(0))
        figs.first_mask.append(dt)
        dt, llm = timed(lambda: load_vocab_only(VOCAB_GGUF))
        figs.llama_vocab_only_load.append(dt)
        dt, _ = timed(lambda m=llm: Vocabulary.from_llama(m))
        figs.from_llama.append(dt)
        if oc is not None:
            dt, _ = timed(lambda v=vocab: outlines_core_vocabulary(oc, v))
            figs.oc_vocabulary.append(dt)
    assert vocab is not None
    figs.n_tokens = vocab.size
    figs.n_trie_nodes = vocab.trie.n_nodes
    return figs, vocab, llm


def vocabulary_section(figs: VocabFigures) -> str:
    rows = [
        ("`Vocabulary.from_gguf` (GGUF metadata, no weights)", figs.from_gguf),
        ("`Vocabulary.from_llama` (llama.cpp `token_to_piece` per id)", figs.from_llama),
        ("  (for reference: `Llama(vocab_only=True)` load, not included above)", figs.llama_vocab_only_load),
        ("token trie build (`vocab.trie`, once per vocabulary)", figs.trie),
        ("vocabulary hash (`vocab.hash`, once per vocabulary; guide-cache key)", figs.hash),
        ("first mask on a fresh vocabulary (`[0-9]`, state 0: builds the library's remaining "
         "per-vocabulary tables)", figs.first_mask),
        ("outlines-core `Vocabulary(eos, {bytes: [ids]})` from ours", figs.oc_vocabulary),
    ]
    body = table(["step", "median", "min", "max"],
                 [(name, fmt_time(median(v)), fmt_time(min(v)), fmt_time(max(v))) for name, v in rows if v])
    title = f"## Vocabulary load (Qwen2, {figs.n_tokens} tokens, trie {figs.n_trie_nodes} nodes)"
    return f"{title}\n\n{body}\n\nn = {len(figs.from_gguf)} runs each."


# -- construction --------------------------------------------------------------------------------


@dataclass
class MaskTimes:
    """Cold mask time of every DFA state, one entry per run."""

    seconds: dict[int, list[float]] = field(default_factory=dict)
    allowed: dict[int, int] = field(default_factory=dict)

    def add(self, state: int, seconds: float, allowed: int) -> None:
        self.seconds.setdefault(state, []).append(seconds)
        self.allowed[state] = allowed

    def slowest(self) -> tuple[int, float, float, int]:
        """(state, median seconds, max seconds, allowed tokens) of the state slowest in median."""
        state = max(self.seconds, key=lambda s: median(self.seconds[s]))
        times = self.seconds[state]
        return state, median(times), max(times), self.allowed[state]


@dataclass
class ConstructionFigures:
    ours_cold: list[float] = field(default_factory=list)
    ours_warm: list[float] = field(default_factory=list)
    ours_all_masks: list[float] = field(default_factory=list)
    oc_index: list[float] = field(default_factory=list)
    oc_guide: list[float] = field(default_factory=list)
    gbnf_from_string: list[float] = field(default_factory=list)
    gbnf_sampler_init: list[float] = field(default_factory=list)
    dfa_states: int = 0
    mask_times: MaskTimes = field(default_factory=MaskTimes)
    gbnf_error: str = ""


def ours_all_masks(pattern: str, vocab: Vocabulary, mask_times: MaskTimes) -> tuple[float, int]:
    """Cold construction plus the mask of every DFA state (what outlines-core's Index does eagerly).

    Returns (seconds, number of DFA states) and records each state's mask time in ``mask_times``.
    """
    make_cold(vocab)
    t0 = time.perf_counter()
    proc = RegexLogitsProcessor(pattern, vocab)
    guide = proc.guide
    for state in range(guide.dfa.n_states):
        t1 = time.perf_counter()
        mask = guide.mask(state)
        mask_times.add(state, time.perf_counter() - t1, mask.allowed_count)
    return time.perf_counter() - t0, guide.dfa.n_states


def gbnf_sampler_init(llm: Any, gbnf: str) -> float:
    """Seconds for llama.cpp to parse the grammar into a sampler (done once per generation)."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    t0 = time.perf_counter()
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
    dt = time.perf_counter() - t0
    if not sampler:
        raise ValueError(f"llama.cpp rejected the grammar {gbnf!r}")
    llama_cpp.llama_sampler_free(sampler)
    return dt


def measure_construction(
    pattern: Pattern, vocab: Vocabulary, runs: int, engines: Sequence[str], oc: Any | None,
    oc_vocab: Any | None, vocab_llm: Any,
) -> ConstructionFigures:
    """Cold and warm construction of each engine, interleaved run by run."""
    import llama_cpp

    figs = ConstructionFigures()
    for _ in range(runs):
        if "ours" in engines:
            make_cold(vocab)
            figs.ours_cold.append(timed(lambda: RegexLogitsProcessor(pattern.regex, vocab))[0])
            figs.ours_warm.append(timed(lambda: RegexLogitsProcessor(pattern.regex, vocab))[0])
            seconds, figs.dfa_states = ours_all_masks(pattern.regex, vocab, figs.mask_times)
            figs.ours_all_masks.append(seconds)
        if "outlines-core" in engines and oc is not None:
            dt, index = timed(lambda: oc.Index(pattern.regex, oc_vocab))
            figs.oc_index.append(dt)
            figs.oc_guide.append(timed(lambda i=index: oc.Guide(i))[0])
        if "gbnf" in engines:
            figs.gbnf_from_string.append(timed(lambda: llama_cpp.LlamaGrammar.from_string(pattern.gbnf))[0])
            try:
                figs.gbnf_sampler_init.append(gbnf_sampler_init(vocab_llm, pattern.gbnf))
            except ValueError as exc:
                figs.gbnf_error = str(exc)
    return figs


def construction_section(results: dict[str, ConstructionFigures], runs: int) -> str:
    header = ["pattern", "ours cold", "ours warm", "ours cold + all masks (states)",
              "outlines-core `Index` (cold)", "outlines-core `Guide(index)` (warm)",
              "`LlamaGrammar.from_string`", "llama.cpp grammar parse (per generation)"]
    rows = []
    for name, f in results.items():
        states = f" ({f.dfa_states})" if f.ours_all_masks else ""
        gbnf_parse = f.gbnf_error or fmt_time(median(f.gbnf_sampler_init))
        rows.append((f"`{name}`", fmt_time(median(f.ours_cold)), fmt_time(median(f.ours_warm)),
                     fmt_time(median(f.ours_all_masks)) + states, fmt_time(median(f.oc_index)),
                     fmt_time(median(f.oc_guide)), fmt_time(median(f.gbnf_from_string)), gbnf_parse))
    slow_rows = []
    for name, f in results.items():
        if f.ours_all_masks:
            state, med, worst, allowed = f.mask_times.slowest()
            slow_rows.append((f"`{name}`", str(state), fmt_time(med), fmt_time(worst), str(allowed)))
    text = (
        f"## Construction (median of {runs})\n\n" + table(header, rows) + "\n\n"
        "- *ours cold*: `RegexLogitsProcessor(pattern, vocab)` after `clear_guide_cache()`, "
        "`compile_regex.cache_clear()` and dropping the vocabulary's byte-class tries (regex → byte DFA → "
        "guide; masks are lazy; the vocabulary's own trie and hash are built already, see above). "
        "*warm*: the same call again (guide-cache hit).\n"
        "- *ours cold + all masks*: cold construction plus `guide.mask(s)` for every DFA state — the same "
        "work outlines-core's `Index` does eagerly.\n"
        "- outlines-core has no cache of its own: *warm* is what a caller who keeps the `Index` pays per "
        "request, `Guide(index)`.\n"
        "- `LlamaGrammar.from_string` only stores the string in llama-cpp-python 0.3.x; llama.cpp parses "
        "the GBNF in `llama_sampler_init_grammar`, which llama-cpp-python calls at the start of every "
        "generation (timed here directly on a vocab-only Qwen2 `Llama`)."
    )
    if slow_rows:
        text += ("\n\nSlowest single cold mask per pattern (ours, from the all-masks runs; the state "
                 "with the highest median):\n\n")
        text += table(["pattern", "DFA state", "median", "max over runs", "allowed tokens"], slow_rows)
    return text


# -- per-token mask time, called directly ----------------------------------------------------------


@dataclass
class StepTimes:
    """Per-call times of one engine, plus validity counts of the texts it produced."""

    seconds: list[float] = field(default_factory=list)
    calls_per_generation: list[int] = field(default_factory=list)
    valid: int = 0
    invalid: int = 0
    truncated: int = 0
    slowest: tuple[float, str] = (0.0, "")

    def add_call(self, seconds: float, state: str) -> None:
        self.seconds.append(seconds)
        if seconds > self.slowest[0]:
            self.slowest = (seconds, state)


def sample_generation(stepper: RegexStepper, vocab: Vocabulary, pattern: str, seed: int,
                      out: StepTimes) -> None:
    """Sample one generation with random logits through ``stepper``, timing only its ``apply``."""
    rng = np.random.default_rng(seed)
    records, view = llama_like_scores(vocab.size)
    stepper.start()
    generated: list[int] = []
    last: int | None = None
    calls = 0
    for _ in range(MICRO_MAX_TOKENS):
        records.logit[:] = rng.normal(0.0, 3.0, vocab.size).astype(np.float32)
        stepper.prepare(last)
        t0 = time.perf_counter()
        stepper.apply(view, last)
        seconds = time.perf_counter() - t0
        state = stepper.probe()
        out.add_call(seconds, state)
        calls += 1
        final = records.logit
        if not np.isfinite(final).any():
            raise RuntimeError(f"every token was masked (pattern {pattern!r}, state {state})")
        last = int(np.argmax(final + rng.gumbel(size=vocab.size).astype(np.float32)))
        if stepper.is_eog(last):
            break
        generated.append(last)
    else:
        out.truncated += 1
        out.calls_per_generation.append(calls)
        return
    out.calls_per_generation.append(calls)
    if fully_matches(pattern, vocab.decode(generated)):
        out.valid += 1
    else:
        out.invalid += 1


@dataclass
class PerTokenFigures:
    ours_cold: StepTimes = field(default_factory=StepTimes)
    ours_warm: StepTimes = field(default_factory=StepTimes)
    oc_list_cold: StepTimes = field(default_factory=StepTimes)
    oc_list_warm: StepTimes = field(default_factory=StepTimes)
    oc_bitmask_warm: StepTimes = field(default_factory=StepTimes)


def measure_per_token_ours(
    pattern: Pattern, vocab: Vocabulary, seeds: Sequence[int], figs: PerTokenFigures,
) -> None:
    """Cold: caches cleared before each seed's generation. Warm: the same seeds again, all masks cached."""
    for seed in seeds:
        make_cold(vocab)
        sample_generation(OursRegexStepper(pattern.regex, vocab), vocab, pattern.regex, seed, figs.ours_cold)
    stepper = OursRegexStepper(pattern.regex, vocab)
    for seed in seeds:  # make sure every state of these paths is cached
        sample_generation(stepper, vocab, pattern.regex, seed, StepTimes())
    for seed in seeds:
        sample_generation(stepper, vocab, pattern.regex, seed, figs.ours_warm)


def measure_per_token_oc(
    pattern: Pattern, vocab: Vocabulary, seeds: Sequence[int], oc: Any, oc_vocab: Any, figs: PerTokenFigures,
) -> None:
    """First generation on a freshly built Index (cold), then the same seeds again (warm)."""
    index = None
    for seed in seeds:
        index = oc.Index(pattern.regex, oc_vocab)
        stepper = OutlinesCoreListStepper(oc, index, vocab.eos_id)
        sample_generation(stepper, vocab, pattern.regex, seed, figs.oc_list_cold)
    list_stepper = OutlinesCoreListStepper(oc, index, vocab.eos_id)
    bitmask_stepper = OutlinesCoreBitmaskStepper(oc, index, vocab.eos_id, vocab.size)
    for seed in seeds:
        sample_generation(list_stepper, vocab, pattern.regex, seed, figs.oc_list_warm)
        sample_generation(bitmask_stepper, vocab, pattern.regex, seed, figs.oc_bitmask_warm)


def per_token_section(results: dict[str, PerTokenFigures], n_seeds: int) -> str:
    header = ["pattern", "engine", "phase", "calls", "median", "p99", "max (state)", "sum / generation",
              "valid / invalid / truncated"]
    rows = []
    for name, f in results.items():
        for engine, phase, st in (
            ("ours", "cold (1st generation)", f.ours_cold),
            ("ours", "warm", f.ours_warm),
            ("outlines-core list", "1st generation", f.oc_list_cold),
            ("outlines-core list", "warm", f.oc_list_warm),
            ("outlines-core bitmask", "warm", f.oc_bitmask_warm),
        ):
            if not st.seconds:
                continue
            per_gen = sum(st.seconds) / max(1, len(st.calls_per_generation))
            rows.append((f"`{name}`", engine, phase, str(len(st.seconds)), fmt_time(median(st.seconds)),
                         fmt_time(percentile(st.seconds, 99)),
                         f"{fmt_time(st.slowest[0])} ({st.slowest[1]})", fmt_time(per_gen),
                         f"{st.valid} / {st.invalid} / {st.truncated}"))
    return (
        f"## Per-token mask time, called directly ({n_seeds} generations per row)\n\n" + table(header, rows)
        + "\n\n"
        "Each call gets llama-cpp-python's arguments: `input_ids` = prompt + generated ids (`np.intc`), "
        "`scores` = the non-contiguous `logit` field of an aligned `id/logit/p` record array of 151,936 "
        "entries. Logits are random (N(0, 3)); the next token is sampled exactly (Gumbel-max) from the "
        f"masked scores; at most {MICRO_MAX_TOKENS} tokens. Only the engine's call is timed (sampling and "
        "building `input_ids` are not).\n"
        "- ours *cold*: guide, regex and byte-class-trie caches cleared before each generation, so every "
        "state's mask is computed on first use inside the call; *warm*: the same seeds again with every "
        "mask cached.\n"
        "- outlines-core *list*: `get_tokens()` / `advance(token)` (a Python list of ids), then "
        "`kept = scores[ids]; scores[:] = -inf; scores[ids] = kept`. *bitmask*: `advance(token, "
        "return_tokens=False)` + `write_mask_into` a 32-bit bitmask, `np.unpackbits`, "
        "`scores[~allowed] = -inf`. Its *1st generation* runs on an `Index` built just before "
        "(outlines-core computes every state when it builds the index, so it has no lazy phase).\n"
        "- *max (state)*: the slowest call and the guide state it was made in (our DFA state / "
        "outlines-core state id).\n"
        "- *valid*: the generation ended with an end-of-generation token and its text `re.fullmatch`es "
        "the regex; *truncated*: it reached the token limit first."
    )


# -- end to end through llama-cpp-python -----------------------------------------------------------


@dataclass
class CallRecord:
    seconds: float
    steps: int  # decode+sample steps: completion tokens, plus one when it stopped on EOG
    tokens: int
    finish_reason: str
    text: str


@dataclass(frozen=True)
class E2ETask:
    """One create_completion call of a round: an engine, its pattern (None: unconstrained) and a label."""

    engine: str  # "unconstrained", "ours" or "gbnf"
    label: str  # the pattern name; for unconstrained "32", "2" or "=<pattern>" (same length as it)
    pattern: Pattern | None = None


@dataclass
class E2EFigures:
    records: dict[tuple[str, str], list[CallRecord]] = field(default_factory=dict)
    warmup: dict[tuple[str, str], CallRecord] = field(default_factory=dict)
    model: str = ""
    load_seconds: float = 0.0


def run_completion(llm: Any, max_tokens: int, seed: int, **kwargs: Any) -> CallRecord:
    """One create_completion call on the (cached) prompt, timed."""
    t0 = time.perf_counter()
    result = llm.create_completion(E2E_PROMPT, max_tokens=max_tokens, temperature=E2E_TEMPERATURE,
                                   seed=seed, **kwargs)
    seconds = time.perf_counter() - t0
    tokens = int(result["usage"]["completion_tokens"])
    reason = str(result["choices"][0]["finish_reason"])
    return CallRecord(seconds, tokens + (1 if reason == "stop" else 0), tokens, reason,
                      result["choices"][0]["text"])


def e2e_tasks(engines: Sequence[str]) -> list[E2ETask]:
    """The calls of one round: the floor (32 and 1 tokens), and per pattern each constrained engine plus
    an unconstrained call of the same number of steps."""
    tasks = [E2ETask("unconstrained", str(E2E_MAX_TOKENS)), E2ETask("unconstrained", str(E2E_SHORT_TOKENS))]
    constrained = [engine for engine in ("ours", "gbnf") if engine in engines]
    for pattern in PATTERNS if constrained else ():
        tasks += [E2ETask(engine, pattern.name, pattern) for engine in constrained]
        tasks.append(E2ETask("unconstrained", "=" + pattern.name, pattern))
    return tasks


def run_e2e_task(llm: Any, task: E2ETask, seed: int, matched_steps: dict[str, int]) -> CallRecord:
    """Run one task; ``matched_steps`` gives the length of the same-length unconstrained calls."""
    from llama_cpp import LlamaGrammar, LogitsProcessorList

    if task.engine == "unconstrained":
        if task.pattern is None:
            return run_completion(llm, int(task.label), seed)
        return run_completion(llm, max(E2E_SHORT_TOKENS, matched_steps[task.pattern.name]), seed)
    assert task.pattern is not None
    if task.engine == "ours":
        # construction (a guide-cache hit) is part of each request, as in real use
        t0 = time.perf_counter()
        proc = RegexLogitsProcessor(task.pattern.regex, llm)
        build = time.perf_counter() - t0
        record = run_completion(llm, E2E_MAX_TOKENS, seed, logits_processor=LogitsProcessorList([proc]))
        proc.raise_if_failed()
        record.seconds += build
        return record
    return run_completion(llm, E2E_MAX_TOKENS, seed, grammar=LlamaGrammar.from_string(task.pattern.gbnf))


def constrained_steps(llm: Any, engines: Sequence[str], seed: int) -> dict[str, int]:
    """Steps each pattern's constrained generation takes with ``seed`` (untimed pre-pass).

    Ours and GBNF allow the same tokens, so with the same seed they make the same choices; the
    same-length unconstrained call then does exactly as many decode+sample steps.
    """
    if "ours" not in engines and "gbnf" not in engines:
        return {}
    engine = "ours" if "ours" in engines else "gbnf"
    return {p.name: run_e2e_task(llm, E2ETask(engine, p.name, p), seed, {}).steps for p in PATTERNS}


def measure_e2e(model: Path, rounds: int, engines: Sequence[str]) -> E2EFigures:
    """Interleaved rounds of every task, the order rotated each round; one warm-up round first."""
    from llama_cpp import Llama

    figs = E2EFigures(model=model.name)
    figs.load_seconds, llm = timed(lambda: Llama(str(model), n_ctx=512, n_threads=2, n_batch=512,
                                                 seed=1, verbose=False))
    RegexLogitsProcessor(PATTERNS[0].regex, llm)  # reads the vocabulary from llama.cpp once
    tasks = e2e_tasks(engines)
    steps = constrained_steps(llm, engines, seed=999)
    for task in tasks:
        figs.warmup[(task.engine, task.label)] = run_e2e_task(llm, task, 999, steps)
    for r in range(rounds):
        seed = 1000 + r
        steps = constrained_steps(llm, engines, seed)
        shift = r % len(tasks)
        for task in tasks[shift:] + tasks[:shift]:
            record = run_e2e_task(llm, task, seed, steps)
            figs.records.setdefault((task.engine, task.label), []).append(record)
        progress(f"e2e round {r + 1}/{rounds} done")
    return figs


def timings(records: Sequence[CallRecord]) -> list[tuple[float, int]]:
    """(seconds, steps) of recorded calls."""
    return [(r.seconds, r.steps) for r in records]


def e2e_floor(figs: E2EFigures) -> Floor:
    """The unconstrained floor (``bench_stats.fit_floor``) from the paired long and short calls."""
    long = figs.records[("unconstrained", str(E2E_MAX_TOKENS))]
    short = figs.records[("unconstrained", str(E2E_SHORT_TOKENS))]
    return fit_floor(timings(long), timings(short))


def step_time(record: CallRecord, floor: Floor) -> float:
    """One call's per-step time, the fixed per-call overhead taken out."""
    return floor.step_time(record.seconds, record.steps)


def validity(records: Iterable[CallRecord], regex: str) -> tuple[int, int, int]:
    """(valid, invalid, truncated) over calls: truncated = stopped by max_tokens before EOG."""
    valid = invalid = truncated = 0
    for r in records:
        if r.finish_reason != "stop":
            truncated += 1
        elif re.fullmatch(regex, r.text):
            valid += 1
        else:
            invalid += 1
    return valid, invalid, truncated


def e2e_rows(figs: E2EFigures, floor: Floor) -> list[tuple[str, ...]]:
    unc = figs.records[("unconstrained", str(E2E_MAX_TOKENS))]
    rows: list[tuple[str, ...]] = [
        ("–", f"unconstrained, {E2E_MAX_TOKENS} tokens", str(int(median([r.steps for r in unc]))),
         fmt_time(median([r.seconds for r in unc])), fmt_time(floor.per_step), f"{1 / floor.per_step:.1f}",
         "", "", "")
    ]
    for pattern in PATTERNS:
        base = figs.records.get(("unconstrained", "=" + pattern.name))
        if not base:
            continue
        base_step = median([step_time(r, floor) for r in base])
        rows.append((f"`{pattern.name}`", "unconstrained, same length",
                     str(int(median([r.steps for r in base]))),
                     fmt_time(median([r.seconds for r in base])), fmt_time(base_step),
                     f"{1 / base_step:.1f}", "1.00×", "–", "–"))
        for engine in ("ours", "gbnf"):
            records = figs.records.get((engine, pattern.name))
            if not records:
                continue
            step = median([step_time(r, floor) for r in records])
            ratio, extra = paired(timings(records), timings(base), floor)
            v, bad, trunc = validity([*records, figs.warmup[(engine, pattern.name)]], pattern.regex)
            rows.append((f"`{pattern.name}`", engine, str(int(median([r.steps for r in records]))),
                         fmt_time(median([r.seconds for r in records])), fmt_time(step), f"{1 / step:.1f}",
                         fmt_ratio(ratio), fmt_time(extra), f"{v} / {bad} / {trunc}"))
    return rows


def identical_outputs(figs: E2EFigures) -> tuple[int, int]:
    """(same text, pairs) over same-seed ours/GBNF calls."""
    same = pairs = 0
    for p in PATTERNS:
        ours, gbnf = figs.records.get(("ours", p.name), []), figs.records.get(("gbnf", p.name), [])
        for a, b in zip(ours, gbnf, strict=False):
            pairs += 1
            same += a.text == b.text
    return same, pairs


def e2e_section(figs: E2EFigures, rounds: int) -> str:
    floor = e2e_floor(figs)
    header = ["pattern", "engine", "steps (median)", "wall / call (median)", "per token", "tokens/s",
              "vs unconstrained (paired)", "overhead / token (paired)", "valid / invalid / truncated"]
    same, pairs = identical_outputs(figs)
    examples = table(["pattern", "engine", "text (warm-up call, seed 999)"],
                     [(f"`{name}`", engine, f"`{rec.text!r}`") for (engine, name), rec in figs.warmup.items()
                      if engine != "unconstrained"])
    return (
        f"## End to end: `create_completion` on `{figs.model}` ({rounds} interleaved rounds, medians)\n\n"
        f"Model load {fmt_time(figs.load_seconds)}; n_ctx 512, n_threads 2, temperature "
        f"{E2E_TEMPERATURE}, max_tokens {E2E_MAX_TOKENS}, prompt {E2E_PROMPT!r}, seed 1000 + round "
        "(the same seed for every call of a round).\n\n" + table(header, e2e_rows(figs, floor)) + "\n\n"
        "How it is computed:\n"
        "- Every call reuses the cached prompt (llama-cpp-python re-decodes only its last token), so a call "
        "is `steps` × (one 1-token decode + one sample) plus a fixed overhead. steps = completion tokens "
        "(`usage.completion_tokens`), plus one when generation stopped on an end-of-generation token (that "
        "token is sampled but not counted in `usage`).\n"
        f"- The fixed overhead comes from paired unconstrained calls of max_tokens {E2E_MAX_TOKENS} and "
        f"{E2E_SHORT_TOKENS} in each round: {fmt_time(floor.overhead)} per call (per-step "
        f"{fmt_time(floor.per_step)}). The short call is not max_tokens 1: that leaves exactly the prompt's "
        "logits cached, so llama-cpp-python skips the *next* call's prompt decode and that call looks one "
        "decode faster (a 5-step call by ~20%). "
        "*per token* = (wall − overhead) / steps; *tokens/s* = 1 / per token.\n"
        "- Random-weight models stop early under a constraint (a few steps per call), so each pattern also "
        "gets an *unconstrained, same length* call in every round: same seed, max_tokens = the steps the "
        "constrained generation takes with that seed (found by an untimed pre-pass). *vs unconstrained* "
        "and *overhead / token* compare each constrained call with that call of its own round (median "
        "over rounds), which cancels most of the machine's drift; the 32-token row is the long-run floor.\n"
        "- GBNF's per-generation grammar parse and our per-request processor construction (a guide-cache "
        "hit) are inside the timed calls. Our first (cold-mask) generation is in the untimed warm-up.\n"
        f"- Ours and GBNF produced the identical text in {same} of {pairs} same-seed pairs (same model, "
        "same sampler chain, same allowed set ⇒ same sample).\n\nWarm-up outputs:\n\n" + examples
    )


# -- the report ------------------------------------------------------------------------------------


def patterns_section() -> str:
    rows = [(f"`{p.name}`", f"`{p.regex}`", str(len(p.regex)), f"`{p.gbnf}`") for p in PATTERNS]
    return "## Patterns\n\n" + table(["name", "regex", "chars", "GBNF (llama.cpp)"], rows)


def run_benchmark(opts: Options) -> str:
    """Run every measurement the options ask for and return the Markdown report."""
    started = time.perf_counter()
    load_at_start = load_average()
    oc = import_outlines_core() if "outlines-core" in opts.engines else None
    sections = [f"# Regex-constrained generation benchmark ({time.strftime('%Y-%m-%d %H:%M')})",
                environment_section(opts.argv), patterns_section()]
    notes: list[str] = []
    if "outlines-core" in opts.engines and oc is None:
        notes.append("outlines-core is not installed (`pip install outlines-core`): its columns are empty.")

    progress("vocabulary load")
    vocab_figs, vocab, vocab_llm = measure_vocabulary(opts.runs, oc)
    sections.append(vocabulary_section(vocab_figs))
    oc_vocab = outlines_core_vocabulary(oc, vocab) if oc is not None else None

    construction: dict[str, ConstructionFigures] = {}
    per_token: dict[str, PerTokenFigures] = {}
    seeds = list(range(opts.runs))
    for pattern in PATTERNS:
        progress(f"construction: {pattern.name}")
        construction[pattern.name] = measure_construction(
            pattern, vocab, opts.runs, opts.engines, oc, oc_vocab, vocab_llm)
        progress(f"per-token: {pattern.name}")
        figs = per_token[pattern.name] = PerTokenFigures()
        if "ours" in opts.engines:
            measure_per_token_ours(pattern, vocab, seeds, figs)
        if oc is not None:
            measure_per_token_oc(pattern, vocab, seeds, oc, oc_vocab, figs)
    sections.append(construction_section(construction, opts.runs))
    if "ours" in opts.engines or oc is not None:
        sections.append(per_token_section(per_token, len(seeds)))

    if opts.skip_e2e:
        notes.append("End-to-end runs skipped (`--skip-e2e`).")
    elif not opts.model.exists():
        notes.append(f"End-to-end runs skipped: {opts.model} is missing (build it with "
                     "`python scripts/build_test_models.py --realistic --only realistic-qwen2`).")
    else:
        progress(f"end to end on {opts.model.name}")
        sections.append(e2e_section(measure_e2e(opts.model, opts.e2e_rounds, opts.engines), opts.e2e_rounds))

    if oc is not None:
        notes.append(outlines_core_note(vocab))
    notes.append(f"Total benchmark time {fmt_time(time.perf_counter() - started)}; load average (1/5/15 min) "
                 f"{load_at_start} at the start, {load_average()} at the end (other work on the machine "
                 "inflates every figure, llama.cpp's most).")
    sections.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes))
    return "\n\n".join(sections) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_options(sys.argv[1:] if argv is None else argv)
    report = run_benchmark(opts)
    print(report)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(report)
    progress(f"report written to {opts.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

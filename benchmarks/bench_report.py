"""BENCHMARKS.md, the plots and the Targets section of ``benchmarks/bench.py``, from its raw results."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_common import fmt_ratio, fmt_time, table
from bench_e2e import (
    FLOOR_LONG,
    PROMPT,
    SHORT_TOKENS,
    TEMPERATURE,
    E2EResult,
    EngineFigures,
    engine_figures,
    floor_figures,
    floor_of,
    identical_share,
    key,
)
from bench_engines import ENGINES, LABELS, LLGUIDANCE_JSON_OPTIONS
from bench_stats import median, percentile
from bench_workloads import GRAMMAR, JSON, REGEX, Workload

VOCAB_TITLES = {"llama-spm": "Llama-2 32k", "llama-bpe": "Llama-3 128k", "qwen2": "Qwen2 152k"}
NA = "n/a"


def fmt_mib(n_bytes: float) -> str:
    return "–" if n_bytes != n_bytes else f"{n_bytes / 2**20:.1f} MiB"


# -- construction and per-token figures ----------------------------------------------------------------


@dataclass
class Cell:
    """One engine on one workload and vocabulary: medians over runs, or why there are none."""

    status: str = ""  # "" measured, else the reason (n/a or failure)
    na: bool = False
    cold: float = float("nan")
    warm: float = float("nan")
    disk: float = float("nan")
    first_mask: float = float("nan")  # cold construction + the first processor call
    first_median: float = float("nan")
    first_p99: float = float("nan")
    warm_median: float = float("nan")
    warm_p99: float = float("nan")
    inner_median: float = float("nan")
    calls: int = 0
    replay_problem: str = ""
    runs: int = 0


def cell_of(raw: dict[str, Any] | None) -> Cell:
    c = Cell()
    if raw is None:
        return Cell(status="not run", na=True)
    if raw.get("unsupported"):
        return Cell(status=raw["unsupported"], na=True)
    runs = [r for r in raw.get("runs", []) if "cold" in r]
    if raw.get("failure") and not runs:
        return Cell(status=raw["failure"])
    c.runs = len(runs)
    c.cold = median([r["cold"] for r in runs])
    c.warm = median([r["warm"] for r in runs if "warm" in r])
    c.disk = median([r["disk"] for r in runs if "disk" in r])
    firsts = [r["first"] for r in runs if r.get("first")]
    agains = [r["again"] for r in runs if r.get("again")]
    c.first_mask = median([r["cold"] + r["first"]["seconds"][0] for r in runs
                           if r.get("first", {}).get("seconds")])
    first_calls = [s for f in firsts for s in f["seconds"]]
    warm_calls = [s for a in agains for s in a["seconds"]]
    inner = [s for a in agains for s in a.get("inner", [])]
    c.first_median, c.first_p99 = median(first_calls), percentile(first_calls, 99)
    c.warm_median, c.warm_p99 = median(warm_calls), percentile(warm_calls, 99)
    c.inner_median = median(inner)
    c.calls = len(warm_calls)
    problems = []
    for f in firsts + agains:
        if f.get("error"):
            problems.append(f["error"])
        elif f.get("rejected_at") is not None:
            problems.append(f"refused reference token #{f['rejected_at']}")
        elif not f.get("end_allowed"):
            problems.append("end of generation not allowed after the reference")
    c.replay_problem = problems[0] if problems else ""
    if raw.get("failure"):
        c.replay_problem = (c.replay_problem + "; " if c.replay_problem else "") + raw["failure"]
    return c


def reference_length(results: dict[str, Any], vocab: str, workload: str) -> int:
    """Tokens of the reference document (as ours gets it; GBNF's JSON key order may differ by a token)."""
    by_engine = results["construction"][vocab]["tokens"][workload]
    return len(by_engine.get("ours") or next(iter(by_engine.values())))


def cells(results: dict[str, Any], vocab: str) -> dict[str, dict[str, Cell]]:
    raw = results["construction"].get(vocab, {}).get("cells", {})
    return {w: {e: cell_of(raw[w].get(e)) for e in ENGINES if e in raw[w]} for w in raw}


def engines_in(results: dict[str, Any]) -> list[str]:
    return [e for e in ENGINES if e in results["options"]["engines"]]


class Footnotes:
    """n/a and failure reasons, numbered under a table."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def mark(self, text: str, reason: str, na: bool) -> str:
        note = f"{'n/a' if na else 'failed'}: {reason}"
        if note not in self.items:
            self.items.append(note)
        return f"{text} [{self.items.index(note) + 1}]"

    def render(self) -> str:
        return "\n".join(f"[{i + 1}] {text}" for i, text in enumerate(self.items))


def value_or_reason(cell: Cell | None, text: str, notes: Footnotes) -> str:
    if cell is None:
        return "–"
    if cell.status:
        return notes.mark(NA if cell.na else "failed", cell.status, cell.na)
    return text


def grid(results: dict[str, Any], vocab: str, workloads: Sequence[Workload],
         fmt: Any) -> tuple[str, Footnotes]:
    """Workloads × engines, each cell ``fmt(cell)``."""
    engines = engines_in(results)
    data = cells(results, vocab)
    notes = Footnotes()
    rows = []
    for w in workloads:
        row = [f"`{w.name}`"]
        for e in engines:
            c = data.get(w.name, {}).get(e)
            row.append(value_or_reason(c, fmt(c) if c is not None and not c.status else "", notes))
        rows.append(row)
    return table(["workload", *[LABELS[e] for e in engines]], rows), notes


def with_notes(text: str, notes: Footnotes) -> str:
    return text + ("\n\n" + notes.render() if notes.items else "")


def construction_section(results: dict[str, Any], workloads: Sequence[Workload], plot: str | None) -> str:
    parts = ["## Construction", (
        "*Cold*: the constraint built from its text with every cache of the engine emptied first "
        "(ours: guide, regex/schema/grammar and on-disk automaton caches; xgrammar: its compiler cache; "
        "outlines, llguidance and GBNF keep none between builds), in a long-running process: one-time "
        "initialisation of a library is paid in its first run only, and medians leave it out (see "
        "*first in a fresh process* under Memory for that). *Warm*: the same build again. *First "
        "mask*: cold + the first processor call, i.e. until the first token can be sampled (ours and "
        "llguidance compute masks lazily, outlines-core's `Index` computes all of them at build time). "
        "Medians of the runs.")]
    if plot:
        parts.append(f"![Cold construction time]({plot})")
    for vocab in results["construction"]:
        title = VOCAB_TITLES.get(vocab, vocab)
        cold, n1 = grid(results, vocab, workloads, lambda c: fmt_time(c.cold))
        warm, n2 = grid(results, vocab, workloads, lambda c: fmt_time(c.warm))
        first, n3 = grid(results, vocab, workloads, lambda c: fmt_time(c.first_mask))
        parts += [f"### {title}: cold", with_notes(cold, n1), f"### {title}: warm", with_notes(warm, n2),
                  f"### {title}: first mask (cold construction + first call)", with_notes(first, n3)]
        disk = [(f"`{w}`", fmt_time(c["ours"].disk)) for w, c in cells(results, vocab).items()
                if "ours" in c and c["ours"].disk == c["ours"].disk]
        if disk:
            parts.append(f"Ours, in-memory caches emptied but the automaton found in the on-disk cache "
                         f"(what a new process pays for a schema it has seen), {title}:\n\n"
                         + table(["workload", "ours, disk-cache hit"], disk))
    return "\n\n".join(parts)


def per_token_section(results: dict[str, Any], workloads: Sequence[Workload], plot: str | None) -> str:
    parts = ["## Per-token processor time", (
        "Each workload's reference document (a valid instance, tokenized by llama.cpp without BOS) is "
        "replayed through each engine one token per call, exactly as llama-cpp-python calls a "
        "`logits_processor`: `input_ids` = prompt + tokens so far (`np.intc`), `scores` = the strided "
        "`logit` field of a 3-field `id/logit/p` record array of the whole vocabulary; one more call "
        "after the last token must allow end of generation. GBNF: `llama_sampler_accept` of the previous "
        "token + `llama_sampler_apply` on the whole candidate array, as in llama-cpp-python's sampler "
        "chain (for JSON Schemas, with the keys of the same instance in the order llama-cpp-python's "
        "`from_json_schema` imposes: required properties first). Only the engine's call is timed. "
        "*first pass*: right after the cold construction (ours computes each mask on first use); "
        "*warm*: the same sequence again on a warm construction. Cells: median / p99 over all calls "
        "of all runs.")]
    if plot:
        parts.append(f"![Per-token processor time]({plot})")
    for vocab in results["construction"]:
        title = VOCAB_TITLES.get(vocab, vocab)
        n_calls = {w: reference_length(results, vocab, w) + 1
                   for w in results["construction"][vocab]["tokens"]}
        warm, n1 = grid(results, vocab, workloads,
                        lambda c: f"{fmt_time(c.warm_median)} / {fmt_time(c.warm_p99)}")
        first, n2 = grid(results, vocab, workloads,
                         lambda c: f"{fmt_time(c.first_median)} / {fmt_time(c.first_p99)}")
        parts += [f"### {title}: warm (median / p99)", with_notes(warm, n1),
                  f"### {title}: first pass after a cold construction (median / p99)", with_notes(first, n2),
                  "Calls per pass: " + ", ".join(f"`{w}` {n}" for w, n in n_calls.items()) + "."]
        inner = [(f"`{w}`", *[fmt_time(c[e].inner_median) if e in c and not c[e].status else "–"
                              for e in ("llguidance", "xgrammar")])
                 for w, c in cells(results, vocab).items()]
        if any(x != "–" for row in inner for x in row[1:]):
            parts.append("Of which the engine's own mask computation (warm median; the rest is applying "
                         "the bitmask to the scores, see *How each engine is run*):\n\n"
                         + table(["workload", "llguidance", "xgrammar"], inner))
    problems = []
    for vocab in results["construction"]:
        for w, row in cells(results, vocab).items():
            for e, c in row.items():
                if c.replay_problem:
                    problems.append((VOCAB_TITLES.get(vocab, vocab), f"`{w}`", LABELS[e], c.replay_problem))
    if problems:
        parts.append("Replays that did not go through (the engine refused a token of the valid reference "
                     "document, refused the end, or raised):\n\n"
                     + table(["vocabulary", "workload", "engine", "what happened"], problems))
    else:
        parts.append("Every engine accepted every reference document token by token and then allowed end "
                     "of generation, on every vocabulary.")
    return "\n\n".join(parts)


def setup_section(results: dict[str, Any]) -> str:
    engines = engines_in(results)
    rows = []
    for vocab, data in results["construction"].items():
        row = [VOCAB_TITLES.get(vocab, vocab)]
        for e in engines:
            s = data["setup"].get(e, {})
            row.append(f"failed: {s['failure']}" if "failure" in s else
                       f"{fmt_time(s.get('setup_seconds', float('nan')))}, "
                       f"{fmt_mib(s.get('rss_setup', 0) - s.get('rss_start', 0))}")
        rows.append(row)
    return ("## Engine setup per vocabulary\n\nOnce per process and vocabulary, before any constraint: "
            "importing the engine, reading the vocabulary and building its tokenizer/tables (ours: "
            "`Vocabulary.from_gguf`, its token trie and first-mask tables; outlines: a vocab-only "
            "`Llama` + `from_llamacpp`; llguidance: a vocab-only `Llama` + `lltokenizer_from_vocab`; "
            "xgrammar: `TokenizerInfo` + `GrammarCompiler`; GBNF: a vocab-only `Llama`). Seconds, and "
            "resident memory added (imports included).\n\n"
            + table(["vocabulary", *[LABELS[e] for e in engines]], rows))


def memory_section(results: dict[str, Any], workloads: Sequence[Workload]) -> str:
    memory = results.get("memory")
    if not memory:
        return ""
    engines = engines_in(results)
    notes = Footnotes()
    rows, fresh = [], []
    for w in workloads:
        row, frow = [f"`{w.name}`"], [f"`{w.name}`"]
        for e in engines:
            m = memory["cells"].get(w.name, {}).get(e)
            if m is None:
                row.append("–")
                frow.append("–")
            elif "failure" in m or "error" in m:
                text = notes.mark("failed", m.get("failure") or m.get("error"), False)
                row.append(text)
                frow.append(text)
            elif "unsupported" in m:
                text = notes.mark(NA, m["unsupported"], True)
                row.append(text)
                frow.append(text)
            else:
                row.append(fmt_mib(m["peak_delta"]))
                build, call = m["first_process_build"], m["first_process_first_call"]
                frow.append(f"{fmt_time(build)} + {fmt_time(call)}")
        rows.append(row)
        fresh.append(frow)
    title = VOCAB_TITLES.get(memory["vocab"], memory["vocab"])
    header = ["workload", *[LABELS[e] for e in engines]]
    return (f"## Memory ({title})\n\nEach engine and workload in a fresh process: after the engine's "
            "setup, the kernel's peak-RSS counter is reset (`/proc/self/clear_refs` 5), the constraint is "
            "built cold and the reference replayed once; the figure is peak RSS (VmHWM) minus the RSS "
            "before the build: the resident memory that construction and the first pass of masks "
            "needed at their peak, native allocations included (tracemalloc would miss the Rust/C++ "
            "engines'). Memory freed before the peak is not counted.\n\n"
            + with_notes(table(header, rows), notes)
            + "\n\n### First in a fresh process (1 run)\n\nThe same processes: the cold build + the first "
            "call, including any one-time initialisation the library does on its first constraint "
            "(numba compilation of outlines' kernels, for one).\n\n" + table(header, fresh))


# -- end to end -------------------------------------------------------------------------------------


def e2e_table(result: E2EResult, workloads: Sequence[Workload],
              engines: Sequence[str]) -> tuple[str, Footnotes]:
    floor = floor_of(result)
    notes = Footnotes()
    rows = []
    for w in workloads:
        row = [f"`{w.name}`"]
        for e in engines:
            f = engine_figures(result, e, w.name, floor)
            reason = result.unavailable.get(key(e, w.name)) or result.unavailable.get(e)
            if f is None:
                row.append(notes.mark(NA, reason, True) if reason else "–")
            else:
                row.append(f"{fmt_ratio(f.ratio)} ({f.tokens_per_s:.1f})")
        rows.append(row)
    return table(["workload", *[LABELS[e] for e in engines]], rows), notes


def e2e_section(results: dict[str, Any], workloads: Sequence[Workload], plot: str | None) -> str:
    raw = results.get("e2e")
    if not raw:
        return ""
    result = E2EResult(**raw)
    engines = engines_in(results)
    floor = floor_of(result)
    ff = floor_figures(result, floor)
    ratios, notes = e2e_table(result, workloads, engines)
    if not result.n_gpu_layers:
        device = f"CPU, {result.threads} threads"
    elif result.gpu_offload:
        device = "all layers on the GPU"
    else:
        device = "n_gpu_layers=-1 asked, but this llama-cpp-python cannot offload: CPU"
    parts = [f"## End to end: `create_completion` on `{result.model}` ({device})", (
        f"{result.rounds} interleaved rounds after one warm-up round; max_tokens {result.max_tokens}, "
        f"temperature {TEMPERATURE}, prompt {PROMPT!r}, seed 1000 + round (the same for every call of a "
        f"round); model load {fmt_time(result.load_seconds)}. Unconstrained floor: "
        f"{ff['tokens_per_s']:.1f} tokens/s ({fmt_time(ff['per_step'])} per token, fixed per-call "
        f"overhead {fmt_time(ff['overhead'])}).")]
    if plot:
        parts.append(f"![Tokens per second relative to unconstrained]({plot})")
    parts.append("Tokens/s relative to unconstrained (paired by round; 1.00× = no slowdown), and "
                 "tokens/s:\n\n"
                 + with_notes(ratios, notes))
    rows = []
    for w in workloads:
        for e in ["unconstrained", *engines]:
            f = engine_figures(result, e, w.name, floor)
            if f is None:
                continue
            label = "unconstrained, same length" if e == "unconstrained" else LABELS[e]
            validity = "–" if e == "unconstrained" else f"{f.valid} / {f.invalid} / {f.truncated}"
            rows.append((f"`{w.name}`", label, f"{f.steps:g}", fmt_time(f.per_token), f"{f.tokens_per_s:.1f}",
                         "1.00×" if e == "unconstrained" else fmt_ratio(f.ratio),
                         "–" if e == "unconstrained" else fmt_time(f.overhead), validity,
                         str(f.failures) if e != "unconstrained" else "–"))
    long = result.calls.get(key("unconstrained", FLOOR_LONG), [])
    parts.append(table(["workload", "engine", "steps (median)", "per token", "tokens/s", "vs unconstrained",
                        "overhead / token", "valid / invalid / truncated", "processor errors"], rows)
                 + f"\n\nFloor: {len(long)} unconstrained calls of {result.max_tokens} tokens "
                 f"(median {ff['steps']:g} steps, {fmt_time(ff['wall'])} each).")
    invalid = []
    for w in workloads:
        for e in engines:
            f = engine_figures(result, e, w.name, floor)
            if f is not None:
                invalid += [(f"`{w.name}`", LABELS[e], example) for example in f.invalid_examples]
    if invalid:
        parts.append("Invalid outputs (first ones):\n\n"
                     + table(["workload", "engine", "output: why"], invalid))
    same = []
    for w in workloads:
        for e in engines:
            if e != "ours":
                n_same, n = identical_share(result, "ours", e, w.name)
                if n:
                    same.append(f"`{w.name}` {LABELS[e]} {n_same}/{n}")
    if same:
        parts.append("Same-seed outputs identical to ours (same model and sampler; identical when the "
                     "allowed sets agree along the way): " + "; ".join(same) + ".")
    examples = [(f"`{k.split('|')[1]}`", LABELS[k.split("|")[0]], f"`{c['text'][:100]!r}`",
                 c.get("verdict", "")) for k, c in result.warmup.items() if not k.startswith("unconstrained")]
    if examples:
        parts.append("Warm-up outputs (seed 999):\n\n"
                     + table(["workload", "engine", "text", "verdict"], examples))
    parts.append(
        "How it is computed: every call reuses the cached prompt, so a call is *steps* × (one 1-token "
        "decode + one sample) plus a fixed overhead; *steps* = completion tokens, plus one when "
        "generation stopped on an end-of-generation token. The overhead comes from paired unconstrained "
        f"calls of max_tokens {result.max_tokens} and {SHORT_TOKENS} in each round; *per token* = (wall − "
        "overhead) / steps. Random-weight models stop early under a constraint, so every workload also "
        "gets, in every round, an unconstrained call of as many steps as ours takes with that seed "
        "(*unconstrained, same length*); *vs unconstrained* divides its per-token time by the engine's, "
        "call by call within the round, and takes the median over rounds. Each engine's per-request work "
        "is inside its calls (ours: a new processor, a guide-cache hit; outlines: `reset()`; llguidance, "
        "xgrammar: the matcher resets on the new prompt; GBNF: llama.cpp parses the grammar). "
        "*valid*: stopped on end of generation and the exact bytes of the generated tokens (decoded with "
        "`Vocabulary.decode`, not llama-cpp-python's text) pass `re.fullmatch` / `jsonschema` (with "
        "format checks) / lark's Earley parser; *truncated*: max_tokens reached first (warm-up round "
        "included in the counts).")
    unavailable = [f"- {LABELS.get(k.split('|')[0], k)}" + (f" on `{k.split('|')[1]}`" if "|" in k else "")
                   + f": {why}" for k, why in result.unavailable.items()]
    if unavailable:
        parts.append("Not run end to end:\n\n" + "\n".join(unavailable))
    return "\n\n".join(parts)


# -- targets -----------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    status: str  # PASS, FAIL, NOT MEASURED
    detail: str


def targets(results: dict[str, Any], workloads: Sequence[Workload]) -> list[Target]:
    out: list[Target] = []
    raw = results.get("e2e")
    result = E2EResult(**raw) if raw else None
    floor = floor_of(result) if result else None

    def ratio_target(kinds: tuple[str, ...], threshold: float, label: str) -> None:
        chosen = [w for w in workloads if w.kind in kinds]
        if not chosen:
            return
        found, missing, bad = [], [], []
        for w in chosen:
            f = engine_figures(result, "ours", w.name, floor) if result and floor else None
            if f is None or f.ratio != f.ratio:
                missing.append(w.name)
                continue
            found.append(f"{w.name} {f.ratio:.3f}×")
            if f.ratio < threshold:
                bad.append(w.name)
        status = "FAIL" if bad else ("NOT MEASURED" if missing else "PASS")
        out.append(Target(f"ours ≥ {threshold}× unconstrained tokens/s on {label}", status,
                          join_detail(", ".join(found), missing)))

    ratio_target((REGEX, JSON), 0.97, "regex and JSON")
    ratio_target((GRAMMAR,), 0.9, "grammars")

    def construction_target(peer: str, test: Any, name: str) -> None:
        json_workloads = [w.name for w in workloads if w.kind == JSON]
        if not json_workloads:
            return
        found, missing, bad = [], [], []
        for vocab in results["construction"]:
            data = cells(results, vocab)
            for w in json_workloads:
                ours, other = data.get(w, {}).get("ours"), data.get(w, {}).get(peer)
                if ours is None or other is None or ours.status or other.status:
                    missing.append(f"{w}/{vocab}")
                    continue
                ratio = other.cold / ours.cold
                found.append(f"{w}/{vocab} {ratio:.3g}×")
                if not test(ratio):
                    bad.append(w)
        status = "FAIL" if bad else ("NOT MEASURED" if missing or not found else "PASS")
        detail = f"{LABELS[peer]} cold ÷ ours cold: " + ", ".join(found) if found else ""
        out.append(Target(name, status, join_detail(detail, missing)))

    construction_target("outlines", lambda r: r >= 10.0,
                        "ours constructs ≥ 10× faster than outlines-core (cold) on every JSON workload")
    construction_target("llguidance", lambda r: r >= 0.1,
                        "ours constructs within 10× of llguidance (cold) on every JSON workload")

    problems, checked, unchecked, missing = [], 0, [], []
    for w in workloads:
        f = engine_figures(result, "ours", w.name, floor) if result and floor else None
        if f is None:
            missing.append(f"{w.name} (end to end)")
        else:
            checked += f.valid + f.invalid
            if f.invalid or f.failures:
                problems.append(f"{w.name}: {f.invalid} invalid, {f.failures} processor errors")
            if f.valid + f.invalid == 0:
                unchecked.append(f"{w.name} ({f.truncated} outputs, all truncated at max_tokens)")
        for vocab in results["construction"]:
            c = cells(results, vocab).get(w.name, {}).get("ours")
            if c is None or c.status:
                missing.append(f"{w.name}/{vocab} (replay)")
            elif c.replay_problem:
                problems.append(f"{w.name}/{vocab} replay: {c.replay_problem}")
    if problems:
        status, detail = "FAIL", "; ".join(problems)
    elif missing or checked == 0:
        status, detail = "NOT MEASURED", f"{checked} complete outputs checked, all valid"
    else:
        status = "PASS (partly checked)" if unchecked else "PASS"
        detail = f"{checked} complete outputs checked end to end, all valid; reference replays accepted"
        if unchecked:
            detail += "; only the replay checks " + ", ".join(unchecked)
    out.append(Target("every output of ours valid on every workload", status, join_detail(detail, missing)))
    if results.get("fast_forward"):
        from bench_fast_forward import TARGET, target_status

        status, detail = target_status(results["fast_forward"])
        out.append(Target(f"fast-forward `generate.json` ≥ {TARGET}× unconstrained tokens/s (issue #17)",
                          status, detail))
    return out


def join_detail(found: str, missing: Sequence[str]) -> str:
    text = found or ""
    if missing:
        text += ("; " if text else "") + "not measured: " + ", ".join(missing)
    return text


def targets_section(results: dict[str, Any], workloads: Sequence[Workload]) -> str:
    rows = [(t.name, f"**{t.status}**", t.detail) for t in targets(results, workloads)]
    return ("## Targets\n\nComputed from the figures below.\n\n"
            + table(["target", "result", "measured"], rows))


def print_targets(results: dict[str, Any], workloads: Sequence[Workload]) -> None:
    print("\nTargets")
    print("=======")
    for t in targets(results, workloads):
        print(f"[{t.status}] {t.name}\n         {t.detail}")


# -- plots ----------------------------------------------------------------------------------------------


def bar_panel(ax: Any, groups: Sequence[str], series: dict[str, list[float]], ylabel: str, title: str,
              log: bool = False, lines: Sequence[tuple[float, str]] = ()) -> None:
    """Grouped bars on ``ax``: one group per workload, one bar per engine; missing values say n/a."""
    width = 0.8 / max(1, len(series))
    missing = []
    for i, (label, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [v if v == v else 0 for v in values], width, label=label)
        missing += [x for x, v in zip(xs, values, strict=True) if v != v]
    if log:
        ax.set_yscale("log")
    bottom = ax.get_ylim()[0]
    for x in missing:
        ax.text(x, bottom, " n/a", ha="center", va="bottom", fontsize=7, rotation=90, color="dimgrey")
    for y, text in lines:
        ax.axhline(y, color="grey", linestyle="--", linewidth=0.8)
        ax.text(-0.45, y, text, va="bottom", ha="left", fontsize=7, color="grey")
    ax.set_xticks(range(len(groups)), groups, rotation=15, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)


def save_figure(fig: Any, axes: Sequence[Any], path: Path) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def figure(n_panels: int, n_groups: int) -> tuple[Any, list[Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(n_panels, 1, figsize=(max(6.5, 1.3 * n_groups + 3.5), 3.6 * n_panels),
                             squeeze=False, layout="constrained")
    return fig, [row[0] for row in axes]


def has_values(series: dict[str, list[float]]) -> bool:
    return any(v == v for values in series.values() for v in values)


def make_plots(results: dict[str, Any], workloads: Sequence[Workload], folder: Path) -> dict[str, Path]:
    import matplotlib.pyplot as plt

    made: dict[str, Path] = {}
    engines = engines_in(results)
    names = [w.name for w in workloads]
    if results.get("e2e"):
        result = E2EResult(**results["e2e"])
        floor = floor_of(result)
        series: dict[str, list[float]] = {}
        for e in engines:
            figures = [engine_figures(result, e, w, floor) for w in names]
            series[LABELS[e]] = [f.ratio if f is not None else float("nan") for f in figures]
        if has_values(series):
            fig, axes = figure(1, len(names))
            bar_panel(axes[0], names, series, "tokens/s ÷ unconstrained", f"End to end on {result.model}",
                      lines=((1.0, "1.0"), (0.97, "0.97"), (0.9, "0.9")))
            made["e2e"] = folder / "e2e_ratio.png"
            save_figure(fig, axes, made["e2e"])
            plt.close(fig)
    vocabs = list(results["construction"])
    if vocabs:
        for name, attr, ylabel, title in (
            ("construction", "cold", "seconds (log)", "Cold construction"),
            ("per_token", "warm_median", "seconds per call (log)", "Per-token processor time, warm median"),
        ):
            panels = []
            for vocab in vocabs:
                data = cells(results, vocab)
                panels.append((vocab, {LABELS[e]: [getattr(data.get(w, {}).get(e, Cell(status="-")), attr)
                                                   for w in names] for e in engines}))
            if not any(has_values(s) for _, s in panels):
                continue
            fig, axes = figure(len(panels), len(names))
            for ax, (vocab, s) in zip(axes, panels, strict=True):
                bar_panel(ax, names, s, ylabel, f"{title}, {VOCAB_TITLES.get(vocab, vocab)}", log=True)
            made[name] = folder / f"{name}.png"
            save_figure(fig, axes, made[name])
            plt.close(fig)
    return made


# -- the report -------------------------------------------------------------------------------------------


def machine_section(results: dict[str, Any]) -> str:
    m = results["meta"]
    rows = [("CPU (lscpu)", f"{m['cpu']}, {m['cores_usable']} cores usable ({m['cores_online']} online)"),
            *([("GPU", m["gpu"])] if m.get("gpu") else []),
            ("memory", f"{m['memory_gib']} GiB"), ("OS", m["os"]), ("python", m["python"]),
            ("outlines-gguf", m["outlines_gguf"])]
    rows += [(name, version) for name, version in m["packages"].items()]
    rows += [("command", f"`{m['command']}`"),
             ("duration", fmt_time(m.get("seconds", float("nan")))),
             ("load average (1/5/15 min)",
              f"{m['load_start']} at the start, {m.get('load_end', '?')} at the end")]
    return "## Machine and versions\n\n" + table(["", ""], rows)


def workloads_section(results: dict[str, Any], workloads: Sequence[Workload]) -> str:
    vocabs = list(results["construction"])
    rows = []
    for w in workloads:
        lengths = [str(reference_length(results, v, w.name)) for v in vocabs]
        rows.append((f"`{w.name}`", w.title, w.describe(), *lengths))
    header = ["workload", "what", "constraint",
              *[f"reference tokens, {VOCAB_TITLES.get(v, v)}" for v in vocabs]]
    return ("## Workloads\n\n" + table(header, rows) + "\n\n"
            "The same constraint is written for each engine in its own notation: the regex as it is "
            "(GBNF: hand-written, same language); JSON Schemas as they are (GBNF: "
            "`LlamaGrammar.from_json_schema`); grammars in Lark for ours and llguidance and in GBNF for "
            "llama.cpp and xgrammar (whose EBNF reads GBNF; for `cfg-json` the empty alternative of "
            "llama.cpp's `ws` rule is written `\"\"`). `cfg-json` is llama.cpp's own `json.gbnf`, "
            "translated rule for rule into Lark. Reference documents: " +
            "; ".join(f"`{w.name}` `{w.reference[:80]}{'…' if len(w.reference) > 80 else ''}`"
                      for w in workloads)
            + ".")


ENGINE_NOTES = (
    "**ours**: `RegexLogitsProcessor`, `JSONLogitsProcessor` (default whitespace: one optional space "
    "after `:` and `,`), `CFGLogitsProcessor`, built on `Vocabulary.from_gguf`.",
    "**llama.cpp GBNF**: `create_completion(grammar=LlamaGrammar)`; llama.cpp's grammar sampler runs "
    "in its sampler chain after the logits processors and penalties, on every candidate.",
    "**outlines (outlines-core)**: outlines' own llama.cpp integration, which works offline: "
    "`outlines.from_llamacpp(llm, chat_mode=False)` and `outlines.Generator(model, Regex(...) / "
    "JsonSchema(...)).logits_processor` (outlines-core `Index` + `Guide`, default whitespace `[ ]?`). "
    "The processor is passed to `create_completion` ourselves rather than through `Generator.__call__`, "
    "which calls `Llama.reset()` after every generation and so would drop the prompt cache the other "
    "engines keep. Its vocabulary is outlines' (`token_to_piece` text, decoded with "
    "`errors=\"replace\"` and keyed by text, so byte-fragment tokens share one key and some ids are "
    "lost). outlines' numpy kernels need numba. Grammars: n/a (outlines sends them to llguidance).",
    "**llguidance**: `LLMatcher(lltokenizer_from_vocab(llama vocab, eos=every end-of-generation id), "
    f"grammar)`; JSON with `{json.dumps(LLGUIDANCE_JSON_OPTIONS)}`; "
    "regexes with `grammar_from_regex`, grammars with `grammar_from_lark`. Wrapped in a logits processor "
    "(below).",
    "**xgrammar**: `TokenizerInfo(token bytes, VocabType.RAW, stop_token_ids=every end-of-generation "
    "id)`, special/control tokens given as empty (never allowed in text, as in ours); "
    "`GrammarCompiler` (default threads) `compile_regex` / `compile_json_schema(any_whitespace=False)` "
    "(its `json.dumps` separators; its default `strict_mode` allows no property or item the schema does "
    "not declare) / `compile_grammar(EBNF)`; `GrammarMatcher`. Wrapped like llguidance.",
    "**The llguidance/xgrammar processor** (this benchmark's, `bench_engines.BitmaskLogitsProcessor`): "
    "a new prompt resets the matcher, the next token is consumed, the engine fills its 32-bit token "
    "bitmask, and `-inf` is written into the smaller side (as ours does): save the few allowed scores, "
    "fill, restore; or write the few forbidden ids; or one masked write. The engine-only mask time is "
    "reported separately.",
)


def rounded(value: Any) -> Any:
    """Floats to 5 significant digits (timings do not need more), recursively."""
    if isinstance(value, float):
        return float(f"{value:.5g}") if value == value else None
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def write_outputs(results: dict[str, Any], opts: Any, workloads: Sequence[Workload]) -> None:
    """Write results.json, the plots and the Markdown report."""
    opts.results.parent.mkdir(parents=True, exist_ok=True)
    opts.results.write_text(json.dumps(rounded(results), separators=(",", ":"), default=str))
    plots = make_plots(results, workloads, opts.plots)

    def rel(name: str) -> str | None:
        return os.path.relpath(plots[name], opts.out.parent) if name in plots else None

    m = results["meta"]
    gpu = bool(opts.gpu)
    sections = [
        ("# End-to-end GPU benchmark" if gpu else "# Benchmarks: ours against every peer")
        + f" ({m['date']})",
        f"Generated by `{m['command']}` in {fmt_time(m.get('seconds', float('nan')))}; raw figures in "
        f"`{os.path.relpath(opts.results, opts.out.parent)}`. "
        + ("**Smoke run (`--quick`): the figures are not meaningful.** " if opts.quick else "")
        + "Timings depend on the machine and whatever else runs on it: compare columns of one report.",
    ]
    if not gpu:
        sections.append(targets_section(results, workloads))
    sections.append(machine_section(results))
    if results["construction"]:
        sections.append(workloads_section(results, workloads))
    sections.append(e2e_section(results, workloads, rel("e2e")))
    if results["construction"]:
        sections += [construction_section(results, workloads, rel("construction")),
                     per_token_section(results, workloads, rel("per_token")), setup_section(results)]
    sections.append(memory_section(results, workloads))
    if results.get("fast_forward"):
        from bench_fast_forward import markdown as fast_forward_markdown

        sections.append(fast_forward_markdown(results["fast_forward"], m["command"]))
    if results.get("startup"):
        from bench_startup import markdown as startup_markdown

        sections.append(startup_markdown(results["startup"]))
    sections.append("## How each engine is run\n\n" + "\n".join(f"- {n}" for n in ENGINE_NOTES))
    if results["notes"]:
        sections.append("## Notes\n\n" + "\n".join(f"- {n}" for n in results["notes"]))
    sections += kept_sections(opts.out, fast_forward=not results.get("fast_forward"))
    text = "\n\n".join(s for s in sections if s) + "\n"
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(text)


KEPT_SECTIONS = ("## Server:",)
"""Sections of the report that other scripts write (``bench_server.py``): kept as they are."""


def kept_sections(path: Path, fast_forward: bool = False) -> list[str]:
    """The sections of an existing report that this script does not produce (with
    ``fast_forward``, the fast-forward section too: that phase was not run)."""
    if not path.is_file():
        return []
    from bench_fast_forward import SECTION

    prefixes = KEPT_SECTIONS + ((SECTION,) if fast_forward else ())
    kept = []
    for block in ("\n" + path.read_text(encoding="utf-8")).split("\n## ")[1:]:
        section = "## " + block.rstrip()
        if section.startswith(prefixes):
            kept.append(section)
    return kept


__all__ = ["EngineFigures", "print_targets", "targets", "write_outputs"]

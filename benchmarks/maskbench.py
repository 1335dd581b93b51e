"""MaskBench: check JSON Schema constraints token by token on a folder of MaskBench-format files.

Each file holds ``schema`` and ``tests: [{data, valid, description}]``. For every file and engine:

1. compile the schema (timed; an exception, or an engine error state, means "not compiled");
2. for every test instance, serialize ``data`` with ``json.dumps(data, ensure_ascii=False)`` (separators
   ``", "`` and ``": "``), tokenize the text with the vocabulary (llama.cpp, no BOS, no special tokens)
   and walk the tokens through the engine: before each token the mask is computed (timed, per call) and
   the token must be allowed; after the last token the EOS id must be allowed. A valid instance must be
   accepted all the way, an invalid one refused at some token or at EOS;
3. a file passes for an engine when it compiled and every instance was classified correctly.

Engines (each runs in its own worker process, so a compile that runs past ``--timeout`` or past the
memory limit is killed and recorded instead of hanging the run):

- ``ours``: ``outlines_gguf.JSONLogitsProcessor`` called exactly the way llama-cpp-python calls it
  (prompt first, then one token more per call, on a strided float32 ``logit`` view of a record array);
- ``llguidance``: ``LLMatcher`` on
  ``grammar_from_json_schema(schema, defaults={"whitespace_flexible": True})``, masks from
  ``fill_next_token_bitmask``;
- ``outlines-core``: ``Index(build_regex_from_schema(schema), Vocabulary)``, ``Guide.write_mask_into``;
- ``ours-regex`` (optional): ``outlines_gguf.RegexLogitsProcessor`` on outlines-core's regex for the
  schema: our regex engine on the peer's schema translation.

Run from the repository root::

    .venv/bin/pip install llguidance outlines-core          # the peer engines
    .venv/bin/python benchmarks/maskbench.py /work/shared/jsonschemabench-dev --sample 300 --seed 0 \\
        --engines ours,llguidance,outlines-core --out /tmp/maskbench.md --jsonl /tmp/maskbench.jsonl
    .venv/bin/python benchmarks/maskbench.py DIR --limit 20 --engines llguidance,outlines-core

The Markdown report is printed and written to ``--out``; ``--jsonl`` gets one line per file and engine.
Timings depend on the machine and on whatever else runs on it: compare the columns of one report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shlex
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import (
    ProcessWorker,
    WorkerGoneError,
    cpu_model,
    fmt_time,
    package_version,
    table,
)
from bench_engines import (
    LLGUIDANCE_FLEXIBLE_OPTIONS,
    MASK_ENGINE_CLASSES,
    Session,
    first_line,
    load_vocab_only,
    missing_json_processor_message,
)
from bench_stats import percentile

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_VOCAB = REPO / "models" / "vocab" / "ggml-vocab-llama-bpe.gguf"
ALL_ENGINES = tuple(MASK_ENGINE_CLASSES)
DEFAULT_ENGINES = ("ours", "llguidance", "outlines-core")
WORKER_START_TIMEOUT_S = 600.0
EXAMPLES_SHOWN = 10


# -- data ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One test instance, serialized and tokenized."""

    description: str
    valid: bool
    text: str
    tokens: tuple[int, ...]
    ascii_fallback: bool


@dataclass(frozen=True)
class SchemaFile:
    """One MaskBench file: a schema and its tokenized test instances."""

    name: str
    split: str
    schema: Any
    instances: tuple[Instance, ...]
    features: tuple[str, ...] = ()


@dataclass
class InstanceResult:
    """How one engine walked one instance.

    ``step`` is the index of the first refused token (``n_tokens`` means EOS was refused at the end),
    None when the whole instance and EOS were accepted. ``note`` carries an engine error raised after
    its own mask allowed the token (a mask/transition disagreement), empty otherwise.
    """

    valid: bool
    accepted: bool
    step: int | None
    n_tokens: int
    note: str = ""
    mask_times: list[float] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return self.accepted == self.valid


@dataclass
class FileResult:
    """One engine on one file."""

    file: str
    split: str
    engine: str
    compiled: bool
    compile_s: float
    error: str = ""
    timed_out: bool = False
    walk_failed: str = ""
    instances: list[InstanceResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.compiled and not self.walk_failed and all(r.correct for r in self.instances)


# -- loading and tokenizing ------------------------------------------------------------------------------


def split_of(name: str) -> str:
    """The collection split of a file, from its name (``Github_easy---o1.json`` -> ``Github_easy``)."""
    stem = name.removesuffix(".json").split("---")[0]
    return re.sub(r"_\d+$", "", stem)


def list_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".json" and p.is_file())


def choose_files(files: Sequence[Path], sample: int | None, seed: int, limit: int | None) -> list[Path]:
    """A deterministic subset: a seeded random sample (kept in name order), then the first ``limit``."""
    chosen = list(files)
    if sample is not None and sample < len(chosen):
        chosen = sorted(random.Random(seed).sample(chosen, sample))
    if limit is not None:
        chosen = chosen[:limit]
    return chosen


def serialize(data: Any) -> tuple[str, bool]:
    """``json.dumps(data, ensure_ascii=False)``; escaped ASCII when that text is not valid UTF-8
    (lone surrogates). Returns (text, whether the ASCII fallback was used)."""
    text = json.dumps(data, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data), True
    return text, False


def load_schema_file(path: Path, tokenize: Any) -> SchemaFile:
    raw = json.loads(path.read_text(encoding="utf-8"))
    instances = []
    for test in raw.get("tests", []):
        text, fallback = serialize(test["data"])
        tokens = tuple(int(t) for t in tokenize(text.encode("utf-8"), add_bos=False, special=False))
        description = str(test.get("description", ""))
        instances.append(Instance(description, bool(test["valid"]), text, tokens, fallback))
    features = tuple(sorted({feature_group(f) for f in raw.get("meta", {}).get("features", [])}))
    return SchemaFile(path.name, split_of(path.name), raw["schema"], tuple(instances), features)


def feature_group(feature: str) -> str:
    """``meta.features`` entries, with ``multipleOf:<n>`` folded into ``multipleOf``."""
    return "multipleOf" if feature.startswith("multipleOf:") else feature


# -- walking the instances (inside the worker processes) ------------------------------------------------


def walk(session: Session, tokens: Sequence[int], eos_id: int, valid: bool) -> InstanceResult:
    """Feed ``tokens`` then EOS through ``session``, checking each against the mask computed before it."""
    result = InstanceResult(valid=valid, accepted=False, step=None, n_tokens=len(tokens))
    for step, token in enumerate([*tokens, eos_id]):
        result.mask_times.append(session.mask())
        note = session.error()
        if note:
            result.step, result.note = step, note
            return result
        if not session.allows(token):
            result.step = step
            return result
        if step < len(tokens):
            session.consume(token)
            note = session.error()
            if note:
                result.step, result.note = step, note
                return result
    result.accepted = True
    return result


def clear_engine_cache(engine: Any) -> None:
    """Make ours' next compile cold (see ``OursEngine.clear_cache``)."""
    clear = getattr(engine, "clear_cache", None)
    if clear is not None:
        clear()


def worker_main(engine_name: str, vocab_path: str, conn: Connection) -> None:
    """Worker process: build the engine once, then answer (schema, [(tokens, valid)]) jobs.

    Sends ("compiled", seconds, error) after each compile and ("walked", [InstanceResult dicts]) after
    the walks, so the parent can apply separate compile and walk timeouts.
    """
    try:
        engine = MASK_ENGINE_CLASSES[engine_name](Path(vocab_path))
    except Exception as exc:
        conn.send(("fatal", first_line(exc)))
        return
    conn.send(("ready", ""))
    while True:
        job = conn.recv()
        if job is None:
            return
        schema, instances = job
        clear_engine_cache(engine)
        t0 = time.perf_counter()
        try:
            compiled = engine.compile(schema)
        except Exception as exc:
            conn.send(("compiled", time.perf_counter() - t0, first_line(exc) or type(exc).__name__))
            continue
        conn.send(("compiled", time.perf_counter() - t0, None))
        max_len = max((len(tokens) for tokens, _ in instances), default=0)
        results = []
        for tokens, valid in instances:
            try:
                results.append(asdict(walk(engine.session(compiled, max_len), tokens, engine.eos_id, valid)))
            except Exception as exc:
                results.append({"crash": first_line(exc)})
        conn.send(("walked", results))


# -- worker management (parent side) ---------------------------------------------------------------------


class EngineWorker(ProcessWorker):
    """One engine in its own process, restarted after a timeout, a memory overrun or a crash."""

    def __init__(self, engine: str, vocab_path: Path, memory_limit: int) -> None:
        super().__init__(worker_main, (engine, str(vocab_path)), f"maskbench-{engine}")
        self.engine = engine
        self.vocab_path = vocab_path
        self.memory_limit = memory_limit
        self.restarts = 0

    def start(self) -> None:
        self.spawn()
        kind, message = self.receive(WORKER_START_TIMEOUT_S)
        if kind != "ready":
            self.stop()
            raise SystemExit(f"maskbench: engine {self.engine!r} could not start: {message}")

    def close(self) -> None:  # type: ignore[override]
        super().close(join_s=5)

    def receive(self, timeout: float) -> Any:
        """The worker's next message; WorkerGoneError after ``timeout`` s, a memory overrun or its exit."""
        return self.wait(timeout, self.memory_limit)

    def run(self, schema_file: SchemaFile, compile_timeout: float, walk_timeout: float) -> FileResult:
        """Compile and walk one file, killing (and later restarting) the worker when it overruns."""
        if self.process is None:
            self.start()
        assert self.conn is not None
        result = FileResult(schema_file.name, schema_file.split, self.engine, compiled=False, compile_s=0.0)
        self.conn.send((schema_file.schema, [(list(i.tokens), i.valid) for i in schema_file.instances]))
        t0 = time.perf_counter()
        try:
            _, seconds, error = self.receive(compile_timeout)
        except WorkerGoneError as exc:
            self.restart()
            result.compile_s, result.error = time.perf_counter() - t0, f"compile: {exc}"
            result.timed_out = "timed out" in str(exc)
            return result
        result.compile_s, result.compiled, result.error = seconds, error is None, error or ""
        if error is not None:
            return result
        try:
            _, walked = self.receive(walk_timeout)
        except WorkerGoneError as exc:
            self.restart()
            result.walk_failed = f"walk: {exc}"
            return result
        for item in walked:
            if "crash" in item:
                result.walk_failed = f"walk raised {item['crash']}"
            else:
                result.instances.append(InstanceResult(**item))
        return result

    def restart(self) -> None:
        self.stop()
        self.restarts += 1


# -- options -----------------------------------------------------------------------------------------------


@dataclass
class Options:
    folder: Path
    vocab: Path
    engines: tuple[str, ...]
    limit: int | None
    sample: int | None
    seed: int
    timeout: float
    ours_timeout: float
    walk_timeout: float
    memory_limit_gb: float
    out: Path | None
    jsonl: Path | None
    argv: list[str] = field(default_factory=list)
    revision: str = field(default_factory=lambda: git_revision())


def parse_options(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder of MaskBench-format .json files")
    parser.add_argument("--vocab", type=Path, default=DEFAULT_VOCAB,
                        help="GGUF vocabulary (Llama-3 by default)")
    parser.add_argument("--engines", default=",".join(DEFAULT_ENGINES),
                        help=f"comma-separated subset of {','.join(ALL_ENGINES)}")
    parser.add_argument("--limit", type=int, default=None, help="only the first N files (after --sample)")
    parser.add_argument("--sample", type=int, default=None, help="a random subset of N files (see --seed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample")
    parser.add_argument("--timeout", type=float, default=20.0, help="compile timeout for peers, seconds")
    parser.add_argument("--ours-timeout", type=float, default=120.0,
                        help="compile timeout for ours and ours-regex (a safety net; hits are reported)")
    parser.add_argument("--walk-timeout", type=float, default=300.0,
                        help="timeout for walking all instances of one file, seconds")
    parser.add_argument("--memory-limit-gb", type=float, default=8.0, help="per-worker resident memory limit")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    parser.add_argument("--jsonl", type=Path, default=None, help="write per-file, per-engine results here")
    args = parser.parse_args(argv)
    engines = tuple(dict.fromkeys(e.strip() for e in args.engines.split(",") if e.strip()))
    unknown = [e for e in engines if e not in ALL_ENGINES]
    if unknown or not engines:
        parser.error(f"unknown engine(s) {unknown}; choose from {','.join(ALL_ENGINES)}")
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    if not args.vocab.is_file():
        parser.error(f"{args.vocab} not found (build it with: python scripts/build_test_models.py)")
    return Options(args.folder, args.vocab, engines, args.limit, args.sample, args.seed, args.timeout,
                   args.ours_timeout, args.walk_timeout, args.memory_limit_gb, args.out, args.jsonl,
                   list(argv))


def check_engines_importable(engines: Iterable[str]) -> None:
    """Exit with a clear message when an engine's package is missing (before any worker starts)."""
    needs = {"llguidance": ("llguidance",), "outlines-core": ("outlines_core",),
             "ours-regex": ("outlines_core",)}
    for engine in engines:
        if engine == "ours":
            import outlines_gguf

            if not hasattr(outlines_gguf, "JSONLogitsProcessor"):
                raise SystemExit(f"maskbench: {missing_json_processor_message()}")
        for module in needs.get(engine, ()):
            try:
                __import__(module)
            except ImportError as exc:
                raise SystemExit(f"maskbench: engine {engine!r} needs {module} ({exc}); install it with "
                                 f"{sys.executable} -m pip install {module.replace('_', '-')}") from exc


# -- statistics and formatting ---------------------------------------------------------------------------


def fmt_share(count: int, total: int) -> str:
    return f"{count} ({100.0 * count / total:.1f}%)" if total else f"{count}"


def clip(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def normalize_error(message: str) -> str:
    """Group similar compile errors: schema paths, quoted names, numbers and long tails are blanked out."""
    text = re.sub(r"#\S*?: ", "", message)  # the JSON pointer where the error was found
    text = re.sub(r"'[^']*'|\"[^\"]*\"|`[^`]*`", "…", text)
    text = re.sub(r"\b\d+(\.\d+)?\b", "N", text)
    return clip(text, 140)


# -- the report --------------------------------------------------------------------------------------------


def git_revision() -> str:
    """The repository's commit (``-dirty`` when the working tree has changes), or 'unknown'."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=10"],
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"`{out.stdout.strip()}`"


def environment_section(opts: Options, n_files: int, n_total: int, wall_s: float) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    subset = f"{n_files} of {n_total} files"
    if opts.sample is not None:
        subset += f" (random sample of {opts.sample}, seed {opts.seed})"
    if opts.limit is not None:
        subset += f" (first {opts.limit})"
    rows = [
        ("CPU", f"{cpu_model()}, {cores} cores usable ({os.cpu_count()} online)"),
        ("OS", platform.platform()),
        ("python / numpy", f"{platform.python_version()} / {np.__version__}"),
        ("llama-cpp-python", package_version("llama_cpp_python")),
        ("llguidance", package_version("llguidance")),
        ("outlines-core", package_version("outlines-core")),
        ("outlines-gguf", f"{package_version('outlines-gguf')} at {opts.revision} (when the run started)"),
        ("vocabulary", f"`{opts.vocab.name}`"),
        ("files", f"`{opts.folder}`: {subset}"),
        ("wall time", f"{wall_s:.0f} s"),
        ("command", "`" + " ".join(shlex.quote(a) for a in [sys.executable, sys.argv[0], *opts.argv]) + "`"),
    ]
    return "## Machine and versions\n\n" + table(["", ""], rows)


METHOD_NOTES = """\
## Method

- Instances are serialized with `json.dumps(data, ensure_ascii=False)` (separators `", "` and `": "`) and
  tokenized by llama.cpp with this vocabulary (no BOS, no special tokens). Instances whose text holds
  lone surrogates fall back to `json.dumps(data)` (escaped ASCII); there were {fallbacks}.
- Before each token the engine's mask is computed and the token must be in it; after the last token the
  EOS id ({eos}) must be in it. A valid instance must be accepted to the end, an invalid one refused
  somewhere. A file *passes* when it compiled and every instance was classified correctly (files
  without instances pass when they compile).
{engines}
- Each engine runs in its own worker process; compile time is measured inside the worker. Compile
  timeout: {timeout:g} s for peers, {ours_timeout:g} s for ours (hits are counted as not compiled).
- The "jsonschema" column of the misclassified-instance tables is a second opinion on the dataset's label
  from the `jsonschema` package (formats are checked only where its optional checkers are installed).
- "Disagreements" count tokens that an engine's mask allowed but its own transition then refused
  (or an engine error during the walk); they count as refusals.
"""

PROCESSOR_NOTE = (
    "called like\n  llama-cpp-python calls it (prompt, then one more token per call) on the strided `logit`\n"
    "  field of a record array; the mask time is the whole processor call. One processor per file serves\n"
    "  all its instances, so masks cached for states seen before come back fast; compiled constraints\n"
    "  are forgotten before every compile (`bench_common.make_cold`: guide, schema and regex caches;\n"
    "  kept are the vocabulary's tries, `Vocabulary.prepare()`d before the first file, and the\n"
    "  library's fixed automaton pieces), so compile times are cold."
)

ENGINE_NOTES = {
    "ours": "- ours: `JSONLogitsProcessor(schema, Vocabulary.from_gguf(vocab))`, default whitespace, "
            + PROCESSOR_NOTE,
    "ours-dfa": "- ours-dfa: `JSONLogitsProcessor(schema, vocab, engine=\"dfa\")` (the whole-schema DFA "
                "engine, for comparison), " + PROCESSOR_NOTE,
    "ours-regex": "- ours-regex: `RegexLogitsProcessor(build_regex_from_schema(json.dumps(schema)), vocab)` "
                  "(our regex engine on outlines-core's translation), " + PROCESSOR_NOTE,
    "llguidance": (
        "- llguidance: `LLMatcher(tokenizer, grammar_from_json_schema(schema, defaults={llg}))`, tokenizer\n"
        "  from `llguidance.llamacpp.lltokenizer_from_vocab`; other options at their defaults (not lenient:\n"
        "  unknown keywords fail the compile). Mask time is `fill_next_token_bitmask`; a fresh `deep_copy`\n"
        "  of the compiled matcher per instance."
    ),
    "outlines-core": (
        "- outlines-core: `Index(build_regex_from_schema(json.dumps(schema)), Vocabulary(eos, bytes→ids))`\n"
        "  with its default whitespace (`[ ]?`) and the same emittable tokens as ours; mask time is\n"
        "  `Guide.write_mask_into`."
    ),
}


@dataclass
class EngineSummary:
    engine: str
    files: int = 0
    compiled: int = 0
    timeouts: int = 0
    passed: int = 0
    valid: int = 0
    valid_accepted: int = 0
    invalid: int = 0
    invalid_rejected: int = 0
    disagreements: int = 0
    walk_failures: int = 0
    compile_times: list[float] = field(default_factory=list)
    first_mask_times: list[float] = field(default_factory=list)  # compile + the first mask, cold
    mask_times: list[float] = field(default_factory=list)
    invalid_accepted_files: list[str] = field(default_factory=list)
    valid_rejected_files: list[str] = field(default_factory=list)


def summarize(engine: str, results: Sequence[FileResult]) -> EngineSummary:
    s = EngineSummary(engine)
    for r in results:
        s.files += 1
        s.compiled += r.compiled
        s.timeouts += r.timed_out
        s.passed += r.passed
        s.walk_failures += bool(r.walk_failed)
        if r.compiled:
            s.compile_times.append(r.compile_s)
            if r.instances and r.instances[0].mask_times:
                s.first_mask_times.append(r.compile_s + r.instances[0].mask_times[0])
        for inst in r.instances:
            s.mask_times.extend(inst.mask_times)
            s.disagreements += bool(inst.note)
            if inst.valid:
                s.valid += 1
                s.valid_accepted += inst.accepted
                if not inst.accepted and r.file not in s.valid_rejected_files:
                    s.valid_rejected_files.append(r.file)
            else:
                s.invalid += 1
                s.invalid_rejected += not inst.accepted
                if inst.accepted and r.file not in s.invalid_accepted_files:
                    s.invalid_accepted_files.append(r.file)
    return s


def summary_section(summaries: Sequence[EngineSummary]) -> str:
    rows = []
    for s in summaries:
        rows.append((
            s.engine, str(s.files), fmt_share(s.compiled, s.files), str(s.timeouts),
            fmt_share(s.passed, s.files),
            f"{s.valid_accepted}/{s.valid}", f"{s.invalid_rejected}/{s.invalid}",
            str(s.invalid - s.invalid_rejected), str(s.valid - s.valid_accepted), str(s.disagreements),
        ))
    counts = table(["engine", "files", "compiled", "compile timeouts", "passing", "valid accepted",
                    "invalid rejected", "**invalid accepted**", "valid rejected", "disagreements"], rows)
    rows = []
    for s in summaries:
        ct, ft, mt = s.compile_times, s.first_mask_times, s.mask_times
        rows.append((
            s.engine, fmt_time(percentile(ct, 50)), fmt_time(percentile(ct, 99)),
            fmt_time(max(ct, default=float("nan"))),
            fmt_time(percentile(ft, 50)), fmt_time(percentile(ft, 99)),
            str(len(mt)), fmt_time(float(np.mean(mt)) if mt else float("nan")), fmt_time(percentile(mt, 50)),
            fmt_time(percentile(mt, 99)), fmt_time(max(mt, default=float("nan"))),
        ))
    times = table(["engine", "compile p50", "compile p99", "compile max", "first mask p50", "first mask p99",
                   "mask calls", "mask mean",
                   "mask p50", "mask p99", "mask max"], rows)
    return ("## Summary\n\n" + counts + "\n\nCompile times are over compiled files; *first mask* is the "
            "compile and the first mask of the first instance, cold (over compiled files with instances); "
            "mask times are per call, over every mask computed while walking the instances.\n\n" + times)


def file_list_section(summaries: Sequence[EngineSummary]) -> str:
    parts = ["## Misclassified files (first few per engine)"]
    for s in summaries:
        for label, names in (("invalid accepted", s.invalid_accepted_files),
                             ("valid rejected", s.valid_rejected_files)):
            if names:
                shown = ", ".join(f"`{n}`" for n in names[:EXAMPLES_SHOWN])
                more = f" (+{len(names) - EXAMPLES_SHOWN} more)" if len(names) > EXAMPLES_SHOWN else ""
                parts.append(f"- **{s.engine}**, {label} ({len(names)} files): {shown}{more}")
    return "\n".join(parts) if len(parts) > 1 else parts[0] + "\n\nNone."


def split_section(engines: Sequence[str], results: dict[str, list[FileResult]]) -> str:
    splits = sorted({r.split for rs in results.values() for r in rs})
    rows = []
    for split in splits:
        row = [split]
        for engine in engines:
            rs = [r for r in results[engine] if r.split == split]
            row.append(fmt_share(sum(r.passed for r in rs), len(rs)))
        rows.append(row)
    return "## Passing files per split\n\n" + table(["split", *engines], rows)


def failure_reasons_section(engine: str, results: Sequence[FileResult], top: int = 15) -> str:
    failures = [r for r in results if not r.compiled]
    groups: Counter[str] = Counter(normalize_error(r.error) for r in failures)
    examples: dict[str, FileResult] = {}
    for r in failures:
        examples.setdefault(normalize_error(r.error), r)
    rows = [(str(n), clip(msg, 140), f"`{examples[msg].file}`", clip(examples[msg].error, 160))
            for msg, n in groups.most_common(top)]
    header = ["files", "message (normalized)", "example file", "example message"]
    body = table(header, rows) if rows else "None."
    return f"## {engine}: most common compile failures ({len(failures)} files not compiled)\n\n{body}"


def features_section(engine: str, engines: Sequence[str], files: dict[str, SchemaFile],
                     results: dict[str, list[FileResult]], top: int = 15) -> str:
    """Schema features (``meta.features``) of the files ``engine`` fails, with every engine's pass rate."""
    by_engine = {e: {r.file: r for r in results[e]} for e in engines}
    having: Counter[str] = Counter()
    failing: Counter[str] = Counter()
    not_compiled: Counter[str] = Counter()
    for name, schema_file in files.items():
        r = by_engine[engine][name]
        for feature in schema_file.features:
            having[feature] += 1
            failing[feature] += not r.passed
            not_compiled[feature] += not r.compiled
    rows = []
    for feature, n_fail in failing.most_common(top):
        if n_fail == 0:
            break
        names = [n for n, f in files.items() if feature in f.features]
        row = [f"`{feature}`", str(having[feature]), str(not_compiled[feature]), str(n_fail)]
        row += [fmt_share(sum(by_engine[e][n].passed for n in names), len(names)) for e in engines]
        rows.append(row)
    header = ["feature", "files with it", f"{engine}: not compiled", f"{engine}: failing",
              *(f"{e}: passing" for e in engines)]
    body = table(header, rows) if rows else "None."
    return (f"## {engine}: schema features of the failing files (top {top})\n\n"
            "A file usually has several features, so a row is a hint, not a cause.\n\n" + body)


def token_context(instance: Instance, step: int | None, tokenizer: Any) -> str:
    """Where a walk stopped: the text consumed before the refused token, and that token."""
    if step is None:
        return "accepted through EOS"
    if step >= len(instance.tokens):
        return "all tokens accepted, EOS refused"
    before = tokenizer.detokenize(list(instance.tokens[:step])).decode("utf-8", "replace")
    token = tokenizer.detokenize([instance.tokens[step]]).decode("utf-8", "replace")
    return f"refused token {step} {token!r} after {clip(before[-60:], 70)!r}"


def jsonschema_verdict(schema: Any, text: str) -> str:
    """A second opinion on the label: the ``jsonschema`` package, formats checked where it can."""
    try:
        import jsonschema
    except ImportError:
        return "–"
    try:
        validator = jsonschema.validators.validator_for(schema)
        ok = validator(schema, format_checker=validator.FORMAT_CHECKER).is_valid(json.loads(text))
    except Exception as exc:
        return f"error: {clip(first_line(exc), 60)}"
    return "valid" if ok else "invalid"


def detail_section(engine: str, results: Sequence[FileResult], files: dict[str, SchemaFile],
                   tokenizer: Any, want_valid: bool, limit: int) -> str:
    """Instances of ``engine`` classified wrongly: invalid accepted (want_valid False) or valid rejected."""
    rows = []
    for r in results:
        for inst, res in zip(files[r.file].instances, r.instances, strict=False):
            if res.valid == want_valid and not res.correct:
                where = token_context(inst, res.step, tokenizer)
                if res.note:
                    where += f" ({clip(res.note, 100)})"
                verdict = jsonschema_verdict(files[r.file].schema, inst.text)
                rows.append((f"`{r.file}`", clip(inst.description, 60), f"`{clip(inst.text, 200)}`", where,
                             verdict))
    title = "invalid instances accepted (correctness bugs)" if not want_valid else "valid instances rejected"
    if not rows:
        return f"## {engine}: {title}\n\nNone."
    shown = rows[:limit]
    more = f"\n\n(+{len(rows) - limit} more in the JSONL)" if len(rows) > limit else ""
    return (f"## {engine}: {title} ({len(rows)})\n\n"
            + table(["file", "test", "instance text", "where", "jsonschema"], shown) + more)


def walk_problems_section(results: dict[str, list[FileResult]]) -> str:
    rows = [(engine, f"`{r.file}`", clip(r.walk_failed or r.error, 160))
            for engine, rs in results.items() for r in rs if r.walk_failed or r.timed_out]
    if not rows:
        return ""
    return "## Timeouts and walk failures\n\n" + table(["engine", "file", "what"], rows[:50])


def build_report(opts: Options, files: dict[str, SchemaFile], results: dict[str, list[FileResult]],
                 tokenizer: Any, n_total: int, wall_s: float, eos_id: int) -> str:
    summaries = [summarize(e, results[e]) for e in opts.engines]
    fallbacks = sum(i.ascii_fallback for f in files.values() for i in f.instances)
    n_inst = sum(len(f.instances) for f in files.values())
    n_tokens = [len(i.tokens) for f in files.values() for i in f.instances]
    parts = [
        "# MaskBench: JSON Schema masks, token by token",
        f"{len(files)} files, {n_inst} test instances, {int(np.sum(n_tokens)) if n_tokens else 0} instance "
        f"tokens (median {int(np.median(n_tokens)) if n_tokens else 0} per instance).",
        summary_section(summaries),
        file_list_section(summaries),
        split_section(opts.engines, results),
    ]
    for engine in ("ours", "ours-regex"):
        if engine in results:
            parts.append(failure_reasons_section(engine, results[engine]))
            parts.append(features_section(engine, opts.engines, files, results))
            rs = results[engine]
            parts.append(detail_section(engine, rs, files, tokenizer, want_valid=False, limit=50))
            parts.append(detail_section(engine, rs, files, tokenizer, want_valid=True, limit=25))
    for engine in opts.engines:
        if engine not in ("ours", "ours-regex"):
            parts.append(failure_reasons_section(engine, results[engine], top=5))
    walk_problems = walk_problems_section(results)
    if walk_problems:
        parts.append(walk_problems)
    notes = "\n".join(ENGINE_NOTES[e] for e in opts.engines)
    notes = notes.replace("{llg}", json.dumps(LLGUIDANCE_FLEXIBLE_OPTIONS))
    parts.append(METHOD_NOTES.format(fallbacks=fallbacks, eos=eos_id, engines=notes,
                                     timeout=opts.timeout, ours_timeout=opts.ours_timeout))
    parts.append(environment_section(opts, len(files), n_total, wall_s))
    return "\n\n".join(parts) + "\n"


def result_record(r: FileResult) -> dict[str, Any]:
    """One JSONL line: the file result without per-call mask times (their count and sum instead)."""
    instances = [{"valid": i.valid, "accepted": i.accepted, "step": i.step, "n_tokens": i.n_tokens,
                  "note": i.note, "mask_calls": len(i.mask_times), "mask_s": sum(i.mask_times),
                  "first_mask_s": i.mask_times[0] if i.mask_times else None}
                 for i in r.instances]
    return {"file": r.file, "split": r.split, "engine": r.engine, "compiled": r.compiled,
            "compile_s": r.compile_s, "timed_out": r.timed_out, "error": r.error,
            "walk_failed": r.walk_failed, "passed": r.passed, "instances": instances}


# -- main ----------------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"[maskbench] {message}", file=sys.stderr, flush=True)


def compile_timeout(opts: Options, engine: str) -> float:
    return opts.ours_timeout if engine in ("ours", "ours-regex", "ours-dfa") else opts.timeout


def run_all(opts: Options, paths: Sequence[Path], tokenizer: Any) -> tuple[dict[str, SchemaFile],
                                                                              dict[str, list[FileResult]]]:
    workers = {e: EngineWorker(e, opts.vocab, int(opts.memory_limit_gb * 2**30)) for e in opts.engines}
    files: dict[str, SchemaFile] = {}
    results: dict[str, list[FileResult]] = {e: [] for e in opts.engines}
    jsonl = open(opts.jsonl, "w", encoding="utf-8") if opts.jsonl else None
    try:
        for worker in workers.values():
            worker.start()
        for n, path in enumerate(paths, 1):
            schema_file = load_schema_file(path, tokenizer.tokenize)
            files[schema_file.name] = schema_file
            status = []
            for engine, worker in workers.items():
                r = worker.run(schema_file, compile_timeout(opts, engine), opts.walk_timeout)
                results[engine].append(r)
                status.append(f"{engine}={'pass' if r.passed else 'FAIL' if r.compiled else 'nc'}")
                if jsonl is not None:
                    jsonl.write(json.dumps(result_record(r), ensure_ascii=False) + "\n")
            if jsonl is not None:
                jsonl.flush()
            progress(f"{n}/{len(paths)} {schema_file.name}: " + " ".join(status))
    finally:
        for worker in workers.values():
            worker.close()
        if jsonl is not None:
            jsonl.close()
    return files, results


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_options(sys.argv[1:] if argv is None else argv)
    check_engines_importable(opts.engines)
    all_paths = list_files(opts.folder)
    paths = choose_files(all_paths, opts.sample, opts.seed, opts.limit)
    progress(f"{len(paths)} of {len(all_paths)} files, engines {','.join(opts.engines)}")
    tokenizer = load_vocab_only(opts.vocab)
    t0 = time.perf_counter()
    files, results = run_all(opts, paths, tokenizer)
    wall_s = time.perf_counter() - t0
    report = build_report(opts, files, results, tokenizer, len(all_paths), wall_s, int(tokenizer.token_eos()))
    print(report)
    if opts.out is not None:
        opts.out.write_text(report, encoding="utf-8")
        progress(f"report written to {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

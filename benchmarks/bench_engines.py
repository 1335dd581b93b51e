"""The engines ``benchmarks/bench.py`` compares, each behind the same small interface.

Every engine is driven the way llama-cpp-python drives a constraint:

- ours, outlines, llguidance and xgrammar are ``logits_processor`` callables ``(input_ids, scores)``:
  llama-cpp-python calls them before every sample with the prompt + generated ids and a strided
  float32 view of its candidates' logits, and they write ``-inf`` into the forbidden entries. Ours and
  outlines' processors are used as their libraries ship them; llguidance and xgrammar ship none for
  llama-cpp-python, so :class:`BitmaskLogitsProcessor` wraps their matchers (fill the engine's 32-bit
  token bitmask, then write ``-inf`` into the smaller side, as ours does: :func:`apply_bitmask`);
- llama.cpp's grammar sampler (GBNF) is a sampler in llama.cpp's chain: per token it is applied to the
  whole candidate array (``llama_sampler_apply``) and told the sampled token (``llama_sampler_accept``).

Each engine builds the same constraint from its own notation (see ``bench_workloads.py``).
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import llama_like_scores, make_cold
from bench_workloads import GRAMMAR, JSON, REGEX, Workload

ENGINES = ("ours", "gbnf", "outlines", "llguidance", "xgrammar")
LABELS = {
    "unconstrained": "unconstrained",
    "ours": "ours",
    "gbnf": "llama.cpp GBNF",
    "outlines": "outlines (outlines-core)",
    "llguidance": "llguidance",
    "xgrammar": "xgrammar",
}
PROMPT_IDS = (10, 20, 30)
"""Any ids: the processors only compare them (to tell a new prompt from the next token)."""
LLGUIDANCE_JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
"""``json.dumps`` separators. llguidance's default, any whitespace anywhere, lets a random-weight model
write whitespace until ``max_tokens``; ours and outlines-core allow one optional space after ``,``/``:``."""


def load_vocab_only(gguf: Path) -> Any:
    import llama_cpp

    return llama_cpp.Llama(str(gguf), vocab_only=True, verbose=False)


def eog_ids_of(llm: Any) -> list[int]:
    """Every end-of-generation id, as llama.cpp decides it."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return [i for i in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, i)]


# -- the bitmask processor for llguidance and xgrammar ---------------------------------------------


_BITS = np.arange(32, dtype=np.intp)
_FEW_WORDS = 256


def _bit_ids(words: np.ndarray, index: np.ndarray, value: bool) -> np.ndarray:
    """Token ids whose bit is ``value`` in the 32-bit words ``words[index]``."""
    bits = np.unpackbits(words[index].view(np.uint8).reshape(-1, 4), axis=1, bitorder="little").astype(bool)
    return (index[:, None] * 32 + _BITS)[bits if value else ~bits]


def apply_bitmask(scores: np.ndarray, words: np.ndarray, n_vocab: int) -> None:
    """Write ``-inf`` into ``scores`` (a strided view is fine) wherever the token bitmask has a 0.

    Like ours, it writes the smaller side: when few words have an allowed bit, it saves the allowed
    scores, fills the row with ``-inf`` and puts them back; when few words have a forbidden bit, it
    writes ``-inf`` at those ids only; otherwise one masked write over the unpacked bitmask."""
    nonzero = np.flatnonzero(words)
    if nonzero.size <= _FEW_WORDS:
        ids = _bit_ids(words, nonzero, True)
        ids = ids[ids < n_vocab]
        kept = scores[ids]
        scores.fill(-np.inf)
        scores[ids] = kept
        return
    partial = np.flatnonzero(words != -1)
    if partial.size <= _FEW_WORDS:
        ids = _bit_ids(words, partial, False)
        scores[ids[ids < n_vocab]] = -np.inf
        return
    allowed = np.unpackbits(words.view(np.uint8), bitorder="little", count=n_vocab).view(bool)
    np.copyto(scores, -np.inf, where=~allowed)


class BitmaskLogitsProcessor:
    """A llama-cpp-python logits processor around a matcher that fills a 32-bit token bitmask.

    Like ours, it notices a new prompt by itself (``input_ids`` that do not extend the last ones by one
    token reset the matcher), and on an error it keeps the exception and forces end-of-generation.
    ``mask_seconds`` collects the time of the engine's own mask computation, without the apply.
    """

    def __init__(self, matcher: Any, n_vocab: int, eog: Sequence[int], fill: Callable[[np.ndarray], None],
                 consume: Callable[[int], bool], reset: Callable[[], None]) -> None:
        self.matcher = matcher
        self.n_vocab = n_vocab
        self.eog = np.asarray(eog, dtype=np.intp)
        self.bitmask = np.zeros((1, (n_vocab + 31) // 32), dtype=np.int32)
        self._fill, self._consume, self._reset = fill, consume, reset
        self.seen: np.ndarray | None = None
        self.error: BaseException | None = None
        self.mask_seconds: list[float] = []

    def __call__(self, input_ids: Any, scores: np.ndarray) -> np.ndarray:
        try:
            ids = np.asarray(input_ids)
            seen = self.seen
            if seen is not None and ids.shape[0] == seen.shape[0] + 1 and np.array_equal(ids[:-1], seen):
                if self.error is None and not self._consume(int(ids[-1])):
                    raise ValueError(f"the matcher refused token {int(ids[-1])}")
            else:
                self._reset()
                self.error = None
            self.seen = ids.copy()
            if self.error is not None:
                raise self.error
            t0 = time.perf_counter()
            self._fill(self.bitmask)
            self.mask_seconds.append(time.perf_counter() - t0)
            apply_bitmask(scores, self.bitmask.reshape(-1), self.n_vocab)
        except Exception as exc:
            self.error = exc
            scores[:] = -np.inf
            scores[self.eog[self.eog < scores.shape[-1]]] = 0.0
        return scores


# -- the engines -----------------------------------------------------------------------------------


class Engine:
    """One constraint engine on one vocabulary (a GGUF file, or a loaded model for end-to-end runs)."""

    name = ""

    def __init__(self, gguf: Path, llm: Any | None = None) -> None:
        self.gguf = gguf

    def unsupported(self, workload: Workload) -> str | None:
        """Why this engine cannot run ``workload``, or None."""
        return None

    def make_cold(self) -> None:
        """Drop the engine's caches, so the next build starts from scratch."""

    def build(self, workload: Workload) -> Any:
        """Cold or first construction: everything from the constraint's text to a ready processor."""
        raise NotImplementedError

    def build_warm(self, workload: Workload) -> Any:
        """The same construction again (the engine's own caches, if it has any, are warm)."""
        return self.build(workload)

    def stepper(self, built: Any) -> Stepper:
        """Per-token driver of a built constraint for the replay."""
        return ProcessorStepper(built)

    def completion_kwargs(self, workload: Workload, built: Any) -> tuple[dict[str, Any], Any]:
        """``create_completion`` keyword arguments for one request and the object to check afterwards.

        What a caller that keeps the built constraint does per request; it is timed with the call."""
        from llama_cpp import LogitsProcessorList

        return {"logits_processor": LogitsProcessorList([built])}, built

    @staticmethod
    def failure(checked: Any) -> str:
        """The error the processor kept during the last generation, '' if none."""
        error = getattr(checked, "error", None)
        return "" if error is None else f"{type(error).__name__}: {error}"


class OursEngine(Engine):
    """``outlines_gguf`` RegexLogitsProcessor / JSONLogitsProcessor / CFGLogitsProcessor."""

    name = "ours"

    def __init__(self, gguf: Path, llm: Any | None = None) -> None:
        super().__init__(gguf, llm)
        import outlines_gguf

        self.og = outlines_gguf
        # per-vocabulary tables (tries, plain-text split), built once here as the peers build theirs
        self.vocab = outlines_gguf.Vocabulary.from_gguf(gguf).prepare()
        self.og.RegexLogitsProcessor("[0-9]", self.vocab).guide.mask(0)  # the other per-vocabulary tables
        make_cold(self.vocab)

    def unsupported(self, workload: Workload) -> str | None:
        if workload.kind == GRAMMAR and not hasattr(self.og, "CFGLogitsProcessor"):
            return "`outlines_gguf.CFGLogitsProcessor` does not exist yet in this checkout"
        return None

    def make_cold(self) -> None:
        make_cold(self.vocab)

    def build(self, workload: Workload) -> Any:
        if workload.kind == REGEX:
            return self.og.RegexLogitsProcessor(workload.regex, self.vocab)
        if workload.kind == JSON:
            return self.og.JSONLogitsProcessor(workload.schema, self.vocab)
        return self.og.CFGLogitsProcessor(workload.lark, self.vocab)

    def completion_kwargs(self, workload: Workload, built: Any) -> tuple[dict[str, Any], Any]:
        # a new processor per request, as users write it: a guide-cache hit after the first
        return super().completion_kwargs(workload, self.build(workload))


class OutlinesEngine(Engine):
    """outlines' own llama.cpp integration: ``outlines.from_llamacpp`` and ``outlines.Generator``.

    Its processor is outlines-core's (``Index`` + ``Guide``) for regexes and JSON Schemas; outlines
    sends context-free grammars to llguidance, measured in its own column, so grammars are n/a here.
    """

    name = "outlines"

    def __init__(self, gguf: Path, llm: Any | None = None) -> None:
        super().__init__(gguf, llm)
        import outlines

        self.outlines = outlines
        self.llm = llm if llm is not None else load_vocab_only(gguf)
        self.model = outlines.from_llamacpp(self.llm, chat_mode=False)

    def unsupported(self, workload: Workload) -> str | None:
        if workload.kind == GRAMMAR:
            return "outlines-core has no grammar support (outlines sends Lark grammars to llguidance)"
        return None

    def build(self, workload: Workload) -> Any:
        from outlines.types import JsonSchema, Regex

        output = Regex(workload.regex) if workload.kind == REGEX else JsonSchema(workload.schema_json)
        return self.outlines.Generator(self.model, output).logits_processor

    def stepper(self, built: Any) -> Stepper:
        return ProcessorStepper(built, reset=built.reset)

    def completion_kwargs(self, workload: Workload, built: Any) -> tuple[dict[str, Any], Any]:
        built.reset()  # what outlines' Generator does before each generation
        return super().completion_kwargs(workload, built)


class LLGuidanceEngine(Engine):
    """llguidance's ``LLMatcher`` with a tokenizer from the llama.cpp vocabulary
    (``llguidance.llamacpp.lltokenizer_from_vocab``; every end-of-generation id is an EOS)."""

    name = "llguidance"

    def __init__(self, gguf: Path, llm: Any | None = None) -> None:
        super().__init__(gguf, llm)
        import llama_cpp
        import llguidance
        import llguidance.llamacpp

        self.llg = llguidance
        self.llm = llm if llm is not None else load_vocab_only(gguf)
        self.eog = eog_ids_of(self.llm)
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(vocab, eos_token=self.eog)
        self.n_vocab = self.llm.n_vocab()

    def grammar(self, workload: Workload) -> str:
        m = self.llg.LLMatcher
        if workload.kind == REGEX:
            return m.grammar_from_regex(workload.regex)
        if workload.kind == JSON:
            return m.grammar_from_json_schema(workload.schema, defaults=LLGUIDANCE_JSON_OPTIONS)
        return m.grammar_from_lark(workload.lark)

    def build(self, workload: Workload) -> BitmaskLogitsProcessor:
        matcher = self.llg.LLMatcher(self.tokenizer, self.grammar(workload), log_level=0)
        if matcher.is_error():
            raise ValueError(matcher.get_error())

        def fill(bitmask: np.ndarray) -> None:
            matcher.unsafe_compute_mask_ptr(bitmask.ctypes.data, bitmask.nbytes)

        return BitmaskLogitsProcessor(matcher, self.n_vocab, self.eog, fill, matcher.consume_token,
                                      matcher.reset)


class XGrammarEngine(Engine):
    """xgrammar's ``GrammarCompiler`` / ``GrammarMatcher`` with a ``TokenizerInfo`` made of the
    vocabulary's exact token bytes (``VocabType.RAW``); special/control ids are given as empty tokens
    (never allowed in text) and every end-of-generation id is a stop token."""

    name = "xgrammar"

    def __init__(self, gguf: Path, llm: Any | None = None) -> None:
        super().__init__(gguf, llm)
        import xgrammar

        from outlines_gguf import Vocabulary

        self.xgr = xgrammar
        vocab = Vocabulary.from_gguf(gguf)
        encoded = [b"" if i in vocab.special_ids else token for i, token in enumerate(vocab.tokens)]
        self.eog = sorted(vocab.eog_ids)
        self.n_vocab = vocab.size
        self.info = xgrammar.TokenizerInfo(encoded, xgrammar.VocabType.RAW, vocab_size=vocab.size,
                                           stop_token_ids=self.eog)
        self.compiler = xgrammar.GrammarCompiler(self.info)

    def make_cold(self) -> None:
        self.compiler.clear_cache()

    def compile(self, workload: Workload) -> Any:
        if workload.kind == REGEX:
            return self.compiler.compile_regex(workload.regex)
        if workload.kind == JSON:
            return self.compiler.compile_json_schema(workload.schema_json, any_whitespace=False)
        return self.compiler.compile_grammar(workload.ebnf, root_rule_name="root")

    def build(self, workload: Workload) -> BitmaskLogitsProcessor:
        matcher = self.xgr.GrammarMatcher(self.compile(workload))
        return BitmaskLogitsProcessor(matcher, self.n_vocab, self.eog, matcher.fill_next_token_bitmask,
                                      matcher.accept_token, matcher.reset)


@dataclass
class GBNFConstraint:
    """A parsed llama.cpp grammar sampler and the GBNF text it came from."""

    text: str
    sampler: Any
    free: Callable[[Any], None]

    def __del__(self) -> None:
        if self.sampler:
            self.free(self.sampler)
            self.sampler = None


class GBNFEngine(Engine):
    """llama.cpp's grammar sampler: the workload's GBNF (JSON Schemas through
    ``LlamaGrammar.from_json_schema``), parsed by ``llama_sampler_init_grammar``.

    llama-cpp-python parses the grammar again at the start of every generation; *cold* includes the
    schema-to-GBNF conversion, *warm* is that per-generation parse alone (a kept ``LlamaGrammar``)."""

    name = "gbnf"

    def __init__(self, gguf: Path, llm: Any | None = None) -> None:
        super().__init__(gguf, llm)
        import llama_cpp

        self.lc = llama_cpp
        self.llm = llm if llm is not None else load_vocab_only(gguf)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.texts: dict[str, str] = {}

    def make_cold(self) -> None:
        self.texts.clear()

    def text(self, workload: Workload) -> str:
        if workload.name not in self.texts:
            if workload.kind == JSON:
                grammar = self.lc.LlamaGrammar.from_json_schema(workload.schema_json, verbose=False)
                self.texts[workload.name] = grammar._grammar
            else:
                self.texts[workload.name] = workload.gbnf or ""
        return self.texts[workload.name]

    def build(self, workload: Workload) -> GBNFConstraint:
        text = self.text(workload)
        sampler = self.lc.llama_sampler_init_grammar(self.vocab, text.encode(), b"root")
        if not sampler:
            raise ValueError("llama.cpp rejected the grammar (llama_sampler_init_grammar returned NULL)")
        return GBNFConstraint(text, sampler, self.lc.llama_sampler_free)

    def stepper(self, built: Any) -> Stepper:
        return GBNFStepper(self.lc, built)

    def completion_kwargs(self, workload: Workload, built: Any) -> tuple[dict[str, Any], Any]:
        return {"grammar": self.lc.LlamaGrammar.from_string(built.text, verbose=False)}, None


ENGINE_CLASSES: dict[str, type[Engine]] = {
    "ours": OursEngine,
    "gbnf": GBNFEngine,
    "outlines": OutlinesEngine,
    "llguidance": LLGuidanceEngine,
    "xgrammar": XGrammarEngine,
}


# -- replaying a token sequence --------------------------------------------------------------------


class Stepper:
    """Drives a built constraint one token at a time, as llama-cpp-python would."""

    def start(self) -> None:
        """Before the first call of a generation."""

    def step(self, input_ids: np.ndarray, records: np.recarray) -> None:
        raise NotImplementedError

    def inner_seconds(self) -> list[float]:
        """The engine's own mask time per call, where the processor measures it."""
        return []


class ProcessorStepper(Stepper):
    """A logits processor, called with llama-cpp-python's arguments; only the call is timed (not the
    write-back of its return value that llama-cpp-python adds, the same for every processor)."""

    def __init__(self, processor: Any, reset: Callable[[], None] | None = None) -> None:
        self.processor = processor
        self.reset = reset

    def start(self) -> None:
        if self.reset is not None:
            self.reset()

    def step(self, input_ids: np.ndarray, records: np.recarray) -> None:
        self.processor(input_ids, records.logit)

    def inner_seconds(self) -> list[float]:
        return list(getattr(self.processor, "mask_seconds", []))


class GBNFStepper(Stepper):
    """llama.cpp's grammar sampler on the whole candidate array: accept the last token, then apply."""

    def __init__(self, lc: Any, built: GBNFConstraint) -> None:
        self.lc = lc
        self.built = built
        self.length = -1

    def start(self) -> None:
        self.lc.llama_sampler_reset(self.built.sampler)
        self.length = -1

    def step(self, input_ids: np.ndarray, records: np.recarray) -> None:
        lc = self.lc
        if 0 <= self.length == input_ids.shape[0] - 1:
            lc.llama_sampler_accept(self.built.sampler, int(input_ids[-1]))
        self.length = input_ids.shape[0]
        array = lc.llama_token_data_array(data=records.ctypes.data_as(lc.llama_token_data_p),
                                          size=records.shape[0], selected=-1, sorted=False)
        lc.llama_sampler_apply(self.built.sampler, ctypes.byref(array))


@dataclass
class Replay:
    """One pass of a reference token sequence through an engine."""

    seconds: list[float] = field(default_factory=list)  # per call, tokens + the final end check
    inner: list[float] = field(default_factory=list)  # engine-only mask time, where measured
    rejected_at: int | None = None  # index of the first reference token the engine did not allow
    end_allowed: bool = False  # end-of-generation allowed after the last token
    error: str = ""


def replay(stepper: Stepper, tokens: Sequence[int], n_vocab: int, eog: Sequence[int],
           seed: int = 0) -> Replay:
    """Feed ``tokens`` through ``stepper`` one call per token, then one more call for the end.

    Before each call the logits are reset to the same random row (not timed); only the engine's call is
    timed. A token the engine does not allow ends the replay (GBNF would abort on accepting it)."""
    out = Replay()
    records, _ = llama_like_scores(n_vocab)
    logits = np.random.default_rng(seed).normal(0.0, 3.0, n_vocab).astype(np.float32)
    ids = np.array([*PROMPT_IDS, *tokens], dtype=np.intc)
    eog_ids = np.asarray(eog, dtype=np.intp)
    stepper.start()
    for k in range(len(tokens) + 1):
        records.logit[:] = logits
        input_ids = ids[: len(PROMPT_IDS) + k]
        t0 = time.perf_counter()
        try:
            stepper.step(input_ids, records)
        except Exception as exc:
            out.error = f"{type(exc).__name__}: {exc}"[:300]
            break
        out.seconds.append(time.perf_counter() - t0)
        allowed = records.logit
        if k < len(tokens):
            if not np.isfinite(allowed[tokens[k]]):
                out.rejected_at = k
                break
        else:
            out.end_allowed = bool(np.isfinite(allowed[eog_ids]).any())
    out.inner = stepper.inner_seconds()
    error = getattr(getattr(stepper, "processor", None), "error", None)
    if error is not None and not out.error:
        out.error = f"{type(error).__name__}: {error}"[:300]
    return out


# -- the worker process ----------------------------------------------------------------------------


def read_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return out


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def measure(engine: Engine, workload: Workload, tokens: Sequence[int], n_vocab: int, eog: Sequence[int],
            seed: int) -> dict[str, Any]:
    """One run of one workload: cold build, first replay, warm build, warm replay (and for ours a build
    that finds the automaton in the on-disk cache, where the library has one)."""
    result: dict[str, Any] = {}
    engine.make_cold()
    try:
        t0 = time.perf_counter()
        built = engine.build(workload)
        result["cold"] = time.perf_counter() - t0
    except Exception as exc:
        return {"error": short_error(exc)}
    first = replay(engine.stepper(built), tokens, n_vocab, eog, seed)
    result["first"] = first.__dict__
    try:
        t0 = time.perf_counter()
        built = engine.build_warm(workload)
        result["warm"] = time.perf_counter() - t0
    except Exception as exc:
        return {**result, "error": "warm build: " + short_error(exc)}
    result["again"] = replay(engine.stepper(built), tokens, n_vocab, eog, seed).__dict__
    if isinstance(engine, OursEngine) and os.environ.get("OUTLINES_GGUF_BENCH_OWNS_CACHE") == "1":
        try:
            import outlines_gguf.disk_cache  # noqa: F401 - only where the library has an on-disk cache
        except ImportError:
            pass
        else:
            saved = os.environ.pop("OUTLINES_GGUF_BENCH_OWNS_CACHE")
            try:
                make_cold(engine.vocab)  # memory caches only: the folder is kept this time
                t0 = time.perf_counter()
                engine.build(workload)
                result["disk"] = time.perf_counter() - t0
            finally:
                os.environ["OUTLINES_GGUF_BENCH_OWNS_CACHE"] = saved
    return result


def measure_memory(engine: Engine, workload: Workload, tokens: Sequence[int], n_vocab: int,
                   eog: Sequence[int]) -> dict[str, Any]:
    """Peak resident memory added by one cold build and one replay (the first in this process)."""
    before = read_status()
    peak_reset = reset_peak()
    t0 = time.perf_counter()
    try:
        built = engine.build(workload)
    except Exception as exc:
        return {"error": short_error(exc)}
    build_seconds = time.perf_counter() - t0
    done = replay(engine.stepper(built), tokens, n_vocab, eog)
    after = read_status()
    return {
        "rss_before": before.get("VmRSS", 0),
        "peak_delta": after.get("VmHWM", 0) - (before.get("VmRSS", 0) if peak_reset else 0),
        "peak_reset": peak_reset,
        "first_process_build": build_seconds,
        "first_process_pass": sum(done.seconds),
        "first_process_first_call": done.seconds[0] if done.seconds else float("nan"),
    }


def worker_main(engine_name: str, gguf: str, conn: Connection) -> None:
    """Worker process: set the engine up on one vocabulary, then answer jobs until sent None.

    Jobs are (kind, workload, tokens, n_vocab, eog, seed) with kind "measure" or "memory"; replies are
    dicts (see :func:`measure` and :func:`measure_memory`)."""
    start = read_status()
    t0 = time.perf_counter()
    try:
        engine = ENGINE_CLASSES[engine_name](Path(gguf))
    except Exception as exc:
        conn.send({"fatal": short_error(exc)})
        return
    setup = time.perf_counter() - t0
    conn.send({"ready": True, "setup_seconds": setup, "rss_start": start.get("VmRSS", 0),
               "rss_setup": read_status().get("VmRSS", 0)})
    while True:
        job = conn.recv()
        if job is None:
            return
        kind, workload, tokens, n_vocab, eog, seed = job
        reason = engine.unsupported(workload)
        if reason is not None:
            conn.send({"unsupported": reason})
            continue
        try:
            if kind == "memory":
                conn.send(measure_memory(engine, workload, tokens, n_vocab, eog))
            else:
                conn.send(measure(engine, workload, tokens, n_vocab, eog, seed))
        except Exception as exc:
            conn.send({"error": short_error(exc)})


def vocab_facts(gguf: Path) -> dict[str, Any]:
    """Size and end-of-generation ids of a vocabulary (through llama.cpp)."""
    llm = load_vocab_only(gguf)
    return {"n_vocab": llm.n_vocab(), "eog": eog_ids_of(llm)}


def tokenize(llm: Any, vocab: Any, text: str) -> list[int]:
    """``text`` as llama.cpp tokenizes it (no BOS, special tokens not parsed): what a model writing it
    would most likely emit. SentencePiece vocabularies put a space in front of the text (Llama-2's
    ``▁+1415``): there the text is tokenized after a newline and the newline's tokens are dropped.
    The result always decodes (``vocab.decode``, exact bytes) to ``text``."""
    target = text.encode("utf-8")
    ids = [int(t) for t in llm.tokenize(target, add_bos=False, special=False)]
    if vocab.decode(ids) == target:
        return ids
    ids = [int(t) for t in llm.tokenize(b"\n" + target, add_bos=False, special=False)]
    for k in range(1, min(len(ids), 4)):
        if vocab.decode(ids[k:]) == target:
            return ids[k:]
    raise ValueError(f"cannot tokenize {text[:40]!r} into tokens that decode to exactly it")

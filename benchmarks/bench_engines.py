"""Every constraint engine the benchmarks drive, and the ways they drive them: the one home of the
engine adapters (ours, llama.cpp's GBNF sampler, outlines, outlines-core, llguidance, xgrammar).

Three interfaces, one per kind of measurement:

- :class:`Engine` (``bench.py``): each engine builds the same constraint (a ``bench_workloads.Workload``)
  from its own notation into what llama-cpp-python takes, and is replayed or run end to end as
  llama-cpp-python drives it:

  - ours, outlines, llguidance and xgrammar are ``logits_processor`` callables ``(input_ids, scores)``:
    llama-cpp-python calls them before every sample with the prompt + generated ids and a strided
    float32 view of its candidates' logits, and they write ``-inf`` into the forbidden entries. Ours
    and outlines' processors are used as their libraries ship them; llguidance and xgrammar ship none
    for llama-cpp-python, so :class:`BitmaskLogitsProcessor` wraps their matchers (fill the engine's
    32-bit token bitmask, then write ``-inf`` into the smaller side, as ours does: :func:`apply_bitmask`);
  - llama.cpp's grammar sampler (GBNF) is a sampler in llama.cpp's chain: per token it is applied to
    the whole candidate array (``llama_sampler_apply``) and told the sampled token
    (``llama_sampler_accept``).

- :class:`MaskEngine` (``maskbench.py``): a JSON Schema compiled once, then a :class:`Session` per test
  instance that computes each mask (timed), tells whether a token is allowed and consumes it; ours
  (JSON, its DFA engine, or our regex engine on outlines-core's regex), llguidance and outlines-core.

- :class:`RegexStepper` (``bench_regex.py``): per-token work of ours and outlines-core's ``Guide``
  (list or bitmask) on a regex, sampling with random logits.

What they share: vocab-only llama.cpp models and their end-of-generation ids, outlines-core's
vocabulary made from ours, llguidance's tokenizer from llama.cpp's vocabulary, llama-cpp-python's
candidate array, and one first-line error message.
"""

from __future__ import annotations

import ctypes
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from bench_common import make_cold
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
"""Any ids: the processors only compare them (to tell a new prompt from the next token). Each
benchmark keeps the prompt ids it has always used (``MASK_PROMPT_IDS``, ``REGEX_PROMPT_IDS``)."""
MASK_PROMPT_IDS = (128000, 9906, 25)
REGEX_PROMPT_IDS = [9707, 11, 1588, 374, 279, 4226, 25, 220]
LLGUIDANCE_JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
"""``json.dumps`` separators. llguidance's default, any whitespace anywhere, lets a random-weight model
write whitespace until ``max_tokens``; ours and outlines-core allow one optional space after ``,``/``:``."""
LLGUIDANCE_FLEXIBLE_OPTIONS = {"whitespace_flexible": True}
"""MaskBench's llguidance JSON options: any whitespace (its instances are ``json.dumps`` text)."""


# -- what the engines share ------------------------------------------------------------------------


def load_vocab_only(gguf: Path) -> Any:
    """A vocab-only ``llama_cpp.Llama`` (no weights): tokenization and llama.cpp's vocabulary."""
    import llama_cpp

    return llama_cpp.Llama(str(gguf), vocab_only=True, verbose=False)


def eog_ids_of(llm: Any) -> list[int]:
    """Every end-of-generation id, as llama.cpp decides it."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return [i for i in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, i)]


def llguidance_tokenizer(llm: Any, eos_token: Sequence[int] | None = None) -> Any:
    """llguidance's tokenizer read from a loaded model's llama.cpp vocabulary
    (``llguidance.llamacpp.lltokenizer_from_vocab``); ``eos_token``: the ids it treats as EOS
    (default: llguidance's own choice, llama.cpp's EOS)."""
    import llama_cpp
    import llguidance.llamacpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    if eos_token is None:
        return llguidance.llamacpp.lltokenizer_from_vocab(vocab)
    return llguidance.llamacpp.lltokenizer_from_vocab(vocab, eos_token=eos_token)


def import_outlines_core() -> Any | None:
    """The outlines_core module, or None when it is not installed."""
    try:
        import outlines_core
    except ImportError:
        return None
    return outlines_core


def outlines_core_vocabulary(oc: Any, vocab: Any) -> Any:
    """An outlines-core ``Vocabulary`` with the same emittable tokens as ours (``vocab``, ours).

    Keys are the exact token bytes (outlines-core accepts bytes keys, so tokens that are not valid
    UTF-8 on their own are kept as they are). Special, padding and end-of-generation ids are left
    out, as our guide never allows them inside the text; the EOS id (``vocab.eos_id``) is passed
    separately, as outlines-core requires.
    """
    mapping: dict[bytes, list[int]] = {}
    for i, token in enumerate(vocab.tokens):
        if i not in vocab.special_ids:
            mapping.setdefault(token, []).append(i)
    return oc.Vocabulary(int(vocab.eos_id), mapping)


def llama_like_scores(n_vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """llama-cpp-python's candidates record array and its non-contiguous ``logit`` view."""
    dtype = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
    records = np.recarray((n_vocab,), dtype=dtype)
    records.id[:] = np.arange(n_vocab, dtype=np.intc)
    records.p[:] = 0.0
    return records, records.logit


def first_line(exc: BaseException | str) -> str:
    """An error (or a message) as one line of at most 300 characters."""
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else text


# -- bench.py: the bitmask processor for llguidance and xgrammar ----------------------------------


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


# -- bench.py: each engine builds the same workload -----------------------------------------------


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
        import llguidance

        self.llg = llguidance
        self.llm = llm if llm is not None else load_vocab_only(gguf)
        self.eog = eog_ids_of(self.llm)
        self.tokenizer = llguidance_tokenizer(self.llm, self.eog)
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


# -- bench.py: replaying a token sequence ---------------------------------------------------------


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


# -- bench.py: the worker process -----------------------------------------------------------------


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
        return {"error": first_line(exc)}
    first = replay(engine.stepper(built), tokens, n_vocab, eog, seed)
    result["first"] = first.__dict__
    try:
        t0 = time.perf_counter()
        built = engine.build_warm(workload)
        result["warm"] = time.perf_counter() - t0
    except Exception as exc:
        return {**result, "error": "warm build: " + first_line(exc)}
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
        return {"error": first_line(exc)}
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
        conn.send({"fatal": first_line(exc)})
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
            conn.send({"error": first_line(exc)})


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


# -- MaskBench: a JSON Schema compiled once, each instance walked token by token --------------------


class Session(Protocol):
    """One walk of one instance through a compiled constraint."""

    def mask(self) -> float:
        """Compute the mask for the next token; return the seconds the engine took."""

    def allows(self, token: int) -> bool: ...

    def consume(self, token: int) -> None: ...

    def error(self) -> str:
        """The engine's error message once it refused a token its own mask allowed, else ''."""


class MaskEngine(Protocol):
    name: str
    eos_id: int

    def compile(self, schema: Any) -> Any: ...

    def session(self, compiled: Any, max_len: int) -> Session: ...


def missing_json_processor_message() -> str:
    return ("outlines_gguf.JSONLogitsProcessor is not available "
            "(outlines_gguf/json_schema/compiler.py is missing "
            "or does not export it); run the peers alone with --engines llguidance,outlines-core")


class ProcessorSession:
    """Drive an outlines-gguf logits processor the way llama-cpp-python does."""

    def __init__(self, processor: Any, n_vocab: int, max_len: int) -> None:
        self.proc = processor
        self.proc.reset()
        self.ids = np.zeros(len(MASK_PROMPT_IDS) + max_len + 1, dtype=np.intc)
        self.ids[: len(MASK_PROMPT_IDS)] = MASK_PROMPT_IDS
        self.n = len(MASK_PROMPT_IDS)
        # a strided float32 view, as llama-cpp-python passes it
        self.candidates, self.scores = llama_like_scores(n_vocab)

    def mask(self) -> float:
        self.scores[:] = 0.0
        ids = self.ids[: self.n]
        t0 = time.perf_counter()
        self.proc(ids, self.scores)
        return time.perf_counter() - t0

    def allows(self, token: int) -> bool:
        return bool(self.scores[token] > -np.inf)

    def consume(self, token: int) -> None:
        self.ids[self.n] = token
        self.n += 1

    def error(self) -> str:
        return "" if self.proc.error is None else first_line(self.proc.error)


class OursMaskEngine:
    """``outlines_gguf.JSONLogitsProcessor`` (imported lazily: it may not exist yet)."""

    name = "ours"

    def __init__(self, vocab_path: Path) -> None:
        import outlines_gguf
        from outlines_gguf import Vocabulary

        if not hasattr(outlines_gguf, "JSONLogitsProcessor"):
            raise ImportError(missing_json_processor_message())
        self.processor_class = outlines_gguf.JSONLogitsProcessor
        self.vocab = Vocabulary.from_gguf(vocab_path)
        self.vocab.prepare()  # one-time vocabulary structures: built here, not inside the first mask
        self.eos_id = int(self.vocab.eos_id)

    def compile(self, schema: Any) -> Any:
        return self.processor_class(schema, self.vocab)

    def clear_cache(self) -> None:
        """Forget every compiled constraint (``bench_common.make_cold``): two files may share a schema."""
        make_cold(self.vocab)

    def session(self, compiled: Any, max_len: int = 0) -> ProcessorSession:
        return ProcessorSession(compiled, self.vocab.size, max_len)


class OursDFAMaskEngine(OursMaskEngine):
    """``JSONLogitsProcessor(engine="dfa")``: the whole-schema DFA engine, for comparison."""

    name = "ours-dfa"

    def compile(self, schema: Any) -> Any:
        return self.processor_class(schema, self.vocab, engine="dfa")


class OursRegexMaskEngine(OursMaskEngine):
    """``outlines_gguf.RegexLogitsProcessor`` on outlines-core's regex for the schema."""

    name = "ours-regex"

    def __init__(self, vocab_path: Path) -> None:
        from outlines_core.json_schema import build_regex_from_schema

        from outlines_gguf import RegexLogitsProcessor, Vocabulary

        self.build_regex = build_regex_from_schema
        self.processor_class = RegexLogitsProcessor
        self.vocab = Vocabulary.from_gguf(vocab_path).prepare()
        self.eos_id = int(self.vocab.eos_id)

    def compile(self, schema: Any) -> Any:
        return self.processor_class(self.build_regex(json.dumps(schema)), self.vocab)


class BitmaskSession:
    """Shared bit test for engines that write a packed int32 bitmask."""

    bitmask: np.ndarray

    def allows(self, token: int) -> bool:
        word = int(self.bitmask.reshape(-1)[token >> 5])
        return bool((word >> (token & 31)) & 1)


class LLGuidanceSession(BitmaskSession):
    def __init__(self, matcher: Any, fill: Any, bitmask: np.ndarray) -> None:
        self.matcher = matcher
        self.fill = fill
        self.bitmask = bitmask
        self.message = ""

    def mask(self) -> float:
        t0 = time.perf_counter()
        self.fill(self.matcher, self.bitmask)
        return time.perf_counter() - t0

    def consume(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            self.message = first_line(self.matcher.get_error() or "consume_token returned False")

    def error(self) -> str:
        if not self.message and self.matcher.is_error():
            self.message = first_line(self.matcher.get_error())
        return self.message


class LLGuidanceMaskEngine:
    """llguidance's ``LLMatcher`` with a tokenizer read from the same GGUF through llama.cpp."""

    name = "llguidance"

    def __init__(self, vocab_path: Path) -> None:
        import llguidance
        from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

        self.llm = load_vocab_only(vocab_path)
        self.tokenizer = llguidance_tokenizer(self.llm)
        self.matcher_class = llguidance.LLMatcher
        self.allocate = allocate_token_bitmask
        self.fill = fill_next_token_bitmask
        self.eos_id = int(self.tokenizer.eos_token)

    def compile(self, schema: Any) -> Any:
        grammar = self.matcher_class.grammar_from_json_schema(schema, defaults=LLGUIDANCE_FLEXIBLE_OPTIONS)
        matcher = self.matcher_class(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(matcher.get_error())
        return matcher

    def session(self, compiled: Any, max_len: int = 0) -> LLGuidanceSession:
        bitmask = self.allocate(1, self.tokenizer.vocab_size)
        return LLGuidanceSession(compiled.deep_copy(), self.fill, bitmask)


class OutlinesCoreSession(BitmaskSession):
    def __init__(self, guide: Any, n_words: int) -> None:
        self.guide = guide
        self.bitmask = np.zeros(n_words, dtype=np.int32)
        self.message = ""

    def mask(self) -> float:
        t0 = time.perf_counter()
        self.guide.write_mask_into(self.bitmask.ctypes.data, self.bitmask.size, 4)
        return time.perf_counter() - t0

    def consume(self, token: int) -> None:
        try:
            self.guide.advance(token, return_tokens=False)
        except Exception as exc:
            self.message = first_line(exc)

    def error(self) -> str:
        return self.message


class OutlinesCoreMaskEngine:
    """outlines-core's regex translation and ``Index``, with the same emittable tokens as ours.

    The token map is keyed by exact token bytes and leaves out the special/control/EOG ids; the EOS id
    is the vocabulary's ``eos_id``, as for the other engines.
    """

    name = "outlines-core"

    def __init__(self, vocab_path: Path) -> None:
        import outlines_core
        from outlines_core.json_schema import build_regex_from_schema

        from outlines_gguf import Vocabulary

        vocab = Vocabulary.from_gguf(vocab_path)
        self.eos_id = int(vocab.eos_id)
        self.oc = outlines_core
        self.build_regex = build_regex_from_schema
        self.vocabulary = outlines_core_vocabulary(outlines_core, vocab)
        self.n_words = (vocab.size + 31) // 32

    def compile(self, schema: Any) -> Any:
        return self.oc.Index(self.build_regex(json.dumps(schema)), self.vocabulary)

    def session(self, compiled: Any, max_len: int = 0) -> OutlinesCoreSession:
        return OutlinesCoreSession(self.oc.Guide(compiled), self.n_words)


MASK_ENGINE_CLASSES: dict[str, Any] = {
    "ours": OursMaskEngine,
    "llguidance": LLGuidanceMaskEngine,
    "outlines-core": OutlinesCoreMaskEngine,
    "ours-regex": OursRegexMaskEngine,
    "ours-dfa": OursDFAMaskEngine,
}


# -- bench_regex.py: per-token work on a regex, sampled with random logits ----------------------------


class RegexStepper(Protocol):
    """One engine's per-token work in a logits-processor loop."""

    def start(self) -> None: ...

    def prepare(self, last_token: int | None) -> None: ...

    def apply(self, scores: np.ndarray, last_token: int | None) -> None: ...

    def is_eog(self, token: int) -> bool: ...

    def probe(self) -> str: ...


class OursRegexStepper:
    """Calls a RegexLogitsProcessor exactly as llama-cpp-python does."""

    def __init__(self, pattern: str, vocab: Any) -> None:
        from outlines_gguf import RegexLogitsProcessor

        self.processor_class = RegexLogitsProcessor
        self.pattern = pattern
        self.vocab = vocab
        self.proc = RegexLogitsProcessor(pattern, vocab)
        self.ids: list[int] = []
        self.input_ids = np.empty(0, dtype=np.intc)

    def start(self) -> None:
        self.proc = self.processor_class(self.pattern, self.vocab)  # a cache hit after the first
        self.ids = list(REGEX_PROMPT_IDS)

    def prepare(self, last_token: int | None) -> None:
        if last_token is not None:
            self.ids.append(last_token)
        self.input_ids = np.array(self.ids, dtype=np.intc)

    def apply(self, scores: np.ndarray, last_token: int | None) -> None:
        self.proc(self.input_ids, scores)

    def is_eog(self, token: int) -> bool:
        return token in self.vocab.eog_ids

    def probe(self) -> str:
        if self.proc.error is not None:
            raise RuntimeError(f"processor failed: {self.proc.error}")
        return str(self.proc.state)


class OutlinesCoreListStepper:
    """outlines-core Guide: allowed ids as a list (``get_tokens`` / ``advance``), -inf written with numpy."""

    def __init__(self, oc: Any, index: Any, eos_id: int) -> None:
        self.oc = oc
        self.index = index
        self.eos_id = eos_id
        self.guide = oc.Guide(index)

    def start(self) -> None:
        self.guide = self.oc.Guide(self.index)

    def prepare(self, last_token: int | None) -> None:
        pass

    def apply(self, scores: np.ndarray, last_token: int | None) -> None:
        tokens = self.guide.get_tokens() if last_token is None else self.guide.advance(last_token)
        allowed = np.asarray(tokens, dtype=np.intp)
        kept = scores[allowed]
        scores[:] = -np.inf
        scores[allowed] = kept

    def is_eog(self, token: int) -> bool:
        return token == self.eos_id

    def probe(self) -> str:
        return str(self.guide.get_state())


class OutlinesCoreBitmaskStepper(OutlinesCoreListStepper):
    """outlines-core Guide: ``write_mask_into`` a 32-bit bitmask, unpacked and applied with numpy."""

    def __init__(self, oc: Any, index: Any, eos_id: int, n_vocab: int) -> None:
        super().__init__(oc, index, eos_id)
        self.n_vocab = n_vocab
        self.bitmask = np.zeros((n_vocab + 31) // 32, dtype=np.int32)

    def apply(self, scores: np.ndarray, last_token: int | None) -> None:
        if last_token is not None:
            self.guide.advance(last_token, return_tokens=False)
        self.bitmask[:] = 0
        self.guide.write_mask_into(self.bitmask.ctypes.data, self.bitmask.size, 4)
        allowed = np.unpackbits(self.bitmask.view(np.uint8), bitorder="little")[: self.n_vocab]
        scores[allowed == 0] = -np.inf

"""Logits processors for llama-cpp-python's ``logits_processor`` hook.

A processor is a callable ``(input_ids, scores) -> scores``. llama-cpp-python
calls it first in its sampler chain with ``input_ids`` = prompt + generated
ids and ``scores`` = a strided float32 view of the candidates' logits, which
it reads back after the call. The processor writes ``-inf`` into every
forbidden entry in place.

llama-cpp-python swallows exceptions raised inside a processor (they cross a
ctypes callback) and would go on sampling unconstrained text. So a processor
never lets an exception escape: it logs it, keeps it in ``processor.error``,
forces end-of-generation for the rest of that generation, and
``processor.raise_if_failed()`` re-raises it as :class:`ProcessorFailedError`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypedDict

import numpy as np

from outlines_gguf.compiler import cached_guide, compile_canonical, gbnf_guide, grammar_guide, regex_guide
from outlines_gguf.errors import (
    ConcurrentUseError,
    IncompleteGenerationError,
    ProcessorFailedError,
    VocabularyError,
)
from outlines_gguf.grammar.gbnf_parse import is_gbnf
from outlines_gguf.guides.base import Guide, RegexGuide
from outlines_gguf.json_schema.keywords import DEFAULT_MAX_DEPTH
from outlines_gguf.json_schema.loading import prepare_schema
from outlines_gguf.json_schema.pushdown import PushdownGuide
from outlines_gguf.json_schema.python_types import schema_source
from outlines_gguf.json_schema.split import split_schema
from outlines_gguf.json_schema.unique import remembering_guide, remembers_keys
from outlines_gguf.llama_cpp import hook
from outlines_gguf.llama_cpp.completion_check import accepts, completion_text, stop_reason
from outlines_gguf.llama_cpp.hook import GuardedHook
from outlines_gguf.locking import Locked
from outlines_gguf.tokens.cache import as_vocabulary
from outlines_gguf.tokens.vocabulary import Vocabulary

logger = logging.getLogger("outlines_gguf")


class GuideLogitsProcessor(GuardedHook, Locked):
    """Constrain generation to a :class:`~outlines_gguf.guides.base.Guide`.

    The first call of a generation records where generation starts (the
    prompt length); later calls advance the guide by the tokens that arrived
    since. A call whose ``input_ids`` do not extend the previous ones by
    exactly one token starts a new generation, so one processor can be
    reused for many prompts, one after another.

    One processor follows one sequence at a time. Calls are serialized by a
    lock, and a thread that starts a new generation while another thread's
    generation is under way (not complete, not failed, not ``reset()``) is
    refused with :class:`~outlines_gguf.errors.ConcurrentUseError`: both
    generations are stopped, ``raise_if_failed()`` reports it, and the
    processor refuses every call (forcing end-of-generation) until
    ``reset()``. A sequence may move between threads (a stream iterated from
    a thread pool). Use one processor per concurrent sequence; the guide
    behind it is shared and thread-safe. Processors pickle (their guide without its mask cache), for
    worker processes.
    """

    def __init__(self, guide: Guide, vocabulary: Vocabulary | None = None) -> None:
        self.guide = guide
        self.vocabulary = vocabulary if vocabulary is not None else guide.vocabulary
        eog = self.vocabulary.eog_array.astype(np.intp)
        self._guard = hook.StickyFailure(f"{type(self).__name__} failed", eog)
        self.calls = 0
        self._lock = self._new_lock()
        self._conflict: ConcurrentUseError | None = None
        self.reset()

    # -- state ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the current generation (and a concurrent use seen before): the next call,
        from any thread, starts a new one."""
        with self._lock:
            self._conflict = None
            self._reset()

    def _reset(self) -> None:
        self.state: Hashable = self.guide.initial_state
        self.prompt_length: int | None = None
        self.generated_ids: list[int] = []
        self._seen: np.ndarray | None = None
        self._owner: int | None = None  # the thread that drives the current generation
        self._guard.reset()

    def _new_lock(self) -> threading.Lock:
        return threading.Lock()  # nothing here takes it twice

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_owner"] = None  # thread ids mean nothing in another process
        return state

    @property
    def is_finished(self) -> bool:
        """True when the text the processor has seen is complete (end of generation is allowed).

        After ``create_completion`` this covers every token but the last one
        sampled (llama.cpp never shows it to the processor): True after an
        end-of-generation stop, but at ``max_tokens`` it can lag one token
        behind; ``raise_if_failed(completion)`` checks the returned text instead.
        """
        return self.guide.is_final(self.state)

    # -- the hook ---------------------------------------------------------------------------

    def __call__(self, input_ids: Any, scores: np.ndarray) -> np.ndarray:
        with self._lock:
            self.calls += 1
            return self._guard.run(lambda: self._step(input_ids, scores), scores)

    def _generation_active(self) -> bool:
        """A generation was started, has not failed, and its text is not yet complete."""
        return self.prompt_length is not None and not self._failed and not self.guide.is_final(self.state)

    def _step(self, input_ids: Any, scores: np.ndarray) -> None:
        if self._conflict is not None:  # refused until reset(): the sequences may be mixed up
            self._guard.keep(self._conflict)
            self._guard.force_eog(scores)
            return
        input_ids = np.asarray(input_ids)
        if input_ids.ndim != 1:
            raise VocabularyError(f"input_ids must be a 1-D array of token ids, not shape {input_ids.shape}")
        thread = threading.get_ident()
        continues = hook.continues(self._seen, input_ids)
        if not continues:
            if self._owner not in (None, thread) and self._generation_active():
                self._conflict = ConcurrentUseError(
                    f"{type(self).__name__} is already following a generation started by another "
                    "thread, which has not finished: use one processor per concurrent sequence (or "
                    "call reset() before handing a processor with an unfinished generation to "
                    "another thread). It refuses every call until reset()."
                )
                raise self._conflict
            self._reset()
            self.prompt_length = int(input_ids.shape[0])
        self._owner = thread
        self._seen = input_ids.copy()
        if continues:
            token = int(input_ids[-1])
            self.generated_ids.append(token)
            if not self._failed:
                self.state = self.guide.next_state(self.state, token)
        if self._failed:
            self._guard.force_eog(scores)
            return
        if np.ndim(scores) != 1 or scores.shape[0] != self.vocabulary.size:
            raise VocabularyError(
                f"scores have shape {np.shape(scores)} but the processor's vocabulary has "
                f"{self.vocabulary.size} tokens: it was built for another model"
            )
        self.guide.mask(self.state).apply(scores)

    def take_forced(self, sampled: int, forced: Sequence[int], natural: np.ndarray | None = None) -> None:
        """Fast-forward: after the last call the sampler chose ``sampled`` and the generation
        loop took ``forced`` without sampling. Advance over ``sampled`` and all forced tokens but
        the last, which the next call brings as its new token, as usual. (``natural``, the raw
        logits of the forced positions, is for trackers.)"""
        with self._lock:
            if self._seen is None or self._failed or not forced:
                return
            new = [int(sampled), *(int(t) for t in forced[:-1])]
            try:
                for token in new:
                    self.generated_ids.append(token)
                    self.state = self.guide.next_state(self.state, token)
            except Exception as exc:
                logger.error("outlines-gguf: %s failed on forced tokens: %s", type(self).__name__, exc)
                self._guard.keep(exc)
            self._seen = np.concatenate([self._seen, np.asarray(new, dtype=self._seen.dtype)])

    def raise_if_failed(self, completion: Any = None) -> None:
        """Raise if the last generation failed, or was cut off before the constraint was complete.

        :class:`ProcessorFailedError` if the processor failed inside the hook.
        With ``completion`` (what ``create_completion``/``create_chat_completion``
        returned, or the generated text), :class:`IncompleteGenerationError` too
        unless the constraint accepts that text: a ``max_tokens`` cut
        (``finish_reason: "length"``) is never silent. Pass it: the processor
        never sees the last sampled token, so without it only failures are
        reported (see :attr:`is_finished`).
        """
        if self.error is not None:
            raise ProcessorFailedError(
                f"{type(self).__name__} failed during generation and stopped it: {self.error}"
            ) from self.error
        if completion is None:
            return
        text, finish_reason = completion_text(completion)
        if accepts(self.guide, text):
            return
        shown = text if len(text) <= 200 else text[:200] + "..."
        cause = {
            "length": "it reached max_tokens (or the context was full): raise max_tokens or n_ctx",
            "stop": "a stop string cut it: remove the stop string",
        }.get(finish_reason or "", "it ended early: give it more tokens")
        raise IncompleteGenerationError(
            f"generation stopped before the constraint was complete (finish_reason={finish_reason!r}); "
            f"{cause}. Partial text: {shown!r}",
            text=text,
            token_ids=list(self.generated_ids),
            reason=stop_reason(finish_reason),
        )

    def accepts(self, text: str) -> bool:
        """Whether ``text`` is complete under this processor's constraint."""
        return accepts(self.guide, text)


class RegexLogitsProcessor(GuideLogitsProcessor):
    """Constrain generation to text that fully matches a regular expression.

    ``pattern`` uses Python ``re`` syntax; ``tokenizer`` is a
    ``llama_cpp.Llama``, a :class:`Vocabulary` or a GGUF path. Invalid or
    unsupported patterns raise :class:`~outlines_gguf.errors.RegexError` here,
    not during generation.

    >>> llm.create_completion(prompt, logits_processor=LogitsProcessorList(
    ...     [RegexLogitsProcessor(r"[0-9]{4}", llm)]))
    """

    def __init__(self, pattern: str, tokenizer: Any) -> None:
        vocabulary = as_vocabulary(tokenizer)
        self.pattern = pattern
        super().__init__(regex_guide(pattern, vocabulary), vocabulary)


class JSONOptions(TypedDict, total=False):
    """The keyword options of :class:`JSONLogitsProcessor` (their defaults are its own), which
    ``generate.json`` passes on as they are: one list, so that type checkers check both."""

    max_depth: int
    lenient: bool
    extra_properties: bool | None
    engine: str
    refs: Mapping[str, Any] | None


class JSONLogitsProcessor(GuideLogitsProcessor):
    """Constrain generation to JSON that validates against a schema.

    ``schema`` is a Pydantic model class, a JSON Schema dict or JSON text, or a
    Python type or function (:mod:`~outlines_gguf.json_schema.python_types`: ``TypedDict``,
    dataclass, ``list[int]``, ``Literal``, ``Enum``, ...); ``parse(text)`` turns
    a complete generation into the matching value. ``tokenizer`` is a
    ``llama_cpp.Llama``, a :class:`Vocabulary` or a GGUF path.
    ``whitespace_pattern`` replaces the default whitespace (an optional space
    after ``:`` and ``,``, which covers ``json.dumps`` output and compact
    JSON). Schemas we cannot enforce raise :class:`~outlines_gguf.SchemaError`
    here, naming the keyword and where it is, unless ``lenient=True``.
    See :func:`~outlines_gguf.compiler.compile_json_schema` for
    ``max_depth`` and ``extra_properties``.

    ``refs`` maps URIs to the other documents the schema's ``$ref``s lead to (a schema split
    over files: ``{"common.json": {...}}``, URIs resolved against the schema's ``$id`` as
    JSON Schema says); the JSON Schema meta-schemas (drafts 4 to 2020-12) need none.
    Nothing is ever fetched: a reference to a document neither gives raises SchemaError.

    ``engine="pushdown"`` (the default, :mod:`~outlines_gguf.json_schema.pushdown`)
    compiles every nested object, array and ``$ref`` target into its own
    small automaton when generation first reaches it, with a return stack:
    recursion and free-form values nest to any depth (``max_depth`` is not
    used). ``engine="dfa"`` compiles the whole schema into one DFA (recursion
    unrolled to ``max_depth``; compiled schemas cached on disk).
    """

    def __init__(
        self,
        schema: Any,
        tokenizer: Any,
        whitespace_pattern: str | None = None,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        lenient: bool = False,
        extra_properties: bool | None = None,
        engine: str = "pushdown",
        refs: Mapping[str, Any] | None = None,
    ) -> None:
        vocabulary = as_vocabulary(tokenizer)
        source = schema_source(schema)
        if extra_properties is None and source.from_python:
            extra_properties = False  # Pydantic ignores undeclared properties
        canonical, extra = prepare_schema(source.schema, extra_properties, refs, lenient)
        self.schema = json.loads(canonical)
        self.pydantic_model = schema if isinstance(source.schema, type) else None
        self.parse = source.parse
        if engine not in ("dfa", "pushdown"):
            raise ValueError(f"engine must be 'pushdown' or 'dfa', not {engine!r}")
        if engine == "pushdown":
            def build_split() -> Guide:
                split = split_schema(canonical, whitespace_pattern, lenient, extra, remembers_keys(canonical))
                guide = PushdownGuide(split, vocabulary)
                # (unique items, distinct extra keys: the ones written remembered)
                return remembering_guide(guide, canonical)

            split_key = ("json-pushdown", canonical, whitespace_pattern, lenient, extra)
            super().__init__(cached_guide(split_key, vocabulary, build_split), vocabulary)
            return
        key = ("json", canonical, whitespace_pattern, max_depth, lenient, extra)

        def build() -> RegexGuide:
            dfa = compile_canonical(canonical, whitespace_pattern, max_depth, lenient, extra)
            return RegexGuide(dfa, vocabulary)

        super().__init__(cached_guide(key, vocabulary, build), vocabulary)


class CFGLogitsProcessor(GuideLogitsProcessor):
    """Constrain generation to text that a Lark grammar accepts.

    ``grammar`` is a Lark grammar (rules, string and regex terminals,
    ``?rule``, ``%import common.*``, ``%ignore``, priorities, templates,
    ``%override``/``%extend``). ``start`` is the start rule, or a list of them
    (the language is their union). ``lexer="auto"`` (default) parses with
    lark's LALR(1) parser and contextual lexer when the grammar has no LALR
    conflicts (whatever is generated, ``Lark(grammar, parser="lalr").parse``
    accepts), and in the general mode otherwise: any context-free grammar,
    ambiguous ones included, with every lexing (what ``Lark(grammar,
    parser="earley", lexer="dynamic_complete")`` accepts); ``"dynamic"``
    forces the general mode, ``"contextual"`` the LALR one. ``tokenizer`` is a
    ``llama_cpp.Llama``, a :class:`Vocabulary` or a GGUF path. Grammar errors
    raise :class:`~outlines_gguf.errors.GrammarError` here, with the location.
    Ready-made grammars are in :mod:`outlines_gguf.grammar.shipped`.

    ``grammar`` may also be a llama.cpp GBNF grammar (rules ``name ::= ...``,
    detected by the ``::=``; it starts at ``root``, ``start`` is not used), or use
    :meth:`from_gbnf` to say so; see :mod:`outlines_gguf.grammar.gbnf`.

    >>> CFGLogitsProcessor('start: NUMBER "+" NUMBER "=" NUMBER\\nNUMBER: /[0-9]+/', llm)
    >>> CFGLogitsProcessor('root ::= [0-9]+ "+" [0-9]+', llm)
    """

    def __init__(
        self, grammar: str, tokenizer: Any, *, start: str | Sequence[str] = "start", lexer: str = "auto"
    ) -> None:
        vocabulary = as_vocabulary(tokenizer)
        self.grammar = grammar
        if is_gbnf(grammar):
            super().__init__(gbnf_guide(grammar, vocabulary), vocabulary)
            return
        super().__init__(grammar_guide(grammar, vocabulary, start, lexer), vocabulary)

    @classmethod
    def from_gbnf(cls, gbnf: str, tokenizer: Any) -> CFGLogitsProcessor:
        """Constrain generation to a llama.cpp GBNF grammar (the text of a ``.gbnf`` file)."""
        vocabulary = as_vocabulary(tokenizer)
        processor = cls.__new__(cls)
        processor.grammar = gbnf
        GuideLogitsProcessor.__init__(processor, gbnf_guide(gbnf, vocabulary), vocabulary)
        return processor

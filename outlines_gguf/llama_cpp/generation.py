"""One generation driven through llama.cpp under a logits processor.

:class:`Generation` is what every high-level generator runs: it tokenizes
the prompt, seeds llama.cpp's sampler (the chain ``Llama.generate`` builds,
the processor first), evaluates and samples in its own loop, so that text
the constraint forces can be taken without sampling and evaluated in one
batch with the token before it (fast-forward, :mod:`fast_forward`),
decodes each token's exact bytes from the :class:`Vocabulary`
(``Llama.detokenize`` drops tokens longer than 32 bytes) through an
incremental UTF-8 decoder (so pieces never end inside a character), and
stops at any end-of-generation id, at ``max_tokens``, when the context is
full, or at a ``stop_at`` string. Afterwards it re-raises a failure that
happened inside the sampler, tells the tracker the last token, and says
whether the constraint was complete.

Each generation evaluates its prompt afresh (the KV cache is reset) so that
the same seed always gives the same text: reusing a cached prefix changes
the logits by rounding differences, which can change a sampled token.
"""

from __future__ import annotations

import codecs
import logging
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from outlines_gguf.errors import ConstraintViolationError, ProcessorFailedError, PromptTooLongError
from outlines_gguf.llama_cpp.fast_forward import FastForward, ForcedRun
from outlines_gguf.llama_cpp.hook import StickyFailure, apply_processor
from outlines_gguf.llama_cpp.model import LlamaCpp
from outlines_gguf.llama_cpp.processors import GuideLogitsProcessor
from outlines_gguf.llama_cpp.tracking import LogitTrackingProcessor

logger = logging.getLogger("outlines_gguf")

Processor = Callable[[Any, np.ndarray], Any]

MAX_SEED = 2**32 - 2
"""Largest seed: llama.cpp reads 2**32 - 1 as "pick a random seed"."""


@dataclass(frozen=True)
class SamplingParams:
    """llama.cpp's sampler settings, applied after the constraint has masked the logits.

    ``temperature=0`` is greedy decoding; ``top_k=0``, ``top_p=1`` and
    ``min_p=0`` switch those filters off. The defaults are llama-cpp-python's.
    """

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not (isinstance(self.top_k, int) and self.top_k >= 0):
            raise ValueError(f"top_k must be an integer >= 0, got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")


@dataclass
class GenerationResult:
    """What a finished generation produced.

    ``finish_reason`` is ``"eog"`` (an end-of-generation token was sampled),
    ``"max_tokens"``, ``"context"`` (the context window is full) or
    ``"stop_at"``; ``complete`` says whether the constraint accepts the text
    (always True without a constraint). ``token_ids`` includes the final
    end-of-generation id when there is one.
    """

    text: str
    token_ids: list[int]
    finish_reason: str
    complete: bool
    seed: int
    n_prompt_tokens: int = 0
    stop: str | None = field(default=None)
    batch_sizes: list[int] = field(default_factory=list)
    n_forced: int = 0
    n_prompt_forced: int = 0
    n_one_by_one: int = 0

    @property
    def forward_passes(self) -> int:
        """Model evaluations after the prompt: one per batch (a sampled token and the tokens
        fast-forward forced after it), fewer than the tokens generated when text was forced.
        Text forced right at the start (``n_prompt_forced`` tokens, ``{"`` of a JSON object) is
        evaluated in the prompt's batch, so it adds no pass. Forced tokens in a batch smaller than
        the model's ``fast_forward_min_batch`` are evaluated one by one (``n_one_by_one`` of
        them, each its own pass: ``batch_sizes`` lists the evaluations as made)."""
        return len(self.batch_sizes)


def check_limits(max_tokens: int | None, seed: int | None) -> None:
    """Raise ValueError unless ``max_tokens`` is None or positive and ``seed`` None or in range."""
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive integer or None, got {max_tokens!r}")
    if seed is not None and (not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise ValueError(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")


def normalize_stop_at(stop_at: str | Sequence[str] | None) -> tuple[str, ...]:
    """``stop_at`` as a tuple of non-empty strings."""
    if stop_at is None:
        return ()
    stops = (stop_at,) if isinstance(stop_at, str) else tuple(stop_at)
    for stop in stops:
        if not isinstance(stop, str) or not stop:
            raise ValueError(f"stop_at must be a non-empty string or a list of them, got {stop!r}")
    return stops


def unwrap(processor: Any) -> Any:
    """The constraint inside a :class:`LogitTrackingProcessor` (or the processor itself)."""
    while isinstance(processor, LogitTrackingProcessor):
        processor = processor.processor
    return processor


class _GuardedHook:
    """Calls the processor inside llama-cpp-python's hook, where ctypes would swallow its exceptions.

    The first exception stops the generation: end-of-generation is forced
    from then on (the processor is not called again) and the error is
    re-raised afterwards (see :mod:`~outlines_gguf.llama_cpp.hook`).
    """

    def __init__(self, processor: Processor, eog: np.ndarray) -> None:
        self.processor = processor
        self._guard = StickyFailure("the logits processor raised", eog)

    @property
    def error(self) -> BaseException | None:
        return self._guard.error

    def __call__(self, input_ids: Any, scores: np.ndarray) -> np.ndarray:
        if self._guard.failed:
            self._guard.force_eog(scores)
            return scores
        return self._guard.run(lambda: apply_processor(self.processor, input_ids, scores), scores)


class Generation:
    """One generation: iterate it for text pieces; ``result`` is set once it is exhausted.

    ``processor`` is a logits processor or None (free text). After the last
    piece it raises :class:`ProcessorFailedError` if the processor failed
    inside the sampler. ``max_tokens=None`` generates until the context is full.
    ``fast_forward`` (None: the model's ``fast_forward``) takes forced text
    without sampling when the processor is a guide's (tracked or not).
    """

    def __init__(
        self,
        model: LlamaCpp,
        prompt: str,
        processor: Processor | None,
        *,
        max_tokens: int | None = None,
        stop_at: str | Sequence[str] | None = None,
        seed: int | None = None,
        sampling: SamplingParams | None = None,
        fast_forward: bool | None = None,
    ) -> None:
        check_limits(max_tokens, seed)
        self.model = model
        self.fast_forward = model.fast_forward if fast_forward is None else bool(fast_forward)
        self.processor = processor
        self.stops = normalize_stop_at(stop_at)
        self.sampling = sampling or SamplingParams()
        self.seed = secrets.randbelow(MAX_SEED + 1) if seed is None else seed
        self.prompt_ids = model.tokenize(prompt)
        n_ctx = model.n_ctx
        if not self.prompt_ids:
            raise ValueError("the prompt is empty and the model adds no BOS token: give some text")
        if len(self.prompt_ids) >= n_ctx:
            raise PromptTooLongError(
                f"the prompt is {len(self.prompt_ids)} tokens but the context window holds {n_ctx} "
                "(prompt and generated text together): shorten the prompt or load the model with a "
                "larger n_ctx"
            )
        room = n_ctx - len(self.prompt_ids)
        self.budget = room if max_tokens is None else min(max_tokens, room)
        self._limit_reason = "max_tokens" if max_tokens is not None and max_tokens <= room else "context"
        self.result: GenerationResult | None = None
        self._started = False

    # -- the loop ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[str]:
        if self._started:
            raise RuntimeError("a Generation runs once; make a new one")
        self._started = True
        return self._run()

    def _run(self) -> Iterator[str]:
        llm = self.model.llm
        vocab = self.model.vocabulary
        tokens_text = vocab.tokens
        eog = vocab.eog_ids
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        hook = None if self.processor is None else _GuardedHook(self.processor, vocab.eog_array)
        self._reset_processor()
        params = self.sampling
        previous_seed = getattr(llm, "_seed", None)
        llm.set_seed(self.seed)
        llm.reset()  # evaluate the whole prompt: same seed, same logits, same text
        from llama_cpp import LogitsProcessorList

        # the sampler chain Llama.generate builds (the processor first), kept for the whole
        # generation so that its random state runs on; driven here so that forced tokens can be
        # evaluated in one batch
        llm._sampler = llm._init_sampler(
            temp=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            repeat_penalty=1.0,
            logits_processor=None if hook is None else LogitsProcessorList([hook]),
        )
        forward = self._fast_forward()
        tracking = isinstance(self.processor, LogitTrackingProcessor)
        ids: list[int] = []
        batches: list[int] = []
        n_forced = 0
        text = ""
        reason = self._limit_reason
        stop: str | None = None
        exact_stop = cut_nothing = True
        pending: list[int] = list(self.prompt_ids)
        sampled: int | None = None  # None: before the first sample (text forced after the prompt)
        forced: list[int] = []
        taken: list[int] = []
        n_prompt_forced = 0
        n_one_by_one = 0
        try:
            if forward is not None and not tracking and hook is not None:
                forced = self._plan_start(forward, hook)  # not with a tracker: see _plan_start
                taken = list(forced)
            while True:
                # the tokens taken since the last evaluation (the sampled one, if any, then those
                # forced after it), streamed as soon as they are known
                ended = False
                first_forced = 0 if sampled is None else 1  # the sampled token is in ids already
                for i, token in enumerate(taken):
                    if i >= first_forced:
                        ids.append(token)
                    piece = decoder.decode(tokens_text[token])
                    if self.stops and piece:
                        piece, stop, cut_nothing = self._cut_at_stop(text, piece)
                    if piece:
                        text += piece
                        yield piece
                    if stop is not None:
                        reason = "stop_at"
                        exact_stop = cut_nothing and not decoder.getstate()[0]
                        ended = True
                    elif len(ids) >= self.budget:
                        ended = True
                    if ended:
                        forced = forced[: i + 1 - first_forced]  # the forced tokens taken before the end
                        break
                n_forced += len(forced)
                if ended:
                    if forced:  # tell the processors; trackers get the natural rows of these too
                        rows = None
                        if tracking and sampled is not None:
                            rows = self._evaluate(llm, [sampled, *forced[:-1]], len(forced))
                        self._take_forced(sampled, forced, rows)
                    break
                if sampled is None:  # the prompt, and the text forced right after it, in one batch
                    pending = [*self.prompt_ids, *forced]
                    n_prompt_forced = len(forced)
                else:
                    pending = taken
                # a batch smaller than the model's fast_forward_min_batch costs more than its
                # tokens one by one (llama.cpp on a CPU): the same tokens, evaluated singly
                one_by_one = sampled is not None and 1 < len(pending) < self.model.fast_forward_min_batch
                natural = self._evaluate(llm, pending, len(forced) if tracking else 0, one_by_one)
                if one_by_one:
                    batches += [1] * len(pending)
                    n_one_by_one += len(pending) - 1
                elif sampled is not None:
                    batches.append(len(pending))
                if forced:
                    self._take_forced(sampled, forced, natural)
                sampled = int(llm.sample(idx=None))
                ids.append(sampled)
                if sampled in eog:
                    reason = "eog"
                    break
                taken = [sampled]
                forced = []
                if forward is not None and len(ids) < self.budget and self._still_constrained(hook):
                    run = self._plan(forward, sampled, self.budget - len(ids))
                    if run is not None:
                        forced = run.tokens
                        taken += forced
        finally:
            llm._sampler = None
            if previous_seed is not None:
                llm.set_seed(previous_seed)
            if ids and isinstance(self.processor, LogitTrackingProcessor):
                self.processor.finish(ids[-1])
        if stop is None:
            tail = decoder.decode(b"", final=True)  # an unfinished character at max_tokens
            if tail:
                text += tail
                yield tail
        self._raise_if_failed(hook)
        complete = self._complete(reason, ids, exact_stop)
        self.result = GenerationResult(
            text=text,
            token_ids=ids,
            finish_reason=reason,
            complete=complete,
            seed=self.seed,
            n_prompt_tokens=len(self.prompt_ids),
            stop=stop,
            batch_sizes=batches,
            n_forced=n_forced,
            n_prompt_forced=n_prompt_forced,
            n_one_by_one=n_one_by_one,
        )

    # -- fast-forward -------------------------------------------------------------------------

    def _fast_forward(self) -> FastForward | None:
        """The forced-run planner, when fast-forward is on and the processor is a guide's
        (possibly tracked): any other processor is a black box whose forced text is unknown."""
        if not self.fast_forward or self.processor is None:
            return None
        inner = unwrap(self.processor)
        guide = getattr(inner, "guide", None)
        if not isinstance(inner, GuideLogitsProcessor) or not hasattr(guide, "forced_bytes"):
            return None
        return self.model.fast_forward_planner(guide)

    def _still_constrained(self, hook: _GuardedHook | None) -> bool:
        inner = unwrap(self.processor)
        return hook is not None and hook.error is None and inner.error is None and not inner._failed

    def _take_forced(self, sampled: int | None, forced: list[int], natural: np.ndarray | None) -> None:
        """Tell the processor that ``forced`` was taken after ``sampled`` without sampling (only
        planned when it is a guide's processor, tracked or not: see :meth:`_fast_forward`).
        ``sampled`` None: ``forced`` came right after the prompt (the processor was primed with
        the prompt by :meth:`_plan_start`); its first token stands in for the sampled one."""
        if sampled is None:
            if len(forced) < 2:  # the processor's next call brings the only one, as usual
                return
            sampled, forced = forced[0], forced[1:]
        if isinstance(self.processor, (GuideLogitsProcessor, LogitTrackingProcessor)):
            self.processor.take_forced(sampled, forced, natural)

    def _plan_start(self, forward: FastForward, hook: _GuardedHook) -> list[int]:
        """The tokens forced right after the prompt (``{"`` and the first key of a JSON object),
        evaluated in the prompt's batch. The processor is shown the prompt first (a mask it
        computes and throws away), so that it reads what follows as generated text. Not done under
        a tracker, which would record that call as a sampled position."""
        if self.budget < 1:
            return []
        inner = unwrap(self.processor)
        context = self.model.vocabulary.tokens[self.prompt_ids[-1]]
        run = forward.plan(inner.state, context, self.budget)
        if run is None:
            return []
        scratch = np.zeros(self.model.vocabulary.size, dtype=np.float32)
        hook(np.asarray(self.prompt_ids, dtype=np.intc), scratch)
        if not self._still_constrained(hook):
            return []
        return list(run.tokens)

    def _plan(self, forward: FastForward, sampled: int, room: int) -> ForcedRun | None:
        """The tokens forced after ``sampled``, the token just sampled (the processor's state
        is the one it masked with, before that token), at most ``room`` of them."""
        inner = unwrap(self.processor)
        try:
            state = inner.guide.next_state(inner.state, sampled)
        except ConstraintViolationError:  # the processor will report it at its next call
            return None
        context = self.model.vocabulary.tokens[sampled]
        return forward.plan(state, context, room)

    @staticmethod
    def _evaluate(llm: Any, tokens: list[int], rows: int, one_by_one: bool = False) -> np.ndarray | None:
        """Evaluate ``tokens`` (one batch, or one by one); with ``rows``, return the raw logits
        after each of the first ``rows`` tokens, which a tracker shows as the natural distribution
        of the forced positions. A model loaded with ``logits_all=True`` keeps every row of the
        batch; otherwise the tokens are evaluated one by one to read them (tracking costs the
        batching)."""
        chunks = [[token] for token in tokens] if one_by_one else [tokens]
        if not rows:
            for chunk in chunks:
                llm.eval(chunk)
            return None
        n_vocab = llm.n_vocab()
        if getattr(llm, "_logits_all", False):
            start = llm.n_tokens
            for chunk in chunks:
                llm.eval(chunk)
            return np.array(llm.scores[start : start + rows], dtype=np.float32)
        out = np.empty((rows, n_vocab), dtype=np.float32)
        for i, token in enumerate(tokens):
            llm.eval([token])
            if i < rows:
                out[i] = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,))
        return out

    def _cut_at_stop(self, text: str, piece: str) -> tuple[str, str | None, bool]:
        """Cut ``piece`` right after the first stop string that ``text + piece`` completes.

        Returns the piece to keep, the stop string found (or None) and
        whether nothing was cut off.
        """
        joined = text + piece
        best_end, best = None, None
        for stop in self.stops:
            at = joined.find(stop, max(0, len(text) - len(stop) + 1))
            if at >= 0 and (best_end is None or at + len(stop) < best_end):
                best_end, best = at + len(stop), stop
        if best_end is None:
            return piece, None, True
        return piece[: best_end - len(text)], best, best_end == len(joined)

    # -- before and after -------------------------------------------------------------------

    def _reset_processor(self) -> None:
        inner = unwrap(self.processor)
        reset = getattr(inner, "reset", None)
        if callable(reset):
            reset()  # start a new generation even if the prompt happens to extend the last one

    def _raise_if_failed(self, hook: _GuardedHook | None) -> None:
        check = getattr(self.processor, "raise_if_failed", None)
        if callable(check):
            check()
        if hook is not None and hook.error is not None:
            raise ProcessorFailedError(
                f"the logits processor raised during generation, which stopped it: {hook.error!r}"
            ) from hook.error

    def _complete(self, reason: str, ids: list[int], exact_stop: bool) -> bool:
        """Whether the constraint accepts the generated text.

        An end-of-generation token is only allowed once the constraint is
        complete. Otherwise the last token never reached the processor, so it
        is shown the full sequence once more and asked ``is_finished``. A
        ``stop_at`` cut inside a token leaves the constraint mid-token: incomplete.
        """
        if reason == "eog" or self.processor is None:
            return True
        if not exact_stop:
            return False
        inner = unwrap(self.processor)
        if inner is None or not hasattr(inner, "is_finished"):
            return True
        scratch = np.zeros(self.model.vocabulary.size, dtype=np.float32)
        inner(np.array(self.prompt_ids + ids, dtype=np.intc), scratch)
        return bool(inner.is_finished)

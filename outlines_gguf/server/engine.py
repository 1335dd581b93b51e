"""Model instances, the fair queue in front of them, and the generation a job runs.

``--parallel N`` loads N instances of the model; each is driven by one
worker thread, because a ``Llama`` runs one sequence at a time. Requests are
checked and their constraints compiled *before* they queue (in the web
server's thread pool), so a bad request is a 400 without waiting, and a
slow compile never holds an instance. Waiting jobs are served round-robin
across clients (the request's ``user``, else the client address), first in
first out within a client, so one client's burst cannot starve the others.

A job sends its results to the request handler through an asyncio queue:
``("done", [ChoiceResult, ...])`` or ``("error", APIError)``; a streaming job
also sends, per choice, ``("start", i)`` once its prompt is checked,
``("delta", i, fields)`` as text comes, and ``("choice", ChoiceResult)``. The
prompt is tokenized once, by the worker, which also checks that it fits. A
job whose client went away is cancelled: it is skipped if it is still
queued, and its generation stops at the next token otherwise.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, cast

from outlines_gguf.errors import ProcessorFailedError, PromptTooLongError
from outlines_gguf.llama_cpp.generation import Generation, SamplingParams
from outlines_gguf.llama_cpp.model import LlamaCpp, llamacpp
from outlines_gguf.llama_cpp.processors import GuideLogitsProcessor
from outlines_gguf.server.chat import ChatRenderer
from outlines_gguf.server.config import ServerConfig
from outlines_gguf.server.constraints import ConstraintCache, TextConstraint, text_constraint
from outlines_gguf.server.errors import APIError, bad_request, one_line, server_error
from outlines_gguf.server.protocol import (
    MAX_N,
    ChatCompletionRequest,
    CompletionRequest,
    _Request,
    check_unsupported,
    stops_of,
)
from outlines_gguf.server.reasoning import ThinkPlan, ThinkTokens, first_bytes, think_plan
from outlines_gguf.server.response import ResponseProcessor
from outlines_gguf.server.shared_cache import SharedGuideFolder
from outlines_gguf.server.tool_formats import (
    TOOL_FORMATS,
    ToolPlan,
    build_tool_plan,
    parse_tool_choice,
    parse_tools,
    trigger_token,
)

logger = logging.getLogger("outlines_gguf.server")

FINISH_REASONS = {"eog": "stop", "stop_at": "stop", "max_tokens": "length", "context": "length"}
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
"""OpenAI's default for /v1/completions (chat has none: until the end or the context is full)."""


@dataclass
class Prepared:
    """A request checked and compiled: everything a worker needs."""

    kind: str
    """"chat" or "completion"."""
    prompts: list[str]
    prompt_tokens: list[int]
    """Filled in by the worker, which tokenizes each prompt once."""
    n: int
    seed: int | None
    sampling: SamplingParams
    max_tokens: int | None
    stops: tuple[str, ...]
    text: TextConstraint | None
    tools: ToolPlan | None = None
    thinks: list[ThinkPlan | None] = field(default_factory=list)
    stream: bool = False
    echo: bool = False

    @property
    def n_choices(self) -> int:
        return len(self.prompts) * self.n


@dataclass
class ChoiceResult:
    """One finished choice."""

    index: int
    text: str
    finish_reason: str
    completion_tokens: int
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


class CancelledByClientError(Exception):
    """The client went away: stop without answering."""


STREAM_POLL_S = 0.025
"""How often a stream's handler collects the deltas its worker wrote. The worker never wakes the event
loop for a delta: on a small model a wake (a write to the loop's self-pipe, then waiting for the GIL
while the loop sends) costs more than a token. Deltas that come together are sent as one chunk."""


def merge_delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any] | None:
    """Two consecutive stream deltas of one choice as one, or None if they do not combine."""
    if a.keys() != b.keys() or len(a) != 1:
        return None
    key = next(iter(a))
    if key in ("content", "reasoning_content", "text"):
        return {key: a[key] + b[key]}
    if key == "tool_calls":
        (x,), (y,) = a[key], b[key]
        if x.keys() == y.keys() == {"index", "function"} and x["index"] == y["index"]:
            joined = x["function"]["arguments"] + y["function"]["arguments"]
            return {key: [{"index": x["index"], "function": {"arguments": joined}}]}
    return None


def merge_deltas(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Consecutive deltas of one choice merged (see :func:`merge_delta`)."""
    out: list[tuple[Any, ...]] = []
    for event in events:
        if event[0] == "delta" and out and out[-1][0] == "delta" and out[-1][1] == event[1]:
            merged = merge_delta(out[-1][2], event[2])
            if merged is not None:
                out[-1] = ("delta", event[1], merged)
                continue
        out.append(event)
    return out


class Job:
    """One request's work, queued for an instance; its events go to the handler on the event loop.

    The worker appends events to a deque. ``emit`` also wakes the loop (only
    if no wake is pending); ``delta`` does not: a stream's handler collects
    deltas every :data:`STREAM_POLL_S`.
    """

    def __init__(self, prepared: Prepared, client: str, loop: asyncio.AbstractEventLoop) -> None:
        self.prepared = prepared
        self.client = client
        self.cancelled = threading.Event()
        self.queued_at = time.perf_counter()
        self.timings: dict[str, float] = {}
        """``queued_ms`` (waiting for an instance) and ``generation_ms`` (the generations themselves),
        returned as llama-server returns its ``timings``: what is left of a round trip is the server's."""
        self._loop = loop
        self._events: deque[tuple[Any, ...]] = deque()
        self._signal = asyncio.Event()
        self._wake_pending = False

    async def events(self, poll: float | None = None) -> list[tuple[Any, ...]]:
        """Every event sent since the last call, waiting for one if there is none (on the loop);
        with ``poll``, also returns after that many seconds if deltas came meanwhile."""
        while True:
            self._wake_pending = False  # cleared before draining: a later event wakes us again
            out = []
            while True:
                try:
                    out.append(self._events.popleft())
                except IndexError:
                    break
            if out:
                return out
            self._signal.clear()
            if poll is None:
                await self._signal.wait()
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._signal.wait(), poll)

    def cancel(self) -> None:
        self.cancelled.set()

    def delta(self, index: int, fields: dict[str, Any]) -> None:
        """A stream delta (collected by the handler's polling, without waking the loop)."""
        self._events.append(("delta", index, fields))

    def emit(self, *event: Any) -> None:
        """Any other event: the handler is woken for it."""
        self._events.append(event)
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._loop.call_soon_threadsafe(self._signal.set)
            except RuntimeError:  # the event loop is closed: the server is shutting down
                self.cancelled.set()


class FairQueue:
    """Jobs waiting for an instance: round-robin across clients, FIFO within one; bounded."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._by_client: OrderedDict[str, deque[Job]] = OrderedDict()
        self._size = 0
        self._cond = threading.Condition()
        self._closed = False

    def put(self, job: Job) -> None:
        with self._cond:
            if self._size >= self.max_size:
                raise APIError(503, f"the server is busy ({self._size} requests waiting): retry later",
                               type="server_error", code="overloaded")
            self._by_client.setdefault(job.client, deque()).append(job)
            self._size += 1
            self._cond.notify()

    def get(self) -> Job | None:
        """The next job (None once closed); blocks while there is none."""
        with self._cond:
            while not self._size and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            client, jobs = next(iter(self._by_client.items()))
            job = jobs.popleft()
            if jobs:
                self._by_client.move_to_end(client)
            else:
                del self._by_client[client]
            self._size -= 1
            return job

    def __len__(self) -> int:
        return self._size

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Instance:
    """One loaded model and the worker thread that runs jobs on it."""

    def __init__(self, index: int, model: LlamaCpp) -> None:
        self.index = index
        self.model = model
        self.busy = False
        self.job: Job | None = None
        self.served = 0
        self.thread: threading.Thread | None = None


class Engine:
    """The model instances, the shared constraint cache, the queue and the workers."""

    def __init__(self, config: ServerConfig, models: list[LlamaCpp] | None = None) -> None:
        self.config = config
        loaded = models is None
        if models is None:
            models = [self._load(config) for _ in range(max(1, config.parallel))]
        self.instances = [Instance(i, m) for i, m in enumerate(models)]
        first = models[0]
        if config.chat_template:
            for m in models:
                m.chat_template = config.chat_template
        self.vocabulary = first.vocabulary
        self.vocabulary.prepare()  # token tries now, not in the first request
        for m in models[1:]:
            if loaded:  # the same file: one vocabulary for all (LlamaCpp.vocabulary is a cached_property)
                m.__dict__["vocabulary"] = self.vocabulary
            elif m.vocabulary.hash != self.vocabulary.hash:
                raise ValueError("every instance must be the same model")
        shared = None
        if config.cache_dir is not None:
            if not config.cache_key:
                raise ValueError(
                    "a shared cache folder needs a key (--cache-key or $OUTLINES_GGUF_CACHE_KEY): its "
                    "entries are pickles, signed so that nobody who can write the folder runs code here"
                )
            shared = SharedGuideFolder(config.cache_dir, config.cache_key, self.vocabulary)
        self.cache = ConstraintCache(self.vocabulary, config.cache_entries, shared)
        if config.tool_format is not None and config.tool_format not in TOOL_FORMATS:
            known = ", ".join(TOOL_FORMATS)
            raise ValueError(f"tool format must be one of {known}, got {config.tool_format!r}")
        self.renderer = ChatRenderer(first, TOOL_FORMATS[config.tool_format] if config.tool_format else None)
        self.tool_format = self.renderer.tool_format
        self.trigger_id = trigger_token(self.tool_format, self.tokenize_raw)
        self.think_tokens = ThinkTokens.of(self.vocabulary, self.tokenize_raw)  # tables now, not per request
        first_bytes(self.vocabulary)
        self.queue = FairQueue(config.max_queue)
        self.model_id = config.model_id
        self._on_close: list[Callable[[], None]] = []
        self.cancelled = 0
        """Jobs stopped because their client went away (for /health and tests)."""
        for instance in self.instances:
            instance.thread = threading.Thread(
                target=self._work, args=(instance,), name=f"outlines-gguf-instance-{instance.index}",
                daemon=True,
            )
            instance.thread.start()

    @staticmethod
    def _load(config: ServerConfig) -> LlamaCpp:
        return llamacpp(str(config.model_path), n_ctx=config.n_ctx, n_gpu_layers=config.n_gpu_layers,
                        n_threads=config.n_threads)

    @property
    def n_ctx(self) -> int:
        return self.instances[0].model.n_ctx

    def tokenize_raw(self, text: str) -> list[int]:
        """Token ids of ``text`` with special tokens parsed and no BOS."""
        llm = self.instances[0].model.llm
        return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the engine closes (the web app's compile thread)."""
        self._on_close.append(callback)

    def close(self) -> None:
        """Stop the workers; running generations stop at their next token."""
        for callback in self._on_close:
            callback()
        self.queue.close()
        for instance in self.instances:
            job = instance.job
            if job is not None:
                job.cancel()
        for instance in self.instances:
            if instance.thread is not None:
                instance.thread.join(timeout=30)

    def status(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "model": self.model_id,
            "instances": len(self.instances),
            "busy": sum(i.busy for i in self.instances),
            "served": [i.served for i in self.instances],
            "queued": len(self.queue),
            "cancelled": self.cancelled,
            "tool_format": self.tool_format.name,
            "constraint_cache": self.cache.stats(),
        }

    # -- preparing (on the event loop when every constraint is cached, else in the thread pool) --

    def _sampling(self, req: _Request) -> SamplingParams:
        defaults = SamplingParams()
        try:
            return SamplingParams(
                temperature=defaults.temperature if req.temperature is None else float(req.temperature),
                top_k=defaults.top_k if req.top_k is None else req.top_k,
                top_p=defaults.top_p if req.top_p is None else float(req.top_p),
                min_p=defaults.min_p if req.min_p is None else float(req.min_p),
            )
        except ValueError as exc:
            raise bad_request(one_line(exc)) from exc

    def prepare_chat(self, req: ChatCompletionRequest) -> Prepared:
        """Check a chat request, render its prompt and compile its constraints (400s here)."""
        check_unsupported(req)
        stops = stops_of(req)
        tools = parse_tools(req.tools)
        choice = parse_tool_choice(req.tool_choice, tools)
        text = text_constraint(req, self.cache)
        use_tools = bool(tools) and choice.mode != "none"
        fmt = self.tool_format
        if use_tools and choice.mode == "auto" and text is not None and fmt.first_is_json():
            raise bad_request(
                f"response_format with tools under tool_choice 'auto' is ambiguous in the {fmt.name} tool "
                "format (a call and a JSON answer both start with '{'): use tool_choice 'none' or 'required'",
                "tool_choice",
            )
        prompt = self.renderer.render(
            req.messages, tools if use_tools else (), choice.mode == "required", req.chat_template_kwargs
        )
        plan = (
            build_tool_plan(self.cache, fmt, tools, choice, req.parallel_tool_calls, self.trigger_id)
            if use_tools else None
        )
        budget = req.reasoning_budget if req.reasoning_budget is not None else self.config.reasoning_budget
        think = think_plan(prompt, self.renderer.template, self.think_tokens, budget)
        max_tokens = req.max_completion_tokens or req.max_tokens
        return Prepared(
            kind="chat", prompts=[prompt], prompt_tokens=[0], n=req.n, seed=req.seed,
            sampling=self._sampling(req), max_tokens=max_tokens, stops=stops, text=text, tools=plan,
            thinks=[think], stream=req.stream,
        )

    def prepare_completion(self, req: CompletionRequest) -> Prepared:
        """Check a completion request and compile its constraint (400s here)."""
        check_unsupported(req)
        stops = stops_of(req)
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        if not prompts:
            raise bad_request("prompt must be a string or a non-empty list of strings", "prompt")
        if len(prompts) * req.n > MAX_N:
            raise bad_request(f"at most {MAX_N} choices per request (prompts x n)", "n")
        if not all(prompts):
            raise bad_request("the prompt is empty", "prompt")
        text = text_constraint(req, self.cache)
        return Prepared(
            kind="completion", prompts=prompts, prompt_tokens=[0] * len(prompts), n=req.n, seed=req.seed,
            sampling=self._sampling(req),
            max_tokens=req.max_tokens if req.max_tokens is not None else COMPLETIONS_DEFAULT_MAX_TOKENS,
            stops=stops, text=text, thinks=[None] * len(prompts), stream=req.stream, echo=req.echo,
        )

    def submit(self, prepared: Prepared, client: str, loop: asyncio.AbstractEventLoop) -> Job:
        """Queue a prepared request (503 when the queue is full)."""
        job = Job(prepared, client, loop)
        self.queue.put(job)
        return job

    # -- running (in the instance's worker thread) ------------------------------------------

    def _work(self, instance: Instance) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            if job.cancelled.is_set():
                continue
            instance.busy, instance.job = True, job
            instance.served += 1
            try:
                self._run_job(instance, job)
            finally:
                instance.busy, instance.job = False, None

    def _run_job(self, instance: Instance, job: Job) -> None:
        prep = job.prepared
        choices = []
        started = time.perf_counter()
        try:
            for p in range(len(prep.prompts)):
                for j in range(prep.n):
                    index = p * prep.n + j
                    seed = None if prep.seed is None else (prep.seed + j) % (2**32 - 1)
                    result = self._run_choice(instance, job, p, index, seed)
                    if prep.stream:
                        job.emit("choice", result)
                    choices.append(result)
            job.timings = {
                "queued_ms": round((started - job.queued_at) * 1e3, 3),
                "generation_ms": round((time.perf_counter() - started) * 1e3, 3),
            }
            job.emit("done", choices)
        except CancelledByClientError:
            self.cancelled += 1
            logger.info("outlines-gguf server: a client went away; its generation was stopped")
        except APIError as exc:
            job.emit("error", exc)
        except ProcessorFailedError as exc:
            job.emit("error", server_error(f"the constraint failed during generation: {one_line(exc)}",
                                           code="processor_failed"))
        except Exception as exc:
            logger.exception("outlines-gguf server: generation failed")
            job.emit("error", server_error(f"generation failed: {type(exc).__name__}: {one_line(exc)}"))

    def _run_choice(self, instance: Instance, job: Job, p: int, index: int, seed: int | None) -> ChoiceResult:
        prep = job.prepared
        think = prep.thinks[p] if prep.thinks else None
        body = prep.text.guide if prep.text is not None else None
        structured = prep.tools is not None or think is not None
        if structured:
            processor: Any = ResponseProcessor(self.vocabulary, body=body, tools=prep.tools, think=think)
        else:
            processor = GuideLogitsProcessor(body, self.vocabulary) if body is not None else None
        generation = self._generation(instance, prep, p, seed, processor, None if structured else prep.stops)
        prep.prompt_tokens[p] = len(generation.prompt_ids)
        if prep.stream:
            job.emit("start", index)  # after the prompt was checked: a stream starts only if it can run
        if structured:
            return self._run_structured(job, index, generation, processor)
        return self._run_plain(job, p, index, generation)

    def _generation(self, instance: Instance, prep: Prepared, p: int, seed: int | None, processor: Any,
                    stops: tuple[str, ...] | None) -> Generation:
        param = "messages" if prep.kind == "chat" else "prompt"
        try:
            return Generation(instance.model, prep.prompts[p], processor, max_tokens=prep.max_tokens,
                              stop_at=stops or None, seed=seed, sampling=prep.sampling)
        except PromptTooLongError as exc:
            n = len(instance.model.tokenize(prep.prompts[p]))
            raise bad_request(
                f"This model's maximum context length is {instance.model.n_ctx} tokens. However, your "
                f"{param} resulted in {n} tokens (the answer needs room too): shorten it, or start the "
                "server with a larger --n-ctx",
                param,
                code="context_length_exceeded",
            ) from exc
        except ValueError as exc:  # an empty prompt, limits
            raise bad_request(one_line(exc), param) from exc

    def _run_plain(self, job: Job, p: int, index: int, generation: Generation) -> ChoiceResult:
        """Free text or one constraint: the library's generation loop, pieces passed on as they come."""
        prep = job.prepared
        hold = max((len(s) for s in prep.stops), default=0)  # a stop ends the last piece, whole
        prefix = prep.prompts[p] if prep.echo else ""
        text, sent = prefix, 0
        pieces = cast(Generator[str, None, None], iter(generation))  # Generation.__iter__ is a generator
        try:
            for piece in pieces:
                if job.cancelled.is_set():
                    raise CancelledByClientError
                text += piece
                if prep.stream and len(text) - hold > sent:
                    job.delta(index, self._text_delta(prep, text[sent: len(text) - hold]))
                    sent = len(text) - hold
        finally:
            pieces.close()
        result = generation.result
        assert result is not None
        if result.stop is not None and text.endswith(result.stop):
            text = text[: len(text) - len(result.stop)]
        if prep.stream and len(text) > sent:
            job.delta(index, self._text_delta(prep, text[sent:]))
        ids = result.token_ids
        n_tokens = len(ids) - (1 if ids and ids[-1] in self.vocabulary.eog_ids else 0)
        return ChoiceResult(index, text, FINISH_REASONS[result.finish_reason], n_tokens)

    @staticmethod
    def _text_delta(prep: Prepared, text: str) -> dict[str, Any]:
        return {"content": text} if prep.kind == "chat" else {"text": text}

    def _run_structured(self, job: Job, index: int, generation: Generation,
                        processor: ResponseProcessor) -> ChoiceResult:
        """Thinking and/or tool calls: the response processor records each part; deltas follow it."""
        prep = job.prepared
        out = _StructuredOutput(processor, prep.stops, job if prep.stream else None, index)
        pieces = cast(Generator[str, None, None], iter(generation))  # Generation.__iter__ is a generator
        try:
            for _ in pieces:
                if job.cancelled.is_set():
                    raise CancelledByClientError
                if out.sync():
                    break  # a stop string in the content
        finally:
            pieces.close()
        out.sync(final=True)
        result = generation.result
        if out.stopped or result is None:
            reason, n_tokens = "stop", processor.n_generated + 1
        else:
            ids = result.token_ids
            n_tokens = len(ids) - (1 if ids and ids[-1] in self.vocabulary.eog_ids else 0)
            reason = FINISH_REASONS[result.finish_reason]
            if reason == "stop" and processor.calls:
                reason = "tool_calls"
        return ChoiceResult(
            index,
            out.content,
            reason,
            n_tokens,
            reasoning=out.reasoning if processor.think is not None else None,
            tool_calls=[
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments.decode("utf-8", errors="replace")}}
                for c in processor.calls
            ],
        )


class _StructuredOutput:
    """Turns what a :class:`ResponseProcessor` recorded into text, and into stream deltas."""

    def __init__(self, processor: ResponseProcessor, stops: tuple[str, ...], job: Job | None,
                 index: int) -> None:
        self.processor = processor
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.job = job
        self.index = index
        self.reasoning = ""
        self.content = ""
        self.stopped = False
        self._reasoning_bytes = 0
        self._content_bytes = 0
        self._content_sent = 0
        self._decoders: dict[Any, Any] = {}
        self._announced = 0
        self._args_bytes: list[int] = []

    def _decode(self, key: Any, data: bytes | bytearray, final: bool) -> str:
        decoder = self._decoders.get(key)
        if decoder is None:
            decoder = self._decoders[key] = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return decoder.decode(bytes(data), final=final)

    def _emit(self, fields: dict[str, Any]) -> None:
        if self.job is not None:
            self.job.delta(self.index, fields)

    def sync(self, final: bool = False) -> bool:
        """Take in what the processor wrote since the last call; True once a stop string was found."""
        proc = self.processor
        upto = len(proc.reasoning) if final else len(proc.reasoning) - proc.reasoning_hold
        if upto > self._reasoning_bytes or final:
            piece = self._decode("r", proc.reasoning[self._reasoning_bytes: upto], final)
            self._reasoning_bytes = max(upto, self._reasoning_bytes)
            if piece:
                self.reasoning += piece
                self._emit({"reasoning_content": piece})
        if not self.stopped and (len(proc.content) > self._content_bytes or final):
            before = len(self.content)
            self.content += self._decode("c", proc.content[self._content_bytes:], final)
            self._content_bytes = len(proc.content)
            for stop in self.stops:
                at = self.content.find(stop, max(0, before - len(stop) + 1))
                if at >= 0:
                    self.content = self.content[:at]
                    self.stopped = True
            end = len(self.content) if (final or self.stopped) else len(self.content) - self.hold
            if end > self._content_sent:
                self._emit({"content": self.content[self._content_sent: end]})
                self._content_sent = end
        if self.job is not None:
            self._sync_calls(final)
        return self.stopped

    def _sync_calls(self, final: bool) -> None:
        for i, call in enumerate(self.processor.calls):
            if i >= self._announced:
                self._emit({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                            "function": {"name": call.name, "arguments": ""}}]})
                self._announced = i + 1
                self._args_bytes.append(0)
            done = len(call.arguments)
            if done > self._args_bytes[i] or final:
                piece = self._decode((i, "a"), call.arguments[self._args_bytes[i]:], final or call.done)
                self._args_bytes[i] = done
                if piece:
                    self._emit({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})


def client_key(req: _Request, host: str | None) -> str:
    """Who a request counts as for fair queueing."""
    return f"user:{req.user}" if req.user else f"host:{host or '?'}"


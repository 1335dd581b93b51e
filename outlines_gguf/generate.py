"""High-level generators: a constraint, a model, and a call that returns a value.

>>> from outlines_gguf import generate, models
>>> model = models.llamacpp("models/tiny-qwen2.gguf")
>>> year = generate.format(model, int)("The year: ", seed=1)        # an int
>>> person = generate.json(model, Person)(prompt, max_tokens=200)  # a Person
>>> for piece in generate.regex(model, r"[0-9]{4}").stream(prompt):
...     print(piece, end="")

Every generator is called as ``generator(prompt, max_tokens=None,
stop_at=None, seed=None, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
on_incomplete="raise")`` and has ``.stream(prompt, ...)`` with the same
arguments, which yields text pieces (never half a character). The same
settings can be made once as a :class:`GenerateOptions` and passed as
``options=``; keyword arguments given beside it override its fields. ``prompt`` is
a string or a list of chat messages, which the model's chat template turns
into a string; a list of prompts returns a list (one after another on the
model's one context); ``await generator.acall(...)`` runs a call in a thread.
Every generator takes ``fast_forward`` (default: the model's setting, on): text
the constraint forces is taken without sampling, in one batch;
``generator.last_result`` counts the forward passes.
``generator.logits_processor`` is the processor in use; it can be replaced,
or wrapped with :func:`~outlines_gguf.add_tracking` (``track=True`` does that when the generator is made).

``max_tokens`` reached (or the context full) before the constraint is
complete raises :class:`~outlines_gguf.errors.IncompleteGenerationError`,
which carries the partial text; ``on_incomplete="return"`` returns that
text (a string, unparsed) instead. ``stop_at`` (a string or a list) ends
generation once the text contains one of them; the text returned ends with
that string. With a constraint, the result then counts as complete only if
the constraint accepts the text at the end of the token that completed the
stop string and the stop string ends that token's text; otherwise it is
incomplete, as above.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json as json_module
import re
import threading
import typing
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, cast

from outlines_gguf.errors import IncompleteGenerationError
from outlines_gguf.format_types import format_for
from outlines_gguf.llama_cpp.generation import (
    MAX_SEED,
    Generation,
    GenerationResult,
    SamplingParams,
    check_limits,
    normalize_stop_at,
)
from outlines_gguf.llama_cpp.model import LlamaCpp
from outlines_gguf.llama_cpp.processors import (
    CFGLogitsProcessor,
    JSONLogitsProcessor,
    JSONOptions,
    RegexLogitsProcessor,
)
from outlines_gguf.llama_cpp.tracking import LogitTrackingProcessor, add_tracking

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is 3.11+; only mypy reads it here

Prompt = str | Sequence[Mapping[str, Any]]
ON_INCOMPLETE = ("raise", "return")
_SAMPLER = SamplingParams()  # llama-cpp-python's defaults, written once (in SamplingParams)


@dataclasses.dataclass(frozen=True)
class GenerateOptions:
    """How a call generates: its limits, its seed, llama.cpp's sampler settings, and what an
    incomplete result does (see the module docstring for each).

    One object instead of the same eight keyword arguments on every call: make it once and pass
    it as ``generator(prompt, options=opts)`` (or to ``.stream`` and ``.acall``); keyword
    arguments given beside it override its fields. Values are checked when it is made, so a bad
    one fails before any model work, with an error that names it. ``stop_at`` is kept as a tuple.
    """

    max_tokens: int | None = None
    stop_at: str | Sequence[str] | None = None
    seed: int | None = None
    temperature: float = _SAMPLER.temperature
    top_k: int = _SAMPLER.top_k
    top_p: float = _SAMPLER.top_p
    min_p: float = _SAMPLER.min_p
    on_incomplete: str = "raise"

    def __post_init__(self) -> None:
        check_limits(self.max_tokens, self.seed)
        # a tuple: the object stays immutable and hashable, whatever list the caller keeps
        object.__setattr__(self, "stop_at", normalize_stop_at(self.stop_at))
        self.sampling  # noqa: B018 - SamplingParams checks the four sampler values
        if self.on_incomplete not in ON_INCOMPLETE:
            raise ValueError(f"on_incomplete must be one of {ON_INCOMPLETE}, got {self.on_incomplete!r}")

    @property
    def sampling(self) -> SamplingParams:
        """The sampler settings, as :class:`~outlines_gguf.llama_cpp.generation.Generation` takes them."""
        return SamplingParams(
            temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, min_p=self.min_p
        )


class GenerateKwargs(TypedDict, total=False):
    """The keyword arguments a call takes beside ``options``: any field of :class:`GenerateOptions`
    (a TypedDict so that type checkers still check their names and types)."""

    max_tokens: int | None
    stop_at: str | Sequence[str] | None
    seed: int | None
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    on_incomplete: str


def resolve_options(options: GenerateOptions | None, overrides: Mapping[str, Any]) -> GenerateOptions:
    """``options`` (the defaults when None) with the keyword arguments of a call laid over it."""
    if options is None:
        return GenerateOptions(**overrides)
    if not isinstance(options, GenerateOptions):
        raise TypeError(
            f"options must be a GenerateOptions, got {type(options).__name__}; "
            "pass max_tokens, seed, ... as keyword arguments instead"
        )
    return dataclasses.replace(options, **overrides) if overrides else options


def _as_model(model: Any) -> LlamaCpp:
    if isinstance(model, LlamaCpp):
        return model
    return LlamaCpp(model)  # a llama_cpp.Llama; raises TypeError for anything else


def _identity(text: str) -> str:
    return text


class SequenceGenerator:
    """A model and a logits processor; calling it generates and parses one answer.

    ``parse`` turns the complete text into the returned value (the text
    itself by default). ``last_result`` is the
    :class:`~outlines_gguf.llama_cpp.generation.GenerationResult` of the latest call
    (token ids, finish reason, seed, and the batches evaluated:
    ``forward_passes``, ``batch_sizes``, ``n_forced``, ``n_prompt_forced``). ``fast_forward``
    (None: the model's setting, on by default) takes the text the constraint
    forces without sampling and evaluates it in one batch; False samples
    every token.
    """

    def __init__(
        self,
        model: Any,
        logits_processor: Callable[[Any, Any], Any] | None,
        parse: Callable[[str], Any] = _identity,
        *,
        track: bool = False,
        description: str = "constraint",
        fast_forward: bool | None = None,
    ) -> None:
        self.model = _as_model(model)
        self.fast_forward = fast_forward
        self.logits_processor = logits_processor
        self.parse = parse
        self.description = description
        self.last_result: GenerationResult | None = None
        self.last_results: list[GenerationResult | None] = []
        if track:
            if logits_processor is None:
                self.logits_processor = LogitTrackingProcessor(None, vocabulary=self.model.vocabulary)
            else:
                add_tracking(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description} on {self.model.name}>"

    def _generation(self, prompt: Prompt, options: GenerateOptions) -> Generation:
        if not isinstance(prompt, str):
            prompt = self.model.apply_chat_template(prompt)
        return Generation(
            self.model,
            prompt,
            self.logits_processor,
            max_tokens=options.max_tokens,
            stop_at=options.stop_at,
            seed=options.seed,
            sampling=options.sampling,
            fast_forward=self.fast_forward,
        )

    def _check_complete(self, result: GenerationResult, options: GenerateOptions) -> bool:
        """True when complete; raises IncompleteGenerationError unless ``on_incomplete="return"``."""
        self.last_result = result
        if result.complete:
            return True
        if options.on_incomplete == "return":
            return False
        if result.finish_reason == "max_tokens":
            where, hint = f"max_tokens={options.max_tokens}", "raise max_tokens"
        elif result.finish_reason == "context":
            where = f"the end of the context window (n_ctx={self.model.n_ctx})"
            hint = "load the model with a larger n_ctx"
        else:
            where, hint = f"the stop string {result.stop!r}", "remove it from stop_at"
        shown = result.text if len(result.text) <= 200 else result.text[:200] + "..."
        raise IncompleteGenerationError(
            f"generation stopped at {where} before the {self.description} was complete "
            f"({len(result.token_ids)} tokens); partial text: {shown!r}. To finish it, {hint}; "
            "on_incomplete='return' returns the partial text",
            text=result.text,
            token_ids=result.token_ids,
            reason=result.finish_reason,
        )

    def __call__(
        self,
        prompt: Prompt | Sequence[Prompt],
        *,
        options: GenerateOptions | None = None,
        **overrides: Unpack[GenerateKwargs],
    ) -> Any:
        """Generate for ``prompt`` and return the parsed value (see the module docstring).

        A list of prompts (strings, or chats: lists of messages) returns a list of values, made
        one after another on the model's one llama.cpp context (not in parallel); prompt ``i``
        uses ``seed + i``. ``last_results`` holds their results. An incomplete one raises (naming
        its index) unless ``on_incomplete="return"``. Calls on one model are serialized by a
        lock, so threads (and :meth:`acall`) may share a model.
        """
        opts = resolve_options(options, overrides)
        batch = prompt_batch(prompt)
        with model_lock(self.model):
            if batch is None:
                one = cast(Prompt, prompt)  # not a batch: one prompt
                value = self._one(one, opts)
                self.last_results = [self.last_result]
                return value
            values, results = [], []
            for i, item in enumerate(batch):
                seed = None if opts.seed is None else (opts.seed + i) % (MAX_SEED + 1)
                try:
                    values.append(self._one(item, dataclasses.replace(opts, seed=seed)))
                except IncompleteGenerationError as exc:
                    exc.args = (f"prompt {i} of {len(batch)}: {exc.args[0]}", *exc.args[1:])
                    raise
                results.append(self.last_result)
            self.last_results = results
            return values

    async def acall(
        self,
        prompt: Prompt | Sequence[Prompt],
        *,
        options: GenerateOptions | None = None,
        **overrides: Unpack[GenerateKwargs],
    ) -> Any:
        """``await generator.acall(prompt, ...)``: the same as calling it, in a worker thread, so an
        event loop (a server) keeps running; concurrent calls on one model wait for each other."""
        import asyncio

        call = functools.partial(self.__call__, prompt, options=resolve_options(options, overrides))
        return await asyncio.to_thread(call)

    def _one(self, prompt: Prompt, options: GenerateOptions) -> Any:
        generation = self._generation(prompt, options)
        for _ in generation:
            pass
        result = generation.result
        assert result is not None
        if not self._check_complete(result, options):
            return result.text
        return self.parse(result.text)

    def stream(
        self,
        prompt: Prompt,
        *,
        options: GenerateOptions | None = None,
        **overrides: Unpack[GenerateKwargs],
    ) -> Iterator[str]:
        """Yield the text as it is generated; the same text as a call with the same seed.

        Pieces are raw text (a JSON generator streams JSON text, not the
        parsed object). An incomplete generation raises after its last piece,
        unless ``on_incomplete="return"``. Arguments are checked here, before
        the first piece is asked for.
        """
        opts = resolve_options(options, overrides)
        if prompt_batch(prompt) is not None:
            raise ValueError("stream() takes one prompt; call the generator with a list of prompts instead")
        generation = self._generation(prompt, opts)

        def pieces() -> Iterator[str]:
            yield from generation
            assert generation.result is not None
            self._check_complete(generation.result, opts)

        return pieces()


def prompt_batch(prompt: Any) -> list[Prompt] | None:
    """The prompts of a batch (a list of strings or of chats), or None for one prompt (a string,
    or a chat: a list of message dicts)."""
    if isinstance(prompt, str) or not isinstance(prompt, Sequence) or not prompt:
        return None
    if all(isinstance(item, Mapping) for item in prompt):
        return None  # one chat
    if all(isinstance(item, str) for item in prompt) or all(
        isinstance(item, Sequence) and not isinstance(item, str) for item in prompt
    ):
        return list(prompt)
    raise ValueError(
        "a prompt is a string, a chat (a list of {'role': ..., 'content': ...} dicts), or a list of "
        f"either for a batch; got a list mixing {sorted({type(item).__name__ for item in prompt})}"
    )


_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: LlamaCpp) -> threading.Lock:
    """The lock that serializes generations on one llama.cpp model (one context, one KV cache)."""
    key = model.llm
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = threading.Lock()
    return lock


# -- the generators ----------------------------------------------------------------------------


def regex(
    model: Any, pattern: str, *, track: bool = False, fast_forward: bool | None = None
) -> SequenceGenerator:
    """Text that fully matches ``pattern`` (Python ``re`` syntax); returns the text."""
    model = _as_model(model)
    proc = RegexLogitsProcessor(pattern, model.vocabulary)
    return SequenceGenerator(
        model, proc, track=track, description=f"regex {pattern!r}", fast_forward=fast_forward
    )


def json(
    model: Any,
    schema_or_model: Any,
    whitespace_pattern: str | None = None,
    *,
    track: bool = False,
    fast_forward: bool | None = None,
    **json_options: Unpack[JSONOptions],
) -> SequenceGenerator:
    """JSON valid against a schema: a Pydantic model class (returns an instance of it),
    a JSON Schema dict or JSON text (returns the parsed ``dict``/value), or a Python type
    (``TypedDict``, dataclass, ``list[int]``, ``int``, ``Literal``, ``Enum``, ...; returns a
    value of that type) or function (returns its arguments as a ``dict``: ``fn(**result)``).
    ``whitespace_pattern``, ``lenient``, ``max_depth``, ``extra_properties`` and ``engine`` as in
    :class:`~outlines_gguf.JSONLogitsProcessor` (the options its error messages name).
    """
    model = _as_model(model)
    proc = JSONLogitsProcessor(schema_or_model, model.vocabulary, whitespace_pattern, **json_options)
    return SequenceGenerator(
        model, proc, proc.parse, track=track, description="JSON value", fast_forward=fast_forward
    )


def cfg(
    model: Any,
    grammar: str,
    *,
    start: str | Sequence[str] = "start",
    lexer: str = "auto",
    track: bool = False,
    fast_forward: bool | None = None,
) -> SequenceGenerator:
    """Text in the language of a Lark context-free ``grammar`` from its rule ``start`` (or the
    union of several); returns the text. ``lexer`` picks the mode, as for
    :class:`~outlines_gguf.llama_cpp.processors.CFGLogitsProcessor`. A llama.cpp GBNF grammar
    (rules ``name ::= ...``) is recognised and starts at ``root``.

    Grammar errors raise :class:`~outlines_gguf.errors.GrammarError`; ready-made
    grammars are in :mod:`outlines_gguf.grammar.shipped`.
    """
    model = _as_model(model)
    proc = CFGLogitsProcessor(grammar, model.vocabulary, start=start, lexer=lexer)
    return SequenceGenerator(model, proc, track=track, description="grammar", fast_forward=fast_forward)


def choice(
    model: Any, choices: Any, *, track: bool = False, fast_forward: bool | None = None
) -> SequenceGenerator:
    """Exactly one of ``choices``, returned as the same kind of thing: a list of strings
    (returns the string), a ``Literal[...]`` (returns the literal value) or an ``Enum`` class
    (returns the member). Non-string values are written as JSON (``1``, ``true``, ``null``)."""
    model = _as_model(model)
    options = choice_options(choices)
    pattern = "|".join(re.escape(text) for text in options)
    proc = RegexLogitsProcessor(pattern, model.vocabulary)
    return SequenceGenerator(
        model,
        proc,
        options.__getitem__,
        track=track,
        description=f"choice of {len(options)}",
        fast_forward=fast_forward,
    )


def choice_options(choices: Any) -> dict[str, Any]:
    """The text to generate for each choice, mapped to the value to return."""
    if isinstance(choices, type) and issubclass(choices, enum.Enum):
        pairs = [(member.value, member) for member in choices]
    elif typing.get_origin(choices) is typing.Literal:
        pairs = [(v.value if isinstance(v, enum.Enum) else v, v) for v in typing.get_args(choices)]
    elif isinstance(choices, str) or not isinstance(choices, (Sequence, set, frozenset)):
        raise ValueError(
            f"choices must be a non-empty list of strings, a Literal[...] or an Enum class, got {choices!r}"
        )
    else:
        pairs = [(c, c) for c in choices]
        if not all(isinstance(c, str) for c in choices):
            raise ValueError(f"a list of choices must hold strings (or use a Literal[...]), got {choices!r}")
    options: dict[str, Any] = {}
    for raw, value in pairs:
        if isinstance(raw, str):
            text = raw
        elif raw is None or isinstance(raw, (bool, int, float)):
            text = json_module.dumps(raw)
        else:
            raise ValueError(f"choice {value!r}: only strings, numbers, booleans and None can be generated")
        if text in options:
            raise ValueError(f"two choices are written {text!r}: {options[text]!r} and {value!r}")
        options[text] = value
    if not options:
        raise ValueError(
            f"choices must be a non-empty list of strings, a Literal[...] or an Enum class, got {choices!r}"
        )
    return options


def format(
    model: Any, python_type: type, *, track: bool = False, fast_forward: bool | None = None
) -> SequenceGenerator:
    """A value of ``python_type`` (int, float, bool, datetime.date, .time, .datetime; str: any text).

    The regexes are in :mod:`outlines_gguf.format_types`: integers ``-?(0|[1-9][0-9]*)``,
    floats with an optional fraction and exponent, booleans ``True|False``,
    ISO 8601 ``YYYY-MM-DD``, ``HH:MM:SS`` and ``YYYY-MM-DDTHH:MM:SS``.
    """
    model = _as_model(model)
    fmt = format_for(python_type)
    proc = RegexLogitsProcessor(fmt.pattern, model.vocabulary)
    return SequenceGenerator(
        model, proc, fmt.parse, track=track, description=python_type.__name__, fast_forward=fast_forward
    )


def text(model: Any, *, track: bool = False, fast_forward: bool | None = None) -> SequenceGenerator:
    """Unconstrained text; ``max_tokens`` and ``stop_at`` end it normally (never an error).
    (``fast_forward`` is accepted like the other generators'; nothing is forced here.)"""
    return SequenceGenerator(model, None, track=track, description="text", fast_forward=fast_forward)

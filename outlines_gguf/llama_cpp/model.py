"""A loaded GGUF model for the high-level API: the ``Llama``, its vocabulary, its chat template.

>>> from outlines_gguf import models
>>> model = models.llamacpp("model.gguf", n_gpu_layers=-1)   # all layers on Metal/CUDA if built with it
>>> prompt = model.apply_chat_template([{"role": "user", "content": "Hi"}])
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from outlines_gguf.errors import ChatTemplateError, GGUFFormatError
from outlines_gguf.guides.base import LRUCache
from outlines_gguf.llama_cpp.fast_forward import FastForward
from outlines_gguf.tokens.cache import as_vocabulary
from outlines_gguf.tokens.gguf import gguf_tensor_count
from outlines_gguf.tokens.vocabulary import Vocabulary

if TYPE_CHECKING:
    from llama_cpp.llama_types import ChatCompletionRequestMessage

CHAT_TEMPLATE_KEY = "tokenizer.chat_template"
PLANNERS_KEPT = 16
"""Fast-forward planners a model keeps, one per guide (each holds its guide and plans)."""


class LlamaCpp:
    """A ``llama_cpp.Llama`` with what constrained generation needs from it.

    ``vocabulary`` is the exact token -> bytes table (read once through
    llama.cpp), ``chat_template`` the Jinja template from the GGUF metadata
    (``tokenizer.chat_template``) or the one passed in, ``None`` if neither.
    ``fast_forward`` is the default of the generators made with it: text the
    constraint forces is taken without sampling and evaluated in one batch
    (:mod:`~outlines_gguf.llama_cpp.fast_forward`). Build it with :func:`llamacpp`.

    ``fast_forward_min_batch``: a sampled token and the tokens forced after it are evaluated in
    one batch when they are at least this many, one by one otherwise (the same tokens, the
    same samples; the logits differ by rounding, so a seed gives other text than with another
    setting). Default 1: always one batch. Where llama.cpp's kernels for a few tokens cost more
    than as many single steps, raise it: with the Qwen2.5-0.5B-shaped Q8_0 test model on one CPU
    thread a batch of 2 tokens cost 2.4-3.4 steps, 4 tokens 3.3-3.9, 8 tokens 3.6-4.7, where 5
    suits; on two threads about 2.0, 2.4-2.9 and 3.1-3.2, where 3 does (docs/architecture.md, "Fast-forward";
    ``benchmarks/bench_fast_forward.py`` measures it). A GPU or a smaller model batches almost
    for free.
    """

    def __init__(
        self,
        llm: Any,
        chat_template: str | None = None,
        fast_forward: bool = True,
        fast_forward_min_batch: int = 1,
    ) -> None:
        if not (hasattr(llm, "model") and hasattr(llm, "n_ctx")):
            raise TypeError(f"expected a llama_cpp.Llama, got {type(llm).__name__}")
        self.llm = llm
        self.fast_forward = bool(fast_forward)
        if not isinstance(fast_forward_min_batch, int) or fast_forward_min_batch < 1:
            raise ValueError(f"fast_forward_min_batch must be an integer >= 1: {fast_forward_min_batch!r}")
        self.fast_forward_min_batch = fast_forward_min_batch
        metadata: Mapping[str, str] = getattr(llm, "metadata", None) or {}
        self.chat_template: str | None = chat_template or metadata.get(CHAT_TEMPLATE_KEY) or None

    @cached_property
    def vocabulary(self) -> Vocabulary:
        """The model's :class:`Vocabulary` (shared with processors built from the same ``Llama``)."""
        return as_vocabulary(self.llm)

    def fast_forward_planner(self, guide: Any) -> Any:
        """The :class:`~outlines_gguf.llama_cpp.fast_forward.FastForward` of ``guide`` with this model's
        tokenizer, kept (a few, least recently used dropped) so its plans serve later calls."""
        planners = self.__dict__.setdefault("_planners", LRUCache(PLANNERS_KEPT))
        llm = self.llm

        def tokenize(data: bytes) -> list[int]:
            return llm.tokenize(data, add_bos=False, special=False)

        return planners.get_or_make(guide, lambda: FastForward(guide, tokenize))

    @property
    def n_ctx(self) -> int:
        """The context window in tokens (prompt and generated text together)."""
        return int(self.llm.n_ctx())

    @property
    def name(self) -> str:
        """The model file's name."""
        return os.path.basename(getattr(self.llm, "model_path", "") or "") or "model"

    def __repr__(self) -> str:
        return f"<LlamaCpp {self.name!r} n_ctx={self.n_ctx} chat_template={self.chat_template is not None}>"

    # -- text <-> tokens --------------------------------------------------------------------

    def tokenize(self, prompt: str) -> list[int]:
        """The prompt's token ids, special tokens such as ``<|im_start|>`` parsed.

        The model's BOS token is added when its vocabulary asks for one, but
        never twice (a chat template may already have written it).
        """
        bos = self.vocabulary.bos_id
        # A chat template usually writes the BOS text itself: then ask llama.cpp for none, or it
        # adds one and warns that the prompt "starts with 2 BOS tokens".
        has_bos = bos is not None and prompt.startswith(self._bos_text) and bool(self._bos_text)
        ids = list(self.llm.tokenize(prompt.encode("utf-8"), add_bos=not has_bos, special=True))
        if bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
            del ids[0]
        return ids

    @cached_property
    def _bos_text(self) -> str:
        return self._special_text(self.vocabulary.bos_id)

    def _special_text(self, token: int | None) -> str:
        if token is None:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    # -- chat -------------------------------------------------------------------------------

    def apply_chat_template(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True
    ) -> str:
        """Render chat ``messages`` (``{"role": ..., "content": ...}``) with the model's template.

        With ``add_generation_prompt`` the text ends where the assistant's
        answer begins. Raises :class:`~outlines_gguf.errors.ChatTemplateError`
        when the model has no template (pass ``chat_template=`` to
        :func:`llamacpp` then) or the template rejects the messages.
        """
        if not self.chat_template:
            raise ChatTemplateError(
                f"{self.name} has no chat template ({CHAT_TEMPLATE_KEY} is not in its GGUF metadata): "
                "pass a prompt string, or give one with models.llamacpp(..., chat_template=...)"
            )
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        vocab = self.vocabulary
        formatter = Jinja2ChatFormatter(
            template=self.chat_template,
            eos_token=self._special_text(vocab.eos_id),
            bos_token=self._special_text(vocab.bos_id),
            add_generation_prompt=add_generation_prompt,
        )
        try:
            # chat messages as the template reads them (role, content, ...): llama.cpp's
            # TypedDicts name the usual keys; a template may read others, so they stay mappings
            chat = cast("list[ChatCompletionRequestMessage]", list(messages))
            return formatter(messages=chat).prompt
        except Exception as exc:  # jinja2 errors and the template's own raise_exception
            raise ChatTemplateError(f"the chat template of {self.name} failed: {exc}") from exc


DEFAULT_N_CTX = 2048


def check_model_file(path: str) -> None:
    """Refuse, from the file's header and before llama.cpp's vague "Failed to load model", a
    missing file, a file that is not GGUF, and a vocabulary-only GGUF (a tokenizer, no weights)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if gguf_tensor_count(path) == 0:
        raise GGUFFormatError(
            f"{path} is a vocabulary-only GGUF (a tokenizer with no weights), not a model: pass a model "
            "file. It still serves as a tokenizer: Vocabulary.from_gguf(path), or a processor's tokenizer"
        )


def llamacpp(
    model_path_or_llama: Any,
    *,
    n_ctx: int | None = None,
    n_gpu_layers: int | None = None,
    n_threads: int | None = None,
    chat_template: str | None = None,
    fast_forward: bool = True,
    fast_forward_min_batch: int = 1,
    **llama_kwargs: Any,
) -> LlamaCpp:
    """Load a GGUF model with llama-cpp-python, or wrap a ``llama_cpp.Llama`` you already have.

    ``n_ctx`` is the context window (default 2048; 0 = the model's training
    context), ``n_gpu_layers`` how many layers run on the GPU with a Metal or
    CUDA build of llama.cpp (-1 = all; default 0, the CPU), ``n_threads`` the
    CPU threads, for the prompt too unless ``n_threads_batch`` is given, as
    in llama.cpp's own tools (default: llama-cpp-python's choice). Other
    keyword arguments go to ``llama_cpp.Llama`` (``verbose`` defaults to False).
    ``chat_template`` replaces the model's own template. ``fast_forward=False``
    makes its generators sample every token, forced text included (the
    generators' own ``fast_forward`` overrides it). ``fast_forward_min_batch``: see
    :class:`LlamaCpp`. An existing ``Llama`` takes only ``chat_template`` and the
    ``fast_forward`` options: its own are already set.
    """
    options = {"n_ctx": n_ctx, "n_gpu_layers": n_gpu_layers, "n_threads": n_threads, **llama_kwargs}
    options = {key: value for key, value in options.items() if value is not None}
    if not isinstance(model_path_or_llama, (str, os.PathLike)):
        if options:
            raise TypeError(f"llamacpp() got an already loaded Llama: cannot apply {sorted(options)} to it")
        return LlamaCpp(model_path_or_llama, chat_template=chat_template, fast_forward=fast_forward,
                        fast_forward_min_batch=fast_forward_min_batch)
    path = os.fspath(model_path_or_llama)
    check_model_file(path)
    from llama_cpp import Llama

    options.setdefault("n_ctx", DEFAULT_N_CTX)
    if n_threads is not None:
        options.setdefault("n_threads_batch", n_threads)
    options.setdefault("verbose", False)
    return LlamaCpp(Llama(model_path=path, **options), chat_template=chat_template, fast_forward=fast_forward,
                    fast_forward_min_batch=fast_forward_min_batch)

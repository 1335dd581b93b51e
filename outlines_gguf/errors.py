"""Exceptions raised by outlines-gguf.

Every error caused by the caller's input (a regex, a vocabulary, scores of the
wrong shape) is a ``ValueError`` subclass, so ``except ValueError`` keeps
working for code that does not know this library.
"""

from __future__ import annotations


class OutlinesGGUFError(Exception):
    """Base class of every exception raised by outlines-gguf."""


class RegexError(OutlinesGGUFError, ValueError):
    """The regular expression is invalid or uses syntax we cannot enforce."""


class EmptyLanguageError(OutlinesGGUFError, ValueError):
    """The constraint accepts no string at all, so nothing could be generated."""


class ConstraintTooComplexError(OutlinesGGUFError, ValueError):
    """Compiling the constraint would exceed a documented size limit."""


class VocabularyError(OutlinesGGUFError, ValueError):
    """The vocabulary cannot be read, or does not fit the model or the scores."""


class GGUFFormatError(VocabularyError):
    """The file is not a GGUF file this library can read."""


class GrammarError(OutlinesGGUFError, ValueError):
    """A context-free grammar is invalid or uses what we cannot enforce (the message gives where)."""


class ConstraintViolationError(OutlinesGGUFError, RuntimeError):
    """Generation could not follow the constraint (an injected token, a dead end)."""


class ConcurrentUseError(OutlinesGGUFError, RuntimeError):
    """One logits processor was used by two sequences at the same time.

    A processor follows one sequence: a second thread that starts a
    generation while another thread's generation is still under way is
    refused (both are stopped, ``raise_if_failed()`` reports this, and the
    processor refuses every call until ``reset()``). Use one processor per
    concurrent sequence; guides are shared safely.
    """


class ProcessorFailedError(OutlinesGGUFError, RuntimeError):
    """A logits processor failed inside llama.cpp's sampler and stopped generation.

    llama-cpp-python swallows exceptions raised in a processor, so processors
    record the original error, force end-of-generation and let callers raise
    this (``processor.raise_if_failed()``); the original is ``__cause__``.
    """


class PromptTooLongError(OutlinesGGUFError, ValueError):
    """The prompt does not fit the model's context window (``n_ctx``)."""


class ChatTemplateError(OutlinesGGUFError, ValueError):
    """The model has no chat template, or its template cannot render the messages."""


class IncompleteGenerationError(OutlinesGGUFError, RuntimeError):
    """Generation stopped (``max_tokens``, a full context, ``stop_at``) before the constraint was complete.

    ``text`` is the partial text, ``token_ids`` the generated ids and
    ``reason`` why it stopped: ``"max_tokens"``, ``"context"`` or ``"stop_at"``.
    """

    def __init__(self, message: str, *, text: str, token_ids: list[int], reason: str) -> None:
        super().__init__(message)
        self.text = text
        self.token_ids = token_ids
        self.reason = reason


class SchemaError(OutlinesGGUFError, ValueError):
    """The schema is malformed or uses a keyword we cannot enforce; ``path`` says where."""

    def __init__(self, message: str, path: str = "#") -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class DFAProductTooLargeError(ConstraintTooComplexError):
    """A product of automata (``allOf``, ``not``) would exceed ``automata.ops.MAX_PRODUCT_STATES``."""

"""Was a generation cut off? Checked on the text a llama-cpp-python call returned.

A logits processor never sees the last token llama.cpp samples: at
``max_tokens`` llama-cpp-python stops right after sampling it. So the
processor alone cannot tell ``'{"a":1}'`` finished by its last token from
``'{"a":'`` cut off there. The text the caller got settles it: it is
complete exactly when the constraint accepts it. :func:`walk_text` runs a
guide over that text's bytes, one single-byte token at a time (guides
follow bytes, so any split of the same bytes reaches the same state),
falling back to the longest token that fits for bytes with no token of
their own.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable, Mapping
from typing import Any

from outlines_gguf.errors import ConstraintViolationError
from outlines_gguf.guides.base import Guide
from outlines_gguf.tokens.vocabulary import Vocabulary

_FINISH_REASONS = {"length": "max_tokens", "stop": "stop_at"}


def completion_text(completion: Any) -> tuple[str, str | None]:
    """The generated text and llama-cpp-python's finish reason of a completion.

    ``completion`` is what ``create_completion``/``create_chat_completion``
    return (a dict, first choice), or the text itself (a ``str``: reason None).
    """
    if isinstance(completion, str):
        return completion, None
    if isinstance(completion, Mapping):
        choices = completion.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
            choice = choices[0]
            if "text" in choice:
                return str(choice["text"] or ""), choice.get("finish_reason")
            message = choice.get("message")
            if isinstance(message, Mapping):
                return str(message.get("content") or ""), choice.get("finish_reason")
    raise TypeError(
        "pass the dict that create_completion or create_chat_completion returned (not a stream), "
        f"or the generated text as a str; got {type(completion).__name__}"
    )


def stop_reason(finish_reason: str | None) -> str:
    """llama-cpp-python's finish reason in this library's words (``IncompleteGenerationError.reason``)."""
    if finish_reason is None:
        return "unknown"
    return _FINISH_REASONS.get(finish_reason, finish_reason)


_BY_BYTES: weakref.WeakKeyDictionary[Vocabulary, tuple[dict[bytes, int], int]] = weakref.WeakKeyDictionary()
_BY_BYTES_LOCK = threading.Lock()


def _pieces(vocabulary: Vocabulary) -> tuple[dict[bytes, int], int]:
    """Non-special tokens by their bytes (the lowest id for duplicates), and the longest length;
    built once per vocabulary, kept beside it (not in it: it would be pickled with it)."""
    with _BY_BYTES_LOCK:
        cached = _BY_BYTES.get(vocabulary)
    if cached is None:
        special = vocabulary.special_ids
        by_bytes: dict[bytes, int] = {}
        for i, tok in enumerate(vocabulary.tokens):
            if tok and i not in special:
                by_bytes.setdefault(tok, i)
        cached = (by_bytes, max((len(t) for t in by_bytes), default=1))
        with _BY_BYTES_LOCK:
            _BY_BYTES[vocabulary] = cached
    return cached


def token_for_bytes(vocabulary: Vocabulary, data: bytes) -> int | None:
    """The (lowest) non-special token id that writes exactly ``data``, or None."""
    return _pieces(vocabulary)[0].get(data)


def walk_text(guide: Guide, data: bytes, state: Hashable | None = None) -> Hashable | None:
    """The guide's state after ``data`` from ``state`` (its initial state by default), or None
    where the constraint refuses the bytes (or no token writes them)."""
    by_bytes, longest = _pieces(guide.vocabulary)
    state = guide.initial_state if state is None else state
    at = 0
    while at < len(data):
        token = by_bytes.get(data[at : at + 1])
        size = 1
        if token is None:
            for size in range(min(longest, len(data) - at), 1, -1):
                token = by_bytes.get(data[at : at + size])
                if token is not None:
                    break
        if token is None:
            return None
        try:
            state = guide.next_state(state, token)
        except ConstraintViolationError:
            return None
        at += size
    return state


def accepts(guide: Guide, text: str) -> bool:
    """Whether ``text`` is complete under the guide's constraint."""
    state = walk_text(guide, text.encode("utf-8"))
    return state is not None and bool(guide.is_final(state))

"""Reasoning models: free text inside ``<think>…</think>``, the constraint after it.

A reasoning model (Qwen3, QwQ, DeepSeek-R1 and its distills) thinks before
it answers. Its chat template either opens the block in the prompt
(``...<|Assistant|><think>\\n``) or leaves the model to open it with its
``<think>`` token. Either way the thinking is free text and goes to
``reasoning_content``; the constraint (a schema, tool calls) starts after
``</think>`` and the whitespace that follows it. While thinking, the model
may not end the answer (when one is required) nor write a token that runs on
past ``</think>`` (its text after the tag would escape the constraint).
``reasoning_budget`` caps the thinking: at the cap ``</think>`` is written
for the model.

Also here: per-vocabulary token sets the response processor needs (first
bytes, whitespace-only tokens), computed once per vocabulary.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

import numpy as np

from outlines_gguf.tokens.vocabulary import Vocabulary

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"
WHITESPACE = frozenset(b" \t\r\n")

_tables: dict[tuple[str, str], object] = {}
_tables_lock = threading.Lock()
_MAX_TABLES = 32


_T = TypeVar("_T")


def _per_vocabulary(vocabulary: Vocabulary, name: str, build: Callable[[], _T]) -> _T:
    """A table computed once per vocabulary (a few vocabularies per process at most)."""
    key = (vocabulary.hash, name)
    with _tables_lock:
        found = _tables.get(key)
    if found is None:
        found = build()
        with _tables_lock:
            if len(_tables) >= _MAX_TABLES:
                _tables.pop(next(iter(_tables)))
            _tables[key] = found
    return cast(_T, found)  # what ``build`` made for this name


def first_bytes(vocabulary: Vocabulary) -> np.ndarray:
    """Each token's first byte (-1 for tokens without text)."""

    def build() -> np.ndarray:
        return np.array([t[0] if t else -1 for t in vocabulary.tokens], dtype=np.int16)

    return _per_vocabulary(vocabulary, "first_bytes", build)


def whitespace_tokens(vocabulary: Vocabulary) -> np.ndarray:
    """Boolean array: tokens made only of spaces, tabs and newlines (the gap after ``</think>``)."""

    def build() -> np.ndarray:
        out = np.zeros(vocabulary.size, dtype=bool)
        special = vocabulary.special_ids
        for i, t in enumerate(vocabulary.tokens):
            if t and i not in special and all(b in WHITESPACE for b in t):
                out[i] = True
        return out

    return _per_vocabulary(vocabulary, "whitespace", build)


def overrunning_close(vocabulary: Vocabulary, close: bytes) -> list[np.ndarray]:
    """For each k < len(close): ids of tokens that, after the first k bytes of ``close``,
    would complete ``close`` and write more text in the same token."""

    def build() -> list[np.ndarray]:
        last = close[-1]
        candidates = [(i, t) for i, t in enumerate(vocabulary.tokens) if last in t]
        out = []
        for k in range(len(close)):
            bad = []
            for i, t in candidates:
                s = close[:k] + t
                at = s.find(close)
                if at >= 0 and at + len(close) < len(s):
                    bad.append(i)
            out.append(np.array(bad, dtype=np.intp))
        return out

    return _per_vocabulary(vocabulary, "overrun:" + close.hex(), build)


@dataclass(frozen=True)
class ThinkPlan:
    """How a reasoning model's thinking block is handled in one request."""

    close: bytes
    starts_open: bool
    """The prompt already opened the block: generation starts inside it."""
    open_id: int | None
    """The model's ``<think>`` token, which it may write first to open the block itself."""
    close_ids: tuple[tuple[int, ...], ...]
    """For each k, the tokens that write the rest of the close tag after its first k bytes (the budget)."""
    budget: int | None
    overrun: tuple[np.ndarray, ...]
    whitespace: np.ndarray


@dataclass(frozen=True)
class ThinkTokens:
    """A model's tokens for thinking blocks, found once per server."""

    open_id: int | None
    """``<think>`` as one token, if the vocabulary has it."""
    close_ids: tuple[tuple[int, ...], ...]
    overrun: tuple[np.ndarray, ...]
    whitespace: np.ndarray

    @classmethod
    def of(cls, vocabulary: Vocabulary, tokenize: Callable[[str], list[int]]) -> ThinkTokens:
        opener = tokenize(OPEN_TAG)
        return cls(
            open_id=opener[0] if len(opener) == 1 else None,
            close_ids=tuple(tuple(tokenize(CLOSE_TAG[k:])) for k in range(len(CLOSE_TAG))),
            overrun=tuple(overrunning_close(vocabulary, CLOSE_TAG.encode())),
            whitespace=whitespace_tokens(vocabulary),
        )


def think_plan(
    prompt: str, template: str | None, tokens: ThinkTokens, budget: int | None
) -> ThinkPlan | None:
    """The thinking block of a chat answer, or None when the model does not think here.

    Inside one when the prompt ends in an open ``<think>``; optional when the
    template knows ``<think>`` and it is one token the model can write.
    """
    starts_open = prompt.rstrip().endswith(OPEN_TAG)
    open_id = None
    if not starts_open and template and OPEN_TAG in template and CLOSE_TAG not in prompt[-64:]:
        open_id = tokens.open_id
    if not starts_open and open_id is None:
        return None
    return ThinkPlan(
        close=CLOSE_TAG.encode(),
        starts_open=starts_open,
        open_id=open_id,
        close_ids=tokens.close_ids,
        budget=budget,
        overrun=tokens.overrun,
        whitespace=tokens.whitespace,
    )


def matched_prefix(text: bytes | bytearray, tag: bytes) -> int:
    """The longest k < len(tag) such that ``text`` ends with the first k bytes of ``tag``."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0

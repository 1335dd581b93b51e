"""The logits processor behind a chat answer that thinks, calls tools, or both.

A plain constrained answer needs nothing more than a library processor. An
answer with structure around the constraint is a sequence of *phases*, each
with its own mask, and this processor walks it token by token:

- ``think``: free text up to ``</think>`` (:mod:`.reasoning`); ``force``
  writes the rest of ``</think>`` when the reasoning budget is spent;
- ``answer``: the first token of the answer decides what it is. Its mask is
  the union of disjoint *branches*: open a thinking block, skip whitespace
  after one, start a tool call, or start the text (free, or under the
  request's constraint). Under ``tool_choice="auto"`` text may not start
  with the first byte of a call, so text and calls never look alike;
- ``free`` / ``body``: the text, free or under its guide;
- ``head`` / ``args`` / ``tail``: a tool call (:mod:`.tool_formats`): the
  opening text and the function's name, the arguments under that function's
  schema, then the closing text and either the end or the next call.

It records what each phase wrote (``reasoning``, ``content``, ``calls``) as
bytes, so the server answers with fields instead of re-parsing text, and can
stream them. Like every processor here it never raises inside llama.cpp's
sampler: a failure forces end-of-generation, is kept in ``error``, and
``raise_if_failed()`` raises it as :class:`ProcessorFailedError`.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from outlines_gguf.errors import ConstraintViolationError, ProcessorFailedError
from outlines_gguf.guides.base import Guide
from outlines_gguf.server.reasoning import ThinkPlan, first_bytes, matched_prefix
from outlines_gguf.server.tool_formats import ToolPlan
from outlines_gguf.tokens.vocabulary import Vocabulary

logger = logging.getLogger("outlines_gguf")

MAX_GAP_TOKENS = 8
"""Whitespace tokens skipped between ``</think>`` and the answer."""


@dataclass
class CallRecord:
    """One tool call as written so far."""

    id: str
    name: str
    arguments: bytearray = field(default_factory=bytearray)
    done: bool = False


class ResponseProcessor:
    """Constrain and record one chat answer: thinking, then text or tool calls (module docstring).

    ``body`` is the guide for the text (None: free text); ``tools`` the tool
    plan (None: no calls); ``think`` the thinking block (None: none).
    """

    def __init__(
        self,
        vocabulary: Vocabulary,
        *,
        body: Guide | None = None,
        tools: ToolPlan | None = None,
        think: ThinkPlan | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.body = body
        self.tools = tools
        self.think = think
        self._tokens = vocabulary.tokens
        self._eog = vocabulary.eog_array.astype(np.intp)
        self._answer_required = body is not None or (tools is not None and tools.required)
        self.reset()

    # -- state ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the current generation; the next call starts a new one."""
        self.error: BaseException | None = None
        self.phase = "new"
        self.reasoning = bytearray()
        self.content = bytearray()
        self.calls: list[CallRecord] = []
        self.thinking = False
        self.thought = False
        self.n_generated = 0
        self._length: int | None = None
        self._failed = False
        self._think_tokens = 0
        self._think_k = 0
        self._gap = 0
        self._forced: tuple[int, ...] = ()
        self._forced_at = 0
        self._fork: list[tuple[str, np.ndarray]] = []
        self._guide: Guide | None = None
        self._state: Any = None  # the current guide's state (each guide has its own type)
        self._seg = bytearray()

    @property
    def reasoning_hold(self) -> int:
        """Trailing reasoning bytes that may be the start of ``</think>`` (not shown yet)."""
        return self._think_k if self.thinking else 0

    @property
    def is_finished(self) -> bool:
        """Whether the answer may end here."""
        phase = self.phase
        if phase in ("free", "end"):
            return True
        if phase in ("body", "tail"):
            assert self._guide is not None
            return bool(self._guide.is_final(self._state))
        if phase == "think":
            return not self._answer_required
        if phase == "answer":
            if self.tools is not None and self.tools.required:
                return False
            return self.body is None or bool(self.body.is_final(self.body.initial_state))
        return False

    def raise_if_failed(self) -> None:
        """Raise :class:`ProcessorFailedError` if the last generation failed inside the hook."""
        if self.error is not None:
            raise ProcessorFailedError(
                f"{type(self).__name__} failed during generation and stopped it: {self.error}"
            ) from self.error

    # -- the hook ---------------------------------------------------------------------------

    def __call__(self, input_ids: Any, scores: np.ndarray) -> np.ndarray:
        try:
            n = len(input_ids)
            if self._length is not None and n == self._length + 1:
                if not self._failed:
                    self.n_generated += 1
                    self._advance(int(input_ids[-1]))
            else:
                if self._length is not None:
                    self.reset()
                self._begin()
            self._length = n
            if self._failed:
                self._force_eog(scores)
            else:
                self._mask(scores)
        except Exception as exc:
            logger.error("outlines-gguf: the response processor failed, forcing end of generation: %s", exc,
                         exc_info=exc)
            if self.error is None:
                self.error = exc
            self._failed = True
            self._force_eog(scores)
        return scores

    def _force_eog(self, scores: np.ndarray) -> None:
        scores[:] = -np.inf
        scores[self._eog[self._eog < scores.shape[-1]]] = 0.0

    def _only(self, scores: np.ndarray, token: int) -> None:
        kept = scores[token]
        scores[:] = -np.inf
        scores[token] = kept

    # -- phases -----------------------------------------------------------------------------

    def _begin(self) -> None:
        if self.think is not None and self.think.starts_open:
            self._enter_think()
        else:
            self.phase = "answer"

    def _enter_think(self) -> None:
        self.phase = "think"
        self.thinking = True
        self._check_budget()

    def _check_budget(self) -> None:
        think = self.think
        assert think is not None
        if think.budget is not None and self._think_tokens >= think.budget:
            self.phase = "force"
            self._forced = think.close_ids[self._think_k]
            self._forced_at = 0

    def _mask(self, scores: np.ndarray) -> None:
        phase = self.phase
        if phase in ("body", "head", "tail"):
            assert self._guide is not None
            self._guide.mask(self._state).apply(scores)
        elif phase == "args":
            assert self._guide is not None
            if self._guide.is_final(self._state):
                self._apply_fork(scores, self._args_fork())
            else:
                self._guide.mask(self._state).apply(scores)
        elif phase == "free":
            pass
        elif phase == "answer":
            self._apply_fork(scores, self._answer_fork())
        elif phase == "think":
            assert self.think is not None
            scores[self.think.overrun[self._think_k]] = -np.inf
            if self._answer_required:
                scores[self._eog[self._eog < scores.shape[-1]]] = -np.inf
        elif phase == "force":
            self._only(scores, self._forced[self._forced_at])
        elif phase == "end":
            self._force_eog(scores)
        else:
            raise ConstraintViolationError(f"response processor in an unknown phase {phase!r}")

    def _apply_fork(self, scores: np.ndarray, branches: list[tuple[str, np.ndarray]]) -> None:
        self._fork = branches
        allowed = np.zeros(scores.shape[-1], dtype=bool)
        for _, branch in branches:
            allowed |= branch[: allowed.size]
        if not allowed.any():
            raise ConstraintViolationError("no token can start the answer under this request's constraints")
        scores[~allowed] = -np.inf

    def _bool(self) -> np.ndarray:
        return np.zeros(self.vocabulary.size, dtype=bool)

    def _mask_bool(self, guide: Guide, state: Hashable) -> np.ndarray:
        out = self._bool()
        guide.mask(state).union_into(out)
        return out

    def _answer_fork(self) -> list[tuple[str, np.ndarray]]:
        """The branches the answer's next token may take (see the module docstring)."""
        branches: list[tuple[str, np.ndarray]] = []
        taken = self._bool()
        think, tools = self.think, self.tools
        if think is not None and think.open_id is not None and not self.thought and self._gap == 0:
            opener = self._bool()
            opener[think.open_id] = True
            branches.append(("think", opener))
            taken |= opener
        if tools is not None and len(self.calls) < tools.max_calls:
            if tools.trigger_id is not None:
                call = self._bool()
                call[tools.trigger_id] = True
            else:
                call = self._mask_bool(tools.head, tools.head.initial_state)
                call[self._eog] = False
            branches.append(("call", call))
            taken |= call
        if self.thought and think is not None and self._gap < MAX_GAP_TOKENS:
            space = think.whitespace & ~taken
            branches.append(("space", space))
            taken |= space
        if tools is None or not tools.required:
            if self.body is not None:
                text = self._mask_bool(self.body, self.body.initial_state)
            else:
                text = np.ones(self.vocabulary.size, dtype=bool)
            text &= ~taken
            if tools is not None and tools.first_byte is not None:
                text &= first_bytes(self.vocabulary) != tools.first_byte
                if tools.trigger_id is not None:
                    text[tools.trigger_id] = False
            if self.body is None or self.body.is_final(self.body.initial_state):
                text[self._eog] = True
            branches.append(("text", text))
        return branches

    def _args_fork(self) -> list[tuple[str, np.ndarray]]:
        """At a complete argument value: more of it (if the schema allows) or the call's tail."""
        assert self._guide is not None and self.tools is not None
        more = self._mask_bool(self._guide, self._state)
        more[self._eog] = False
        tail = self._tail_guide()
        close = self._mask_bool(tail, tail.initial_state)
        close &= ~more
        return [("args", more), ("tail", close)]

    def _tail_guide(self) -> Guide:
        assert self.tools is not None
        return self.tools.tail_more if len(self.calls) < self.tools.max_calls else self.tools.tail_last

    def _branch(self, token: int) -> str:
        for name, allowed in self._fork:
            if token < allowed.size and allowed[token]:
                return name
        raise ConstraintViolationError(f"token {token} was sampled but no branch of the answer allows it")

    # -- advancing --------------------------------------------------------------------------

    def _advance(self, token: int) -> None:
        text = self._tokens[token]
        phase = self.phase
        if phase in ("think", "force"):
            self._advance_think(token, text)
        elif phase == "answer":
            self._advance_answer(token, text)
        elif phase == "free":
            tools = self.tools
            if (tools is not None and tools.trigger_id == token and len(self.calls) < tools.max_calls):
                self._start_head(None, b"")
            else:
                self.content += text
        elif phase == "body":
            assert self._guide is not None
            self._state = self._guide.next_state(self._state, token)
            self.content += text
        elif phase == "head":
            self._advance_head(token, text)
        elif phase == "args":
            self._advance_args(token, text)
        elif phase == "tail":
            self._advance_tail(token, text)
        # "end": only end-of-generation can follow, and it is never shown to the processor

    def _advance_think(self, token: int, text: bytes) -> None:
        think = self.think
        assert think is not None
        self._think_tokens += 1
        before = len(self.reasoning)
        self.reasoning += text
        if self.phase == "force":
            self._forced_at += 1
        at = self.reasoning.find(think.close, max(0, before - len(think.close) + 1))
        if at >= 0:
            del self.reasoning[at:]
            self._end_think()
            return
        if self.phase == "force" and self._forced_at >= len(self._forced):
            # the forced tokens spelled the tag differently than expected: end the block anyway
            del self.reasoning[len(self.reasoning) - matched_prefix(self.reasoning, think.close):]
            self._end_think()
            return
        self._think_k = matched_prefix(self.reasoning, think.close)
        if self.phase == "think":
            self._check_budget()

    def _end_think(self) -> None:
        self.thinking = False
        self.thought = True
        self._think_k = 0
        self.phase = "answer"

    def _advance_answer(self, token: int, text: bytes) -> None:
        branch = self._branch(token)
        if branch == "think":
            self._enter_think()
        elif branch == "space":
            self._gap += 1
        elif branch == "call":
            assert self.tools is not None
            if self.tools.trigger_id is not None:
                self._start_head(None, b"")
            else:
                self._start_head(token, text)
        elif self.body is not None:
            self.phase = "body"
            self._guide = self.body
            self._state = self.body.next_state(self.body.initial_state, token)
            self.content += text
        else:
            self.phase = "free"
            self.content += text

    def _start_head(self, token: int | None, text: bytes) -> None:
        assert self.tools is not None
        head = self.tools.head
        self.phase = "head"
        self._guide = head
        self._state = head.initial_state
        self._seg = bytearray()
        if token is not None:
            self._advance_head(token, text)

    def _advance_head(self, token: int, text: bytes) -> None:
        assert self.tools is not None and self._guide is not None
        self._state = self._guide.next_state(self._state, token)
        self._seg += text
        if self._guide.is_final(self._state):
            self._maybe_start_args(self.tools.head_re)

    def _maybe_start_args(self, pattern: Any) -> bool:
        """If the segment so far ends with a function name and its arguments key, start the arguments."""
        match = pattern.fullmatch(self._seg.decode("utf-8", errors="replace"))
        name = match.groupdict().get("name") if match is not None else None
        if name is None:
            return False
        assert self.tools is not None
        self.calls.append(CallRecord(self.tools.fmt.new_call_id(), name))
        self.phase = "args"
        self._guide = self.tools.args[name]
        self._state = self._guide.initial_state
        self._seg = bytearray()
        return True

    def _advance_args(self, token: int, text: bytes) -> None:
        assert self._guide is not None
        if self._guide.is_final(self._state) and self._branch(token) == "tail":
            self.calls[-1].done = True
            tail = self._tail_guide()
            self.phase = "tail"
            self._guide = tail
            self._state = tail.initial_state
            self._seg = bytearray()
            self._advance_tail(token, text)
            return
        self._state = self._guide.next_state(self._state, token)
        self.calls[-1].arguments += text

    def _advance_tail(self, token: int, text: bytes) -> None:
        assert self.tools is not None and self._guide is not None
        self._state = self._guide.next_state(self._state, token)
        self._seg += text
        if self._guide is self.tools.tail_more and self._guide.is_final(self._state):
            self._maybe_start_args(self.tools.tail_more_re)

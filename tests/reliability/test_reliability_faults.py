"""Faults inside llama.cpp's sampler callback, end to end through ``create_completion``.

llama-cpp-python swallows exceptions raised in a logits processor and goes
on sampling unconstrained. Ours never raise there: generation is stopped
with end-of-generation and the error is kept. Direct ``create_completion``
users check it with ``processor.raise_if_failed()`` (raises
:class:`ProcessorFailedError`, the original error as ``__cause__``) or read
``processor.error``.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
from llama_cpp import LogitsProcessorList

from outlines_gguf import (
    ConstraintViolationError,
    LogitTrackingProcessor,
    ProcessorFailedError,
    RegexLogitsProcessor,
    VocabularyError,
)
from outlines_gguf.tokens.cache import as_vocabulary

pytestmark = pytest.mark.model


class InjectOnce:
    """A second processor that forces ``token`` at its ``at``-th call (a caller injecting a token)."""

    def __init__(self, token: int, at: int) -> None:
        self.token, self.at, self.calls = token, at, 0

    def __call__(self, input_ids, scores):
        self.calls += 1
        if self.calls == self.at:
            scores[:] = -np.inf
            scores[self.token] = 0.0
        return scores


def complete(llm, processors: list, **kwargs) -> dict:
    kwargs.setdefault("max_tokens", 16)
    kwargs.setdefault("seed", 3)
    return llm.create_completion("Digits:", logits_processor=LogitsProcessorList(processors), **kwargs)


def test_an_injected_token_stops_generation_and_is_reported(qwen_llm, caplog) -> None:
    vocab = as_vocabulary(qwen_llm)
    letter = vocab.tokens.index(b"a")
    proc = RegexLogitsProcessor(r"[0-9]{8}", qwen_llm)
    with caplog.at_level(logging.ERROR, logger="outlines_gguf"):
        out = complete(qwen_llm, [proc, InjectOnce(letter, at=3)], temperature=0.0)
    choice = out["choices"][0]
    # two digits, the injected letter, then end-of-generation: nothing unconstrained after it
    assert re.fullmatch(r"[0-9]+a", choice["text"]), choice["text"]
    assert choice["finish_reason"] == "stop"
    assert isinstance(proc.error, ConstraintViolationError)
    assert "does not fit the constraint" in caplog.text
    with pytest.raises(ProcessorFailedError, match="does not fit the constraint") as info:
        proc.raise_if_failed()
    assert info.value.__cause__ is proc.error
    # the next generation starts clean
    out = complete(qwen_llm, [proc], temperature=0.0)
    assert re.fullmatch(r"[0-9]{8}", out["choices"][0]["text"])
    proc.raise_if_failed()


def test_a_raising_processor_inside_the_tracker_stops_generation(qwen_llm) -> None:
    def broken(input_ids, scores):
        raise RuntimeError("bug in a user processor")

    tracker = LogitTrackingProcessor(broken, vocabulary=qwen_llm)
    out = complete(qwen_llm, [tracker], temperature=1.0)
    assert out["choices"][0]["text"] == ""  # end of generation at once, no unconstrained text
    assert out["choices"][0]["finish_reason"] == "stop"
    assert isinstance(tracker.error, RuntimeError)
    with pytest.raises(ProcessorFailedError, match="bug in a user processor") as info:
        tracker.raise_if_failed()
    assert info.value.__cause__ is tracker.error
    assert tracker.n_positions == 1  # the failed position is still recorded


def test_a_failure_that_comes_later_stops_at_that_point(qwen_llm, monkeypatch: pytest.MonkeyPatch) -> None:
    """A guide that breaks on its third mask: two constrained tokens, then the end."""
    proc = RegexLogitsProcessor(r"[a-z]{10,20}", qwen_llm)
    tracker = LogitTrackingProcessor(proc)
    real_mask, calls = proc.guide.mask, []

    def flaky_mask(state):
        calls.append(state)
        if len(calls) == 3:
            raise MemoryError("simulated allocation failure")
        return real_mask(state)

    monkeypatch.setattr(proc.guide, "mask", flaky_mask)
    out = complete(qwen_llm, [tracker], temperature=1.0)
    text = out["choices"][0]["text"]
    assert re.fullmatch(r"[a-z]+", text), text
    assert out["usage"]["completion_tokens"] == 2  # two tokens, then the forced end (not counted)
    assert isinstance(proc.error, MemoryError) and tracker.error is None
    with pytest.raises(ProcessorFailedError, match="simulated allocation failure"):
        tracker.raise_if_failed()  # reports the wrapped processor's failure


def test_a_processor_built_for_another_model(qwen_llm) -> None:
    """A 32k-vocabulary processor on the 152k Qwen2 model: a VocabularyError, kept and reported.

    The processor cannot know the other model's end-of-generation ids, so what
    the model writes after the failure is not controlled: check
    ``raise_if_failed()`` after every generation.
    """
    from conftest import load_vocab

    proc = RegexLogitsProcessor(r"[0-9]{4}", load_vocab("spm32k"))
    complete(qwen_llm, [proc], max_tokens=4)
    assert proc.calls >= 1
    with pytest.raises(ProcessorFailedError, match="built for another model") as info:
        proc.raise_if_failed()
    assert isinstance(info.value.__cause__, VocabularyError)


def test_streaming_stops_too(qwen_llm) -> None:
    vocab = as_vocabulary(qwen_llm)
    proc = RegexLogitsProcessor(r"[0-9]{8}", qwen_llm)
    chunks = list(
        complete(qwen_llm, [proc, InjectOnce(vocab.tokens.index(b"a"), at=2)], temperature=0.0, stream=True)
    )
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert re.fullmatch(r"[0-9]+a", text), text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    with pytest.raises(ProcessorFailedError):
        proc.raise_if_failed()

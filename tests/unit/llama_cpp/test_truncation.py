"""A generation cut off before its constraint was complete is never silent in the low-level API."""

from __future__ import annotations

import re

import pytest
from conftest import load_vocab
from hypothesis import given, settings
from hypothesis import strategies as st
from llama_cpp import LogitsProcessorList

from outlines_gguf import JSONLogitsProcessor, LogitTrackingProcessor, RegexLogitsProcessor
from outlines_gguf.errors import IncompleteGenerationError, ProcessorFailedError

SCHEMA = {
    "type": "object",
    "properties": {"a": {"enum": [1, 22]}},
    "required": ["a"],
    "additionalProperties": False,
}


def test_max_tokens_cut_raises_with_the_completion(qwen_llm) -> None:
    proc = JSONLogitsProcessor(SCHEMA, qwen_llm)
    out = qwen_llm.create_completion("x", max_tokens=3, seed=1, logits_processor=LogitsProcessorList([proc]))
    assert out["choices"][0]["finish_reason"] == "length"
    text = out["choices"][0]["text"]
    with pytest.raises(IncompleteGenerationError) as info:
        proc.raise_if_failed(out)
    assert info.value.text == text and info.value.reason == "max_tokens"
    assert "max_tokens" in str(info.value)
    with pytest.raises(IncompleteGenerationError):
        proc.raise_if_failed(text)  # the text alone says the same
    proc.raise_if_failed()  # without the completion only failures are reported


def test_a_complete_generation_passes(qwen_llm) -> None:
    proc = JSONLogitsProcessor(SCHEMA, qwen_llm)
    out = qwen_llm.create_completion("x", max_tokens=50, seed=1, logits_processor=LogitsProcessorList([proc]))
    assert out["choices"][0]["finish_reason"] == "stop"
    proc.raise_if_failed(out)
    assert proc.is_finished  # the end-of-generation token was only allowed once it was complete


def test_complete_exactly_at_max_tokens_passes(qwen_llm) -> None:
    """The last token completes the text but never reaches the processor: the text decides."""
    proc = RegexLogitsProcessor("7", qwen_llm)
    out = qwen_llm.create_completion("x", max_tokens=1, logits_processor=LogitsProcessorList([proc]))
    assert out["choices"][0] == {**out["choices"][0], "text": "7", "finish_reason": "length"}
    assert not proc.is_finished  # the processor saw nothing after the prompt
    proc.raise_if_failed(out)


def test_chat_completion_and_tracker(qwen_llm) -> None:
    proc = LogitTrackingProcessor(JSONLogitsProcessor(SCHEMA, qwen_llm))
    out = qwen_llm.create_chat_completion(
        [{"role": "user", "content": "json"}],
        max_tokens=2,
        seed=3,
        logits_processor=LogitsProcessorList([proc]),
    )
    assert out["choices"][0]["finish_reason"] == "length"
    with pytest.raises(IncompleteGenerationError):
        proc.raise_if_failed(out)


def test_a_failure_still_wins() -> None:
    proc = RegexLogitsProcessor("[0-9]+", load_vocab("spm32k"))
    proc.error = ValueError("boom")
    with pytest.raises(ProcessorFailedError):
        proc.raise_if_failed("12")


def test_bad_completion_argument_is_named() -> None:
    proc = RegexLogitsProcessor("[0-9]+", load_vocab("spm32k"))
    with pytest.raises(TypeError, match="create_completion"):
        proc.raise_if_failed(iter(["1"]))


PATTERNS = [r"[0-9]{1,3}(\.[0-9]+)?", r"(ab|é€)+c?", r"[a-zé]{2,4}-[0-9]"]


@pytest.mark.parametrize("name", ["spm32k", "qwen2-152k"])
@pytest.mark.parametrize("pattern", PATTERNS)
@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet="0123456789.abcé€-z", max_size=8))
def test_accepts_agrees_with_re(name: str, pattern: str, text: str) -> None:
    """Oracle: the byte walk over a real vocabulary accepts exactly what ``re.fullmatch`` does."""
    proc = RegexLogitsProcessor(pattern, load_vocab(name))
    assert proc.accepts(text) == bool(re.fullmatch(pattern, text))

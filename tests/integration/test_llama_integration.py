"""End to end through llama-cpp-python on real (random-weight) GGUF models."""

from __future__ import annotations

import re

import numpy as np
import pytest
from llama_cpp import LogitsProcessorList

from outlines_gguf import ProcessorFailedError, RegexLogitsProcessor, Vocabulary

pytestmark = pytest.mark.model

PATTERNS = [r"[0-9]{4}", r"\+?[1-9][0-9]{7,14}", r"(?:red|green|blue)(?:, (?:red|green|blue)){0,2}"]


def completion(llm, proc, **kwargs) -> dict:
    kwargs.setdefault("max_tokens", 48)
    return llm.create_completion("Answer:", logits_processor=LogitsProcessorList([proc]), **kwargs)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_create_completion_matches(llm, pattern: str, temperature: float) -> None:
    proc = RegexLogitsProcessor(pattern, llm)
    out = completion(llm, proc, temperature=temperature, seed=7)
    choice = out["choices"][0]
    assert re.fullmatch(pattern, choice["text"]), choice["text"]
    assert choice["finish_reason"] == "stop"
    proc.raise_if_failed()


def test_sampled_generations_always_match(qwen_llm) -> None:
    pattern = r"[à-ÿ]{2,4}-[0-9]{2}"
    proc = RegexLogitsProcessor(pattern, qwen_llm)
    for seed in range(12):
        text = completion(qwen_llm, proc, temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=seed)[
            "choices"
        ][0]["text"]
        assert re.fullmatch(pattern, text), text
    proc.raise_if_failed()


def test_streaming(llm) -> None:
    pattern = r"\+?[1-9][0-9]{7,14}"
    proc = RegexLogitsProcessor(pattern, llm)
    chunks = [c["choices"][0]["text"] for c in completion(llm, proc, temperature=0.8, seed=3, stream=True)]
    assert len(chunks) > 1 and re.fullmatch(pattern, "".join(chunks))


def test_chat_completion(qwen_llm) -> None:
    pattern = r"(?:yes|no), [0-9]{1,3}"
    proc = RegexLogitsProcessor(pattern, qwen_llm)
    out = qwen_llm.create_chat_completion(
        messages=[{"role": "user", "content": "Is it raining? How many mm?"}],
        logits_processor=LogitsProcessorList([proc]),
        max_tokens=32,
        seed=5,
    )
    assert re.fullmatch(pattern, out["choices"][0]["message"]["content"])


def test_generate_token_by_token_with_long_tokens() -> None:
    """Tokens over 32 bytes: llama-cpp-python's detokenizer drops them, the Vocabulary does not."""
    from conftest import load_llm

    llm = load_llm("llama3-128k")
    vocab = Vocabulary.from_llama(llm)
    long_id = max(range(vocab.size), key=lambda i: len(vocab.tokens[i]) if i not in vocab.special_ids else 0)
    long_text = vocab.tokens[long_id]
    assert len(long_text) > 32
    assert llm.detokenize([long_id]) != long_text  # the known llama-cpp-python limitation
    pattern = re.escape(long_text.decode("utf-8")) + r"[0-9]"
    proc = RegexLogitsProcessor(pattern, llm)
    ids = []
    for token in llm.generate(llm.tokenize(b"Hi"), temp=0.0, logits_processor=LogitsProcessorList([proc])):
        if token in vocab.eog_ids:
            break
        ids.append(token)
        assert len(ids) < 200
    assert re.fullmatch(pattern, vocab.decode(ids).decode("utf-8"))


def test_reused_processor_for_several_prompts(qwen_llm) -> None:
    proc = RegexLogitsProcessor(r"[0-9]{3}", qwen_llm)
    for prompt in ["One", "Two two", "Three three three"]:
        out = qwen_llm.create_completion(
            prompt, max_tokens=10, seed=1, logits_processor=LogitsProcessorList([proc])
        )
        assert re.fullmatch(r"[0-9]{3}", out["choices"][0]["text"])
        assert proc.prompt_length == len(qwen_llm.tokenize(prompt.encode()))


def test_internal_failure_stops_generation_loudly(qwen_llm, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception inside the hook would be swallowed by ctypes; ours forces EOG instead."""
    proc = RegexLogitsProcessor(r"[a-z]{5,40}", qwen_llm)

    def broken_mask(state):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(proc.guide, "mask", broken_mask)
    out = completion(qwen_llm, proc, temperature=1.0, seed=1)
    assert out["choices"][0]["text"] == ""  # nothing unconstrained leaked out
    with pytest.raises(ProcessorFailedError, match="simulated bug"):
        proc.raise_if_failed()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_swallowed_exceptions_are_a_real_llama_cpp_behaviour(qwen_llm) -> None:
    """Documents why processors never raise: llama-cpp-python goes on unconstrained."""

    def raising(input_ids, scores):
        raise RuntimeError("boom")

    out = qwen_llm.create_completion(
        "x", max_tokens=5, seed=1, logits_processor=LogitsProcessorList([raising])
    )
    assert out["choices"][0]["text"] != "" or out["usage"]["completion_tokens"] > 0


def test_logit_bias_drops_logits_processors(qwen_llm) -> None:
    """llama-cpp-python 0.3.x silently drops both when given together; `calls` reveals it."""
    proc = RegexLogitsProcessor(r"[0-9]{4}", qwen_llm)
    qwen_llm.create_completion(
        "x", max_tokens=4, seed=1, logit_bias={15: 1.0}, logits_processor=LogitsProcessorList([proc])
    )
    assert proc.calls == 0
    completion(qwen_llm, proc, seed=1)
    assert proc.calls > 0


def test_end_of_generation_is_any_eog_id(qwen_llm) -> None:
    vocab = Vocabulary.from_llama(qwen_llm)
    proc = RegexLogitsProcessor(r"[0-9]", qwen_llm)
    proc(np.array([1, 2], dtype=np.intc), np.zeros(vocab.size, dtype=np.float32))
    scores = np.zeros(vocab.size, dtype=np.float32)
    proc(np.array([1, 2, vocab.tokens.index(b"7")], dtype=np.intc), scores)
    assert set(np.flatnonzero(np.isfinite(scores)).tolist()) == set(vocab.eog_ids)
    assert len(vocab.eog_ids) >= 2  # <|endoftext|>, <|im_end|>, ...

"""Drive a processor like llama-cpp-python does, without a model."""

from __future__ import annotations

import numpy as np

from outlines_gguf import GuideLogitsProcessor, Vocabulary

TOY_TOKENS = [b"", b"", b"0", b"1", b"12", b"123", b"a", b"ab", b"-", b"9", b"99"]
"""A toy vocabulary's tokens: 0 ends generation, 1 is a control token."""
TOY_EOG, TOY_CONTROL = 0, 1
TOY_VOCAB = Vocabulary(TOY_TOKENS, eog_ids=[TOY_EOG], special_ids=[TOY_CONTROL], name="toy")


def strided_scores(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A non-contiguous float32 view like llama-cpp-python's recarray ``logit`` field."""
    records = np.zeros(logits.shape[0], dtype=[("id", np.intc), ("logit", np.single), ("p", np.single)])
    records["id"] = np.arange(logits.shape[0])
    records["logit"] = logits
    view = records["logit"]
    assert not view.flags["C_CONTIGUOUS"]
    return records, view


def generate(
    processor: GuideLogitsProcessor,
    rng: np.random.Generator,
    prompt: list[int],
    max_tokens: int = 64,
    eog_bonus: float = 0.0,
    bias: np.ndarray | None = None,
) -> tuple[list[int], bool]:
    """Sample with random logits through ``processor``; returns (ids, ended_with_eog)."""
    vocab = processor.vocabulary
    ids = list(prompt)
    eog = vocab.eog_array
    generated: list[int] = []
    for _ in range(max_tokens):
        logits = rng.normal(0.0, 3.0, vocab.size).astype(np.float32)
        logits[eog] += eog_bonus
        if bias is not None:
            logits += bias
        records, view = strided_scores(logits)
        out = processor(np.array(ids, dtype=np.intc), view)
        assert out is view
        final = records["logit"]
        assert np.isfinite(final).any(), "everything was masked"
        # Gumbel-max: an exact sample from softmax(final)
        token = int(np.argmax(final + rng.gumbel(size=final.shape[0]).astype(np.float32)))
        if token in vocab.eog_ids:
            return generated, True
        generated.append(token)
        ids.append(token)
    return generated, False


def closing_bias(vocab, amount: float = 6.0) -> np.ndarray:
    """Favour tokens that close JSON strings/containers, so random generations end."""
    bias = np.zeros(vocab.size, dtype=np.float32)
    for i, tok in enumerate(vocab.tokens):
        if b'"' in tok:
            bias[i] = amount + 2.0
        elif b"}" in tok or b"]" in tok:
            bias[i] = amount
        elif b"," in tok:
            bias[i] = amount / 2
    bias[vocab.eog_array] = amount
    return bias

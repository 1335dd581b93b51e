"""LogitTrackingProcessor: exact records, bounded memory, reuse rules, views."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import MODEL_FILES, MODELS, load_vocab, require
from pydantic import BaseModel, Field
from sampling import generate, strided_scores

from outlines_gguf import (
    JSONLogitsProcessor,
    LogitTrackingProcessor,
    ProcessorFailedError,
    RegexLogitsProcessor,
    Vocabulary,
    add_tracking,
)


class Pet(BaseModel):
    name: str = Field(max_length=8)
    age: int = Field(ge=0, le=30)


def _generate_ids(llm, tracker, prompt: str, max_tokens: int = 40) -> list[int]:
    from llama_cpp import LogitsProcessorList

    vocab = Vocabulary.from_llama(llm)
    ids = []
    for token in llm.generate(
        llm.tokenize(prompt.encode()),
        temp=0.9,
        top_k=0,
        top_p=1.0,
        min_p=0.0,
        logits_processor=LogitsProcessorList([tracker]),
    ):
        ids.append(token)
        if token in vocab.eog_ids or len(ids) >= max_tokens:
            break
    tracker.finish(ids[-1])
    return ids


@pytest.mark.model
def test_records_match_llama_cpp_and_the_mask(qwen_llm) -> None:
    from llama_cpp import Llama

    tracker = LogitTrackingProcessor(JSONLogitsProcessor(Pet, qwen_llm), full_rows=None)
    prompt = "Pet as JSON:"
    ids = _generate_ids(qwen_llm, tracker, prompt)
    assert tracker.chosen_tokens() == ids  # every position, the last one included
    text = qwen_llm.detokenize([i for i in ids if i not in tracker.vocabulary.eog_ids]).decode()
    assert tracker.sequence() == text
    Pet.model_validate_json(text)

    logits = tracker.get_logits()
    probs = tracker.get_probabilities()
    assert logits["positions"] == list(range(len(ids)))
    # constrained probability is 0 exactly where the processor wrote -inf
    assert np.array_equal(probs["structured"] == 0, np.isneginf(logits["structured"]))
    # natural probabilities are a softmax of llama.cpp's raw logits for the same context
    checker = Llama(
        model_path=str(require(MODELS / MODEL_FILES["qwen2-152k"])), n_ctx=256, logits_all=True, verbose=False
    )
    context = qwen_llm.tokenize(prompt.encode())
    checker.eval(context + ids[:-1])
    raw = np.asarray(checker.scores[len(context) - 1 : len(context) - 1 + len(ids)], dtype=np.float64)
    # (batched and one-token decoding differ in float rounding: ~0.005 on logits of size ~5)
    np.testing.assert_allclose(logits["unstructured"], raw, atol=2e-2)
    softmax = np.exp(raw - raw.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs["unstructured"], softmax, atol=1e-3)
    # and the top-k view agrees with the full rows
    for entry in tracker.get_top_tokens(k=5):
        row = probs["structured"][entry["position"]]
        for tok in entry["tokens"]:
            assert tok["structured_prob"] == pytest.approx(row[tok["token_id"]], abs=1e-6)


def test_ring_buffer_keeps_last_rows_and_all_topk() -> None:
    vocab = load_vocab("spm32k")
    tracker = LogitTrackingProcessor(RegexLogitsProcessor(r"[a-z]{30}", vocab), top_k=4, full_rows=3)
    ids, ended = generate(tracker, np.random.default_rng(1), [5], max_tokens=60)
    assert tracker.n_positions == len(ids) + (1 if ended else 0)
    assert tracker.get_logits()["positions"] == list(range(tracker.n_positions))[-3:]
    assert len(tracker.get_top_tokens(k=4)) == tracker.n_positions
    assert tracker.chosen_tokens()[: len(ids)] == ids
    assert re.fullmatch(r"[a-z]{30}", tracker.sequence())


def test_memory_stays_within_the_documented_bound() -> None:
    vocab = load_vocab("qwen2-152k")
    tracker = LogitTrackingProcessor(vocabulary=vocab, top_k=10, full_rows=8)
    rng = np.random.default_rng(0)
    scores = rng.normal(size=vocab.size).astype(np.float32)
    ids = [1]
    for _ in range(2000):
        _, view = strided_scores(scores)
        tracker(np.array(ids, dtype=np.intc), view)
        ids.append(int(rng.integers(0, 1000)))
    assert tracker.n_positions == 2000
    np.testing.assert_array_equal(tracker.get_logits()["unstructured"][-1], scores)  # exactly what came in
    full = 2 * 8 * vocab.size * 4
    per_position = 2 * 10 * 12 + 40
    assert tracker.nbytes <= full + 2 * 2048 * per_position  # arrays grow by doubling
    assert tracker.nbytes < 100 * 2**20


def test_reuse_resets_on_a_new_prompt_or_accumulates(caplog: pytest.LogCaptureFixture) -> None:
    vocab = load_vocab("spm32k")
    proc = RegexLogitsProcessor(r"[0-9]{3}", vocab)
    tracker = LogitTrackingProcessor(proc)
    generate(tracker, np.random.default_rng(0), [7, 8], max_tokens=10)
    first = tracker.n_positions
    with caplog.at_level("WARNING", logger="outlines_gguf"):
        second, ended = generate(tracker, np.random.default_rng(1), [9], max_tokens=10)  # a new prompt
    assert "dropped unread" in caplog.text and "accumulate=True" in caplog.text
    assert tracker.generations == 2 and first > 0
    assert tracker.n_positions == len(second) + int(ended)  # a fresh record
    assert tracker.chosen_tokens()[: len(second)] == second
    keeping = LogitTrackingProcessor(proc, accumulate=True)
    generate(keeping, np.random.default_rng(0), [7, 8], max_tokens=10)
    n1 = keeping.n_positions
    generate(keeping, np.random.default_rng(1), [9], max_tokens=10)
    assert keeping.n_positions > n1
    keeping.clear()
    assert keeping.n_positions == 0 and keeping.sequence() == ""


def test_views_dataframe_table_plot_and_add_tracking() -> None:
    import matplotlib

    matplotlib.use("Agg")
    vocab = load_vocab("llama3-128k")
    tracker = LogitTrackingProcessor(RegexLogitsProcessor(r"(?:yes|no), [0-9]{2}", vocab))
    generate(tracker, np.random.default_rng(3), [5], max_tokens=20)
    df = tracker.to_dataframe(show="probs", min_value=0.01)
    assert list(df.columns) == ["position", "token", "natural", "constrained", "chosen"]
    assert df["chosen"].any() and (df[["natural", "constrained"]].max(axis=1) >= 0.01).all()
    logits_df = tracker.to_dataframe(show="logits", top_k=3)
    assert logits_df[~logits_df["chosen"]].groupby("position").size().max() <= 3  # + the chosen one
    top = tracker.get_top_tokens(k=3, positions=[0])
    assert top[0]["position"] == 0 and top[0]["text_so_far"] == ""
    assert set(top[0]["tokens"][0]) >= {
        "token",
        "unstructured_prob",
        "structured_prob",
        "unstructured_logit",
        "structured_logit",
        "is_chosen",
    }
    table = tracker.table(k=2)
    assert table.count("\n") == tracker.n_positions and "?" not in table.splitlines()[1][:24]
    assert tracker.plot(k=3).axes
    with pytest.raises(ValueError, match="probs"):
        tracker.to_dataframe(show="nope")

    class Generator:
        logits_processor = RegexLogitsProcessor(r"a", vocab)

    gen = add_tracking(Generator())
    assert isinstance(gen.logits_processor, LogitTrackingProcessor)
    assert add_tracking(gen).logits_processor is gen.logits_processor  # not wrapped twice


def test_single_sequence_only_and_failures_are_loud() -> None:
    vocab = load_vocab("spm32k")
    tracker = LogitTrackingProcessor(vocabulary=vocab)
    with pytest.raises(ValueError, match="single sequence"):
        tracker(np.zeros((2, 3), dtype=np.intc), np.zeros((2, vocab.size), dtype=np.float32))

    def broken(input_ids, scores):
        raise RuntimeError("bad processor")

    tracker = LogitTrackingProcessor(broken, vocabulary=vocab)
    _, view = strided_scores(np.zeros(vocab.size, dtype=np.float32))
    tracker(np.array([1], dtype=np.intc), view)
    assert set(np.flatnonzero(np.isfinite(view)).tolist()) == set(vocab.eog_ids)
    with pytest.raises(ProcessorFailedError, match="bad processor"):
        tracker.raise_if_failed()

"""What the tracker's views show: the chosen token, the last token, EOG names, covered positions, plots."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import load_vocab
from llama_cpp import LogitsProcessorList

from outlines_gguf import JSONLogitsProcessor, LogitTrackingProcessor, Vocabulary
from outlines_gguf.errors import IncompleteGenerationError
from outlines_gguf.llama_cpp.tracking import UNKNOWN, token_label

SCHEMA = {
    "type": "object",
    "properties": {"age": {"type": "integer", "maximum": 99}},
    "required": ["age"],
    "additionalProperties": False,
}


def small_vocab() -> Vocabulary:
    tokens = [b"a", b"b", b"\xe4\xb8\xad", "文字".encode(), b"c", b""]
    return Vocabulary(tokens, eog_ids=[5], special_names={5: "<|end|>"})


def step(tracker: LogitTrackingProcessor, ids: list[int], best: int, n: int = 6) -> None:
    scores = np.zeros(n, dtype=np.float32)
    scores[best] = 5.0
    tracker(np.array(ids, dtype=np.intc), scores)


def test_chosen_token_outside_the_top_k_shows() -> None:
    tracker = LogitTrackingProcessor(None, vocabulary=small_vocab(), top_k=1, full_rows=0)
    step(tracker, [0], best=1)
    step(tracker, [0, 4], best=1)  # token 4 ('c') was chosen although token 1 led
    assert tracker.chosen_tokens()[0] == 4
    row = tracker.table().splitlines()[1]
    assert row.split()[1] == "'c'"  # before: '?'
    entry = tracker.get_top_tokens(k=1, positions=[0])[0]
    chosen = [t for t in entry["tokens"] if t["is_chosen"]]
    assert chosen and chosen[0]["token"] == "c" and 0 < chosen[0]["unstructured_prob"] < 0.5


def test_each_eog_token_has_its_own_name() -> None:
    for name in ("llama3-128k", "qwen2-152k"):
        vocab = load_vocab(name)
        labels = {token_label(vocab, t) for t in vocab.eog_ids}
        assert len(labels) == len(vocab.eog_ids) > 1
        assert "<eog>" not in labels
    assert token_label(load_vocab("qwen2-152k"), 151645) == "<|im_end|>"
    assert token_label(Vocabulary([b"a", b""], eog_ids=[1]), 1) == "<eog 1>"  # no name known


def test_last_token_comes_from_the_completion(qwen_llm) -> None:
    tracker = LogitTrackingProcessor(JSONLogitsProcessor(SCHEMA, qwen_llm), full_rows=None)
    out = qwen_llm.create_completion(
        "x", max_tokens=6, seed=2, logits_processor=LogitsProcessorList([tracker])
    )
    text = out["choices"][0]["text"]
    assert out["choices"][0]["finish_reason"] == "length"
    assert tracker.chosen_tokens()[-1] == UNKNOWN and tracker.sequence() != text
    with pytest.raises(IncompleteGenerationError):
        tracker.raise_if_failed(out)
    assert tracker.sequence() == text  # before: the last token was left out
    assert UNKNOWN not in tracker.chosen_tokens()

    out = qwen_llm.create_completion(
        "x", max_tokens=40, seed=2, logits_processor=LogitsProcessorList([tracker])
    )
    tracker.raise_if_failed(out)
    assert tracker.sequence() == out["choices"][0]["text"]


def test_get_logits_says_what_it_covers() -> None:
    vocab = small_vocab()
    for full_rows, all_kept in ((2, False), (None, True)):
        tracker = LogitTrackingProcessor(None, vocabulary=vocab, full_rows=full_rows)
        ids = [0]
        for i in range(5):
            step(tracker, ids, best=i % 5)
            ids.append(i % 5)
        for view in (tracker.get_logits(), tracker.get_probabilities()):
            assert view["n_positions"] == 5 and view["all_positions"] is all_kept
            assert view["positions"] == ([3, 4] if full_rows else [0, 1, 2, 3, 4])
            assert view["structured"].shape == (len(view["positions"]), 6)
        if full_rows:
            with pytest.raises(IndexError, match="full_rows=None"):
                tracker.get_logits(positions=[0])
        else:
            assert tracker.get_logits(positions=[1])["positions"] == [1]


def test_table_max_rows() -> None:
    tracker = LogitTrackingProcessor(None, vocabulary=small_vocab())
    ids = [0]
    for i in range(50):
        step(tracker, ids, best=i % 3)
        ids.append(i % 3)
    lines = tracker.table(max_rows=6).splitlines()
    assert len(lines) == 1 + 6 + 1 and "44 positions not shown" in lines[4]
    assert [line.split()[0] for line in lines[1:4]] == ["0", "1", "2"] and lines[-1].split()[0] == "49"
    assert len(tracker.table().splitlines()) == 51


def test_plot_cjk_without_glyph_warnings() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    tracker = LogitTrackingProcessor(None, vocabulary=small_vocab())
    ids = [0]
    for token in (2, 3, 2):
        step(tracker, ids, best=token)
        ids.append(token)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = tracker.plot(k=3)
        fig.canvas.draw()
    assert not [w for w in caught if "Glyph" in str(w.message)]
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert any("\\u4e2d" in label for label in labels)

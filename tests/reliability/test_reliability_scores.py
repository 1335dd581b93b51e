"""Hostile scores and inputs in the hook: NaN, +inf, all -inf, the wrong length or shape.

Whatever llama-cpp-python (or a buggy caller) passes, the processor never
raises into the hook: it writes a correct mask (forbidden entries -inf,
allowed entries untouched, NaN included), or it keeps a clear error, forces
end-of-generation and ``raise_if_failed()`` re-raises it as
:class:`ProcessorFailedError` whose ``__cause__`` is the original error.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_vocab
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sampling import TOY_CONTROL, TOY_EOG, TOY_TOKENS, TOY_VOCAB, strided_scores

from outlines_gguf import (
    ConstraintViolationError,
    ProcessorFailedError,
    RegexLogitsProcessor,
    VocabularyError,
)

TOKENS, EOG, CONTROL, VOCAB = TOY_TOKENS, TOY_EOG, TOY_CONTROL, TOY_VOCAB
SPARSE = r"[0-9]{3}"  # few allowed tokens: the mask keeps the allowed ids
DENSE = r"(?s).{1,9}"  # most allowed: the mask keeps the forbidden ids


def allowed_ids(proc: RegexLogitsProcessor, ids: list[int]) -> np.ndarray:
    return proc.guide.mask(proc.state).allowed_ids(proc.vocabulary.size) if ids else np.empty(0)


def run(proc: RegexLogitsProcessor, ids: list[int], logits: np.ndarray) -> np.ndarray:
    """One hook call on a strided view, as llama-cpp-python makes it; returns the row after."""
    if logits.size < 2:  # too short to be a strided view
        view = logits.astype(np.float32)
        assert proc(np.array(ids, dtype=np.intc), view) is view
        return view
    records, view = strided_scores(logits.astype(np.float32))
    out = proc(np.array(ids, dtype=np.intc), view)
    assert out is view
    return records["logit"].copy()


def check_mask(proc: RegexLogitsProcessor, before: np.ndarray, after: np.ndarray) -> None:
    """Forbidden entries are -inf; allowed entries are exactly what they were (NaN stays NaN)."""
    allowed = np.zeros(before.size, dtype=bool)
    allowed[proc.guide.mask(proc.state).allowed_ids(before.size)] = True
    assert np.all(after[~allowed] == -np.inf)
    assert np.array_equal(after[allowed], before[allowed].astype(np.float32), equal_nan=True)


@pytest.mark.parametrize("pattern", [SPARSE, DENSE])
@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param(lambda r, n: np.full(n, np.nan), id="all-nan"),
        pytest.param(lambda r, n: np.where(r.random(n) < 0.3, np.nan, r.normal(size=n)), id="some-nan"),
        pytest.param(lambda r, n: np.full(n, np.inf), id="all-+inf"),
        pytest.param(lambda r, n: np.where(r.random(n) < 0.5, np.inf, -np.inf), id="+-inf"),
        pytest.param(lambda r, n: np.full(n, -np.inf), id="all--inf"),
        pytest.param(lambda r, n: r.normal(size=n) * 1e30, id="huge"),
        pytest.param(lambda r, n: np.full(n, -0.0), id="negative-zero"),
    ],
)
def test_hostile_values_get_a_correct_mask(pattern: str, hostile) -> None:
    vocab = load_vocab("spm32k")
    proc = RegexLogitsProcessor(pattern, vocab)
    rng = np.random.default_rng(0)
    ids = [5, 6]
    for step in range(3):
        before = hostile(rng, vocab.size).astype(np.float32)
        after = run(proc, ids, before)
        check_mask(proc, before, after)
        assert proc.error is None
        # the caller picks an allowed token whatever the values, and generation goes on
        ids.append(int(allowed_ids(proc, ids)[step % 2]))


@settings(max_examples=60, deadline=None)
@given(
    logits=hnp.arrays(
        np.float32,
        len(TOKENS),
        elements=st.one_of(st.floats(width=32), st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0])),
    ),
    pattern=st.sampled_from([SPARSE, DENSE, r"[0-9]+", r"a?b?[0-9]*-?"]),
    prefix=st.lists(st.sampled_from([2, 3, 9]), max_size=2),
)
def test_any_float_row_gets_a_correct_mask(logits: np.ndarray, pattern: str, prefix: list[int]) -> None:
    proc = RegexLogitsProcessor(pattern, VOCAB)
    ids = [6]
    run(proc, ids, np.zeros(len(TOKENS)))
    for token in prefix:
        if token not in allowed_ids(proc, ids):
            break
        ids.append(token)
        before = logits.copy()
        check_mask(proc, before, run(proc, ids, before))
    assert proc.error is None


@pytest.mark.parametrize("size", [VOCAB.size - 1, VOCAB.size + 7, 1, 0])
def test_scores_of_another_length_keep_a_vocabulary_error(size: int) -> None:
    proc = RegexLogitsProcessor(SPARSE, VOCAB)
    after = run(proc, [6], np.zeros(size))
    assert isinstance(proc.error, VocabularyError) and "built for another model" in str(proc.error)
    # every entry forbidden but the end-of-generation ids that exist in this row
    assert set(np.flatnonzero(np.isfinite(after)).tolist()) == ({EOG} if size > EOG else set())
    with pytest.raises(ProcessorFailedError, match="built for another model") as info:
        proc.raise_if_failed()
    assert info.value.__cause__ is proc.error
    assert isinstance(info.value.__cause__, VocabularyError) and isinstance(info.value.__cause__, ValueError)
    # the rest of this generation stays stopped, whatever comes
    after = run(proc, [6, 0], np.zeros(VOCAB.size))
    assert set(np.flatnonzero(np.isfinite(after)).tolist()) == {EOG}


def test_a_processor_for_one_model_used_with_another() -> None:
    """Built for the Qwen2 152k vocabulary, called with Llama-3 128k scores."""
    qwen, llama3 = load_vocab("qwen2-152k"), load_vocab("llama3-128k")
    proc = RegexLogitsProcessor(r"[0-9]{4}", qwen)
    run(proc, [1, 2, 3], np.zeros(llama3.size))
    with pytest.raises(ProcessorFailedError) as info:
        proc.raise_if_failed()
    cause = info.value.__cause__
    assert isinstance(cause, VocabularyError)
    assert f"{qwen.size} tokens" in str(cause) and "another model" in str(cause)


@pytest.mark.parametrize(
    "scores",
    [
        pytest.param(lambda n: np.zeros((2, n), dtype=np.float32), id="2-D"),
        pytest.param(lambda n: np.zeros(n, dtype=np.int32), id="int-dtype"),
        pytest.param(lambda n: np.zeros(n, dtype=np.float32)[::-1], id="reversed-view"),
        pytest.param(lambda n: [0.0] * n, id="list"),
        pytest.param(lambda n: np.float32(0.0), id="scalar"),
        pytest.param(lambda n: None, id="None"),
    ],
)
def test_scores_of_the_wrong_kind_never_raise_into_the_hook(scores) -> None:
    proc = RegexLogitsProcessor(SPARSE, VOCAB)
    row = scores(VOCAB.size)
    result = proc(np.array([6], dtype=np.intc), row)  # must not raise
    assert result is row
    if isinstance(row, np.ndarray) and row.ndim == 1 and row.dtype == np.float32:
        assert proc.error is None  # a reversed view is still a valid 1-D row
        assert set(np.flatnonzero(np.isfinite(row)).tolist()) == {2, 3, 4, 5, 9, 10}
    else:
        assert proc.error is not None
        with pytest.raises(ProcessorFailedError):
            proc.raise_if_failed()


@pytest.mark.parametrize(
    ("ids", "error"),
    [
        pytest.param([[6, 6]], VocabularyError, id="2-D-ids"),
        pytest.param([6, -1], ConstraintViolationError, id="negative-id"),
        pytest.param([6, VOCAB.size + 100], ConstraintViolationError, id="id-past-the-vocabulary"),
        pytest.param([6, CONTROL], ConstraintViolationError, id="control-token"),
        pytest.param([6, 6], ConstraintViolationError, id="forbidden-token"),
    ],
)
def test_impossible_input_ids_keep_a_clear_error(ids: list, error: type) -> None:
    proc = RegexLogitsProcessor(SPARSE, VOCAB)
    run(proc, [6], np.zeros(VOCAB.size))  # the prompt
    after = run(proc, ids, np.zeros(VOCAB.size))
    assert isinstance(proc.error, error), proc.error
    assert set(np.flatnonzero(np.isfinite(after)).tolist()) == {EOG}
    with pytest.raises(ProcessorFailedError) as info:
        proc.raise_if_failed()
    assert info.value.__cause__ is proc.error


def test_an_empty_prompt_is_a_generation_like_any_other() -> None:
    proc = RegexLogitsProcessor(SPARSE, VOCAB)
    after = run(proc, [], np.zeros(VOCAB.size))
    assert proc.error is None and proc.prompt_length == 0
    assert set(np.flatnonzero(np.isfinite(after)).tolist()) == {2, 3, 4, 5, 9, 10}

"""The llama-cpp-python hook: start detection, reuse, EOG rules, loud failures."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sampling import TOY_CONTROL, TOY_EOG, TOY_TOKENS, TOY_VOCAB, generate, strided_scores

from outlines_gguf import (
    ProcessorFailedError,
    RegexLogitsProcessor,
    Vocabulary,
)

TOKENS, EOG, CONTROL, VOCAB = TOY_TOKENS, TOY_EOG, TOY_CONTROL, TOY_VOCAB


def call(proc: RegexLogitsProcessor, ids: list[int]) -> np.ndarray:
    _, view = strided_scores(np.zeros(VOCAB.size, dtype=np.float32))
    proc(np.array(ids, dtype=np.intc), view)
    return view


def allowed(scores: np.ndarray) -> set[int]:
    return set(np.flatnonzero(np.isfinite(scores)).tolist())


def test_first_call_marks_the_start_and_tokens_advance_the_state() -> None:
    proc = RegexLogitsProcessor(r"[0-9]{2}", VOCAB)
    prompt = [6, 7, 8]  # prompt tokens are never checked against the constraint
    assert allowed(call(proc, prompt)) == {2, 3, 4, 9, 10}
    assert proc.prompt_length == 3
    assert allowed(call(proc, [*prompt, 3])) == {2, 3, 9}  # one more digit
    assert allowed(call(proc, [*prompt, 3, 9])) == {EOG}  # complete: EOG forced
    assert proc.generated_ids == [3, 9] and proc.is_finished


def test_eog_allowed_exactly_in_final_states() -> None:
    proc = RegexLogitsProcessor(r"1(?:2)?", VOCAB)
    assert EOG not in allowed(call(proc, [6]))
    assert allowed(call(proc, [6, 3])) == {EOG}  # "1": final, no token is exactly "2"
    proc = RegexLogitsProcessor(r"1(?:23)?", VOCAB)
    call(proc, [6])
    assert allowed(call(proc, [6, 3])) == {EOG}  # "23" is not a token prefix here either
    proc = RegexLogitsProcessor(r"a(?:b)?", VOCAB)
    assert allowed(call(proc, [2])) == {6, 7}
    assert allowed(call(proc, [2, 6])) == {EOG}  # "a" final; "b" is not a token


def test_reuse_for_a_new_prompt_starts_over() -> None:
    proc = RegexLogitsProcessor(r"a[0-9]", VOCAB)
    call(proc, [2, 2])
    call(proc, [2, 2, 6])
    assert allowed(call(proc, [7, 7, 7, 7])) == {6}  # new prompt: back to the start
    assert proc.prompt_length == 4 and proc.generated_ids == []
    # same length + 1 but a different history is a new prompt too
    assert allowed(call(proc, [7, 7, 7, 8, 6])) == {6}
    assert proc.prompt_length == 5


def test_control_tokens_never_allowed() -> None:
    proc = RegexLogitsProcessor(r"(?s).*", VOCAB)
    s = allowed(call(proc, [2]))
    assert CONTROL not in s and EOG in s and len(s) == VOCAB.size - 1


def test_failure_forces_eog_and_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    proc = RegexLogitsProcessor(r"[0-9]+", VOCAB)
    call(proc, [6])
    with caplog.at_level(logging.ERROR, logger="outlines_gguf"):
        scores = call(proc, [6, 6])  # "a" was injected: not allowed
    assert allowed(scores) == {EOG}
    assert "forcing end of generation" in caplog.text
    with pytest.raises(ProcessorFailedError, match="does not fit the constraint") as info:
        proc.raise_if_failed()
    assert info.value.__cause__ is proc.error
    assert allowed(call(proc, [6, 6, 2])) == {EOG}  # stays stopped for this generation
    call(proc, [5])  # a new generation clears the failure
    assert proc.error is None
    proc.raise_if_failed()


def test_wrong_vocabulary_size_is_a_clear_error() -> None:
    proc = RegexLogitsProcessor(r"[0-9]+", VOCAB)
    _, view = strided_scores(np.zeros(VOCAB.size + 5, dtype=np.float32))
    proc(np.array([2], dtype=np.intc), view)
    with pytest.raises(ProcessorFailedError, match="built for another model"):
        proc.raise_if_failed()
    assert allowed(view) == {EOG}


def test_errors_in_construction_are_raised_immediately() -> None:
    with pytest.raises(ValueError, match="backreference"):
        RegexLogitsProcessor(r"(a)\1", VOCAB)
    no_eog = Vocabulary([b"a", b"b"], eog_ids=[])
    with pytest.raises(ValueError, match="no end-of-generation token"):
        RegexLogitsProcessor(r"a", no_eog)
    with pytest.raises(ValueError, match="cannot get a vocabulary"):
        RegexLogitsProcessor(r"a", object())


def test_scores_are_masked_in_place_keeping_allowed_values() -> None:
    proc = RegexLogitsProcessor(r"[0-9]+", VOCAB)
    logits = np.arange(VOCAB.size, dtype=np.float32)
    records, view = strided_scores(logits)
    proc(np.array([6], dtype=np.intc), view)
    for i, value in enumerate(records["logit"]):
        assert value == (i if i in {2, 3, 4, 5, 9, 10} else -np.inf)


PATTERNS = [
    r"[0-9]{4}",
    r"\+?[1-9][0-9]{7,14}",
    r"(?:yes|no|maybe)!?",
    r"[à-ÿ]{2,5}",
    r"[a-z]{3,8}@[a-z]{2,6}\.(?:com|org)",
    r"\((?:[0-9]{1,3}, ){0,3}[0-9]{1,3}\)",
    r"(?:[A-Z][a-z]{0,6} ?){1,4}",
    r"[^\n]{1,12}",
    r"-?(?:0|[1-9][0-9]{0,5})(?:\.[0-9]{1,3})?",
    r"(?:中文|日本語|한국어){1,3}",
]


@settings(max_examples=20, deadline=None)
@given(pattern=st.sampled_from(PATTERNS), seed=st.integers(0, 2**32 - 1))
def test_random_logits_always_produce_a_full_match(real_vocab: Vocabulary, pattern: str, seed: int) -> None:
    """Whatever the logits, the generated bytes fully match the regex (32k, 128k, 152k)."""
    proc = RegexLogitsProcessor(pattern, real_vocab)
    rng = np.random.default_rng(seed)
    prompt = [int(rng.integers(0, real_vocab.size))]
    ids, ended = generate(proc, rng, prompt, max_tokens=80)
    assert ended, f"bounded pattern {pattern!r} did not end"
    text = real_vocab.decode(ids).decode("utf-8")
    assert re.fullmatch(pattern, text), (pattern, text)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_unbounded_patterns_stay_valid_prefixes(real_vocab: Vocabulary, seed: int) -> None:
    pattern = r"[a-z]+(?: [a-z]+)*\."
    proc = RegexLogitsProcessor(pattern, real_vocab)
    rng = np.random.default_rng(seed)
    ids, ended = generate(proc, rng, [5], max_tokens=40, eog_bonus=8.0)
    text = real_vocab.decode(ids).decode("utf-8")
    if ended:
        assert re.fullmatch(pattern, text)
    else:
        assert re.fullmatch(r"[a-z]+(?: [a-z]+)* ?", text), text  # a valid unfinished prefix


def test_masks_are_computed_lazily_and_cached() -> None:
    from outlines_gguf import RegexGuide, compile_regex

    guide = RegexGuide(compile_regex(r"[0-9]{3}"), VOCAB)
    assert guide.n_cached_masks == 0  # nothing computed up front
    first = guide.mask(0)
    assert guide.mask(0) is first and guide.n_cached_masks == 1
    guide.mask(guide.next_state(0, 3))
    assert guide.n_cached_masks == 2


def test_a_sequence_continues_whatever_the_integer_type_of_its_ids() -> None:
    """The processor tells a continued sequence from a new one by its ids, compared by value:
    the same ids in another integer type continue it, one changed id does not."""
    from outlines_gguf.llama_cpp.hook import continues

    seen = np.array([5, 7, 9], dtype=np.intc)
    assert continues(seen, np.array([5, 7, 9, 11], dtype=np.intc))
    assert continues(seen, np.array([5, 7, 9, 11], dtype=np.int64))
    assert not continues(seen, np.array([5, 7, 8, 11], dtype=np.intc))
    assert not continues(seen, np.array([5, 7, 8, 11], dtype=np.int64))
    assert not continues(seen, np.array([5, 7, 9], dtype=np.intc))
    assert not continues(None, np.array([5], dtype=np.intc))

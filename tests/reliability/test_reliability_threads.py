"""Sharing: one processor per concurrent sequence (enforced); guides are shared and thread-safe.

A ``GuideLogitsProcessor`` follows one sequence. A thread that starts a
generation while another thread's generation is under way gets a
:class:`ConcurrentUseError`, kept in ``processor.error``: both generations
are stopped with end-of-generation and ``raise_if_failed()`` reports it. A
sequence may move between threads (a stream iterated from a thread pool),
and a processor may be handed to another thread once its generation is
complete, failed, or ``reset()``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import load_vocab

from outlines_gguf import (
    ConcurrentUseError,
    GuideLogitsProcessor,
    ProcessorFailedError,
    RegexGuide,
    RegexLogitsProcessor,
    Vocabulary,
)
from outlines_gguf.compiler import compile_json_schema

TOKENS = [b"", b"0", b"1", b"a", b"b", b"12"]
VOCAB = Vocabulary(TOKENS, eog_ids=[0])
EOG, ZERO, ONE, A = 0, 1, 2, 3


def call(proc, ids: list[int]) -> set[int]:
    scores = np.zeros(VOCAB.size, dtype=np.float32)
    proc(np.array(ids, dtype=np.intc), scores)
    return set(np.flatnonzero(np.isfinite(scores)).tolist())


def in_thread(fn, *args):
    result: list = []
    t = threading.Thread(target=lambda: result.append(fn(*args)))
    t.start()
    t.join()
    return result[0]


def test_a_second_thread_starting_a_generation_is_refused() -> None:
    proc = RegexLogitsProcessor(r"[01]{4}", VOCAB)
    call(proc, [A, A])  # this thread starts a generation
    call(proc, [A, A, ONE])
    allowed = in_thread(call, proc, [4, 4])  # another thread, another prompt, meanwhile
    assert allowed == {EOG}
    assert isinstance(proc.error, ConcurrentUseError)
    assert "one processor per concurrent sequence" in str(proc.error)
    assert call(proc, [A, A, ONE, ZERO]) == {EOG}  # the first generation is stopped too
    with pytest.raises(ProcessorFailedError) as info:
        proc.raise_if_failed()
    assert isinstance(info.value.__cause__, ConcurrentUseError)
    assert call(proc, [A]) == {EOG}  # refused until reset(), even for a new prompt
    assert isinstance(proc.error, ConcurrentUseError)
    proc.reset()
    assert call(proc, [A]) == {ZERO, ONE} and proc.error is None


def test_a_sequence_may_move_between_threads() -> None:
    proc = RegexLogitsProcessor(r"[01]{4}", VOCAB)
    call(proc, [A])
    assert in_thread(call, proc, [A, ONE]) == {ZERO, ONE}  # the same sequence, continued
    assert call(proc, [A, ONE, ONE]) == {ZERO, ONE}
    assert proc.error is None


def test_a_finished_failed_or_reset_generation_can_be_handed_over() -> None:
    proc = RegexLogitsProcessor(r"[01]", VOCAB)
    call(proc, [A])
    call(proc, [A, ONE])  # complete: end-of-generation is all that is left
    assert in_thread(call, proc, [4, 4]) == {ZERO, ONE}
    assert proc.error is None

    proc = RegexLogitsProcessor(r"[01]{3}", VOCAB)
    call(proc, [A])
    call(proc, [A, ONE])  # unfinished (say max_tokens stopped it)...
    proc.reset()  # ...released on purpose
    assert in_thread(call, proc, [4]) == {ZERO, ONE}
    assert proc.error is None


def test_racing_threads_on_one_processor_never_raise_and_are_caught() -> None:
    vocab = load_vocab("spm32k")
    proc = RegexLogitsProcessor(r"[a-z]{200}", vocab)
    letter = vocab.tokens.index(b"a")
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def generate(prompt: int) -> None:
        try:
            barrier.wait()
            ids = [prompt]
            for _ in range(100):
                proc(np.array(ids, dtype=np.intc), np.zeros(vocab.size, dtype=np.float32))
                ids.append(letter)
        except BaseException as exc:  # pragma: no cover - the failure this test looks for
            errors.append(exc)

    threads = [threading.Thread(target=generate, args=(p,)) for p in (5, 6, 7, 8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert isinstance(proc.error, ConcurrentUseError)


def test_one_guide_shared_by_many_threads_gives_the_same_masks() -> None:
    """Eight threads, each with its own processor, hammer one fresh guide (masks computed
    concurrently, byte-class trie switched on concurrently) and agree with a single thread."""
    vocab = load_vocab("spm32k")
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "tags": {"type": "array", "items": {"type": "string"}},
            "scores": {"type": "array", "items": {"type": "integer", "maximum": 5000}, "maxItems": 5},
        },
        "required": ["name", "tags", "scores"],
        "additionalProperties": False,
    }
    dfa = compile_json_schema(schema)
    shared = RegexGuide(dfa, vocab)
    rng = np.random.default_rng(3)
    walks = []
    for _ in range(8):  # random walks through the automaton, spelled with tokens
        reference = RegexGuide(dfa, vocab)
        state, walk = 0, []
        for _ in range(40):
            allowed = reference.mask(state).allowed_ids(vocab.size)
            allowed = allowed[~np.isin(allowed, vocab.eog_array)]
            if allowed.size == 0:
                break
            token = int(rng.choice(allowed))
            walk.append((state, token, allowed.tobytes()))
            state = reference.next_state(state, token)
        walks.append(walk)

    def replay(walk):
        proc = GuideLogitsProcessor(shared, vocab)  # its own processor, on the shared guide
        ids = [1]
        for state, token, expected in walk:
            scores = np.zeros(vocab.size, dtype=np.float32)
            proc(np.array(ids, dtype=np.intc), scores)
            allowed = np.flatnonzero(np.isfinite(scores))
            allowed = allowed[~np.isin(allowed, vocab.eog_array)]
            assert proc.state == state and allowed.tobytes() == expected
            ids.append(token)
        return proc.error

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(replay, walks)) == [None] * 8
    assert shared.n_cached_masks > 10

"""Long use: 10,000-token generations and 1,000 schemas in one process keep memory bounded.

Memory is measured with ``tracemalloc`` (numpy's buffers included) after a
warm-up; what may grow is listed with each test. Every process-wide cache is
an LRU of documented size, and a guide's masks are bounded in bytes
(``MASK_CACHE_BYTES``).
"""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest
from conftest import load_vocab

from outlines_gguf import JSONLogitsProcessor, RegexGuide, RegexLogitsProcessor, compile_regex, compiler
from outlines_gguf.compiler import compile_canonical
from outlines_gguf.guides import base as guide_base


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTLINES_GGUF_CACHE", "0")


def sample_loop(proc, steps: int, avoid: np.ndarray | None = None, checkpoints=()) -> tuple[list[int], dict]:
    """Drive ``proc`` like llama-cpp-python for ``steps`` tokens, never choosing end-of-generation
    (nor ``avoid`` tokens while others are allowed). Returns the ids and traced memory at checkpoints."""
    vocab = proc.vocabulary
    rng = np.random.default_rng(7)
    pool = rng.normal(0.0, 3.0, size=(8, vocab.size)).astype(np.float32)
    ids = [1, 5]
    memory = {}
    for step in range(steps):
        row = pool[step % 8].copy()
        assert proc(np.array(ids, dtype=np.intc), row) is row
        row[vocab.eog_array] = -np.inf
        if avoid is not None and np.isfinite(row[~avoid]).any():
            row[avoid] = -np.inf
        allowed = np.flatnonzero(np.isfinite(row))
        assert allowed.size, f"nothing but end-of-generation allowed at step {step}"
        ids.append(int(allowed[np.argmax(row[allowed] + rng.gumbel(size=allowed.size))]))
        if step in checkpoints:
            memory[step] = tracemalloc.get_traced_memory()[0]
    return ids[2:], memory


def test_a_10000_token_regex_generation_in_bounded_memory() -> None:
    vocab = load_vocab("spm32k")
    proc = RegexLogitsProcessor(r"(?:ab|cd| )*", vocab)
    tracemalloc.start()
    try:
        ids, memory = sample_loop(proc, 10_000, checkpoints=(999, 9_999))
    finally:
        tracemalloc.stop()
    assert proc.error is None and len(proc.generated_ids) == 9_999
    text = vocab.decode(ids).decode("ascii")
    assert len(text) >= 10_000 and set(text) <= set("abcd ")
    assert proc.guide.n_cached_masks <= 3  # one mask per DFA state, whatever the length
    # What grows is the token lists (the processor's generated_ids and this loop's ids, about
    # 36 bytes a token each); nothing per token in the guide or the masks.
    growth = memory[9_999] - memory[999]
    print(f"traced memory: +{growth / 1024:.0f} KiB from token 1,000 to 10,000 ({growth / 9_000:.0f} B/tok)")
    assert growth < 9_000 * 100, f"{growth} bytes for 9,000 tokens"


def test_a_10000_token_json_array_without_max_items() -> None:
    vocab = load_vocab("spm32k")
    proc = JSONLogitsProcessor({"type": "array", "items": {"type": "integer"}}, vocab)
    closing = np.array([b"]" in t for t in vocab.tokens])
    ids, _ = sample_loop(proc, 10_000, avoid=closing)
    assert proc.error is None and not proc.is_finished
    text = vocab.decode(ids).decode("ascii")
    assert text.startswith("[") and "]" not in text
    assert proc.guide.n_cached_masks < 20


def test_1000_schemas_in_one_process_keep_memory_bounded() -> None:
    """Caches are LRUs: compiled schemas (128, ``compile_canonical``, the whole-schema DFA engine),
    compiled regexes (256, ``compile_regex``), guides with their split schemas and masks (64).
    Once the caches hold only entries made while tracing, 500 more schemas add (almost) nothing."""
    vocab = load_vocab("spm32k")
    prompt = np.array([1, 5], dtype=np.intc)
    row = np.zeros(vocab.size, dtype=np.float32)

    def use(i: int) -> None:
        schema = {
            "type": "object",
            "properties": {f"k{i}": {"type": "boolean"}, "n": {"enum": [i, None]}},
            "required": [f"k{i}"],
            "additionalProperties": False,
        }
        proc = JSONLogitsProcessor(schema, vocab)
        proc(prompt, row.copy())  # compute the first mask too
        assert proc.error is None

    for i in range(200):  # warm-up: the caches fill up
        use(i)
    tracemalloc.start()
    try:
        for i in range(200, 500):  # every cache entry is now one made while tracing
            use(i)
        gc.collect()
        middle = tracemalloc.get_traced_memory()[0]
        for i in range(500, 1000):
            use(i)
        gc.collect()
        end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert compile_canonical.cache_info().currsize <= compile_canonical.cache_info().maxsize == 128
    assert compile_regex.cache_info().maxsize == 256
    assert len(compiler._guides) == compiler.GUIDE_CACHE_SIZE == 64
    print(f"traced memory: {middle / 1024:.0f} KiB after 500 schemas, {end / 1024:.0f} KiB after 1,000")
    assert end - middle < 128 * 1024, f"{(end - middle) / 1024:.0f} KiB more after 500 more schemas"


def test_a_guide_keeps_its_masks_within_the_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    vocab = load_vocab("spm32k")
    guide = RegexGuide(compile_regex(r"[a-z ]{0,400}"), vocab)
    first = {}
    state = guide.initial_state
    letter = vocab.tokens.index(b"a")
    for _ in range(60):
        first[state] = guide.mask(state).allowed_ids(vocab.size)
        state = guide.next_state(state, letter)
    assert guide.n_cached_masks == 60
    full = guide.mask_cache_bytes

    small = full // 4
    monkeypatch.setattr(guide_base, "MASK_CACHE_BYTES", small)
    guide = RegexGuide(compile_regex(r"[a-z ]{0,400}"), vocab)
    state = guide.initial_state
    for _ in range(60):
        guide.mask(state)
        state = guide.next_state(state, letter)
    largest = max(guide.mask(s).nbytes for s in first)
    assert guide.mask_cache_bytes <= small + largest
    assert guide.n_cached_masks < 60
    # evicted masks are recomputed on demand, identical
    for s, ids in first.items():
        assert np.array_equal(np.sort(guide.mask(s).allowed_ids(vocab.size)), np.sort(ids))
    assert guide.mask_cache_bytes <= small + largest

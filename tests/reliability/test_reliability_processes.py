"""Many processes: vocabularies, guides and processors pickle, and work in another process.

Guides hold a lock and caches: they pickle without the lock (a new one is
made) and without their masks (recomputed lazily), unless ``pickle_masks``.
A vocabulary pickles as one byte string plus token lengths; its trie and
other derived structures are rebuilt lazily. Tested with a real
``multiprocessing`` spawn pool: a processor built in the parent gives the
same masks in a child.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import MODEL_FILES, MODELS, ROOT, load_vocab, require

from outlines_gguf import RegexGuide, RegexLogitsProcessor, compile_regex


def test_a_vocabulary_pickles_compactly_and_rebuilds_lazily() -> None:
    vocab = load_vocab("qwen2-152k")
    vocab.trie, vocab.text_tokens, vocab.hash  # noqa: B018 - build the derived structures first
    data = pickle.dumps(vocab)
    naive = pickle.dumps(vocab.tokens)
    assert len(data) < len(naive), (len(data), len(naive))
    assert b"TokenTrie" not in data and b"TextTokens" not in data
    copy = pickle.loads(data)
    assert copy.tokens == vocab.tokens and copy.size == vocab.size
    assert copy.special_ids == vocab.special_ids and copy.eog_ids == vocab.eog_ids
    for name in ("bos_id", "eos_id", "name", "hash"):
        assert getattr(copy, name) == getattr(vocab, name), name
    assert "trie" not in copy.__dict__  # rebuilt on first use, identical
    dfa = compile_regex(r"[0-9]{2,4}")
    walked = [np.sort(v.trie.walk(dfa.transitions, 0)) for v in (copy, vocab)]
    assert np.array_equal(*walked)


def test_a_guide_pickles_without_its_lock_and_masks() -> None:
    vocab = load_vocab("spm32k")
    guide = RegexGuide(compile_regex(r"[a-z]{2,6}-[0-9]+"), vocab)
    state = guide.next_state(0, vocab.tokens.index(b"ab"))
    masks = {s: guide.mask(s).allowed_ids(vocab.size) for s in (0, state)}
    copy = pickle.loads(pickle.dumps(guide))
    assert copy._lock is not guide._lock and isinstance(copy._lock, type(threading.Lock()))
    assert copy.n_cached_masks == 0 and copy.mask_cache_bytes == 0
    for s, ids in masks.items():
        assert np.array_equal(copy.mask(s).allowed_ids(vocab.size), ids)
    guide.pickle_masks = True
    warm = pickle.loads(pickle.dumps(guide))
    assert warm.n_cached_masks == 2 and warm.mask_cache_bytes == guide.mask_cache_bytes


def test_a_processor_pickles_mid_generation() -> None:
    vocab = load_vocab("spm32k")
    proc = RegexLogitsProcessor(r"[0-9]{4}", vocab)
    one = vocab.tokens.index(b"1")
    proc(np.array([1, 2], dtype=np.intc), np.zeros(vocab.size, dtype=np.float32))
    proc(np.array([1, 2, one], dtype=np.intc), np.zeros(vocab.size, dtype=np.float32))
    copy = pickle.loads(pickle.dumps(proc))
    assert copy.generated_ids == [one] and copy.state == proc.state and copy.prompt_length == 2
    assert copy.vocabulary is copy.guide.vocabulary  # one vocabulary in the pickle
    scores = np.zeros(vocab.size, dtype=np.float32)
    copy(np.array([1, 2, one, one], dtype=np.intc), scores)  # continues where it was
    assert copy.error is None and copy.generated_ids == [one, one]


def test_a_spawned_pool_computes_the_same_masks() -> None:
    """Processors built in a parent give the same masks in ``spawn`` children
    (``reliability_workers.spawn_pool_check``, run in a fresh interpreter)."""
    done = subprocess.run(
        [sys.executable, "-c", "import reliability_workers as w; w.spawn_pool_check()"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT / "tests" / "support",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "same masks in parent and children" in done.stdout


@pytest.mark.model
def test_the_readme_batch_recipe_runs(tmp_path) -> None:
    """README, "Batch jobs across processes", run as written (on the embedded test model)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n## Batch jobs across processes\n") :]
    section = section[: section.index("\n## ", 1)]
    code = section[section.index("```python\n") + 10 : section.index("\n```", section.index("```python"))]
    model = require(MODELS / MODEL_FILES["qwen2-152k"])
    assert 'MODEL = "models/tiny-qwen2.gguf"' in code
    script = tmp_path / "batch.py"
    script.write_text(code.replace('"models/tiny-qwen2.gguf"', repr(str(model))), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        person = json.loads(line)
        assert set(person) == {"name", "age"} and 0 <= person["age"] <= 120 and len(person["name"]) <= 12

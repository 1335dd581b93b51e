"""The on-disk vocabulary cache: what it loads is what would be built, and nothing else is trusted."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import VOCAB_FILES, VOCABS, load_vocab, require
from hypothesis import given, settings
from hypothesis import strategies as st

from outlines_gguf import RegexLogitsProcessor, Vocabulary
from outlines_gguf.compiler import clear_guide_cache
from outlines_gguf.tokens import cache as vocab_cache
from outlines_gguf.tokens.trie import TokenTrie


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OUTLINES_GGUF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OUTLINES_GGUF_CACHE", "json")
    return vocab_cache.cache_dir()


@pytest.fixture(scope="module")
def spm_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the 32k vocabulary file (tests change its modification time)."""
    target = tmp_path_factory.mktemp("gguf") / "spm.gguf"
    shutil.copy(require(VOCABS / VOCAB_FILES["spm32k"]), target)
    return target


def built(path: Path) -> Vocabulary:
    return Vocabulary.from_gguf(path)


def assert_same(loaded: Vocabulary, fresh: Vocabulary) -> None:
    assert loaded.tokens == fresh.tokens
    assert (loaded.special_ids, loaded.eog_ids) == (fresh.special_ids, fresh.eog_ids)
    assert (loaded.bos_id, loaded.eos_id, loaded.name) == (fresh.bos_id, fresh.eos_id, fresh.name)
    assert loaded.special_names == fresh.special_names and loaded.hash == fresh.hash
    pairs = [(loaded.trie, fresh.trie)] + [
        (getattr(loaded.text_tokens, n), getattr(fresh.text_tokens, n))
        for n in ("rest", "rest_bare", "rest_tails")
    ]
    for a, b in pairs:
        for field in dataclasses.fields(TokenTrie):
            np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name))
        np.testing.assert_array_equal(a._subtree_size, b._subtree_size)
    for field in dataclasses.fields(loaded.text_tokens):
        value = getattr(loaded.text_tokens, field.name)
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, getattr(fresh.text_tokens, field.name))


def test_round_trip_and_same_masks(cache: Path, spm_copy: Path) -> None:
    first = vocab_cache.cached_vocabulary(str(spm_copy), "gguf", lambda: built(spm_copy))
    entries = list(cache.glob("*.npz"))
    assert len(entries) == 1

    def refuse() -> Vocabulary:
        raise AssertionError("a warm cache must not build")

    loaded = vocab_cache.cached_vocabulary(str(spm_copy), "gguf", refuse)
    fresh = built(spm_copy)
    assert_same(loaded, fresh)
    assert_same(first, fresh)
    # oracle: every mask of a few guides is the same on the loaded and the freshly built vocabulary
    for pattern in (r"[0-9]{1,4}(\.[0-9]+)?", r"(foo|bar)[a-z ]{0,8}!", r'"[^"\\]{0,12}"', r"é+|中文"):
        clear_guide_cache()
        a = RegexLogitsProcessor(pattern, loaded).guide
        clear_guide_cache()
        b = RegexLogitsProcessor(pattern, fresh).guide
        for state in range(a.dfa.transitions.shape[0]):
            ma, mb = np.zeros(fresh.size, np.float32), np.zeros(fresh.size, np.float32)
            a.mask(state).apply(ma)
            b.mask(state).apply(mb)
            np.testing.assert_array_equal(ma, mb)


def test_a_changed_file_or_reader_is_another_entry(cache: Path, spm_copy: Path) -> None:
    vocab_cache.cached_vocabulary(str(spm_copy), "gguf", lambda: built(spm_copy))
    stat = spm_copy.stat()
    os.utime(spm_copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    calls = []
    vocab_cache.cached_vocabulary(str(spm_copy), "gguf", lambda: calls.append(1) or built(spm_copy))
    vocab_cache.cached_vocabulary(str(spm_copy), "llama", lambda: calls.append(1) or built(spm_copy))
    assert calls == [1, 1] and len(list(cache.glob("*.npz"))) == 3


def test_disabled_writes_nothing(cache: Path, spm_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTLINES_GGUF_CACHE", "0")
    vocab = vocab_cache.cached_vocabulary(str(spm_copy), "gguf", lambda: built(spm_copy))
    assert vocab.tokens == load_vocab("spm32k").tokens and not cache.exists()


def test_a_foreign_entry_is_refused(cache: Path, spm_copy: Path, tmp_path: Path) -> None:
    """Another vocabulary's entry renamed to this file's name fails the header and hash checks."""
    other = tmp_path / "other.gguf"
    shutil.copy(require(VOCABS / "ggml-vocab-falcon.gguf"), other)
    vocab_cache.cached_vocabulary(str(other), "gguf", lambda: built(other))
    (foreign,) = cache.glob("*.npz")
    file, header = vocab_cache._entry(str(spm_copy), "gguf")
    shutil.copy(foreign, file)
    assert vocab_cache.load(file, header) is None and not file.exists()


@pytest.fixture(scope="module")
def stored_entry(tmp_path_factory: pytest.TempPathFactory, spm_copy: Path) -> tuple[bytes, Vocabulary]:
    folder = tmp_path_factory.mktemp("entry")
    old = os.environ.get("OUTLINES_GGUF_CACHE_DIR")
    os.environ["OUTLINES_GGUF_CACHE_DIR"] = str(folder)
    try:
        vocab = vocab_cache.cached_vocabulary(str(spm_copy), "gguf", lambda: built(spm_copy))
        (file,) = vocab_cache.cache_dir().glob("*.npz")
        return file.read_bytes(), vocab
    finally:
        if old is None:
            del os.environ["OUTLINES_GGUF_CACHE_DIR"]
        else:
            os.environ["OUTLINES_GGUF_CACHE_DIR"] = old


@settings(max_examples=25, deadline=None)
@given(where=st.floats(0, 1, exclude_max=True), flip=st.integers(1, 255), cut=st.booleans())
def test_damaged_entries_are_never_trusted(
    stored_entry: tuple[bytes, Vocabulary], spm_copy: Path, tmp_path_factory: pytest.TempPathFactory,
    where: float, flip: int, cut: bool,
) -> None:  # fmt: skip
    """A flipped byte or a truncated file anywhere: either refused, or (a byte nothing reads)
    loaded exactly as stored."""
    data, original = stored_entry
    folder = tmp_path_factory.mktemp("damaged")
    os.environ["OUTLINES_GGUF_CACHE_DIR"] = str(folder)
    try:
        file, header = vocab_cache._entry(str(spm_copy), "gguf")
        file.parent.mkdir(parents=True)
        at = int(where * len(data))
        damaged = data[:at] if cut else data[:at] + bytes([data[at] ^ flip]) + data[at + 1 :]
        file.write_bytes(damaged)
        loaded = vocab_cache.load(file, header)
    finally:
        del os.environ["OUTLINES_GGUF_CACHE_DIR"]
    if loaded is None:
        assert not file.exists()
    else:
        assert_same(loaded, original)


@pytest.mark.model
def test_as_vocabulary_of_a_llama_uses_the_cache(cache: Path, qwen_llm) -> None:
    from outlines_gguf.tokens.cache import _from_llama_cached

    llm = qwen_llm
    fresh = Vocabulary.from_llama(llm)
    assert_same(_from_llama_cached(llm), fresh)  # builds and stores
    assert len(list(cache.glob("llama-*.npz"))) == 1
    assert_same(_from_llama_cached(llm), fresh)  # loads


def test_the_fingerprint_reads_sources_that_exist() -> None:
    """An edit to the code that builds vocabularies and tries invalidates the entries: every
    file the fingerprint names is there (they were once renamed under it)."""
    here = Path(vocab_cache.__file__).parent
    assert all((here / name).is_file() for name in vocab_cache._SOURCES)

"""Shared fixtures: real vocabularies and the project's random-weight test models.

Both are built by ``scripts/build_test_models.py`` (``make setup`` runs it).
A missing file is an error, not a skip: CI must never pass without them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

from outlines_gguf import Vocabulary

# CI replays the same examples every run (a failure there is then reproducible);
# locally, hypothesis explores new ones each time.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Compiled automata are cached on disk by default (outlines_gguf/disk_cache.py): tests use a
# fresh folder per session, never the user's ~/.cache.
if "OUTLINES_GGUF_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="outlines-gguf-test-cache-")
    os.environ["OUTLINES_GGUF_CACHE_DIR"] = _cache_dir
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)

ROOT = Path(__file__).resolve().parent.parent
# tests/support/ holds what several test modules import (sampling loops, strategies, workers)
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
MODELS = Path(os.environ.get("OUTLINES_GGUF_MODELS", ROOT / "models"))
VOCABS = MODELS / "vocab"

VOCAB_FILES = {
    "spm32k": "ggml-vocab-llama-spm.gguf",
    "llama3-128k": "ggml-vocab-llama-bpe.gguf",
    "qwen2-152k": "ggml-vocab-qwen2.gguf",
}
MODEL_FILES = {
    "spm32k": "tiny-llama-spm.gguf",
    "llama3-128k": "tiny-llama3-bpe.gguf",
    "qwen2-152k": "tiny-qwen2.gguf",
}


def require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: run `python scripts/build_test_models.py` (or `make setup`)")
    return path


def all_vocab_files() -> list[Path]:
    files = sorted(VOCABS.glob("ggml-vocab-*.gguf"))
    return files or [VOCABS / "ggml-vocab-*.gguf (none found)"]


_vocab_cache: dict[str, Vocabulary] = {}


def load_vocab(name: str) -> Vocabulary:
    if name not in _vocab_cache:
        _vocab_cache[name] = Vocabulary.from_gguf(require(VOCABS / VOCAB_FILES[name]))
    return _vocab_cache[name]


@pytest.fixture(scope="session", params=list(VOCAB_FILES))
def real_vocab(request: pytest.FixtureRequest) -> Vocabulary:
    """Each of the 32k SPM, 128k Llama-3 BPE and 152k Qwen2 vocabularies."""
    return load_vocab(request.param)


_llm_cache: dict[str, object] = {}


def load_llm(name: str):
    from llama_cpp import Llama

    if name not in _llm_cache:
        _llm_cache[name] = Llama(
            model_path=str(require(MODELS / MODEL_FILES[name])), n_ctx=1024, seed=0, verbose=False
        )
    return _llm_cache[name]


@pytest.fixture(scope="session", params=list(MODEL_FILES))
def llm(request: pytest.FixtureRequest):
    """A real llama_cpp.Llama (random weights) around each test vocabulary."""
    return load_llm(request.param)


@pytest.fixture(scope="session")
def qwen_llm():
    return load_llm("qwen2-152k")

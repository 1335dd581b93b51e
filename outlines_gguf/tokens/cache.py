"""Where vocabularies come from, read once: :func:`as_vocabulary` (a ``Llama``, a GGUF path or
a :class:`Vocabulary`), over an in-memory cache and an on-disk cache of prepared vocabularies,
so a new process starts generating at once.

Reading a 152k vocabulary through llama.cpp and building its token tries
takes about a second per process; loading them from disk takes a few tens of
milliseconds. An entry is an uncompressed ``.npz`` (read with
``allow_pickle=False``: nothing is unpickled) holding the tokens, the
special and end-of-generation ids, and the arrays of the token trie and the
plain-text split (:class:`~outlines_gguf.tokens.text.TextTokens`) with their
walk tables. It lives next to the automaton cache
(``$OUTLINES_GGUF_CACHE_DIR``, default ``~/.cache/outlines-gguf``, folder
``vocab-v1``) and is switched off with it (``OUTLINES_GGUF_CACHE=0``).

Entries are found by the model file (absolute path, size, modification
time, and whether llama.cpp or the GGUF reader read it) and checked as the
automaton cache checks its own: the header must name the same library
version, format, fingerprint of the sources that build vocabularies and
tries, and file; the vocabulary hash recomputed from the loaded tokens must
be the one stored (so an entry never passes for another vocabulary); the zip
members' CRC-32 must match; every trie array must have its dtype and sizes
and point inside the trie. Anything else is deleted and built again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sys
import zipfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from outlines_gguf import disk_cache
from outlines_gguf.errors import VocabularyError
from outlines_gguf.tokens.text import TextTokens
from outlines_gguf.tokens.trie import TokenTrie
from outlines_gguf.tokens.vocabulary import Vocabulary, vocabulary_hash

logger = logging.getLogger("outlines_gguf")

CACHE_FORMAT = 1
"""Bump when the file layout changes."""
MAX_FILES = 16
"""Vocabularies kept (each about 10 to 20 MB for 128k to 152k tokens); the oldest are removed."""

_SOURCES = ("vocabulary.py", "trie.py", "text.py", "llama_rules.py", "gguf.py", "cache.py")
_TRIE_FIELDS = [f.name for f in dataclasses.fields(TokenTrie) if f.name != "root_children"]
_TEXT_TRIES = ("rest", "rest_bare", "rest_tails")
_TEXT_ARRAYS = [f.name for f in dataclasses.fields(TextTokens) if f.name not in _TEXT_TRIES]
_TRIES = ("trie", *(f"text.{name}" for name in _TEXT_TRIES))
_WIDE = ("parent", "first_child", "n_children", "term_start", "term_count")
"""int64 trie arrays, stored as int32 (half the bytes to read; a trie has far fewer than 2**31 nodes)."""


def enabled() -> bool:
    """Whether vocabularies are cached now: unless ``OUTLINES_GGUF_CACHE`` switches caching off."""
    return disk_cache.enabled_for("json")


def cache_dir() -> Path:
    """The folder of vocabulary entries (beside the automaton cache's; it may not exist yet)."""
    return disk_cache.cache_dir().parent / f"vocab-v{CACHE_FORMAT}"


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 of the sources that decide what a vocabulary and its tries are."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _SOURCES:
        try:
            h.update((here / name).read_bytes())
        except OSError:
            h.update(b"missing:" + name.encode())
    return h.hexdigest()


def _entry(path: str, reader: str) -> tuple[Path, dict[str, Any]] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    header = {
        "library": getattr(sys.modules.get("outlines_gguf"), "__version__", "unknown"),
        "format": CACHE_FORMAT,
        "fingerprint": code_fingerprint(),
        "reader": reader,
        "file": [os.path.abspath(path), st.st_size, st.st_mtime_ns],
    }
    name = hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()
    return cache_dir() / f"{reader}-{name}.npz", header


def cached_vocabulary(path: str, reader: str, build: Callable[[], Vocabulary]) -> Vocabulary:
    """The vocabulary of the model file ``path`` as ``reader`` (``"llama"`` or ``"gguf"``) reads
    it: loaded from disk, or built, prepared (tries and walk tables) and stored."""
    entry = _entry(path, reader) if enabled() else None
    if entry is None:
        return build()
    file, header = entry
    vocab = load(file, header)
    if vocab is None:
        vocab = build().prepare()
        store(file, header, vocab)
    return vocab


# -- reading ----------------------------------------------------------------------------------


def load(file: Path, header: dict[str, Any]) -> Vocabulary | None:
    """The vocabulary stored in ``file`` if its entry can be trusted, else None (a bad entry is
    deleted)."""
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}  # reading a member checks its CRC-32
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        _discard(file, f"unreadable ({type(exc).__name__}: {exc})")
        return None
    try:
        vocab = _restore(arrays, header)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        _discard(file, str(exc))
        return None
    return vocab


def _restore(arrays: dict[str, np.ndarray], header: dict[str, Any]) -> Vocabulary:
    """Rebuild the vocabulary and its tries; ValueError says why an entry cannot be trusted."""
    stored = json.loads(arrays.pop("header").tobytes().decode("utf-8"))
    if not isinstance(stored, dict):
        raise ValueError("header is not an object")
    for key, expected in header.items():
        if stored.get(key) != expected:
            raise ValueError(f"stale or foreign entry ({key} differs)")
    blob, lengths = arrays["tokens"], arrays["lengths"]
    special, eog = arrays["special"], arrays["eog"]
    _expect(blob, np.uint8, 1, "tokens")
    _expect(lengths, np.uint32, 1, "lengths")
    _expect(special, np.int64, 1, "special")
    _expect(eog, np.int64, 1, "eog")
    n = lengths.size
    if n == 0 or int(lengths.sum(dtype=np.int64)) != blob.size:
        raise ValueError("token lengths do not add up to the token bytes")
    digest = vocabulary_hash(blob.tobytes(), lengths, special, eog)
    if digest != stored.get("hash"):
        raise ValueError("the vocabulary hash of the stored tokens differs")
    data = blob.tobytes()
    ends = np.cumsum(lengths, dtype=np.int64).tolist()
    tokens = tuple([data[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)])
    names = {int(k): str(v) for k, v in stored["special_names"].items()}
    ids = special.tolist() + eog.tolist()
    if ids and not 0 <= min(ids) <= max(ids) < n:
        raise ValueError("special or end-of-generation ids out of range")
    for key in ("bos_id", "eos_id"):
        if stored[key] is not None and not 0 <= stored[key] < n:
            raise ValueError(f"{key} out of range")
    vocab = Vocabulary.from_checked_parts(  # the hash covers tokens and ids: no per-token checks
        tokens,
        eog_ids=frozenset(eog.tolist()),
        special_ids=frozenset(special.tolist()),
        bos_id=stored["bos_id"],
        eos_id=stored["eos_id"],
        name=str(stored["name"]),
        special_names=names,
    )
    vocab.__dict__["hash"] = digest
    roots = stored["root_children"]
    tries = {name: _trie(arrays, name, int(roots[name]), n) for name in _TRIES}
    text = {name: arrays[f"text.{name}"] for name in _TEXT_ARRAYS}
    for name, array in text.items():
        if array.ndim != 1 or (
            array.size and name.endswith("ids") and not 0 <= array.min() <= array.max() < n
        ):
            raise ValueError(f"text.{name} has shape {array.shape} or ids out of range")
    vocab.__dict__["trie"] = tries["trie"]
    fields: dict[str, Any] = {**text, **{name: tries[f"text.{name}"] for name in _TEXT_TRIES}}
    vocab.__dict__["text_tokens"] = TextTokens(**fields)  # arrays and tries, by field name
    return vocab


def _expect(array: np.ndarray, dtype: Any, ndim: int, name: str) -> None:
    if array.dtype != dtype or array.ndim != ndim:
        raise ValueError(f"{name} has dtype {array.dtype} and {array.ndim} dimensions")


def _trie(arrays: dict[str, np.ndarray], prefix: str, root_children: int, n_tokens: int) -> TokenTrie:
    """A stored trie, its arrays checked to be consistent and to point inside it."""
    fields = {name: arrays[f"{prefix}.{name}"] for name in _TRIE_FIELDS}
    subtree = arrays[f"{prefix}._subtree_size"]
    _expect(subtree, np.int32, 1, f"{prefix}._subtree_size")
    _expect(fields["level_start"], np.int64, 1, f"{prefix}.level_start")
    nodes = fields["node_byte"].size
    for name, array in (*fields.items(), ("_subtree_size", subtree)):
        if array.ndim != 1:
            raise ValueError(f"{prefix}.{name} is not one-dimensional")
    _expect(fields["node_byte"], np.uint8, 1, f"{prefix}.node_byte")
    _expect(fields["term_tokens"], np.int32, 1, f"{prefix}.term_tokens")
    for name in _WIDE:
        _expect(fields[name], np.int32, 1, f"{prefix}.{name}")
        fields[name] = fields[name].astype(np.int64)
        if fields[name].size != nodes:
            raise ValueError(f"{prefix}.{name} has {fields[name].size} entries for {nodes} nodes")
    if subtree.size != nodes or not 0 <= root_children <= nodes:
        raise ValueError(f"{prefix}: subtree sizes or root count do not fit {nodes} nodes")
    if nodes:
        if fields["parent"].min() < -1 or fields["parent"].max() >= nodes:
            raise ValueError(f"{prefix}: parents point outside the trie")
        if fields["first_child"].min() < 0 or (fields["first_child"] + fields["n_children"]).max() > nodes:
            raise ValueError(f"{prefix}: children point outside the trie")
        if (fields["term_start"] + fields["term_count"]).max() > fields["term_tokens"].size:
            raise ValueError(f"{prefix}: token ranges point outside the token list")
    terms = fields["term_tokens"]
    if terms.size and not 0 <= terms.min() <= terms.max() < n_tokens:
        raise ValueError(f"{prefix}: token ids out of range")
    trie = TokenTrie(**fields, root_children=root_children)
    trie.__dict__["_subtree_size"] = subtree.astype(np.int64)
    return trie


def _discard(file: Path, why: str) -> None:
    logger.warning(
        "outlines-gguf: vocabulary cache entry %s is %s; it is deleted and built again", file.name, why
    )
    try:
        file.unlink()
    except OSError:
        pass


# -- writing ----------------------------------------------------------------------------------


def store(file: Path, header: dict[str, Any], vocab: Vocabulary) -> None:
    """Write the prepared vocabulary; failures (a read-only disk, ...) are only logged."""
    tokens = vocab.tokens
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.uint32, count=len(tokens))
    arrays: dict[str, np.ndarray] = {
        "tokens": np.frombuffer(b"".join(tokens), dtype=np.uint8),
        "lengths": lengths,
        "special": np.array(sorted(vocab.special_ids), dtype=np.int64),
        "eog": np.array(sorted(vocab.eog_ids), dtype=np.int64),
    }
    text = vocab.text_tokens
    tries = {"trie": vocab.trie, **{f"text.{name}": getattr(text, name) for name in _TEXT_TRIES}}
    for prefix, trie in tries.items():
        for name in _TRIE_FIELDS:
            array = getattr(trie, name)
            arrays[f"{prefix}.{name}"] = array.astype(np.int32) if name in _WIDE else array
        arrays[f"{prefix}._subtree_size"] = trie._subtree_size.astype(np.int32)
    for name in _TEXT_ARRAYS:
        arrays[f"text.{name}"] = getattr(text, name)
    full = {
        **header,
        "hash": vocab.hash,
        "bos_id": vocab.bos_id,
        "eos_id": vocab.eos_id,
        "name": vocab.name,
        "special_names": {str(k): v for k, v in vocab.special_names.items()},
        "root_children": {prefix: trie.root_children for prefix, trie in tries.items()},
    }
    arrays["header"] = np.frombuffer(json.dumps(full).encode("utf-8"), dtype=np.uint8)
    disk_cache.write_npz(file, arrays, compressed=False, keep=MAX_FILES)  # uncompressed: loading is a copy


def clear() -> int:
    """Delete every vocabulary entry; returns how many were deleted."""
    return disk_cache.clear_folder(cache_dir())


# -- a vocabulary from whatever names one, read once ----------------------------------------


def as_vocabulary(tokenizer: Any) -> Vocabulary:
    """Accept a :class:`Vocabulary`, a ``llama_cpp.Llama`` or a GGUF path.

    Vocabularies read from a ``Llama`` are cached on it, so building many
    processors for one model reads its vocabulary once; on disk too, with its
    token tries (:mod:`~outlines_gguf.tokens.cache`), so a new process loads them.
    """
    if isinstance(tokenizer, Vocabulary):
        return tokenizer
    if isinstance(tokenizer, (str, os.PathLike)):
        return _cached_gguf_vocabulary(os.path.abspath(os.fspath(tokenizer)))
    vocab = getattr(tokenizer, "vocabulary", None)  # our model wrapper
    if isinstance(vocab, Vocabulary):
        return vocab
    if hasattr(tokenizer, "model") and hasattr(tokenizer, "n_vocab"):
        cached = getattr(tokenizer, "_outlines_gguf_vocabulary", None)
        if isinstance(cached, Vocabulary):
            return cached
        vocab = _from_llama_cached(tokenizer)
        try:
            tokenizer._outlines_gguf_vocabulary = vocab
        except AttributeError:
            pass
        return vocab
    raise VocabularyError(
        f"cannot get a vocabulary from {type(tokenizer).__name__}: pass a llama_cpp.Llama, "
        "an outlines_gguf.Vocabulary or a GGUF file path"
    )


_GGUF_CACHE: dict[tuple[str, float, int], Vocabulary] = {}


def clear_gguf_cache() -> None:
    """Forget the vocabularies read from GGUF files."""
    _GGUF_CACHE.clear()


def _cached_gguf_vocabulary(path: str) -> Vocabulary:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise VocabularyError(f"cannot read GGUF file {path!r}: {exc.strerror}") from exc
    key = (path, st.st_mtime, st.st_size)
    vocab = _GGUF_CACHE.get(key)
    if vocab is None:
        if len(_GGUF_CACHE) >= 8:
            _GGUF_CACHE.pop(next(iter(_GGUF_CACHE)))
        vocab = _GGUF_CACHE[key] = cached_vocabulary(path, "gguf", lambda: Vocabulary.from_gguf(path))
    return vocab


def _from_llama_cached(llm: Any) -> Vocabulary:
    path = getattr(llm, "model_path", None)
    if not isinstance(path, str) or not os.path.isfile(path):
        return Vocabulary.from_llama(llm)
    return cached_vocabulary(path, "llama", lambda: Vocabulary.from_llama(llm))

"""The model's vocabulary as exact bytes: what every token id writes.

A :class:`Vocabulary` is the only thing guides know about a model. It can be
built from a loaded ``llama_cpp.Llama`` (:meth:`Vocabulary.from_llama`), from a
GGUF file without loading weights (:meth:`Vocabulary.from_gguf`), or from a
plain list of byte strings (tests, other runtimes).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import threading
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from outlines_gguf.errors import VocabularyError
from outlines_gguf.tokens.gguf import read_gguf_metadata
from outlines_gguf.tokens.llama_rules import ATTR_CONTROL, ATTR_UNKNOWN, ATTR_UNUSED, derive_tokenizer
from outlines_gguf.tokens.text import TextTokens
from outlines_gguf.tokens.trie import TokenTrie

_NEVER_EMITTED_ATTRS = ATTR_CONTROL | ATTR_UNKNOWN | ATTR_UNUSED
# Filler tokens that converters add to pad a vocabulary (Qwen2's "[PAD151931]"):
# llama.cpp renders them as literal text, but no model means them as text.
_PADDING = re.compile(rb"\[PAD\d+\]|<pad>|<\|pad\|>|<\|?unused\d*\|?>|\[unused\d+\]")
_CLASS_TRIE_LOCK = threading.Lock()


class Vocabulary:
    """Token id -> exact bytes, plus which ids are special and which end generation.

    ``tokens[i]`` is exactly what llama.cpp writes for token ``i`` when it
    detokenizes without special tokens (``llama_token_to_piece(special=False)``):
    ``b""`` for control tokens, raw bytes (possibly a partial UTF-8 character)
    for the rest. Special ids (control, unknown, unused, end-of-generation,
    and every token whose bytes are empty) are never allowed inside
    constrained text; so are padding fillers such as Qwen2's ``[PAD151931]``,
    which llama.cpp would print as literal text. ``eog_ids`` is the full end-of-generation set
    (``llama_vocab_is_eog``), not only ``token_eos()``.
    """

    def __init__(
        self,
        tokens: Sequence[bytes],
        *,
        eog_ids: Iterable[int],
        special_ids: Iterable[int] = (),
        bos_id: int | None = None,
        eos_id: int | None = None,
        name: str = "",
        special_names: dict[int, str] | None = None,
    ) -> None:
        self.tokens: tuple[bytes, ...] = tuple(tokens)
        n = len(self.tokens)
        if n == 0:
            raise VocabularyError("a vocabulary needs at least one token")
        for i, tok in enumerate(self.tokens):
            if not isinstance(tok, bytes):
                raise VocabularyError(f"token {i} is {type(tok).__name__}, expected bytes")
        self.eog_ids: frozenset[int] = frozenset(int(i) for i in eog_ids)
        special = {int(i) for i in special_ids} | set(self.eog_ids)
        special |= {i for i, tok in enumerate(self.tokens) if not tok or _PADDING.fullmatch(tok)}
        bad = sorted(i for i in special if not 0 <= i < n)
        if bad:
            raise VocabularyError(f"special/EOG token ids out of range 0..{n - 1}: {bad[:5]}")
        self.special_ids: frozenset[int] = frozenset(special)
        for label, value in (("bos_id", bos_id), ("eos_id", eos_id)):
            if value is not None and not 0 <= value < n:
                raise VocabularyError(f"{label}={value} is out of range 0..{n - 1}")
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.name = name
        self.special_names: dict[int, str] = dict(special_names or {})
        """The model's own text of tokens that write no bytes (``<|im_end|>``), for display only."""

    @classmethod
    def from_checked_parts(
        cls,
        tokens: tuple[bytes, ...],
        *,
        eog_ids: frozenset[int],
        special_ids: frozenset[int],
        bos_id: int | None,
        eos_id: int | None,
        name: str,
        special_names: dict[int, str],
    ) -> Vocabulary:
        """A vocabulary from parts another one had (``special_ids`` already the full set), without
        the per-token checks of ``__init__``: for a disk-cache entry whose hash was verified."""
        vocab = cls.__new__(cls)
        vocab.tokens = tokens
        vocab.eog_ids = eog_ids
        vocab.special_ids = special_ids
        vocab.bos_id = bos_id
        vocab.eos_id = eos_id
        vocab.name = name
        vocab.special_names = special_names
        return vocab

    # -- pickling ---------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Tokens as one byte string and an array of lengths; derived structures (trie,
        plain-text index, ...) are left out and rebuilt lazily in the other process."""
        lazy = {
            name
            for klass in type(self).__mro__
            for name, value in vars(klass).items()
            if isinstance(value, cached_property)
        }
        dropped = {"_class_tries", "_holding", "_made_of"}
        state = {k: v for k, v in self.__dict__.items() if k not in lazy and k not in dropped}
        if "hash" in self.__dict__:
            state["hash"] = self.__dict__["hash"]  # cheap to keep, costly to recompute
        lengths = np.fromiter((len(t) for t in self.tokens), dtype=np.uint32, count=len(self.tokens))
        state["tokens"] = (b"".join(self.tokens), lengths.astype(np.min_scalar_type(int(lengths.max()))))
        state["eog_ids"] = sorted(self.eog_ids)
        state["special_ids"] = sorted(self.special_ids)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        blob, lengths = state.pop("tokens")
        ends = np.cumsum(lengths, dtype=np.int64).tolist()
        starts = [0, *ends[:-1]]
        self.__dict__.update(state)
        self.tokens = tuple(blob[a:b] for a, b in zip(starts, ends, strict=True))
        self.eog_ids = frozenset(state["eog_ids"])
        self.special_ids = frozenset(state["special_ids"])

    # -- constructors ---------------------------------------------------------------

    @classmethod
    def from_llama(cls, llm: Any) -> Vocabulary:
        """Read the vocabulary of a loaded ``llama_cpp.Llama`` through llama.cpp itself.

        Uses ``llama_token_to_piece`` with a buffer that grows, so tokens longer
        than 32 bytes are kept whole (``Llama.detokenize`` drops them).
        """
        import llama_cpp

        model = getattr(llm, "model", None)
        if model is None:
            raise VocabularyError(f"expected a llama_cpp.Llama, got {type(llm).__name__}")
        vocab = llama_cpp.llama_model_get_vocab(model)
        n = llama_cpp.llama_vocab_n_tokens(vocab)
        size = 64
        buf = ctypes.create_string_buffer(size)
        to_piece = llama_cpp.llama_token_to_piece
        get_attr = llama_cpp.llama_vocab_get_attr
        is_eog = llama_cpp.llama_vocab_is_eog
        tokens: list[bytes] = []
        special: list[int] = []
        eog: list[int] = []
        names: dict[int, str] = {}
        for i in range(n):
            k = to_piece(vocab, i, buf, size, 0, False)
            if k < 0:
                size = max(-k, 2 * size)
                buf = ctypes.create_string_buffer(size)
                k = to_piece(vocab, i, buf, size, 0, False)
            tokens.append(buf.raw[:k])
            if get_attr(vocab, i) & _NEVER_EMITTED_ATTRS:
                special.append(i)
            if is_eog(vocab, i):
                eog.append(i)
            if k == 0 or (eog and eog[-1] == i):
                named = to_piece(vocab, i, buf, size, 0, True)
                if named > 0:
                    names[i] = buf.raw[:named].decode("utf-8", "replace")
        null = llama_cpp.LLAMA_TOKEN_NULL

        def opt(tok: int) -> int | None:
            return None if tok == null or not 0 <= tok < n else int(tok)

        return cls(
            tokens,
            eog_ids=eog,
            special_ids=special,
            bos_id=opt(llama_cpp.llama_vocab_bos(vocab)),
            eos_id=opt(llama_cpp.llama_vocab_eos(vocab)),
            name=os.path.basename(getattr(llm, "model_path", "") or ""),
            special_names=names,
        )

    @classmethod
    def from_gguf(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read the vocabulary from a GGUF file's metadata, without loading weights
        and without llama-cpp-python. Agrees token for token with :meth:`from_llama`.
        """
        source = os.fspath(path)
        tok = derive_tokenizer(read_gguf_metadata(source), source)
        special = np.flatnonzero(tok.attrs & _NEVER_EMITTED_ATTRS).tolist()
        return cls(
            tok.pieces,
            eog_ids=tok.eog_ids,
            special_ids=special,
            bos_id=tok.bos_id,
            eos_id=tok.eos_id,
            name=os.path.basename(source),
            special_names=tok.names,
        )

    # -- queries ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def size(self) -> int:
        """Number of token ids (the length of llama.cpp's logits row)."""
        return len(self.tokens)

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<Vocabulary{label} size={self.size} eog={sorted(self.eog_ids)} hash={self.hash[:12]}>"

    @cached_property
    def hash(self) -> str:
        """A stable content hash (hex sha256) of the tokens, special and EOG sets."""
        lengths = np.fromiter((len(t) for t in self.tokens), dtype="<u4", count=len(self.tokens))
        return vocabulary_hash(b"".join(self.tokens), lengths, sorted(self.special_ids), sorted(self.eog_ids))

    @cached_property
    def is_special(self) -> np.ndarray:
        """Boolean array: True for ids that never appear inside constrained text."""
        mask = np.zeros(self.size, dtype=bool)
        mask[list(self.special_ids)] = True
        return mask

    @cached_property
    def eog_array(self) -> np.ndarray:
        """The end-of-generation ids as a sorted int32 array."""
        return np.array(sorted(self.eog_ids), dtype=np.int32)

    @cached_property
    def max_token_bytes(self) -> int:
        """The length in bytes of the longest token: no token reads further than this."""
        return max(map(len, self.tokens), default=0)

    @cached_property
    def trie(self) -> TokenTrie:
        """A prefix tree of the non-special tokens, built once per vocabulary."""
        return TokenTrie.build(self.tokens, self.is_special)

    @cached_property
    def plain_trie_nodes(self) -> np.ndarray:
        """Per node of :attr:`trie`: every token below is plain text (see
        :mod:`~outlines_gguf.tokens.text`) but for an unfinished last character."""
        text = self.text_tokens
        flag = np.zeros(self.size, dtype=bool)
        flag[text.plain_ids] = True
        flag[text.rest_partial] = True
        return self.trie.subtree_all(flag)

    @cached_property
    def text_tokens(self) -> TextTokens:
        """Plain-text tokens by character count, and a trie of the others (built once)."""
        return TextTokens.build(self.tokens, self.is_special)

    def prepare(self) -> Vocabulary:
        """Build now what the first masks would otherwise build: the token tries and
        the plain-text split with their walk tables (about 0.3 s for a 128k vocabulary).

        Optional: everything is built lazily on first use. Call it at start-up
        (a server, a benchmark) so the first generation does not pay for it.
        """
        self.hash  # noqa: B018 (the key of every guide built for it)
        text = self.text_tokens
        tries = [self.trie, text.rest, text.rest_bare, text.rest_tails]
        for trie in tries:
            trie.prepare_walks()
        self.plain_trie_nodes  # noqa: B018 (where walks may take whole subtrees)
        self._ascii_bits  # noqa: B018 (for states that loop on a class of ASCII bytes)
        return self

    def class_trie(self, byte_class: np.ndarray) -> TokenTrie:
        """The token trie compressed to a byte-class partition (cached, 16 partitions)."""
        key = np.asarray(byte_class, dtype=np.uint8).tobytes()
        cache = self.__dict__.setdefault("_class_tries", {})
        trie = cache.get(key)
        if trie is None:
            trie = self.trie.compress(np.frombuffer(key, dtype=np.uint8))
            with _CLASS_TRIE_LOCK:  # several guides may share this vocabulary across threads
                if key not in cache and len(cache) >= 16:
                    cache.pop(next(iter(cache)))
                trie = cache.setdefault(key, trie)
        return trie

    def holding(self, byte: int) -> np.ndarray:
        """Per token: whether its bytes include ``byte`` (a boolean array, built once per byte
        from the tokens joined: a test per token took 60 ms at 128k)."""
        cache = self.__dict__.setdefault("_holding", {})
        found = cache.get(byte)
        if found is None:
            blob, ends = self._joined
            owners = np.searchsorted(ends, np.flatnonzero(blob == byte), side="right")
            found = np.zeros(self.size, dtype=bool)
            found[owners] = True
            cache[byte] = found
        return found

    def holding_any(self, bytes_: Iterable[int]) -> np.ndarray:
        """Per token: whether its bytes include any of ``bytes_`` (:meth:`holding`, or-ed)."""
        held = np.zeros(self.size, dtype=bool)
        for byte in bytes_:
            held |= self.holding(int(byte))
        return held

    @cached_property
    def _joined(self) -> tuple[np.ndarray, np.ndarray]:
        """Every token's bytes joined, and where each token ends in them (for :meth:`holding`)."""
        lengths = np.fromiter(map(len, self.tokens), dtype=np.int64, count=len(self.tokens))
        return np.frombuffer(b"".join(self.tokens), dtype=np.uint8), np.cumsum(lengths)

    @cached_property
    def byte_starts(self) -> np.ndarray:
        """Where each token starts in :attr:`_joined`'s bytes (int64; it ends where the next starts)."""
        ends = self._joined[1]
        return ends - np.diff(ends, prepend=0)

    @cached_property
    def _ascii_bits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per token: the ASCII bytes it holds as two 64-bit sets (bytes 0-63, 64-127), and
        whether it cannot be made of ASCII bytes only (a byte from 0x80 on; empty or special)."""
        blob, ends = self._joined
        starts = self.byte_starts
        nonempty = ends > starts
        bit = np.left_shift(np.uint64(1), blob.astype(np.uint64) & np.uint64(63))
        low = np.where(blob < 64, bit, np.uint64(0))
        high = np.where((blob >= 64) & (blob < 128), bit, np.uint64(0))
        lo = np.zeros(self.size, dtype=np.uint64)
        hi = np.zeros(self.size, dtype=np.uint64)
        other = ~nonempty | self.is_special
        if nonempty.any():
            at = starts[nonempty]
            lo[nonempty] = np.bitwise_or.reduceat(low, at)
            hi[nonempty] = np.bitwise_or.reduceat(high, at)
            other[nonempty] |= np.logical_or.reduceat(blob >= 128, at)
        return lo, hi, other

    def made_of(self, allowed: np.ndarray) -> np.ndarray:
        """Per token: whether it is made only of bytes of ``allowed`` (a boolean row over the
        256 bytes, of which only ASCII ones count), and is neither empty nor special."""
        key = np.asarray(allowed[:128], dtype=bool).tobytes()
        cache = self.__dict__.setdefault("_made_of", {})
        found = cache.get(key)
        if found is None:
            bits = np.flatnonzero(np.frombuffer(key, dtype=bool))
            want_lo = np.uint64(sum(1 << int(b) for b in bits if b < 64))
            want_hi = np.uint64(sum(1 << int(b - 64) for b in bits if b >= 64))
            lo, hi, other = self._ascii_bits
            found = ~other & ((lo & ~want_lo) == 0) & ((hi & ~want_hi) == 0)
            with _CLASS_TRIE_LOCK:  # (kept per class, as the class tries are: 16 at most)
                if key not in cache and len(cache) >= 16:
                    cache.pop(next(iter(cache)))
                found = cache.setdefault(key, found)
        return found

    def clear_class_tries(self) -> None:
        """Forget the byte-class tries (:meth:`class_trie`) and the class splits
        (:meth:`made_of`); the next guide rebuilds its own."""
        self.__dict__.pop("_class_tries", None)
        self.__dict__.pop("_made_of", None)

    def decode(self, ids: Iterable[int]) -> bytes:
        """The bytes a sequence of token ids writes (special ids write nothing)."""
        tokens = self.tokens
        return b"".join(tokens[i] for i in ids)

    def check_fits(self, n_vocab: int, what: str = "the model") -> None:
        """Raise :class:`VocabularyError` unless ``n_vocab`` equals this vocabulary's size."""
        if n_vocab != self.size:
            raise VocabularyError(
                f"vocabulary mismatch: {what} has {n_vocab} tokens but this vocabulary "
                f"({self.name or self.hash[:12]}) has {self.size}; build the processor "
                "from the same model it is used with"
            )


def vocabulary_hash(blob: bytes, lengths: Any, special: Any, eog: Any) -> str:
    """:attr:`Vocabulary.hash` from the tokens' bytes joined, their lengths, and the sorted
    special and end-of-generation ids (what the vocabulary disk cache checks entries with)."""
    lengths = np.asarray(lengths, dtype="<u4")
    h = hashlib.sha256()
    h.update(f"outlines-gguf-vocab-v1:{lengths.size}:".encode())
    h.update(lengths.tobytes())
    h.update(blob)
    h.update(np.asarray(special, dtype="<i8").tobytes())
    h.update(b"|")
    h.update(np.asarray(eog, dtype="<i8").tobytes())
    return h.hexdigest()

"""llama.cpp's rules for turning GGUF token metadata into token bytes.

A pure-Python port of what ``llama_vocab::load`` and ``token_to_piece`` (with
``special=false``) do in the llama.cpp that llama-cpp-python 0.3.x vendors:
token attributes, the text-based detection of control / end-of-generation
tokens, and the decoding of SentencePiece (``▁``, ``<0x0A>``) and GPT-2
byte-level BPE (``Ġ``) pieces. ``Vocabulary.from_gguf`` uses it so that a
vocabulary can be read without llama-cpp-python; the test suite checks that
it agrees token for token with ``Vocabulary.from_llama``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from outlines_gguf.errors import VocabularyError

# llama_token_attr bits
ATTR_UNDEFINED = 0
ATTR_UNKNOWN = 1 << 0
ATTR_UNUSED = 1 << 1
ATTR_NORMAL = 1 << 2
ATTR_CONTROL = 1 << 3
ATTR_USER_DEFINED = 1 << 4
ATTR_BYTE = 1 << 5

# GGUF tokenizer.ggml.token_type values -> attributes
_TYPE_TO_ATTR = {
    1: ATTR_NORMAL,
    2: ATTR_UNKNOWN,
    3: ATTR_CONTROL,
    4: ATTR_USER_DEFINED,
    5: ATTR_UNUSED,
    6: ATTR_BYTE,
}

_SPM_LIKE = {"llama": (1, 2), "bert": (101, None), "t5": (None, 1), "plamo2": (1, 2)}
_BPE_MODELS = {"gpt2", "hybriddna", "whitespace", "gemma4"}
_ESCAPING_BPE_PRE = {"gemma4", "granite-embed-multi-311m", "sarvam-moe"}

_EOT_TEXTS = (
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
)
_EOM_TEXTS = ("<|eom_id|>",)
_FIM_TEXTS = {
    "pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
            "▁<PRE>", "<|code_prefix|>", "<|prefix|>"),
    "suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
            "▁<SUF>", "<|code_suffix|>", "<|suffix|>"),
    "mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
            "▁<MID>", "<|code_middle|>", "<|middle|>"),
    "pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "sep": ("<|file_sep|>",),
}
_EOG_TEXTS = frozenset((
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
    "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
    "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
    "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
))
_ALWAYS_RENDERED = ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>")


def _gpt2_unicode_to_byte() -> dict[str, int]:
    """The inverse of GPT-2's ``bytes_to_unicode`` table."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    return table


_UNICODE_TO_BYTE = _gpt2_unicode_to_byte()


def decode_byte_level(text: str) -> bytes:
    """Decode a GPT-2 byte-level BPE piece (``Ġ`` is a space) to raw bytes."""
    out = bytearray()
    for ch in text:
        b = _UNICODE_TO_BYTE.get(ch)
        if b is not None:
            out.append(b)
        else:  # llama.cpp's llama_decode_text marks characters outside the table
            utf8 = ch.encode("utf-8", "surrogatepass")
            out += b"[UNK_BYTE_0x" + utf8.hex().encode() + text.encode("utf-8", "surrogatepass") + b"]"
    return bytes(out)


@dataclass
class GGUFTokenizer:
    """The token data llama.cpp derives from GGUF metadata."""

    pieces: list[bytes]
    attrs: np.ndarray  # int32 llama_token_attr per token
    eog_ids: frozenset[int]
    bos_id: int | None
    eos_id: int | None
    model: str
    names: dict[int, str] = field(default_factory=dict)  # GGUF text of tokens that write no bytes


def _first_match(texts: Sequence[bytes], wanted: Sequence[str]) -> int | None:
    wanted_bytes = {w.encode() for w in wanted}
    for i in range(len(texts) - 1, -1, -1):  # llama.cpp maps text -> last id
        if texts[i] in wanted_bytes:
            return i
    return None


def _token_to_id(texts: Sequence[bytes]) -> dict[bytes, int]:
    return {t: i for i, t in enumerate(texts)}


def derive_tokenizer(meta: dict[str, Any], source: str) -> GGUFTokenizer:
    """Apply llama.cpp's loading rules to GGUF metadata (see module docstring)."""
    model = meta.get("tokenizer.ggml.model")
    if model is None:
        raise VocabularyError(f"{source}: no tokenizer.ggml.model key: not a model with a vocabulary")
    texts: list[bytes] | None = meta.get("tokenizer.ggml.tokens")
    if not texts:
        raise VocabularyError(f"{source}: tokenizer.ggml.tokens is missing or empty")
    n = len(texts)
    pre = meta.get("tokenizer.ggml.pre", "")
    if model in _SPM_LIKE:
        kind = "spm"
        bos, eos = _SPM_LIKE[model]
    elif model in _BPE_MODELS:
        kind = "bpe"
        bos = eos = 11 if model != "gemma4" else None
        if model == "gemma4":
            pre = "gemma4"
    else:
        raise VocabularyError(
            f"{source}: tokenizer model {model!r} is not supported by Vocabulary.from_gguf; "
            "load the model with llama_cpp and use Vocabulary.from_llama"
        )
    escape_ws = kind == "spm" or pre in _ESCAPING_BPE_PRE

    types = meta.get("tokenizer.ggml.token_type")
    if types is None:
        attrs = np.full(n, ATTR_NORMAL, dtype=np.int32)
    else:
        attrs = np.array([_TYPE_TO_ATTR.get(int(t), ATTR_UNDEFINED) for t in types], dtype=np.int32)

    def meta_id(key: str, default: int | None) -> int | None:
        value = meta.get(f"tokenizer.ggml.{key}_token_id")
        if value is None or int(value) >= n:
            return default if (default is None or default < n) else None
        return int(value)

    bos = meta_id("bos", bos)
    eos = meta_id("eos", eos)
    eot = meta_id("eot", None)
    eom = meta_id("eom", None)
    fim = {k: meta_id(f"fim_{k}", None) for k in _FIM_TEXTS}
    for old, new in (("prefix", "pre"), ("suffix", "suf"), ("middle", "mid")):
        if fim[new] is None:
            fim[new] = meta_id(old, None)

    tok_id = _token_to_id(texts)
    unique_ids = sorted(tok_id.values())

    def mark_control(i: int) -> None:
        attrs[i] |= ATTR_CONTROL

    # auto-detect special tokens by text
    if eot is None:
        eot = _first_match(texts, _EOT_TEXTS)
        if eot is not None:
            mark_control(eot)
    if eom is None:
        eom = _first_match(texts, _EOM_TEXTS)
        if eom is not None:
            mark_control(eom)
    for key, candidates in _FIM_TEXTS.items():
        if fim[key] is None:
            found = _first_match(texts, candidates)
            if found is not None:
                fim[key] = found
                mark_control(found)
    # control tokens whose text says "unused"
    for i in unique_ids:
        if attrs[i] & ATTR_CONTROL and b"unused" in texts[i]:
            attrs[i] |= ATTR_UNUSED

    eog: set[int] = {i for i in (fim["pad"], fim["rep"], fim["sep"]) if i is not None}
    eog_texts = {t.encode() for t in _EOG_TEXTS}
    for i in unique_ids:
        if texts[i] in eog_texts:
            eog.add(i)
            mark_control(i)
    for text in _ALWAYS_RENDERED:
        rendered = tok_id.get(text.encode())
        if rendered is not None:
            attrs[rendered] = ATTR_USER_DEFINED
    eog |= {i for i in (eos, eot, eom) if i is not None}

    by_text = {texts[i]: i for i in eog}
    has_call = b"<|call|>" in by_text or b"<|calls|>" in by_text
    if b"<|end|>" in by_text and has_call and (b"<|return|>" in by_text or b"<|flush|>" in by_text):
        end_id = by_text[b"<|end|>"]
        eog.discard(end_id)
        attrs[end_id] = ATTR_USER_DEFINED
    if (b"<|tool_response>" in by_text or b"<|plamo:eos|>" in by_text) and b"</s>" in by_text:
        s_id = by_text[b"</s>"]
        eog.discard(s_id)
        attrs[s_id] = ATTR_NORMAL

    pieces = [_piece(texts[i], int(attrs[i]), kind, escape_ws) for i in range(n)]
    names = {i: texts[i].decode("utf-8", "replace") for i in range(n) if not pieces[i] or i in eog}
    return GGUFTokenizer(pieces, attrs, frozenset(eog), bos, eos, str(model), names)


def _piece(text: bytes, attr: int, kind: str, escape_ws: bool) -> bytes:
    """``llama_token_to_piece(special=false)`` for one token."""
    if attr & (ATTR_UNKNOWN | ATTR_CONTROL):
        return b""
    if attr & ATTR_USER_DEFINED:
        return text
    if attr & ATTR_NORMAL:
        if escape_ws:
            return text.replace("▁".encode(), b" ")
        return decode_byte_level(text.decode("utf-8", "surrogateescape"))
    if attr & ATTR_BYTE:
        return bytes([int(text[3:5], 16)])
    return b""

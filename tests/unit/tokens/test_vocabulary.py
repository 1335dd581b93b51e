"""Vocabulary: exact bytes per token, special and EOG sets, both constructors agree."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import all_vocab_files, load_vocab, require

from outlines_gguf import GGUFFormatError, Vocabulary, VocabularyError
from outlines_gguf.tokens.gguf import read_gguf_metadata


@pytest.mark.model
@pytest.mark.parametrize("path", all_vocab_files(), ids=lambda p: p.name)
def test_from_gguf_agrees_with_llama_cpp(path: Path) -> None:
    """Our pure-Python GGUF path equals what llama.cpp itself reports, token for token."""
    from llama_cpp import Llama

    require(path)
    ours = Vocabulary.from_gguf(path)
    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    theirs = Vocabulary.from_llama(llm)
    assert ours.size == theirs.size == llm.n_vocab()
    diff = [i for i in range(ours.size) if ours.tokens[i] != theirs.tokens[i]]
    assert not diff, [(i, ours.tokens[i], theirs.tokens[i]) for i in diff[:5]]
    assert ours.eog_ids == theirs.eog_ids
    assert ours.special_ids == theirs.special_ids
    assert (ours.bos_id, ours.eos_id) == (theirs.bos_id, theirs.eos_id)
    assert ours.hash == theirs.hash
    # llama.cpp's own is_eog agrees, and EOS is part of the set
    if ours.eos_id is not None:
        assert ours.eos_id in ours.eog_ids


def test_sentencepiece_pieces() -> None:
    v = load_vocab("spm32k")
    tokens = v.tokens
    assert tokens[13] == b"\n"  # <0x0A> byte token
    assert all(len(tokens[i]) == 1 for i in range(3, 259))  # the 256 byte-fallback tokens
    assert sorted(tokens[i][0] for i in range(3, 259)) == list(range(256))
    assert b" the" in tokens  # ▁the
    assert not any(b"\xe2\x96\x81" in t for t in tokens)  # no raw ▁ left
    assert {0, 1, 2} <= v.special_ids and tokens[1] == b"" and v.eog_ids == {2}


def test_byte_level_bpe_pieces() -> None:
    v = load_vocab("llama3-128k")
    assert b" the" in v.tokens and b"\n\n" in v.tokens
    texts = read_gguf_metadata(v_path("llama3-128k"))["tokenizer.ggml.tokens"]
    assert v.tokens[texts.index("Ġthe".encode())] == b" the"  # Ġ is the byte 0x20
    assert v.tokens[texts.index("Ċ".encode())] == b"\n"
    # every single byte is a token, so any UTF-8 text can be written
    singles = {t for t in v.tokens if len(t) == 1}
    assert len(singles) == 256
    # tokens that are not valid UTF-8 on their own (a split multi-byte character)
    invalid = [t for t in v.tokens if t and not _is_utf8(t)]
    assert len(invalid) > 100
    # the full end-of-generation set, not only token_eos()
    assert {128001, 128009} <= v.eog_ids  # <|end_of_text|>, <|eot_id|>
    assert 128009 in v.special_ids and v.tokens[128009] == b""


def test_long_tokens_are_kept_whole() -> None:
    """Tokens over 32 bytes exist; llama-cpp-python's detokenize drops them, we do not."""
    v = load_vocab("llama3-128k")
    long_tokens = [t for t in v.tokens if len(t) > 32]
    assert long_tokens and max(map(len, long_tokens)) >= 64


def test_qwen2_padding_and_duplicates() -> None:
    v = load_vocab("qwen2-152k")
    assert v.size == 151936
    meta_tokens = read_gguf_metadata(v_path("qwen2-152k"))["tokenizer.ggml.tokens"]
    assert meta_tokens[151931] == b"[PAD151931]"
    assert 151931 in v.special_ids  # a filler, never emitted inside constrained text
    assert {151643, 151645} <= v.eog_ids  # <|endoftext|>, <|im_end|>
    assert v.tokens[151644] == b"" and 151644 in v.special_ids  # <|im_start|>


def test_duplicate_byte_strings_are_distinct_ids() -> None:
    v = Vocabulary([b"a", b"b", b"a", b""], eog_ids=[3])
    assert v.tokens[0] == v.tokens[2] and v.special_ids == {3}
    assert sorted(v.trie.term_tokens.tolist()) == [0, 1, 2]


def test_hash_is_stable_and_content_addressed() -> None:
    a = Vocabulary([b"a", b"bc", b""], eog_ids=[2])
    b = Vocabulary([b"a", b"bc", b""], eog_ids=[2])
    c = Vocabulary([b"ab", b"c", b""], eog_ids=[2])
    d = Vocabulary([b"a", b"bc", b""], eog_ids=[2], special_ids=[0])
    assert a.hash == b.hash and len({a.hash, c.hash, d.hash}) == 3


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all, just text" * 4)
    with pytest.raises(GGUFFormatError, match="not a GGUF file"):
        Vocabulary.from_gguf(junk)
    with pytest.raises(GGUFFormatError, match="cannot open"):
        Vocabulary.from_gguf(tmp_path / "missing.gguf")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(v_path("spm32k").read_bytes()[:5000])
    with pytest.raises(GGUFFormatError, match="truncated"):
        Vocabulary.from_gguf(truncated)
    with pytest.raises(VocabularyError, match="out of range"):
        Vocabulary([b"a"], eog_ids=[5])
    with pytest.raises(VocabularyError, match="expected bytes"):
        Vocabulary(["a"], eog_ids=[])  # type: ignore[list-item]
    v = Vocabulary([b"a", b""], eog_ids=[1])
    with pytest.raises(VocabularyError, match="vocabulary mismatch"):
        v.check_fits(3)


def v_path(name: str) -> Path:
    from conftest import VOCAB_FILES, VOCABS

    return require(VOCABS / VOCAB_FILES[name])


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_prepare_builds_what_the_first_mask_would() -> None:
    """``prepare()`` builds the tries and their walk tables up front; masks do not change."""
    from outlines_gguf import RegexGuide, as_vocabulary, compile_regex

    path = all_vocab_files()[0]
    fresh = Vocabulary.from_gguf(path)
    assert as_vocabulary(fresh) is fresh
    dfa = compile_regex(r'"[a-z ]{0,12}"')
    inside = dfa.run(b'"')
    before = RegexGuide(dfa, fresh).mask(inside).allowed_ids(fresh.size)
    prepared = Vocabulary.from_gguf(path)
    assert prepared.prepare() is prepared
    text = prepared.text_tokens
    for trie in (prepared.trie, text.rest, text.rest_bare, text.rest_tails):
        assert "_subtree_size" in trie.__dict__ and "_lists" in trie.__dict__
    after = RegexGuide(dfa, prepared).mask(inside).allowed_ids(prepared.size)
    assert (before == after).all() and before.size > 0


@pytest.mark.parametrize("name", ["spm32k", "qwen2-152k"])
def test_holding_marks_the_tokens_that_hold_a_byte(name: str) -> None:
    vocab = load_vocab(name)
    for byte in (ord(","), ord('"'), 0xE2, 0):
        want = [bytes((byte,)) in token for token in vocab.tokens]
        assert vocab.holding(byte).tolist() == want
    assert "_holding" not in Vocabulary.__getstate__(vocab)  # (derived: rebuilt where needed)

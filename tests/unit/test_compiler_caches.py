"""compiler.clear_caches forgets every compiled constraint (what a benchmark's cold start relies on)."""

from __future__ import annotations

from conftest import load_vocab

from outlines_gguf import RegexLogitsProcessor, clear_caches, compile_grammar, compile_regex, grammars
from outlines_gguf.compiler import _guides


def test_clear_caches_forgets_automata_grammars_guides_and_class_tries() -> None:
    vocab = load_vocab("spm32k")
    RegexLogitsProcessor(r"[a-z]{3}", vocab).guide.mask(0)
    compile_grammar(grammars.load("arithmetic"))
    assert compile_regex.cache_info().currsize and _guides
    clear_caches(vocab)
    assert compile_regex.cache_info().currsize == 0 and not _guides
    assert compile_grammar(grammars.load("arithmetic")) is not None  # rebuilt, not stale
    assert "_class_tries" not in vocab.__dict__

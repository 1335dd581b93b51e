"""States whose ASCII bytes go on together along a chain (inside ``[a-z0-9-]+``, where it
loops; an identifier and the state right before it; ``[A-Fa-f0-9]{24}``, where it ends) take
their masks from per-token byte sets and a run of the few tokens that leave the class
(``RegexGuide._ascii_loop_walk``) instead of walking the trie. Every state's mask equals a
brute force, on random class regexes over a small vocabulary (special, empty and multi-byte
tokens included) and on the real ones."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_vocab
from hypothesis import given, settings
from hypothesis import strategies as st
from mask_oracles import bruteforce_allowed
from token_oracles import alive_tokens

from outlines_gguf import RegexGuide, Vocabulary, compile_regex

BYTES = b'abcxy01-_ "\\\n\xc3\xa9'
CLASSES = ["[a-c]", "[abx]", "[a-c0-1_-]", '[^y"\\\\\\n]', "[0-1]", "[a-y]", "[ -~]"]


def _piece() -> st.SearchStrategy[str]:
    atom = st.one_of(st.sampled_from(CLASSES), st.sampled_from(["a", "y", "-", '"', "\\\\", "é", " "]))
    return st.tuples(atom, st.sampled_from(["", "+", "*", "?", "{2}", "{1,3}", "{2,}"])).map("".join)


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, Vocabulary]:
    pattern = "".join(draw(st.lists(_piece(), min_size=1, max_size=5)))
    token = st.binary(min_size=0, max_size=6).map(lambda b: bytes(BYTES[x % len(BYTES)] for x in b))
    pairs = draw(st.lists(st.tuples(token, st.sampled_from([False, False, False, True])), max_size=40))
    tokens = [b"", *(t for t, _ in pairs), *(bytes([b]) for b in BYTES)]
    special = [0, *(i + 1 for i, (_, s) in enumerate(pairs) if s)]
    return pattern, Vocabulary(tokens, eog_ids=[0], special_ids=special, name="ascii-loop")


@settings(max_examples=150, deadline=None)
@given(cases())
def test_masks_equal_brute_force_on_random_class_regexes(case: tuple[str, Vocabulary]) -> None:
    pattern, vocab = case
    dfa = compile_regex(pattern)
    guide = RegexGuide(dfa, vocab)
    excluded = vocab.is_special
    for state in range(dfa.n_states):
        expected = alive_tokens(dfa.transitions, state, vocab.tokens, excluded)
        if dfa.accepting[state]:
            expected = sorted({*expected, *vocab.eog_ids})
        try:
            got = guide.mask(state).allowed_ids(vocab.size).tolist()
        except Exception as exc:  # (no token continues: the guide says so)
            assert not expected, (pattern, state, exc)
            continue
        assert got == sorted(set(expected)), (pattern, state)


PATTERNS = [
    r'[a-z0-9-]+"x',
    r"[a-zA-Z_][a-zA-Z0-9_]*",
    r"[0-9a-f]+\.?[0-9]*",
    r'([a-z]+ )*[a-z]+"',
    r"[ab]+c[ab]*",
    r"[ -~]{2,}!",
    r'[A-Fa-f0-9]{24}"',  # a chain that ends
    r"[0-9a-zA-Z_-]{1,255}:",
    r"x[a-z]{3,5}[0-9]{2}",
    r"[^@]+@[^@]+",  # every plain character but one loops (``_loop_except_walk``)
    r'(?s)[^"\\]*"',
]


@pytest.mark.parametrize("vocab_name", ["spm32k", "llama3-128k"])
def test_masks_equal_brute_force_on_real_vocabularies(vocab_name: str) -> None:
    vocab = load_vocab(vocab_name)
    fast = 0
    for pattern in PATTERNS:
        dfa = compile_regex(pattern)
        guide = RegexGuide(dfa, vocab)
        for state in range(dfa.n_states):
            fast += guide._ascii_loop_walk(state) is not None
            expected = bruteforce_allowed(vocab, dfa, state)
            np.testing.assert_array_equal(guide.mask(state).allowed_ids(vocab.size), expected, pattern)
    assert fast >= len(PATTERNS) - 2  # (the loops, at least, took the fast path)
    except_loop = RegexGuide(compile_regex(r"[^@]+@[^@]+"), vocab)
    assert except_loop._loop_except_walk(1) is not None

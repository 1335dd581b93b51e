"""ECMA-262's ``.`` in a JSON Schema ``pattern`` refuses the line and paragraph separators
(U+2028, U+2029). They are not plain text (``tokens/text.py``), so such a pattern's states still
read plain-text tokens by character count; the tokens that hold a separator are walked. Masks
equal a brute force (every token fed byte by byte) on a vocabulary full of separators and on a
real one."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_vocab
from pushdown_oracle import brute_force_allowed

from outlines_gguf import JSONLogitsProcessor, Vocabulary
from outlines_gguf.json_schema.pushdown import PushdownGuide
from outlines_gguf.json_schema.split import SplitSchema
from outlines_gguf.tokens.text import char_count

LS, PS = "\u2028".encode(), "\u2029".encode()
PIECES = [
    b'"',
    b"a",
    b"ab",
    b"b",
    b"x",
    b' "',
    b'a"',
    b"\\",
    b"\\u",
    b"2028",
    b"\\u2028",
    b"n",
    LS,
    PS,
    b"a" + LS,
    LS + b"a",
    b"a" + PS + b"b",
    LS + b'"',
    b"\xe2",
    b"\xe2\x80",
    b"\xa8",
    b"\xa9",
    b"\xa8a",
    "é".encode(),
    "é\u2028".encode(),
    "\u2027".encode(),
    "\u202a".encode(),
]
PATTERNS = ["^.+$", "^a.b$", "^(.*?)x$", "^[^b]*$"]


def separator_vocabulary() -> Vocabulary:
    return Vocabulary([b"", b"", *PIECES], eog_ids=[0], special_ids=[1], name="line-separators")


def test_separators_are_not_plain_text() -> None:
    assert char_count(b"a" + LS) is None and char_count(PS) is None
    assert char_count("\u2027\u202a".encode()) == 2


@pytest.mark.parametrize("pattern", PATTERNS)
def test_masks_equal_brute_force_where_tokens_hold_separators(pattern: str) -> None:
    vocab = separator_vocabulary()
    guide = PushdownGuide(SplitSchema({"type": "string", "pattern": pattern}), vocab)
    texts = [b"", b'"', b'"a', b'"ab', b'"\xc3\xa9', b'"\\u2028', b'"x', b'"a\\u2028']
    checked = 0
    for text in texts:
        state = guide.advance(guide.initial_state, text)
        if not state:
            continue
        got = guide.mask(state).allowed_ids(vocab.size)
        assert np.array_equal(got, brute_force_allowed(guide, state, vocab)), (pattern, text)
        checked += 1
    assert checked >= 4


def test_a_raw_separator_is_refused_where_dot_is_and_escaped_it_is_a_character() -> None:
    vocab = load_vocab("llama3-128k")
    processor = JSONLogitsProcessor({"type": "string", "pattern": "^a.b$"}, vocab)
    assert processor.accepts('"axb"') and processor.accepts('"a\u2027b"')
    assert not processor.accepts('"a\u2028b"') and not processor.accepts('"a\u2029b"')
    # escaped, it is the same character: refused too (ECMA-262's "." never matches it)
    assert not processor.accepts('"a\\u2028b"')


def test_a_dot_pattern_reads_plain_text_by_count_on_a_real_vocabulary() -> None:
    """The state inside ``.+`` reads plain-text tokens by character count (the fast path a
    separator in plain text would close), and its mask equals the brute force."""
    vocab = load_vocab("llama3-128k")
    guide = PushdownGuide(SplitSchema({"type": "object", "properties": {"s": {"pattern": "^.+$"}}}), vocab)
    state = guide.advance(guide.initial_state, b'{"s": "ab')
    ((_, number, inner),) = state
    got = guide.mask(state).allowed_ids(vocab.size)
    node = guide.schema.node(number)
    assert node.guide is not None and node.guide._plain_loop_target(inner) is not None
    assert np.array_equal(got, brute_force_allowed(guide, state, vocab))

"""Small things: ``cfg`` takes an inline grammar; the shipped JSON grammar's whitespace is bounded."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lark import Lark

from outlines_gguf import Grammar, grammars
from outlines_gguf.cli import UsageError, read_grammar

SCALARS = st.none() | st.booleans() | st.integers(-(10**9), 10**9) | st.text(max_size=6)
JSON_VALUES = st.recursive(
    SCALARS | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


def accepts(grammar: Grammar, text: str) -> bool:
    try:
        state = grammar.advance(grammar.initial_state, text.encode("utf-8"))
    except Exception:
        return False
    return state is not None and grammar.is_final(state)


@settings(max_examples=60, deadline=None)
@given(value=JSON_VALUES, compact=st.booleans())
def test_json_grammar_takes_json_dumps_output(value, compact: bool) -> None:
    """Oracle: what json.dumps writes (both styles) is accepted, and lark parses it too."""
    grammar = Grammar(grammars.JSON)
    text = json.dumps(value, separators=(",", ":") if compact else None)
    assert accepts(grammar, text)
    Lark(grammars.JSON, parser="lalr").parse(text)


@pytest.mark.parametrize(
    "text", ['{"a":  1}', '{\n"a": 1}', "[1,  2]", " 1", "[1 ]", '{"a" : 1}', "[1,\n2]", "1 "]
)
def test_json_grammar_refuses_other_whitespace(text: str) -> None:
    """Before: %ignore WS let a model write runs of spaces and newlines anywhere."""
    grammar = Grammar(grammars.JSON)
    assert not accepts(grammar, text)
    assert json.loads(text) is not None  # valid JSON all the same: only its whitespace is refused


def test_inline_grammar(tmp_path) -> None:
    inline = 'start: NUMBER "+" NUMBER\nNUMBER: /[0-9]+/'
    assert read_grammar(inline) == inline  # a trailing '/' survives (it is no path)
    assert read_grammar("json") == grammars.JSON
    path = tmp_path / "g.lark"
    path.write_text(inline)
    assert read_grammar(str(path)) == inline
    with pytest.raises(UsageError, match="neither a shipped grammar"):
        read_grammar("no-such-grammar.lark")

"""Long runs of one parser state shortened to a canonical stack (grammar/stack_runs.py) give the
views, steps and masks of the stack itself.

Oracle: the lexer view by its definition, from the stack's own parser runs (test_stack_memo's
``reference_view``), and tokens advanced byte by byte through it. Stacks hold runs of every
length from 1 to past twice the shortening threshold, of states that loop through one, two or
three nonterminals (period 1, 2 and 6), under other runs and above them.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_stack_memo import (
    assert_mask_matches_reference,
    reference_acceptable,
    reference_step,
    reference_view,
)

from outlines_gguf import CFGGuide, Grammar, grammars
from outlines_gguf.grammar.exact import ExactLexerGrammar

PARITY = """
start: c
c: a1 "y" | a2 "z" | "w" c
a1: "x" a2 | "a"
a2: "x" a1 | "b"
%ignore " "
"""
"""After x^k, which of "y" and "z" may follow "a" depends on the parity of k: the state after
"x" loops to itself and has gotos on a1 and a2 (period 2)."""

TWO_PER_RULE = """
start: s
s: a | "x" a
a: "x" "x" a | "y"
"""
"""A state whose reduction pops two copies of it: its runs are kept whole."""


def _check(grammar: Grammar, text: bytes, alphabet: bytes) -> None:
    config = grammar.advance(grammar.initial_state, text)
    assert config is not None, text
    stack = config[0]
    view, deepest = grammar.view_read(stack)
    assert np.array_equal(view, reference_view(grammar, stack)), text
    assert 0 <= deepest < grammar.table.depth(stack)
    assert grammar.acceptable(stack) == reference_acceptable(grammar, stack), text
    for byte in alphabet:
        assert grammar.step(config, byte) == reference_step(grammar, config, byte), (text, bytes([byte]))


CASES = [
    (
        "arithmetic",
        Grammar,
        grammars.load("arithmetic"),
        ["-{}1", "({}1", "(-{}(2*", "-(({}1+", "{}-"],
        "-",
        b"(1+-*/) ",
    ),
    ("arithmetic-parens", Grammar, grammars.load("arithmetic"), ["{}1", "-{}(", "1*{}1"], "(", b"(1+-*/) "),
    (
        "program",
        Grammar,
        grammars.load("program"),
        ["x = {}1", "x = ({}y", "while (1 < {}2"],
        "-",
        b"(1;-=x) ",
    ),
    ("json", Grammar, grammars.load("json"), ["{}1", '{{"a": {}'], "[", b'[],1-" :{}'),
    ("parity", Grammar, PARITY, ["{}", "{}a", "{}b", "w{}a", "ww{}"], "x", b"xyzwab "),
    ("parity-exact", ExactLexerGrammar, PARITY, ["{}", "{}a", "{}b"], "x", b"xyzwab "),
    ("two-per-rule", Grammar, TWO_PER_RULE, ["{}", "{}y"], "x", b"xy"),
]


@pytest.mark.parametrize(
    ("name", "kind", "text", "shapes", "run", "alphabet"), CASES, ids=[c[0] for c in CASES]
)
def test_views_on_long_runs_equal_each_stacks_own(
    name: str, kind: type[Grammar], text: str, shapes: list[str], run: str, alphabet: bytes
) -> None:
    grammar = kind(text)
    shortened = 0
    for k in range(1, 48):
        for shape in shapes:
            written = shape.replace("{}", run * k, 1).replace("{{", "{")
            config = grammar.advance(grammar.initial_state, written.encode())
            if config is None:
                continue
            _check(grammar, written.encode(), alphabet)
            shortened += grammar._canonical.canonical(config[0])[0] != config[0]
    if name == "two-per-rule":
        assert not shortened  # (runs whose reductions pop two of their states are kept whole)
    else:
        assert shortened  # the runs reached the threshold and were shortened


def test_the_parity_of_a_run_is_kept() -> None:
    grammar = Grammar(PARITY)
    for k in range(1, 40):
        config = grammar.advance(grammar.initial_state, b"x" * k + b"a")
        assert config is not None
        after = grammar.emit(*config)
        assert after is not None
        names = {n for n in grammar.acceptable(after) if n not in grammar.ignore}
        assert names == {"Y" if k % 2 == 0 else "Z"}, k  # x^k a: a1 for even k (then "y"), a2 for odd


def test_masks_after_long_runs_equal_token_by_token_check() -> None:
    """Masks where tokens made of one sign walk a run deeper at each byte, on a real vocabulary."""
    from conftest import load_vocab

    vocab = load_vocab("spm32k")
    for text, prefixes in [
        (
            grammars.load("arithmetic"),
            ["-" * 40, "-" * 12 + "(" * 20 + "-" * 9, "(" * 30 + "-" * 7 + "1", "1+" + "-" * 25],
        ),
        (grammars.load("program"), ["x = " + "-" * 30, "x = " + "(" * 25 + "-" * 8]),
    ]:
        grammar = Grammar(text)
        guide = CFGGuide(grammar, vocab)
        for prefix in prefixes:
            assert_mask_matches_reference(grammar, guide, prefix)

"""The general CFG mode: any context-free grammar, exactly, with no dead ends.

Judge: lark's own Earley parser with ``lexer="dynamic_complete"`` (every
lexing, every parse), never our engine. For random grammars (ambiguous ones,
epsilon rules, hidden recursion, overlapping terminals), over a tiny
alphabet:

* ``accepts`` equals lark on every string up to ``LMAX`` characters;
* a mask allows a token iff some sentence starts with the text so far plus
  the token: allowed tokens are completed by the engine (breadth first,
  exhaustive, so an allowed dead end fails the test) and the witness is
  checked by lark; forbidden tokens start no sentence lark accepts up to
  ``LMAX`` characters; end of generation is allowed iff lark parses the text.
"""

from __future__ import annotations

import itertools
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, reject, settings
from hypothesis import strategies as st
from lark import Lark
from lark.exceptions import LarkError
from sampling import generate

from outlines_gguf import (
    CFGLogitsProcessor,
    ConstraintTooComplexError,
    EmptyLanguageError,
    Grammar,
    GrammarError,
    Vocabulary,
    compile_grammar,
    grammars,
)
from outlines_gguf.compiler import grammar_guide
from outlines_gguf.grammar.general import GeneralGrammar
from outlines_gguf.guides.grammar_general import GeneralCFGGuide

LMAX = 6
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]  # shrinking a grammar walk takes minutes
ALPHABET = "ab"


@cache
def earley(text: str, start: str | tuple[str, ...] = "start") -> Lark:
    return Lark(
        text,
        parser="earley",
        lexer="dynamic_complete",
        start=list(start) if isinstance(start, tuple) else start,
    )


def lark_parses(text: str, data: bytes | str, start: str | tuple[str, ...] = "start") -> bool:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            return False
    parser = earley(text, start)
    starts = start if isinstance(start, tuple) else (start,)
    for s in starts:
        try:
            parser.parse(data, start=s)
            return True
        except LarkError:
            continue
    return False


@cache
def language(text: str, alphabet: str, lmax: int) -> frozenset[str]:
    return frozenset(
        s
        for n in range(lmax + 1)
        for s in map("".join, itertools.product(alphabet, repeat=n))
        if lark_parses(text, s)
    )


def tiny_vocabulary(alphabet: str) -> Vocabulary:
    pieces = sorted({"".join(p).encode() for n in (1, 2, 3) for p in itertools.product(alphabet, repeat=n)})
    return Vocabulary([b"", b"", *pieces, b"z"], eog_ids=[0], special_ids=[1], name="general-tiny")


TERMINALS = ['"a"', '"b"', '"ab"', '"ba"', '"aa"', "A_PLUS", "AB_CLASS", "A_THEN_BS"]
DEFINITIONS = "A_PLUS: /a+/\nAB_CLASS: /[ab]/\nA_THEN_BS: /ab*/\n"


@st.composite
def random_grammars(draw) -> str:
    """Small random CFGs in lark syntax: any shape, ambiguous or not, epsilon rules included."""
    n_rules = draw(st.integers(1, 4))
    names = ["start", *[f"r{i}" for i in range(1, n_rules)]]
    symbol = st.sampled_from(TERMINALS + names)
    lines = []
    for name in names:
        alternatives = draw(st.lists(st.lists(symbol, max_size=3), min_size=1, max_size=3))
        lines.append(f"{name}: " + " | ".join(" ".join(alt) for alt in alternatives))
    return "\n".join(lines) + "\n" + DEFINITIONS


def lark_loads(text: str) -> bool:
    try:
        earley(text)
        return True
    except LarkError:
        return False


def check_against_lark(text: str, data: st.DataObject, steps: int = 6) -> None:
    grammar = GeneralGrammar(text)
    sentences = language(text, ALPHABET, LMAX)
    for n in range(LMAX + 1):
        for s in map("".join, itertools.product(ALPHABET, repeat=n)):
            assert grammar.accepts(s.encode()) == (s in sentences), (text, s)
    viable = {s[:i] for s in sentences for i in range(len(s) + 1)}
    vocab = tiny_vocabulary(ALPHABET)
    guide = GeneralCFGGuide(grammar, vocab)
    state, prefix = guide.initial_state, b""
    for _ in range(steps):
        mask = guide.mask(state)
        allowed = set(mask.allowed_ids(vocab.size).tolist())
        assert (0 in allowed) == lark_parses(text, prefix), (text, prefix)
        for tid in range(2, vocab.size):
            token = vocab.tokens[tid]
            if tid in allowed:
                after = grammar.advance(state, token)
                assert after is not None
                completion = grammar.shortest_completion(after)
                assert completion is not None, (text, prefix, token)  # no dead end
                witness = prefix + token + completion
                assert lark_parses(text, witness), (text, witness)
            elif len(prefix + token) <= LMAX:
                assert (prefix + token).decode() not in viable, (text, prefix, token)
        choices = sorted(allowed)
        if not choices:
            return
        tid = data.draw(st.sampled_from(choices))
        if tid == 0:
            return
        state = guide.next_state(state, tid)
        prefix += vocab.tokens[tid]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), phases=NO_SHRINK)
@given(random_grammars(), st.data())
def test_random_grammars_match_earley(text: str, data: st.DataObject) -> None:
    assume(lark_loads(text))
    try:
        GeneralGrammar(text)
    except EmptyLanguageError:
        assert not language(text, ALPHABET, LMAX), text
        return
    try:
        check_against_lark(text, data)
    except ConstraintTooComplexError:  # past the documented bounds: refused loudly, never wrong
        reject()


AMBIGUOUS = {
    # reduce/reduce: lark's LALR refuses it
    "reduce_reduce": 'start: x | y\nx: "b"\ny: "b"\n',
    # shift/reduce: dangling else (LALR resolves it as shift and loses sentences)
    "dangling_else": 'start: "i" start ["e" start] | "x"\n',
    # ambiguous and left/right recursive at once
    "binary": 'start: start start | start "+" start | "a"\n',
    # epsilon rules, hidden left and right recursion, a unit cycle
    "epsilon": 'start: e start e | "a" | loop\ne: | "b"\nloop: start\n',
    # terminals that overlap and prefix each other (scannerless style)
    "overlap": 'start: W+\nW: /a+/ | /ab/ | "b"\n',
    "palindromes": 'start: "a" start "a" | "b" start "b" | "a" | "b" |\n',
}


@pytest.mark.parametrize("name", sorted(AMBIGUOUS))
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), phases=NO_SHRINK)
@given(data=st.data())
def test_conflicted_grammars_match_earley(name: str, data: st.DataObject) -> None:
    text = AMBIGUOUS[name]
    if name != "overlap":  # LALR takes that one (its contextual lexer reads a different language)
        assert isinstance(compile_grammar(text), GeneralGrammar)  # auto picks the general mode
    check_against_lark(text.replace('"i"', '"a"').replace('"e"', '"b"').replace('"x"', '"ab"'), data)


def test_dangling_else_keeps_what_lalr_loses() -> None:
    text = 'start: "if" start ["else" start] | "x"\n%ignore " "\n'
    lalr = compile_grammar(text, lexer="contextual")
    general = compile_grammar(text)
    assert isinstance(lalr, Grammar) and lalr.conflicts
    assert isinstance(general, GeneralGrammar)
    for s in ["if x else x", "if if x else x", "if if x else x else x", "x", " if x "]:
        assert general.accepts(s.encode()) == lark_parses(text, s), s
    assert not general.accepts(b"if x else")


FRUITFLIES = r"""
sentence: noun verb noun        -> simple
        | noun verb "like" noun -> comparative
noun: adj? NOUN
verb: VERB
adj: ADJ
NOUN: "flies" | "bananas" | "fruit"
VERB: "like" | "flies"
ADJ: "fruit"
%import common.WS
%ignore WS
"""


def test_lark_fruitflies_example_in_the_general_mode() -> None:
    grammar = compile_grammar(FRUITFLIES, start="sentence", lexer="dynamic")
    for s in ["fruit flies like bananas", "flies like fruit", "fruit flies flies like fruit", "fruit like"]:
        assert grammar.accepts(s.encode()) == lark_parses(FRUITFLIES, s, "sentence"), s


# -- start rules, templates, %override, %extend ---------------------------------------------------

RULES = 'expr: NUMBER | expr "+" NUMBER\nlist: "[" [expr ("," expr)*] "]"\nNUMBER: /[0-9]+/\n'


@pytest.mark.parametrize("lexer", ["auto", "contextual", "dynamic"])
def test_start_rule_other_than_start(lexer: str) -> None:
    grammar = compile_grammar(RULES, start="list", lexer=lexer)
    assert grammar.accepts(b"[1+2,3]") and grammar.accepts(b"[]")
    assert not grammar.accepts(b"1+2")
    both = compile_grammar(RULES, start=["expr", "list"], lexer=lexer)
    for s in ["1+2", "[1,2]", "[]", "1,2", "[1"]:
        assert both.accepts(s.encode()) == lark_parses(RULES, s, ("expr", "list")), s


def test_start_lists_reach_processor_and_guide() -> None:
    vocab = tiny_vocabulary("0123+[],")
    for lexer in ("auto", "dynamic"):
        processor = CFGLogitsProcessor(RULES, vocab, start=["expr", "list"], lexer=lexer)
        state = processor.guide.initial_state
        for piece in (b"[", b"1", b"+2", b"]"):
            state = processor.guide.next_state(state, vocab.tokens.index(piece))
        assert processor.guide.is_final(state)
    with pytest.raises(GrammarError, match="start"):
        compile_grammar(RULES, start=[])
    with pytest.raises(GrammarError, match="lexer"):
        compile_grammar(RULES, lexer="basic")


LOADER_CASES = {
    "template": (
        'start: _sep{NUMBER, ","}\n_sep{x, sep}: x (sep x)*\nNUMBER: /[0-9]+/\n',
        ["1", "1,2,3", "", "1,", ",1"],
    ),
    "override": (
        '%import common (NUMBER, WS)\n%override NUMBER: /[0-7]+/\nstart: NUMBER ("," NUMBER)*\n',
        ["1,7", "8", "1,2", "1.5"],
    ),
    "extend": ('start: word+\nword: "a" | "b"\n%extend word: "c"\n', ["abc", "c", "d", ""]),
    "priorities": ('start: A | B\nA.2: /a+/\nB: "aa"\n', ["a", "aa", "aaa", "b"]),
}


@pytest.mark.parametrize("name", sorted(LOADER_CASES))
@pytest.mark.parametrize("lexer", ["auto", "dynamic"])
def test_loader_constructs_follow_lark(name: str, lexer: str) -> None:
    text, cases = LOADER_CASES[name]
    grammar = compile_grammar(text, lexer=lexer)
    lalr = Lark(text, parser="lalr") if isinstance(grammar, Grammar) else None
    for s in cases:
        if lalr is not None:
            try:
                lalr.parse(s)
                expected = True
            except LarkError:
                expected = False
        else:
            expected = lark_parses(text, s)
        assert grammar.accepts(s.encode()) == expected, (name, s)


def test_declared_terminals_are_a_clear_error_with_the_line() -> None:
    text = 'start: "a" INDENT\n%declare INDENT\n'
    for lexer in ("auto", "dynamic"):
        with pytest.raises(GrammarError, match=r"%declare \(line 2\)"):
            compile_grammar(text, lexer=lexer)


def test_empty_languages_and_sizes() -> None:
    with pytest.raises(EmptyLanguageError):
        compile_grammar('start: x\nx: "a" x\n', lexer="dynamic")
    only_empty = compile_grammar('start: \n%ignore " "\n', lexer="dynamic")
    assert only_empty.accepts(b"") and only_empty.accepts(b"  ") and not only_empty.accepts(b"a")
    huge = (
        "start: " + " ".join(f"o{i}" for i in range(14)) + "\n" + "".join(f'o{i}: | "a"\n' for i in range(14))
    )
    with pytest.raises(ConstraintTooComplexError):
        compile_grammar(huge, lexer="dynamic")


# -- real vocabularies ----------------------------------------------------------------------------

NON_LALR = {
    "binary": ('?start: start start | start "+" start | NUMBER\nNUMBER: /[0-9]+/\n', "1+23"),
    "dangling_else": ('start: "if" start ["else" start] | "x"\n%ignore " "\n', "if x else if x"),
    "fruitflies": (FRUITFLIES, "fruit flies like"),
}


BODIES = {  # string and comment bodies: walks take the subtrees that read on in one configuration whole
    "strings": (
        'start: STRING ("," STRING)*\n%import common.ESCAPED_STRING -> STRING\n%ignore " "\n',
        '"ab", "c d\\" e f", "\u00e9t\u00e9',
    ),
    "comments": (
        'start: (WORD | COMMENT)+\nWORD: /[a-z]+/\nCOMMENT: /#[^\\n]*\\n/\n%ignore " "\n',
        "ab # c d\ne #f",
    ),
}


@pytest.mark.parametrize("name", sorted(NON_LALR) + sorted(BODIES))
def test_masks_equal_token_by_token_check_on_a_real_vocabulary(name: str) -> None:
    from conftest import load_vocab

    vocab = load_vocab("spm32k")
    text, sample = {**NON_LALR, **BODIES}[name]
    start = "sentence" if name == "fruitflies" else "start"
    guide = grammar_guide(text, vocab, start, lexer="dynamic")
    grammar = guide.grammar
    for cut in range(0, len(sample) + 1, 3):
        config = grammar.advance(grammar.initial_state, sample[:cut].encode())
        assert config is not None
        allowed = np.zeros(vocab.size, dtype=bool)
        allowed[guide.mask(config).allowed_ids(vocab.size)] = True
        for tid, data in enumerate(vocab.tokens):
            if tid in vocab.eog_ids:
                expected = grammar.is_final(config)
            elif tid in vocab.special_ids or not data:
                expected = False
            else:
                expected = grammar.advance(config, data) is not None
            assert allowed[tid] == expected, (sample[:cut], tid, data)


@pytest.mark.parametrize("name", sorted(NON_LALR))
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31 - 1))
def test_random_logits_give_sentences_earley_parses(name: str, seed: int) -> None:
    from conftest import load_vocab

    vocab = load_vocab("qwen2-152k")
    text, _ = NON_LALR[name]
    start = "sentence" if name == "fruitflies" else "start"
    processor = CFGLogitsProcessor(text, vocab, start=start, lexer="dynamic")
    generated, ended = generate(processor, np.random.default_rng(seed), prompt=[5, 6], max_tokens=24)
    processor.raise_if_failed()
    guide = processor.guide
    state = guide.initial_state
    for t in generated:
        state = guide.next_state(state, t)
    data = vocab.decode(generated)
    if not ended:
        data += guide.grammar.shortest_completion(state)
    assert lark_parses(text, data, start), data


def test_shipped_grammars_keep_the_lalr_mode() -> None:
    for name in grammars.names():
        assert isinstance(compile_grammar(grammars.load(name)), Grammar), name


# -- lark's own grammars --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "start", "needle"),
    [
        # Python's STRING: a lazy quantifier before a lookahead at the terminal's end
        ("python.lark", "eval_input", "STRING"),
        # indentation needs lark's Indenter postlexer: _INDENT/_DEDENT are %declare'd
        ("python.lark", "file_input", r"%declare \(line \d+\)"),
    ],
)
def test_grammars_shipped_with_lark_fail_clearly(name: str, start: str, needle: str) -> None:
    import lark

    text = (Path(lark.__file__).parent / "grammars" / name).read_text()
    for lexer in ("auto", "dynamic"):
        with pytest.raises(GrammarError, match=needle):
            compile_grammar(text, start=start, lexer=lexer)


def test_lark_lark_compiles_in_the_lalr_mode_only() -> None:
    """lark.lark's OP (/[+*]|[?](?![a-z])/) looks into the next lexeme: the LALR lexer enforces it
    with a Follow table; the general lexer has none and says so rather than drop the lookahead."""
    import lark

    text = (Path(lark.__file__).parent / "grammars" / "lark.lark").read_text()
    assert isinstance(compile_grammar(text, lexer="auto"), Grammar)
    with pytest.raises(GrammarError, match=r"OP .* only the LALR mode"):
        compile_grammar(text, lexer="dynamic")


def test_general_guides_pickle_and_share_across_threads() -> None:
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    text = AMBIGUOUS["binary"]
    vocab = tiny_vocabulary("a+")
    guide = grammar_guide(text, vocab, lexer="dynamic")
    copy = pickle.loads(pickle.dumps(guide))
    state = copy.next_state(copy.initial_state, vocab.tokens.index(b"a+a"))
    assert copy.is_final(state) and 0 in copy.mask(state).allowed_ids(vocab.size)

    def walk(seed: int) -> bytes:
        rng = np.random.default_rng(seed)
        state, out = guide.initial_state, b""
        for _ in range(12):
            allowed = guide.mask(state).allowed_ids(vocab.size)
            tid = int(rng.choice(allowed))
            if tid == 0:
                break
            state = guide.next_state(state, tid)
            out += vocab.tokens[tid]
        return out + guide.grammar.shortest_completion(state)

    with ThreadPoolExecutor(4) as pool:
        for data in pool.map(walk, range(8)):
            assert lark_parses(text, data), data


def test_ambiguous_expressions_stay_small_on_long_texts() -> None:
    """Stacks sharing a top state are one node of a graph-structured stack: the classic ambiguous
    expression grammar (Catalan-many parses) keeps a handful of items, however long the text."""
    text = 'start: e\ne: e "+" e | e "*" e | "(" e ")" | N\nN: /[0-9]/\n'
    grammar = compile_grammar(text)
    assert isinstance(grammar, GeneralGrammar)
    sentence = "+".join(["1+2*3+(4*5+6)*7+8+9*1+2*3+4+5*6+7*8+9+1+2+3*4+5+6*7+8*9+1*2+3"] * 3)
    config = grammar.initial_state
    for cut, byte in enumerate(sentence.encode(), 1):
        config = grammar.step(config, byte)
        assert config is not None and len(config) <= 4
        if cut % 9 == 0 and cut <= 45:  # lark's Earley builds every parse: slow on long ones
            assert grammar.is_final(config) == lark_parses(text, sentence[:cut]), sentence[:cut]
    assert grammar.is_final(config)
    assert not grammar.accepts((sentence + "+").encode())

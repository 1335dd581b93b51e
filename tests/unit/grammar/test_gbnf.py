"""GBNF: llama.cpp's grammars parsed, converted to Lark and enforced.

Judges: llama.cpp's own expectations (tests/corpus/gbnf/llama_cases.json), an Earley
recognizer over the GBNF AST (tests/gbnf_oracle.py, independent of the conversion), and
lark's Earley parser with its scannerless ``dynamic_complete`` lexer run on the converted text.
"""

from __future__ import annotations

import json
import pickle
import random
import re
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from conftest import load_vocab
from gbnf_oracle import Recognizer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lark import Lark
from sampling import generate

from outlines_gguf import CFGLogitsProcessor
from outlines_gguf.compiler import compile_gbnf, compile_grammar, gbnf_guide
from outlines_gguf.errors import GrammarError
from outlines_gguf.grammar.gbnf import gbnf_to_lark
from outlines_gguf.grammar.gbnf_parse import is_gbnf, parse_gbnf
from outlines_gguf.grammar.general import GeneralGrammar
from outlines_gguf.guides.grammar_general import GeneralCFGGuide

CORPUS = Path(__file__).parents[2] / "corpus" / "gbnf"
LLAMA = json.loads((CORPUS / "llama_cases.json").read_text(encoding="utf-8"))
CASES = {c["name"]: c for c in LLAMA["cases"]}
FILES = {p.name: p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*.gbnf"))}

NEEDS_GENERAL_ENGINE = {"medium complexity grammar", "arithmetic.gbnf", "c.gbnf"}
"""Grammars whose Lark form the LALR engine cannot lex exactly (see the report of compile_gbnf)."""


def grammar_of(name: str) -> str:
    return CASES[name]["grammar"] if name in CASES else FILES[name]


@cache
def recognizer(name: str) -> Recognizer:
    return Recognizer(grammar_of(name))


def earley_judge(lark_text: str) -> Lark:
    """lark's Earley parser with its scannerless lexer, made to try every length a terminal matches.

    lark's ``dynamic_complete`` tries the first match of a terminal's regex and its prefixes, and
    Python's regexes take the first alternative that matches (``a|aa`` matches one ``a``); the
    matcher here returns the longest full match instead, so every match length is tried."""
    parser = Lark(lark_text, parser="earley", lexer="dynamic_complete", start="root")
    earley = parser.parser.parser
    regexps = {t.name: re.compile(t.pattern.to_regexp()) for t in parser.terminals}

    def longest(term, text: str, index: int = 0):
        pattern = regexps[term.name]
        for end in range(len(text), index, -1):
            found = pattern.fullmatch(text, index, end)
            if found:
                return found
        return None

    earley.term_matcher = longest
    return parser


@cache
def judge(name: str) -> Lark:
    return earley_judge(gbnf_to_lark(grammar_of(name)))


def judge_accepts(parser: Lark, text: str) -> bool:
    try:
        parser.parse(text)
    except Exception:  # lark's UnexpectedInput family
        return False
    return True


JSON_DOCS = [
    {"a": [1, "fr", [True, None, {}], {"b": -0.25e3}], "c": "x\\y\"z\u00e9"},
    {"name": "Ada", "langs": ["en", "fr"], "born": 1815, "ok": False, "n": None, "e": [], "o": {"k": [[]]}},
]
EXTRA = {
    "json.gbnf": [json.dumps(d, indent=indent) for d in JSON_DOCS for indent in (None, 2)],
    "json_arr.gbnf": ["[\n" + json.dumps(d) + ",\n" + json.dumps(d, indent=1) + "]" for d in JSON_DOCS],
    "arithmetic.gbnf": ["(a+1)*b2 = x\n", "1=2\n3 = (4)\n"],
    "c.gbnf": ["int main(){return 0;}", "int f(int x){int y = x;while(y<3){y = y+1;}}"],
}


@cache
def strings_for(name: str) -> tuple[str, ...]:
    """llama.cpp's strings, sentences written by hand, random sentences and their one-character
    mutations."""
    rng = random.Random(name)
    case = CASES.get(name, {"passing": [], "failing": []})
    samples = [recognizer(name).sample(rng, depth=8) for _ in range(30)]
    base = case["passing"] + case["failing"] + EXTRA.get(name, []) + samples
    alphabet = sorted(set("".join(base))) or ["a"]
    out = list(base)
    for s in base:
        for _ in range(2):
            chars = list(s)
            op = rng.randrange(3)
            if op == 0 and chars:
                del chars[rng.randrange(len(chars))]
            elif op == 1:
                chars.insert(rng.randrange(len(chars) + 1), rng.choice(alphabet))
            elif chars:
                chars[rng.randrange(len(chars))] = rng.choice(alphabet)
            out.append("".join(chars))
    return tuple(dict.fromkeys(out))


# -- llama.cpp's own expectations ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_recognizer_agrees_with_llama_cpp(name: str) -> None:
    case = CASES[name]
    r = recognizer(name)
    assert [s for s in case["passing"] if not r.accepts(s)] == []
    assert [s for s in case["failing"] if r.accepts(s)] == []


@pytest.mark.parametrize("case", LLAMA["build_failures"], ids=lambda c: c["name"])
def test_grammars_llama_cpp_refuses(case: dict) -> None:
    with pytest.raises(GrammarError):
        parse_gbnf(case["grammar"])


def test_left_recursion_names_the_rule() -> None:
    with pytest.raises(GrammarError, match="'asdf' is left-recursive"):
        parse_gbnf('root ::= asdf\nasdf ::= "a" | asdf "a"')
    parse_gbnf("root ::= ( [x]* )*")  # llama.cpp accepts this one (its check sees no direct empty rule)


# -- the conversion -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*CASES, *FILES])
def test_conversion_accepts_what_the_recognizer_accepts(name: str) -> None:
    r, parser = recognizer(name), judge(name)
    strings = strings_for(name)
    wrong = [s for s in strings if judge_accepts(parser, s) != r.accepts(s)]
    assert wrong == []
    assert all(r.accepts(s) for s in EXTRA.get(name, []))
    assert any(r.accepts(s) for s in strings) and not all(r.accepts(s) for s in strings)


@pytest.mark.parametrize("name", [*CASES, *FILES])
def test_compiled_grammar_accepts_what_the_recognizer_does(name: str) -> None:
    """The exact-lexer LALR engine where it can lex the grammar exactly, the general mode (every
    lexing: GBNF's own meaning) otherwise; either way the recognizer's language."""
    text = grammar_of(name)
    grammar = compile_gbnf(text)
    assert isinstance(grammar, GeneralGrammar) == (name in NEEDS_GENERAL_ENGINE)
    r = recognizer(name)
    wrong = [s for s in strings_for(name) if grammar.accepts(s.encode()) != r.accepts(s)]
    assert wrong == []


# Random grammars over a few awkward characters: the regexes, escapes, nullable parts and
# repetitions of the conversion against the recognizer.
CHARS = ["a", "b", "/", "\\", "]", "^", "-", '"', "\n", "é", "\x00", "."]


ESCAPES = {"\\": "\\\\", '"': '\\"', "]": "\\]", "-": "\\-", "\n": "\\n", "\x00": "\\x00", "^": "\\^"}


def _char(c: str) -> str:
    return ESCAPES.get(c, c)


@st.composite
def gbnf_grammars(draw: st.DrawFn) -> str:
    n_rules = draw(st.integers(1, 3))
    names = ["root", "x-1", "Y2"][:n_rules]

    def item(depth: int) -> str:
        kinds = ["lit", "class", "ref", "group", "any"] if depth < 2 else ["lit", "class"]
        kind = draw(st.sampled_from(kinds))
        if kind == "lit":
            body = "".join(_char(c) for c in draw(st.lists(st.sampled_from(CHARS), max_size=2)))
            text = f'"{body}"'
        elif kind == "class":
            chars = draw(st.lists(st.sampled_from(CHARS), min_size=1, max_size=3))
            text = "[" + ("^" if draw(st.booleans()) else "") + "".join(_char(c) for c in chars) + "]"
        elif kind == "ref":
            text = draw(st.sampled_from(names))
        elif kind == "any":
            text = "."
        else:
            text = "(" + alternatives(depth + 1) + ")"
        return text + draw(st.sampled_from(["", "", "*", "+", "?", "{2}", "{0,2}", "{1,}"]))

    def alternatives(depth: int) -> str:
        options = draw(st.lists(st.lists(st.just(0), max_size=3), min_size=1, max_size=3))
        return " | ".join(" ".join(item(depth) for _ in o) for o in options)

    return "\n".join(f"{name} ::= {alternatives(0)}" for name in names) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=gbnf_grammars(), seed=st.integers(0, 1000))
def test_random_grammars_convert_exactly(text: str, seed: int) -> None:
    try:
        r = Recognizer(text)
    except GrammarError:  # left recursion or a repetition limit, as llama.cpp
        assume(False)
    parser = earley_judge(gbnf_to_lark(text))
    rng = random.Random(seed)
    try:
        samples = [r.sample(rng, depth=4, alphabet="".join(CHARS)) for _ in range(6)]
    except (RecursionError, ValueError):
        assume(False)
    strings = samples + ["".join(rng.choice(CHARS) for _ in range(rng.randrange(5))) for _ in range(10)]
    for s in strings:
        assert judge_accepts(parser, s) == r.accepts(s), (text, s)
    try:  # when the check says the LALR engine lexes it exactly, it does
        grammar = compile_gbnf(text)
    except GrammarError as exc:
        # (or a rule generation could enter and never finish: refused by name, where llama.cpp
        # would let generation run into it; found by a random grammar, x-1 ::= . "" x-1)
        assert "general CFG engine" in str(exc) or "can never finish" in str(exc), exc
        return
    for s in strings:
        assert grammar.accepts(s.encode()) == r.accepts(s), (text, s)


def test_a_grammar_a_lexer_would_empty_goes_to_the_general_mode() -> None:
    """``.+ root`` as a terminal swallows the final "a" by longest match, so with a lexer no
    sentence could be lexed; GBNF has no lexer, and the general mode accepts what it means."""
    text = "root ::= [a] | .+ root\n"
    grammar = compile_gbnf(text)
    assert isinstance(grammar, GeneralGrammar)
    r = Recognizer(text)
    for s in ("a", "xa", "aaa", "ab", "", "b"):
        assert grammar.accepts(s.encode()) == r.accepts(s), s


# -- syntax and errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('root ::= "abc', r"line 1, column 10: unterminated string literal"),
        ('root ::= "a\\q"', r"line 1, column 12: unknown escape '\\q'"),
        ('root ::= "\\x4"', r"'\\x' needs exactly 2 hex digits"),
        ("root ::= [a-", r"unterminated character class"),
        ("root ::= []", r"empty character class"),
        ("root ::= [z-a]", r"reversed"),
        ("root ::= <[10]> x", r"token references"),
        ("root ::= !<[11]>", r"token references"),
        ("root := x", r"expecting '::='"),
        ('root ::= "a"\n  | "b"', r"line 2, column 3: expecting a rule name"),
        ('root ::= "a" )', r"expecting a newline or the end after rule 'root'"),
        ('root ::= ("a"', r"expecting '\)'"),
        ('root ::= * "a"', r"needs an item before it"),
        ('root ::= "a"{2,1}', r"maximum below its minimum"),
        ('root ::= "a"{3000}', r"repetition minimum above 2000"),
        ('root ::= "a"{x}', r"expecting a number"),
        ("root ::= (((((([^x]*){0,99}){0,99}){0,99}){0,99}){0,99}){0,99}", r"more than 2000 rules"),
        ("root ::= x", r"undefined rule 'x' \(line 1, column 10\)"),
        ('start ::= "a"', r"no 'root' rule"),
        ("# only a comment\n", r"no rules"),
    ],
)
def test_syntax_errors_name_the_place(text: str, message: str) -> None:
    with pytest.raises(GrammarError, match=message):
        parse_gbnf(text)


def test_syntax_like_llama_cpp() -> None:
    text = (
        "# comment\r\n"
        "root ::= item-1 ( # a comment inside a group\n"
        '   "," item-1 )* \n'
        "item-1 ::=\n"
        '  [\\x41-\\u005A] [^\\]\\-]? "\\U0001F600"? . "\\t\\"" |\n'
        '  "x"\n'
        'item-1 ::= "y" [a-]  # a later definition replaces the earlier one; "-" before "]" is literal\n'
    )
    r = Recognizer(text)
    assert r.accepts("y-,ya") and r.accepts("ya")
    assert not r.accepts("yb") and not r.accepts("x") and not r.accepts("y")
    parser = earley_judge(gbnf_to_lark(text))
    assert judge_accepts(parser, "y-,ya") and not judge_accepts(parser, "x")
    r2 = Recognizer('root ::= [\\x41-\\u005A] [^\\]\\-]? "\\U0001F600"? . "\\t\\""')
    assert r2.accepts("AZ😀\n\t\"") and r2.accepts("Q\n\t\"") and not r2.accepts("A-\n\t\"")


def test_is_gbnf() -> None:
    assert is_gbnf('root ::= "a"') and is_gbnf('# c\n  my-rule ::= "a"\nroot ::= my-rule')
    assert not is_gbnf('start: "a::=b"') and not is_gbnf("start: A\nA: /x/")


# -- generation -----------------------------------------------------------------------------------

GENERATE = ["json.gbnf", "chess.gbnf", "english.gbnf", "japanese.gbnf", "list.gbnf", "json_arr.gbnf",
            "arithmetic.gbnf", "c.gbnf"]


@pytest.mark.parametrize("name", GENERATE)
@pytest.mark.parametrize("vocab_name", ["spm32k", "qwen2-152k"])
def test_random_logits_give_sentences_of_the_grammar(name: str, vocab_name: str) -> None:
    vocab = load_vocab(vocab_name)
    processor = CFGLogitsProcessor.from_gbnf(FILES[name], vocab)
    guide = processor.guide
    rng = np.random.default_rng(7)
    for _ in range(2):
        generated, ended = generate(processor, rng, prompt=[5, 6], max_tokens=30, eog_bonus=4.0)
        processor.raise_if_failed()
        state = guide.initial_state
        for t in generated:
            state = guide.next_state(state, t)
        tail = b""
        if not ended:
            tail = guide.grammar.shortest_completion(state)
        text = _bytes(vocab, generated) + tail
        assert recognizer(name).accepts(text.decode("utf-8")), text


def _bytes(vocab, ids: list[int]) -> bytes:
    return b"".join(vocab.tokens[i] for i in ids)


def test_processor_detects_gbnf_and_shares_the_guide() -> None:
    vocab = load_vocab("spm32k")
    text = 'root ::= "yes" | "no"'
    detected = CFGLogitsProcessor(text, vocab)
    explicit = CFGLogitsProcessor.from_gbnf(text, vocab)
    assert detected.guide is explicit.guide is gbnf_guide(text, vocab)
    assert explicit.grammar == text
    again = pickle.loads(pickle.dumps(explicit))  # processors go to worker processes
    scores = np.zeros(vocab.size, dtype=np.float32)
    again(np.array([1], dtype=np.intc), scores)
    allowed = explicit.guide.mask(explicit.guide.initial_state).allowed_ids(vocab.size)
    assert sorted(np.flatnonzero(np.isfinite(scores)).tolist()) == sorted(allowed.tolist())
    assert isinstance(CFGLogitsProcessor.from_gbnf(FILES["arithmetic.gbnf"], vocab).guide, GeneralCFGGuide)


def test_exact_lexer_follows_the_stack_where_lalr_states_merge() -> None:
    """After a JSON value LALR merges the object and array states: lark's contextual lexer would run
    the object's ``,"key":`` terminal inside an array and swallow ``, "fr"``; the exact lexer runs
    only what the parser accepts on the stack."""
    from outlines_gguf.grammar.exact import compile_exact_grammar

    lark_text = gbnf_to_lark(FILES["json.gbnf"])
    text = b'{"a": [1, "fr"]}'
    assert not compile_grammar(lark_text, start="root", lexer="contextual").accepts(text)
    assert compile_exact_grammar(lark_text, start="root").accepts(text)
    assert compile_gbnf(FILES["json.gbnf"]).accepts(text)

"""The CFG engine: exact masks against lark itself, and valid output on real vocabularies.

Oracle. For a prefix ``p`` and a token ``v``:
* if the mask allows ``v``, the engine's shortest completion ``c`` of ``p + v``
  must make ``p + v + c`` a sentence that lark's own parser accepts (a witness
  checked by lark, not by us);
* if the mask forbids ``v``, no sentence of lark's language up to ``LMAX``
  characters (enumerated by brute force over the grammar's alphabet and
  checked with lark) may start with ``p + v``.
End of generation must be allowed exactly when lark parses ``p``.
"""

from __future__ import annotations

import numpy as np
import pytest
from cfg_oracles import check_masks, lark_parser, lark_parses, sentences, small_vocabulary, viable_prefixes
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lark.exceptions import LarkError
from sampling import generate, strided_scores

from outlines_gguf import (
    CFGGuide,
    CFGLogitsProcessor,
    ConstraintViolationError,
    EmptyLanguageError,
    Grammar,
    GrammarError,
    Vocabulary,
    grammars,
)
from outlines_gguf.compiler import grammar_guide
from outlines_gguf.guides.base import FINISHED

REFERENCE = 'start: NUMBER "+" NUMBER "=" NUMBER\nNUMBER: /[0-9]+/\n'

# per grammar: a small alphabet that reaches its interesting states, and sample sentences
SHIPPED = {
    "arithmetic": ("1.+-*/() e", ["1 + 2*(3 - -4) / 5.5", "-(1e3)", "2*3"]),
    "json": ('{}[]":,1-.e tfnrulsa\\', ['{"a": [1, -2.5e3, true, null, "x\\"y"]}', "[]", '"s"']),
    "sql_select": (
        "SELCTFROMWHAND*=,a1 ;'.",
        ["SELECT a, COUNT(*) AS n FROM t WHERE a > 1 AND b IS NOT NULL ORDER BY n DESC LIMIT 10;"],
    ),
    "program": ("xif=1;(){}<+ print", ['x = 1;\nwhile (x < 10) { x = x + 1; print(x); } # c\n']),
}














# -- exactness ----------------------------------------------------------------------------------


def test_reference_example_masks_match_lark() -> None:
    prefixes = viable_prefixes(REFERENCE, ["12+3=45", "0+0=0"])
    assert check_masks(REFERENCE, "0123+=x", prefixes, lmax=6, extra=["+1", "1+", "=1", "12+", "3=4"]) > 0


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_grammar_masks_match_lark(name: str) -> None:
    text = grammars.load(name)
    alphabet, samples = SHIPPED[name]
    lmax = 5 if len(alphabet) <= 12 else 3
    extra = [s[i : i + k] for s in samples for k in (3, 4, 6) for i in range(0, len(s) - k, 3)]
    check_masks(text, alphabet, viable_prefixes(text, samples, limit=25), lmax=lmax, extra=extra)


def _random_grammar(draw, number: bool = False) -> str:
    """Small random grammars over single-character literals and a number terminal.

    Masks are exact up to one lexeme of lookahead; grammars whose literals
    overlap (``"a"``, ``"ab"``, ``"ba"``) can build dead ends that show only
    several lexemes later, so the random grammars keep literals apart (the
    lexing of overlapping terminals is checked on whole texts instead).
    """
    literals = draw(st.lists(st.sampled_from(["a", "b", "(", ")", "+"]), min_size=2, max_size=5, unique=True))
    regexes = ["/[0-9]+/"] if number else draw(st.lists(st.sampled_from(["/[0-9]+/"]), max_size=1))
    symbols = [f'"{lit}"' for lit in literals] + [f"T{i}" for i in range(len(regexes))] + ["x", "y"]
    if number:  # numbers side by side, which one lexeme swallows, more often
        symbols += ["T0", "T0"]
    rules = []
    for name in ("start", "x", "y"):
        alts = []
        for _ in range(draw(st.integers(1, 3))):
            body = draw(st.lists(st.sampled_from(symbols), min_size=1, max_size=3))
            alts.append(" ".join(body))
        if name != "start":
            alts.append(f'"{literals[0]}"')  # keeps every rule productive
        rules.append(f"{name}: " + " | ".join(alts))
    rules += [f"T{i}: {r}" for i, r in enumerate(regexes)]
    if draw(st.booleans()):
        rules += ['%ignore " "']
    return "\n".join(rules) + "\n"


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_grammar_masks_match_lark(data) -> None:
    text = data.draw(st.composite(lambda draw: _random_grammar(draw))())
    try:
        lark_parser(text)
        grammar = Grammar(text)
    except (LarkError, GrammarError, EmptyLanguageError):
        assume(False)
    assume(not grammar.conflicts)
    language = sentences(text, "ab()+0 ", 5)
    samples = sorted(language, key=len)[-6:]
    check_masks(text, "ab()+0 ", viable_prefixes(text, samples, limit=12), lmax=5, extra=["aab", "b(", "0+"])


DEAD_END = 'start: x\nx: "+" x T0 | "a"\nT0: /[0-9]+/\n'
"""After ``++a`` two numbers must follow each other, which longest-match lexing never splits:
no text starting with ``++`` is a sentence, though one lexeme of lookahead sees nothing wrong."""


def test_prefixes_that_lexing_can_never_complete_are_forbidden() -> None:
    grammar = Grammar(DEAD_END)
    assert grammar.liveness is not None
    assert grammar.advance(grammar.initial_state, b"++") is None
    assert grammar.advance(grammar.initial_state, b"+a0") is not None
    prefixes = viable_prefixes(DEAD_END, ["+a0", "+a00", "a"])
    check_masks(DEAD_END, "a+0", prefixes, lmax=6, extra=["++", "+a", "a0"])


def test_grammars_without_lexing_traps_skip_the_liveness_automaton() -> None:
    for name in SHIPPED:
        assert Grammar(grammars.load(name)).liveness is None, name


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_every_prefix_a_mask_allows_can_be_completed(data) -> None:
    """Walk random allowed tokens: every allowed token, at every step, has a completion that
    lark parses (random grammars with a number terminal, whose lexemes swallow each other)."""
    text = data.draw(st.composite(lambda draw: _random_grammar(draw, number=True))())
    try:
        lark_parser(text)
        grammar = Grammar(text)
    except (LarkError, GrammarError, EmptyLanguageError):
        assume(False)
    assume(not grammar.conflicts)
    vocab = small_vocabulary("ab()+0 ", ["00", "+0", "0+"])
    guide = CFGGuide(grammar, vocab)
    state, written = guide.initial_state, b""
    for _ in range(8):
        allowed = [t for t in guide.mask(state).allowed_ids(vocab.size).tolist() if t not in vocab.eog_ids]
        for tid in allowed:
            after = grammar.advance(state, vocab.tokens[tid])
            assert after is not None
            completion = grammar.shortest_completion(after)
            assert completion is not None, (text, written + vocab.tokens[tid])
            witness = written + vocab.tokens[tid] + completion
            assert lark_parses(text, witness), (text, witness)
        if not allowed:
            break
        tid = data.draw(st.sampled_from(allowed))
        state, written = guide.next_state(state, tid), written + vocab.tokens[tid]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_accepts_exactly_what_lark_parses(name: str) -> None:
    """Whole texts: sentences, their mutations and random strings, against lark."""
    text = grammars.load(name)
    grammar = Grammar(text)
    alphabet, samples = SHIPPED[name]
    rng = np.random.default_rng(7)
    candidates = list(samples)
    for s in samples:
        for _ in range(60):
            chars = list(s)
            i = int(rng.integers(len(chars)))
            op = rng.integers(3)
            if op == 0:
                del chars[i]
            elif op == 1:
                chars.insert(i, alphabet[int(rng.integers(len(alphabet)))])
            else:
                chars[i] = alphabet[int(rng.integers(len(alphabet)))]
            candidates.append("".join(chars))
    for _ in range(300):
        n = int(rng.integers(1, 8))
        candidates.append("".join(alphabet[int(k)] for k in rng.integers(len(alphabet), size=n)))
    agree = [grammar.accepts(c.encode()) == lark_parses(text, c) for c in candidates]
    bad = [c for c, ok in zip(candidates, agree, strict=True) if not ok]
    assert not bad, bad[:5]
    assert sum(lark_parses(text, c) for c in candidates) >= len(samples)


@pytest.mark.parametrize(
    ("text", "cases", "stricter"),
    [
        (
            'start: NAME | "if" NAME | ESCAPED_STRING\nNAME: /[a-z]+/\n'
            '%import common.ESCAPED_STRING\n%ignore " "\n',
            ["if x", "iffy", "if", "ifif", '"a\\"b"', '"a" "b"', '"\\\\"', '"a\\"'],
            [],
        ),
        (  # overlapping literals: lark takes the longest, then the first in its order
            'start: x+\nx: "a" | "ab" | "ba" | "aa" | T\nT: /b[ab]*c/\n',
            ["a", "ab", "aab", "aba", "abab", "baa", "bac", "abbc", "aaa", "bbbc", "abc"],
            # lark reads "baa" as "ba" "a": T (first in its order) fails after two bytes
            # and lark backtracks to "ba"; we do not follow lexemes that need backtracking
            ["baa"],
        ),
        ('start: A B\nA: /a+/\nB: /a*b/\n', ["ab", "aab", "aaab", "b", "a"], []),
        ("start: C\nC: /\\/\\*(.|\\n)*?\\*\\//\n", ["/**/", "/* a */", "/* a */ */", "/*/"], []),
    ],
)
def test_lexing_follows_lark(text: str, cases: list[str], stricter: list[str]) -> None:
    """Whole texts agree with lark, except documented backtracking cases, where we only forbid."""
    grammar = Grammar(text)
    for s in cases:
        ours, theirs = grammar.accepts(s.encode()), lark_parses(text, s)
        if s in stricter:
            assert theirs and not ours, s
        else:
            assert ours == theirs, s


# -- real vocabularies ---------------------------------------------------------------------------


def finish_with_completion(guide: CFGGuide, state, rng: np.random.Generator) -> list[int]:
    """Steer to the end: take the longest allowed token that is a prefix of the shortest completion."""
    vocab = guide.vocabulary
    out = []
    for _ in range(200):
        if guide.is_final(state):
            return out
        completion = guide.grammar.shortest_completion(state)
        allowed = guide.mask(state).allowed_ids(vocab.size)
        fitting = [t for t in allowed.tolist() if vocab.tokens[t] and completion.startswith(vocab.tokens[t])]
        token = max(fitting, key=lambda t: len(vocab.tokens[t]))
        state = guide.next_state(state, token)
        out.append(token)
    raise AssertionError("could not finish")


@pytest.mark.parametrize("name", ["reference", "arithmetic", "json", "sql_select", "program"])
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31 - 1))
def test_random_logits_give_sentences_lark_parses(real_vocab: Vocabulary, name: str, seed: int) -> None:
    text = REFERENCE if name == "reference" else grammars.load(name)
    processor = CFGLogitsProcessor(text, real_vocab)
    rng = np.random.default_rng(seed)
    generated, ended = generate(processor, rng, prompt=[5, 6, 7], max_tokens=40)
    processor.raise_if_failed()
    state = processor.guide.initial_state
    for t in generated:
        state = processor.guide.next_state(state, t)
    if not ended:
        generated += finish_with_completion(processor.guide, state, rng)
    data = real_vocab.decode(generated)
    assert lark_parses(text, data), data


@pytest.mark.parametrize("name", ["json", "program"])
def test_masks_equal_token_by_token_check_on_real_vocabularies(real_vocab: Vocabulary, name: str) -> None:
    """The vectorized two-part walk equals advancing every token one by one."""
    text = grammars.load(name)
    guide = grammar_guide(text, real_vocab)
    grammar = guide.grammar
    prefixes = {"json": ['{"a', '{"a": 1', '[1, "x', '{"a": [true, nu', ""],
                "program": ["x = 1", "if (x", "print(", "while (a < 2) { b", ""]}[name]
    rng = np.random.default_rng(0)
    sample = rng.choice(real_vocab.size, size=6000, replace=False)
    for prefix in prefixes:
        config = grammar.advance(grammar.initial_state, prefix.encode())
        allowed = np.zeros(real_vocab.size, dtype=bool)
        allowed[guide.mask(config).allowed_ids(real_vocab.size)] = True
        interesting = [t for t in range(real_vocab.size) if real_vocab.tokens[t][:1] in b' "{}[],:0123456789']
        for tid in np.unique(np.concatenate([sample, np.asarray(interesting[:20000])])).tolist():
            data = real_vocab.tokens[tid]
            if tid in real_vocab.eog_ids:
                expected = grammar.is_final(config)
            elif tid in real_vocab.special_ids or not data:
                expected = False
            else:
                expected = grammar.advance(config, data) is not None
            assert allowed[tid] == expected, (prefix, tid, data)


def mask_against_token_by_token(guide: CFGGuide, config, emittable: list[int]) -> tuple[np.ndarray, list]:
    """The guide's mask at ``config`` (a boolean array) and the first tokens where it differs from
    advancing each token one by one (end of generation: where the text is complete)."""
    vocab, grammar = guide.vocabulary, guide.grammar
    allowed = np.zeros(vocab.size, dtype=bool)
    allowed[guide.mask(config).allowed_ids(vocab.size)] = True
    expected = np.zeros(vocab.size, dtype=bool)
    for tid in emittable:
        expected[tid] = grammar.advance(config, vocab.tokens[tid]) is not None
    expected[vocab.eog_array] = grammar.is_final(config)
    wrong = np.flatnonzero(allowed != expected)
    return allowed, [(int(t), vocab.tokens[t], bool(allowed[t])) for t in wrong[:5]]


@pytest.mark.parametrize("name", ["arithmetic", "json", "sql_select", "program"])
def test_masks_equal_token_by_token_check_along_random_walks(name: str) -> None:
    """Every token of a real vocabulary, at every state of random walks on one guide (so the
    cached lexer tables, walks below lexeme ends and boolean masks are reused across states),
    is allowed exactly when advancing it token by token keeps the configuration alive."""
    from conftest import load_vocab

    vocab = load_vocab("spm32k")
    guide = CFGGuide(Grammar(grammars.load(name)), vocab)
    emittable = [t for t in range(vocab.size) if vocab.tokens[t] and t not in vocab.special_ids]
    for seed in range(2):
        rng = np.random.default_rng(seed)
        state = guide.initial_state
        for _ in range(6):
            guide._masks.clear()
            allowed, wrong = mask_against_token_by_token(guide, state, emittable)
            assert not wrong, wrong
            choices = np.flatnonzero(allowed & ~np.isin(np.arange(vocab.size), vocab.eog_array))
            if not choices.size:
                break
            state = guide.next_state(state, int(rng.choice(choices)))


@pytest.mark.parametrize(
    ("body", "split"),
    [
        (r'[^"\\\x7f]', ((0x7F,), True)),
        (r'[^"\\]', ((), True)),
        (r'(?:[^"\\x]|x[0-9])', ((ord("x"),), False)),
    ],
    ids=["without-DEL", "any", "x-then-digit"],
)
def test_plain_text_split_of_a_string_body_equals_token_by_token_check(body: str, split: tuple) -> None:
    """In a string body, plain-text tokens are taken by the slice and only the others are walked
    (plain tokens holding a byte the body refuses, DEL here, die; those holding one that leads
    elsewhere, an x that wants a digit, are walked): the mask still equals advancing every
    token one by one, inside the string and across its closing quote."""
    text = f'start: STRING ("," STRING)*\nSTRING: /"{body}*"/\n'
    pieces = ["a", "b", "ab", "\x7f", "a\x7fb", "\u00e9", "a\u00e9", "\u00e9\x7f", '"', 'a"', '",', '","']
    pieces += ['"a', "\\", "\n", "\u65e5\u672c", '\u00e9",', ",", 'b","a']
    pieces += ["x", "x1", "ax", "ax1b", "xa", 'x1"', "\u00e9x2", 'a",', "1", "2a"]
    tokens = [b"", b"", *sorted({p.encode() for p in pieces})]
    vocab = Vocabulary(tokens, eog_ids=[0], special_ids=[1], name="plain-split")
    guide = CFGGuide(Grammar(text), vocab)
    grammar = guide.grammar
    for prefix in ['"', '"a', '"ab\u00e9', '"a","', '"a","b', '"ax', '"ax1']:
        config = grammar.advance(grammar.initial_state, prefix.encode())
        assert config is not None, prefix
        allowed = set(guide.mask(config).allowed_ids(vocab.size).tolist())
        expected = {t for t in range(2, vocab.size) if grammar.advance(config, tokens[t]) is not None}
        if grammar.is_final(config):
            expected.add(0)
        assert allowed == expected, (prefix, sorted(allowed ^ expected))
    assert set(guide._plain_splits) == {split}  # the split was taken


def test_a_lexeme_read_in_several_contexts_is_walked_once_and_masked_exactly() -> None:
    """A name closed by ``)``, ``]`` or ``}``: three lexer tables that differ only where the name
    may end share one walk of the vocabulary, and each mask still equals advancing every token
    one by one (``ab)`` after ``(ab``, never ``ab]``)."""
    from conftest import load_vocab

    vocab = load_vocab("spm32k")
    text = 'start: "(" NAME ")" | "[" NAME "]" | "{" NAME "}" | NAME\nNAME: /[a-z]+/\n'
    guide = CFGGuide(Grammar(text), vocab)
    grammar = guide.grammar
    emittable = [t for t in range(vocab.size) if vocab.tokens[t] and t not in vocab.special_ids]
    for prefix in ["(ab", "[ab", "{ab", "ab", "(", "["]:
        config = grammar.advance(grammar.initial_state, prefix.encode())
        _, wrong = mask_against_token_by_token(guide, config, emittable)
        assert not wrong, (prefix, wrong)
    assert len(guide._shapes) < len(guide._tables)  # the name's tables shared a shape


# -- the processor -------------------------------------------------------------------------------


def test_processor_follows_tokens_and_forces_nothing_invalid() -> None:
    vocab = small_vocabulary("0123+=", ["12", "+3", "=4"])
    processor = CFGLogitsProcessor(REFERENCE, vocab)
    ids = [1, 1]
    path = [b"12", b"+3", b"=4"]
    for piece in path:
        records, view = strided_scores(np.zeros(vocab.size, dtype=np.float32))
        processor(np.array(ids, dtype=np.intc), view)
        allowed = np.flatnonzero(np.isfinite(records["logit"]))
        tid = vocab.tokens.index(piece)
        assert tid in allowed
        assert 0 not in allowed
        ids.append(tid)
    records, view = strided_scores(np.zeros(vocab.size, dtype=np.float32))
    processor(np.array(ids, dtype=np.intc), view)
    assert np.isfinite(records["logit"][0])  # "12+3=4" is complete
    assert processor.is_finished
    assert processor.error is None


def test_injected_token_is_a_loud_failure() -> None:
    vocab = small_vocabulary("0123+=", [])
    processor = CFGLogitsProcessor(REFERENCE, vocab)
    records, view = strided_scores(np.zeros(vocab.size, dtype=np.float32))
    processor(np.array([1], dtype=np.intc), view)
    bad = vocab.tokens.index(b"+")
    records, view = strided_scores(np.zeros(vocab.size, dtype=np.float32))
    processor(np.array([1, bad], dtype=np.intc), view)
    assert isinstance(processor.error, ConstraintViolationError)
    assert np.flatnonzero(np.isfinite(records["logit"])).tolist() == [0]


def test_eog_after_end_and_tokens_after_eog_are_refused() -> None:
    vocab = small_vocabulary("0123+=", [])
    guide = CFGGuide(Grammar(REFERENCE), vocab)
    state = guide.initial_state
    for piece in (b"1", b"+", b"2", b"=", b"3"):
        state = guide.next_state(state, vocab.tokens.index(piece))
    assert guide.next_state(state, 0) == FINISHED
    with pytest.raises(ConstraintViolationError):
        guide.next_state(FINISHED, vocab.tokens.index(b"1"))
    with pytest.raises(ConstraintViolationError):
        guide.next_state(guide.initial_state, 0)


def test_guides_and_processors_pickle() -> None:
    import pickle

    vocab = small_vocabulary("0123+=", ["12", "+3"])
    processor = CFGLogitsProcessor(REFERENCE, vocab)
    guide = processor.guide
    state = guide.next_state(guide.initial_state, vocab.tokens.index(b"12"))
    before = guide.mask(state).allowed_ids(vocab.size)
    clone = pickle.loads(pickle.dumps(processor))
    after = clone.guide.mask(state).allowed_ids(vocab.size)
    assert np.array_equal(np.sort(before), np.sort(after))
    assert clone.guide.next_state(state, vocab.tokens.index(b"+3")) == guide.next_state(
        state, vocab.tokens.index(b"+3")
    )


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('start: "a" (\n', "line"),
        ("start: missing\n", "missing"),
        ('start: a | b\na: "x"\nb: "x"\n', "Reduce/Reduce"),
        ("start: T\nT: /a(?<=a|bc)/\n", "T"),  # a variable-width lookbehind
        ("start: T\nT: /a*/\n", "T"),
        (42, "str"),
    ],
)
def test_grammar_errors_are_clear_and_early(text, needle: str) -> None:
    with pytest.raises(GrammarError, match=needle) as info:
        Grammar(text)
    assert isinstance(info.value, ValueError)


def test_shift_reduce_conflicts_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    grammar = Grammar('start: "if" start ["else" start] | "x"\n%ignore " "\n')
    assert grammar.conflicts and "ELSE" in grammar.conflicts[0]
    assert "shift/reduce" in caplog.text
    assert Grammar(grammars.ARITHMETIC).conflicts == []


def test_a_grammar_that_cannot_be_lexed_is_an_empty_language() -> None:
    # NUMBER NUMBER with nothing between: the lexer always reads one number
    with pytest.raises(EmptyLanguageError):
        Grammar("start: NUMBER NUMBER\nNUMBER: /[0-9]+/\n")


def test_shipped_grammars_load() -> None:
    assert set(grammars.names()) == {"arithmetic", "json", "program", "sql_select"}
    for name in grammars.names():
        assert Grammar(grammars.load(name)).example() is not None
    with pytest.raises(ValueError, match="no shipped grammar"):
        grammars.load("cobol")


# -- end to end ----------------------------------------------------------------------------------


@pytest.mark.model
@pytest.mark.parametrize("name", ["reference", "arithmetic", "json"])
def test_create_completion_follows_the_grammar(qwen_llm, name: str) -> None:
    from llama_cpp import LogitsProcessorList

    text = REFERENCE if name == "reference" else grammars.load(name)
    processor = CFGLogitsProcessor(text, qwen_llm)
    for seed, temperature in ((0, 0.0), (1, 0.9), (2, 0.9)):
        out = qwen_llm.create_completion(
            "Write it: ", max_tokens=48, seed=seed, temperature=temperature,
            logits_processor=LogitsProcessorList([processor]),
        )
        processor.raise_if_failed()
        choice = out["choices"][0]
        data = processor.vocabulary.decode(processor.generated_ids)  # the last sampled token is not seen
        if choice["finish_reason"] == "stop":
            assert processor.is_finished
            assert lark_parses(text, data), data
        else:  # cut by max_tokens: still a viable prefix
            assert processor.guide.grammar.advance(processor.guide.initial_state, data) is not None

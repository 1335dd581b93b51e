"""Fast-forward: forced bytes against brute-force oracles, forced tokens against the guides, and
generation with and without it on the random-weight test models."""

from __future__ import annotations

import json
import re

import jsonschema
import lark
import numpy as np
import pytest
import regex as regex_module
from conftest import MODEL_FILES, MODELS, load_llm, require
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from regex_strategies import ALPHABET, strings_up_to, unbounded_regexes

from outlines_gguf import CFGLogitsProcessor, JSONLogitsProcessor, generate, models
from outlines_gguf.cli import build_parser
from outlines_gguf.compiler import compile_regex
from outlines_gguf.errors import IncompleteGenerationError
from outlines_gguf.guides.base import FINISHED, RegexGuide
from outlines_gguf.llama_cpp.fast_forward import FastForward, prefix_index
from outlines_gguf.llama_cpp.tracking import LogitTrackingProcessor

PROBES = [chr(c) for c in range(128)] + ALPHABET[2:]
"""Next characters the regex oracle tries: every ASCII one, and one per other UTF-8 lead byte."""

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "status": {"enum": ["active", "inactive", "suspended"]},
        "admin": {"type": "boolean"},
        "score": {"type": "integer", "minimum": 0, "maximum": 100},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 10},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
        "tags": {"type": "array", "items": {"enum": ["x", "yy"]}, "maxItems": 3},
    },
    "required": ["name", "status", "admin", "score", "address", "tags"],
    "additionalProperties": False,
}
DOCUMENTS = [
    {
        "name": "Ann",
        "status": "inactive",
        "admin": True,
        "score": 7,
        "address": {"city": "Oslo", "zip": "01234"},
        "tags": ["yy", "x"],
    },
    {
        "name": "",
        "status": "suspended",
        "admin": False,
        "score": 100,
        "address": {"city": "", "zip": "99999"},
        "tags": [],
    },
]


def tokenizer(llm):
    return lambda data: llm.tokenize(data, add_bos=False, special=False)


# -- forced bytes against oracles ---------------------------------------------------------------


def regex_oracle(pattern: str, prefix: str, limit: int = 40) -> bytes:
    """Forced text by the ``regex`` module's partial matching: while the text is not a match and
    exactly one next character keeps it a possible prefix of one, take that character."""
    forced = ""
    while len(forced) < limit and not regex_module.fullmatch(pattern, prefix + forced):
        nxt = [c for c in PROBES if regex_module.fullmatch(pattern, prefix + forced + c, partial=True)]
        if len(nxt) != 1:
            break
        forced += nxt[0]
    return forced.encode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=unbounded_regexes(), data=st.data())
def test_regex_forced_bytes_match_the_partial_match_oracle(pattern: str, data) -> None:
    dfa = compile_regex(pattern)
    guide = RegexGuide(dfa, load_vocab_small())
    prefixes = [p for p in strings_up_to(2) if regex_module.fullmatch(pattern, p, partial=True)]
    for prefix in [*data.draw(st.lists(st.sampled_from(prefixes), max_size=4)), ""]:
        state = dfa.run(prefix.encode(), 0)
        assert state >= 0
        expected = regex_oracle(pattern, prefix)
        got = guide.forced_bytes(state, limit=len(expected) + 8)
        if len(expected) < 40:
            assert got == expected, (pattern, prefix)


def test_regex_forced_bytes_examples() -> None:
    vocab = load_vocab_small()
    cases = [
        (r"abc[0-9]", b"abc"),
        (r"(true|false)", b""),
        (r"t(rue|ea)", b"t"),
        (r"ab|abc", b"ab"),
        (r"x*", b""),
    ]
    for pattern, expected in cases:
        assert RegexGuide(compile_regex(pattern), vocab).forced_bytes(0) == expected
    guide = RegexGuide(compile_regex("a{300}"), vocab)
    assert guide.forced_bytes(0, limit=5) == b"aaaaa" and guide.forced_bytes(FINISHED) == b""


def load_vocab_small():
    from conftest import load_vocab

    return load_vocab("spm32k")


def json_prefixes() -> list[bytes]:
    out = []
    for document in DOCUMENTS:
        text = json.dumps(document).encode()
        out += [text[:i] for i in range(len(text) + 1)]
    return out


def test_pushdown_forced_bytes_equal_the_single_dfa_engines(monkeypatch) -> None:
    """Two independent automata of one schema (the pushdown of small DFAs, one whole DFA) force
    the same bytes at every prefix of valid documents (in declared key order: the whole DFA has
    no any-order objects)."""
    from outlines_gguf import clear_caches
    from outlines_gguf.json_schema import objects as json_schema_objects

    monkeypatch.setattr(json_schema_objects, "ANY_ORDER_MAX", 1)
    clear_caches()
    vocab = load_vocab_small()
    pushdown = JSONLogitsProcessor(SCHEMA, vocab).guide
    whole = JSONLogitsProcessor(SCHEMA, vocab, engine="dfa").guide
    forced_somewhere = 0
    for prefix in json_prefixes():
        expected = whole.forced_bytes(whole.dfa.run(prefix, 0))
        assert pushdown.forced_bytes(pushdown.advance(pushdown.initial_state, prefix)) == expected, prefix
        forced_somewhere += bool(expected)
    assert forced_somewhere > 40


def test_grammar_forced_bytes_against_every_byte() -> None:
    """The grammar guide tries one byte per class; the oracle steps every one of the 256 bytes."""
    vocab = load_vocab_small()
    guide = CFGLogitsProcessor(lark_grammar(), vocab).guide
    grammar = guide.grammar

    def oracle(config) -> bytes:
        out = bytearray()
        while not grammar.is_final(config):
            live = [(b, c) for b in range(256) if (c := grammar.step(config, b)) is not None]
            if len(live) != 1:
                break
            out.append(live[0][0])
            config = live[0][1]
        return bytes(out)

    text = b"let total = max(10, 2000) ; let x = true ;"
    forced_somewhere = 0
    for i in range(len(text) + 1):
        config = grammar.advance(grammar.initial_state, text[:i])
        assert config is not None, text[:i]
        expected = oracle(config)
        assert guide.forced_bytes(config) == expected, text[:i]
        forced_somewhere += bool(expected)
    assert forced_somewhere > 10


def lark_grammar() -> str:
    return r"""
start: stmt+
stmt: "let " NAME " = " value " ;" " "?
value: call | NUMBER | "true" | "false"
call: "max(" NUMBER ", " NUMBER ")"
NAME: /[a-z]+/
NUMBER: /[0-9]+/
"""


# -- forced tokens against the guide -------------------------------------------------------------


@pytest.mark.model
@pytest.mark.parametrize("name", list(MODEL_FILES))
def test_forced_tokens_are_allowed_and_held_back_at_the_boundary(name: str) -> None:
    llm = load_llm(name)
    guide = JSONLogitsProcessor(SCHEMA, llm).guide
    vocab = guide.vocabulary
    forward = FastForward(guide, tokenizer(llm))
    index = prefix_index(vocab)
    planned = 0
    for prefix in json_prefixes():
        state = guide.advance(guide.initial_state, prefix)
        forced = guide.forced_bytes(state)
        run = forward.plan(state, prefix[-3:], 100)
        if run is None:
            continue
        planned += 1
        spelled = b""
        for token in run.tokens:
            assert guide.mask(state).allows_any(np.array([token])), (prefix, token)
            state = guide.next_state(state, token)
            spelled += vocab.tokens[token]
        assert state == run.state and forced.startswith(spelled)
        if spelled == forced:  # the last token reached the end: no allowed token may go past it
            before = guide.advance(
                guide.initial_state, prefix + spelled[: -len(vocab.tokens[run.tokens[-1]])]
            )
            longer = index.extensions(vocab.tokens[run.tokens[-1]])
            assert not guide.mask(before).allows_any(longer)
        else:  # the rest of the forced bytes is still to come, sampled or forced next time
            assert guide.forced_bytes(state).startswith(forced[len(spelled) :][:1])
    assert planned > 20


def test_prefix_index_finds_exactly_the_longer_tokens() -> None:
    vocab = load_vocab_small()
    index = prefix_index(vocab)
    for data in (b'"', b" t", b"true", b"\xff", b"zzzzzzzzz"):
        expected = {
            t
            for t in range(vocab.size)
            if vocab.tokens[t].startswith(data)
            and len(vocab.tokens[t]) > len(data)
            and not vocab.is_special[t]
        }
        assert set(index.extensions(data).tolist()) == expected


# -- generation ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> models.LlamaCpp:
    return models.llamacpp(require(MODELS / MODEL_FILES["qwen2-152k"]), n_ctx=1024, n_threads=1)


def replay(guide, ids: list[int]) -> None:
    """Every token (forced or sampled) is allowed where it was taken; the text ends complete."""
    state = guide.initial_state
    for token in ids:
        assert guide.mask(state).allows_any(np.array([token]))
        state = guide.next_state(state, token)
    assert state == FINISHED


@pytest.mark.model
def test_json_with_and_without_fast_forward(model) -> None:
    forced_total = 0
    for fast in (True, False):
        gen = generate.json(model, SCHEMA, fast_forward=fast)
        for seed in (1, 2, 3):
            value = gen("A user: ", seed=seed, max_tokens=300)
            jsonschema.validate(value, SCHEMA)
            result = gen.last_result
            replay(gen.logits_processor.guide, result.token_ids)
            # all but the final EOG; text forced right after the prompt is evaluated with it
            assert sum(result.batch_sizes) + result.n_prompt_forced == len(result.token_ids) - 1
            assert result.forward_passes == len(result.batch_sizes)
            if fast:
                forced_total += result.n_forced
                passes = len(result.token_ids) - 1 - result.n_forced + result.n_one_by_one
                assert result.forward_passes == passes
            else:
                assert result.n_forced == 0 and set(result.batch_sizes) == {1}
            assert gen("A user: ", seed=seed, max_tokens=300) == value  # same seed, same value
            assert "".join(gen.stream("A user: ", seed=seed, max_tokens=300)) == result.text
    assert forced_total > 15


@pytest.mark.model
def test_regex_and_grammar_with_fast_forward(model) -> None:
    gen = generate.regex(model, r"ID-[0-9]{3}-(alpha|beta)-end")
    text = gen("Code: ", seed=4)
    assert re.fullmatch(r"ID-[0-9]{3}-(alpha|beta)-end", text) and gen.last_result.n_forced > 0
    cfg = generate.cfg(model, lark_grammar())
    sentence = cfg("Program: ", seed=5, max_tokens=80, on_incomplete="return")
    if cfg.last_result.complete:
        lark.Lark(lark_grammar(), parser="lalr").parse(sentence)
    assert cfg.last_result.n_forced > 0


@pytest.mark.model
def test_forced_text_only_changes_nothing_in_meaning(model) -> None:
    """With a schema whose every value is forced, the value is the same with and without
    fast-forward (only the sampled whitespace may differ)."""
    schema = {
        "type": "object",
        "properties": {"kind": {"const": "point"}, "ok": {"enum": [True]}, "unit": {"enum": ["millimetre"]}},
        "required": ["kind", "ok", "unit"],
        "additionalProperties": False,
    }
    for seed in (1, 7):
        on = generate.json(model, schema, fast_forward=True)("Shape: ", seed=seed, temperature=0)
        off = generate.json(model, schema, fast_forward=False)("Shape: ", seed=seed, temperature=0)
        assert on == off == {"kind": "point", "ok": True, "unit": "millimetre"}


@pytest.mark.model
def test_opt_out_on_the_model_and_the_generator() -> None:
    path = require(MODELS / MODEL_FILES["qwen2-152k"])
    off = models.llamacpp(path, n_ctx=512, n_threads=1, fast_forward=False)
    gen = generate.regex(off, r"forced text here [0-9]")
    gen("x", seed=1)
    assert gen.last_result.n_forced == 0
    gen = generate.regex(off, r"forced text here [0-9]", fast_forward=True)  # the generator overrides
    gen("x", seed=1)
    assert (
        gen.last_result.n_forced > 0 and gen.last_result.forward_passes < len(gen.last_result.token_ids) - 1
    )
    assert models.llamacpp(off.llm, fast_forward=False).fast_forward is False


@pytest.mark.model
def test_small_batches_one_by_one() -> None:
    """Below ``fast_forward_min_batch`` tokens a batch is evaluated one token at a time: the same
    tokens are forced and sampled, each evaluation counted as a pass; 1 batches everything."""
    path = require(MODELS / MODEL_FILES["qwen2-152k"])
    assert models.llamacpp(path, n_ctx=512, n_threads=1).fast_forward_min_batch == 1
    with pytest.raises(ValueError, match="fast_forward_min_batch"):
        models.llamacpp(path, n_ctx=512, n_threads=1, fast_forward_min_batch=0)
    for min_batch in (1, 1000):
        model = models.llamacpp(path, n_ctx=512, n_threads=1, fast_forward_min_batch=min_batch)
        gen = generate.json(model, SCHEMA)
        jsonschema.validate(gen("A user: ", seed=1, max_tokens=300), SCHEMA)
        r = gen.last_result
        after_sampled = r.n_forced - r.n_prompt_forced
        assert after_sampled > 0 and sum(r.batch_sizes) + r.n_prompt_forced == len(r.token_ids) - 1
        if min_batch == 1:
            assert r.n_one_by_one == 0 and max(r.batch_sizes) > 1
        else:
            assert r.n_one_by_one == after_sampled and set(r.batch_sizes) == {1}


@pytest.mark.model
def test_stop_and_max_tokens_inside_a_forced_run(model) -> None:
    gen = generate.regex(model, r"[0-9]forced text goes on here")
    full = gen("x", seed=2)
    n = len(gen.last_result.token_ids)
    with pytest.raises(IncompleteGenerationError) as info:
        gen("x", seed=2, max_tokens=2)
    assert len(info.value.token_ids) == 2 and full.startswith(info.value.text)
    with pytest.raises(IncompleteGenerationError) as info:
        gen("x", seed=2, stop_at="goes")
    assert info.value.reason == "stop_at" and info.value.text == full[: full.index("goes") + 4]
    assert gen("x", seed=2, stop_at="here") == full and n > 2


@pytest.mark.model
def test_tracking_marks_forced_positions() -> None:
    """Forced positions: constrained probability 1, natural probability the model's own, read
    from the batch (a model with logits_all=True) or token by token (otherwise): the same."""
    path = require(MODELS / MODEL_FILES["qwen2-152k"])
    natural = {}
    for logits_all in (False, True):
        model = models.llamacpp(path, n_ctx=256, n_threads=1, logits_all=logits_all)
        gen = generate.regex(model, r"[0-9]forced text", track=True)
        gen("x", seed=3)
        result = gen.last_result
        tracker: LogitTrackingProcessor = gen.logits_processor
        # sampled: the digit and the final EOG; forced: everything between
        assert result.n_forced == len(result.token_ids) - 2 > 0
        assert tracker.chosen_tokens() == result.token_ids and tracker.sequence() == result.text
        probs = []
        for entry in tracker.get_top_tokens(k=50, positions=list(range(1, len(result.token_ids) - 1))):
            chosen = [t for t in entry["tokens"] if t["is_chosen"]]
            assert chosen and chosen[0]["structured_prob"] == pytest.approx(1.0)
            assert 0.0 < chosen[0]["unstructured_prob"] < 1.0
            probs.append(chosen[0]["unstructured_prob"])
        natural[logits_all] = (result.token_ids, probs)
    assert natural[False][0] == natural[True][0]
    assert natural[False][1] == pytest.approx(natural[True][1], rel=1e-3)


@pytest.mark.model
def test_cli_no_fast_forward(tmp_path) -> None:
    from test_cli import cli

    assert build_parser().parse_args(["regex", "x", "-p", "p", "--no-fast-forward"]).fast_forward is False
    assert build_parser().parse_args(["regex", "x", "-p", "p"]).fast_forward is True
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA))
    for flags in ([], ["--no-fast-forward"]):
        proc = cli("json", str(path), "-p", "A user: ", "--seed", "1", "--max-tokens", "300", *flags)
        assert proc.returncode == 0, proc.stderr
        jsonschema.validate(json.loads(proc.stdout), SCHEMA)

"""The high-level API: models.llamacpp and generate.* on the random-weight Qwen2 test model."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re

import lark
import numpy as np
import pytest
from conftest import MODEL_FILES, MODELS, require
from pydantic import BaseModel, Field

from outlines_gguf import (
    ChatTemplateError,
    GrammarError,
    IncompleteGenerationError,
    LogitTrackingProcessor,
    ProcessorFailedError,
    PromptTooLongError,
    RegexLogitsProcessor,
    SchemaError,
    Vocabulary,
    add_tracking,
    generate,
    models,
)
from outlines_gguf.compiler import compile_regex
from outlines_gguf.format_types import DATE, DATETIME, FLOAT, INTEGER, TIME
from outlines_gguf.llama_cpp.tracking import UNKNOWN

pytestmark = pytest.mark.model


class Pet(BaseModel):
    name: str = Field(pattern=r"^[A-Z][a-z]{1,7}$")
    age: int = Field(ge=0, le=30)


@pytest.fixture(scope="module")
def model() -> models.LlamaCpp:
    # One thread for the prompt too: on a busy two-core machine, llama.cpp's
    # two-thread batch decoding waits ~0.5 s per prompt for the other core.
    path = require(MODELS / MODEL_FILES["qwen2-152k"])
    return models.llamacpp(path, n_ctx=1024, n_threads=1)


# -- generators ---------------------------------------------------------------------------------


def test_regex_same_seed_same_output(model) -> None:
    gen = generate.regex(model, r"[0-9]{3}-[a-z]{2,6}")
    first = gen("Code: ", seed=11, temperature=1.0)
    assert re.fullmatch(r"[0-9]{3}-[a-z]{2,6}", first)
    assert gen.last_result.finish_reason == "eog" and gen.last_result.seed == 11
    gen("Something else entirely: ", seed=3)  # another prompt in the KV cache in between
    assert gen("Code: ", seed=11, temperature=1.0) == first
    outputs = {gen("Code: ", seed=s, temperature=1.0) for s in range(6)}
    assert len(outputs) > 1  # the seed does change the sample


def test_greedy_ignores_the_seed(model) -> None:
    gen = generate.regex(model, r"[a-z]{3,8}")
    assert gen("Word: ", seed=1, temperature=0) == gen("Word: ", seed=2, temperature=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: generate.regex(m, r"(?:[0-9]{2}|[a-z]{3}), ?[A-Z][a-z]{0,5}"),
        lambda m: generate.json(m, Pet),
        lambda m: generate.text(m),
    ],
    ids=["regex", "json", "text"],
)
def test_stream_equals_call(model, make) -> None:
    gen = make(model)
    value = gen("Input: ", seed=5, max_tokens=40)
    pieces = list(gen.stream("Input: ", seed=5, max_tokens=40))
    assert len(pieces) > 1
    assert "".join(pieces) == gen.last_result.text
    if isinstance(value, str):
        assert "".join(pieces) == value


def test_stream_never_yields_half_characters(model) -> None:
    """Qwen2's byte-level tokens split emoji; pieces must still be whole characters."""
    vocab = model.vocabulary
    gen = generate.regex(model, r"[😀-🙏]{3}")
    split_seen = False
    for seed in range(8):
        pieces = list(gen.stream("Emoji: ", seed=seed, temperature=1.0))
        assert "".join(pieces) == gen("Emoji: ", seed=seed, temperature=1.0)
        assert all(p and "\ufffd" not in p for p in pieces)
        for token in gen.last_result.token_ids:
            try:
                vocab.tokens[token].decode("utf-8")
            except UnicodeDecodeError:
                split_seen = True
        if split_seen:
            break
    assert split_seen, "no generation used a token that ends inside a character: the test proved nothing"


def test_json_pydantic_and_schema(model) -> None:
    pet = generate.json(model, Pet)("A pet as JSON: ", seed=2, max_tokens=60)
    assert isinstance(pet, Pet)
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9}, "ok": {"type": "boolean"}},
        "required": ["n", "ok"],
        "additionalProperties": False,
    }
    gen = generate.json(model, json.dumps(schema), whitespace_pattern=r"[ ]?")
    value = gen("JSON: ", seed=4, max_tokens=40)
    assert isinstance(value, dict) and set(value) == {"n", "ok"} and 1 <= value["n"] <= 9
    assert json.loads(gen.last_result.text) == value


def test_json_and_cfg_take_the_options_their_errors_name(model) -> None:
    """``lenient`` (named by SchemaError), the engine and its options, a grammar's start rule."""
    schema = {"type": "array", "items": {"type": "integer"}, "contains": {"format": "email"}, "maxItems": 3}
    with pytest.raises(SchemaError, match="pass lenient=True"):
        generate.json(model, schema)
    value = generate.json(model, schema, lenient=True)("A list: ", seed=1, max_tokens=40)
    assert isinstance(value, list) and len(value) <= 3 and all(isinstance(v, int) for v in value)
    tree = {"type": "object", "properties": {"kid": {"$ref": "#"}}, "additionalProperties": False}
    shallow = generate.json(model, tree, engine="dfa", max_depth=1, extra_properties=False)
    assert shallow.logits_processor.guide.dfa.matches(b'{"kid": {}}')
    assert not shallow.logits_processor.guide.dfa.matches(b'{"kid": {"kid": {"kid": {}}}}')
    text = generate.cfg(model, 'greeting: "hi" | "yo"', start="greeting")("Say: ", seed=1, max_tokens=4)
    assert text in ("hi", "yo")
    gbnf = 'root ::= greeting "!"\ngreeting ::= "hi" | "yo"'
    text = generate.cfg(model, gbnf)("Say: ", seed=1, max_tokens=4)
    assert text in ("hi!", "yo!")  # llama.cpp's GBNF, recognised by its '::='


@pytest.mark.parametrize("python_type", [int, float, bool, dt.date, dt.time, dt.datetime])
def test_format_returns_the_type(model, python_type) -> None:
    value = generate.format(model, python_type)("Value: ", seed=6, max_tokens=40)
    assert type(value) is python_type


def test_format_rejects_other_types(model) -> None:
    with pytest.raises(ValueError, match="supports int, float, bool"):
        generate.format(model, complex)


def test_date_regex_is_exactly_the_valid_dates() -> None:
    def accepts(pattern: str):
        dfa = compile_regex(pattern)
        return lambda text: dfa.matches(text.encode())

    date, datetime_ = accepts(DATE), accepts(DATETIME)
    for year in (0, 1, 4, 100, 200, 400, 1900, 1999, 2000, 2023, 2024, 2100, 9996, 9999):
        for month in range(14):
            for day in range(33):
                text = f"{year:04d}-{month:02d}-{day:02d}"
                try:
                    dt.date.fromisoformat(text)
                    valid = True
                except ValueError:
                    valid = False
                assert date(text) is valid, text
                assert datetime_(text + "T23:59:59") is valid, text
    time_ = accepts(TIME)
    assert time_("00:00:00") and time_("23:59:59") and not time_("24:00:00") and not time_("12:60:00")
    integer, number = accepts(INTEGER), accepts(FLOAT)
    assert integer("-0") and integer("10") and not integer("01") and not integer("+1")
    for text in ("0", "-1.5", "3e8", "2.5E-10", "10.0"):
        assert number(text) and float(text) == float(text)
    assert not number("1.") and not number(".5") and not number("1e")


def test_choice_returns_one_of_them(model) -> None:
    choices = ["a.b", "(x)", "a", "ab", "naïve [1]"]
    gen = generate.choice(model, choices)
    seen = {gen("Pick: ", seed=s, temperature=1.5) for s in range(6)}
    assert seen <= set(choices) and seen
    with pytest.raises(ValueError, match="non-empty list of strings"):
        generate.choice(model, [])
    with pytest.raises(ValueError, match="non-empty list of strings"):
        generate.choice(model, "ab")


def test_text_and_stop_at(model) -> None:
    gen = generate.text(model)
    full = gen("Once upon a time", seed=8, max_tokens=30)
    assert gen.last_result.finish_reason == "max_tokens" and len(gen.last_result.token_ids) == 30
    stop = full[10:13]
    cut = full[: full.index(stop) + len(stop)]
    assert gen("Once upon a time", seed=8, max_tokens=30, stop_at=stop) == cut
    assert gen.last_result.finish_reason == "stop_at" and gen.last_result.stop == stop
    assert "".join(gen.stream("Once upon a time", seed=8, max_tokens=30, stop_at=["\x00", stop])) == cut
    # the earliest of several stop strings wins
    early = full[3:5]
    expected = full[: full.index(early) + len(early)]
    assert gen("Once upon a time", seed=8, max_tokens=30, stop_at=[stop, early]) == expected


def test_stop_at_with_a_constraint(model) -> None:
    gen = generate.regex(model, r"[0-9]{2}\.[0-9]{2}")
    full = gen("Price: ", seed=1)
    with pytest.raises(IncompleteGenerationError) as info:
        gen("Price: ", seed=1, stop_at=".")
    assert info.value.reason == "stop_at" and info.value.text == full[:3]
    seed = next(s for s in range(1, 50) if (text := gen("Price: ", seed=s))[-1] not in text[:-1])
    full = gen("Price: ", seed=seed)
    assert gen("Price: ", seed=seed, stop_at=full[-1]) == full  # the stop ends a complete match


# -- stopping early --------------------------------------------------------------------------


def test_max_tokens_before_the_constraint_is_complete(model) -> None:
    gen = generate.regex(model, r"[a-z]{40}")
    with pytest.raises(IncompleteGenerationError, match="max_tokens=3") as info:
        gen("Letters: ", seed=1, max_tokens=3)
    err = info.value
    assert err.reason == "max_tokens" and len(err.token_ids) == 3
    assert re.fullmatch(r"[a-z]+", err.text) and err.text in str(err)
    assert gen("Letters: ", seed=1, max_tokens=3, on_incomplete="return") == err.text
    pieces = []
    with pytest.raises(IncompleteGenerationError):
        for piece in gen.stream("Letters: ", seed=1, max_tokens=3):
            pieces.append(piece)
    assert "".join(pieces) == err.text
    assert list(gen.stream("Letters: ", seed=1, max_tokens=3, on_incomplete="return")) == pieces


def test_max_tokens_exactly_enough_is_complete(model) -> None:
    gen = generate.format(model, int)
    value = gen("A digit: ", seed=3, max_tokens=1)  # Qwen2 writes one digit per token
    assert 0 <= value <= 9 and gen.last_result.finish_reason == "max_tokens"


def test_context_full(model) -> None:
    n_ctx = model.n_ctx
    prompt = " hello" * (n_ctx - 12)
    n_prompt = len(model.tokenize(prompt))
    assert n_prompt < n_ctx
    gen = generate.regex(model, r"[a-z]{100}")
    with pytest.raises(IncompleteGenerationError, match="context window") as info:
        gen(prompt, seed=1)
    assert info.value.reason == "context" and len(info.value.token_ids) == n_ctx - n_prompt


def test_prompt_longer_than_the_context(model) -> None:
    with pytest.raises(PromptTooLongError, match="larger n_ctx") as info:
        generate.text(model)(" hello" * (model.n_ctx + 5), max_tokens=2)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_tokens": 0},
        {"seed": -1},
        {"seed": 2**32 - 1},
        {"temperature": -0.5},
        {"top_p": 0.0},
        {"stop_at": ""},
        {"on_incomplete": "ignore"},
    ],
)
def test_bad_arguments(model, kwargs) -> None:
    gen = generate.regex(model, r"[0-9]")
    with pytest.raises(ValueError):
        gen("x", **kwargs)
    with pytest.raises(ValueError):
        gen.stream("x", **kwargs)  # checked when the stream is made, not at the first piece


def test_an_options_object_gives_what_the_keywords_give(model) -> None:
    gen = generate.regex(model, r"[a-z]{2,8}( [a-z]{2,8}){0,3}")
    keywords = dict(max_tokens=12, seed=7, temperature=1.0, top_k=20, top_p=0.9, min_p=0.01)
    opts = generate.GenerateOptions(**keywords, on_incomplete="return")
    expected = gen("Words: ", on_incomplete="return", **keywords)
    assert gen("Words: ", options=opts) == expected
    assert "".join(gen.stream("Words: ", options=opts)) == expected
    assert asyncio.run(gen.acall("Words: ", options=opts)) == expected
    batch = gen(["Words: ", "More: "], options=opts)  # prompt i uses seed + i, as with keywords
    assert batch == gen(["Words: ", "More: "], on_incomplete="return", **keywords)
    assert batch[0] == expected
    # a keyword beside the object overrides its field
    other = gen("Words: ", options=opts, seed=8)
    assert other == gen("Words: ", on_incomplete="return", **{**keywords, "seed": 8})
    long = generate.regex(model, r"[a-z]{40}")
    assert len(long("Letters: ", options=opts, max_tokens=2)) < 40  # the object's "return"
    with pytest.raises(IncompleteGenerationError, match="max_tokens=2"):
        long("Letters: ", options=opts, max_tokens=2, on_incomplete="raise")


# -- processors --------------------------------------------------------------------------------


def test_replace_the_processor(model) -> None:
    gen = generate.regex(model, r"[0-9]{4}")
    gen.logits_processor = RegexLogitsProcessor(r"[a-c]{3}", model.vocabulary)
    assert re.fullmatch(r"[a-c]{3}", gen("x", seed=2))


def test_processor_failure_is_raised(model) -> None:
    """A processor built for another vocabulary fails in the hook; the caller sees it."""
    gen = generate.regex(model, r"[0-9]{4}")
    other = Vocabulary([bytes([b]) for b in range(256)] + [b""], eog_ids=[256])
    gen.logits_processor = RegexLogitsProcessor(r"[0-9]{4}", other)
    with pytest.raises(ProcessorFailedError, match="built for another model"):
        gen("x", seed=1)
    assert gen.last_result is None or gen.last_result.text == ""


def test_exception_in_a_plain_processor_is_raised(model) -> None:
    """ctypes would swallow it and llama.cpp would go on unconstrained."""

    def broken(input_ids, scores):
        raise KeyError("simulated bug")

    gen = generate.text(model)
    gen.logits_processor = broken
    with pytest.raises(ProcessorFailedError, match="simulated bug") as info:
        gen("x", seed=1, max_tokens=10)
    assert isinstance(info.value.__cause__, KeyError)


def test_tokens_longer_than_32_bytes_are_decoded(model) -> None:
    """llama-cpp-python's detokenizer drops them; the generator decodes from the Vocabulary."""
    vocab = model.vocabulary
    long_id = max(range(vocab.size), key=lambda i: 0 if i in vocab.special_ids else len(vocab.tokens[i]))
    assert len(vocab.tokens[long_id]) > 32

    def force_long_token_then_stop(input_ids, scores):
        forced = long_id if len(input_ids) == prompt_length else sorted(vocab.eog_ids)[0]
        scores[:] = -np.inf
        scores[forced] = 0.0
        return scores

    prompt_length = len(model.tokenize("x"))
    gen = generate.text(model)
    gen.logits_processor = force_long_token_then_stop
    assert gen("x", seed=1, max_tokens=5) == vocab.tokens[long_id].decode()


# -- tracking ------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["track", "add_tracking"])
def test_tracking_records_every_chosen_token(model, how) -> None:
    if how == "track":
        gen = generate.json(model, Pet, track=True)
    else:
        gen = add_tracking(generate.json(model, Pet))
    tracker = gen.logits_processor
    assert isinstance(tracker, LogitTrackingProcessor)
    gen("A pet: ", seed=3, max_tokens=60)
    ids = gen.last_result.token_ids
    assert tracker.chosen_tokens() == ids  # the last one (an EOG id) via tracker.finish
    assert tracker.sequence() == gen.last_result.text
    gen("A pet: ", seed=3, max_tokens=2, on_incomplete="return")  # stopped by max_tokens, not forced
    assert tracker.chosen_tokens() == gen.last_result.token_ids and UNKNOWN not in tracker.chosen_tokens()
    assert "chosen" in tracker.table()


def test_tracking_plain_text(model) -> None:
    gen = generate.text(model, track=True)
    gen("x", seed=1, max_tokens=5)
    assert gen.logits_processor.chosen_tokens() == gen.last_result.token_ids


# -- the model wrapper and chat templates -------------------------------------------------------


def test_chat_messages_use_the_template(model) -> None:
    messages = [{"role": "user", "content": "Is it raining?"}]
    prompt = model.apply_chat_template(messages)
    assert prompt.endswith("<|im_start|>user\nIs it raining?<|im_end|>\n<|im_start|>assistant\n")
    assert not model.apply_chat_template(messages, add_generation_prompt=False).endswith("assistant\n")
    ids = model.tokenize(prompt)
    assert ids[0] == model.llm.tokenize(b"<|im_start|>", add_bos=False, special=True)[0]
    gen = generate.choice(model, ["yes", "no"])
    assert gen(messages, seed=4) == gen(prompt, seed=4)
    assert gen.last_result.n_prompt_tokens == len(ids)


def test_model_from_a_path_without_chat_template() -> None:
    """The SentencePiece test model has no template; a template can be given; BOS is not doubled."""
    path = require(MODELS / MODEL_FILES["spm32k"])
    model = models.llamacpp(path, n_ctx=256, n_threads=1)
    assert model.n_ctx == 256 and model.chat_template is None
    with pytest.raises(ChatTemplateError, match="no chat template"):
        model.apply_chat_template([{"role": "user", "content": "hi"}])
    template = (
        "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}{% if messages|length > 2 %}"
        "{{ raise_exception('too many messages') }}{% endif %}"
    )
    chatty = models.llamacpp(model.llm, chat_template=template)
    prompt = chatty.apply_chat_template([{"role": "user", "content": "hi"}])
    assert prompt == "<s>[user] hi\n[assistant] "
    ids = chatty.tokenize(prompt)
    bos = model.vocabulary.bos_id
    assert ids[0] == bos and ids[1] != bos
    with pytest.raises(ChatTemplateError, match="too many messages"):
        chatty.apply_chat_template([{"role": "user", "content": "hi"}] * 3)
    assert re.fullmatch(r"[0-9]{2}", generate.regex(chatty, r"[0-9]{2}")([{"role": "user", "content": "n?"}]))


def test_llamacpp_options(model) -> None:
    assert model.llm.context_params.n_threads == model.llm.context_params.n_threads_batch == 1
    assert model.n_ctx == 1024 and model.chat_template is not None
    with pytest.raises(FileNotFoundError, match="model file not found"):
        models.llamacpp(MODELS / "no-such-model.gguf")
    with pytest.raises(TypeError, match="already loaded"):
        models.llamacpp(model.llm, n_ctx=4096)
    with pytest.raises(TypeError, match=r"expected a llama_cpp\.Llama"):
        generate.text(object())


def test_a_plain_llama_is_accepted(model) -> None:
    gen = generate.regex(model.llm, r"[0-9]{2}")
    assert re.fullmatch(r"[0-9]{2}", gen("n: ", seed=1)) and gen.model.vocabulary is model.vocabulary


# -- context-free grammars ---------------------------------------------------------------------

GRAMMAR = """
start: NUMBER "+" NUMBER "=" NUMBER
NUMBER: /[0-9]+/
"""


def test_cfg(model) -> None:
    parser = lark.Lark(GRAMMAR, parser="lalr")
    gen = generate.cfg(model, GRAMMAR)
    for seed in range(3):
        text = gen("Sum: ", seed=seed, max_tokens=200)
        parser.parse(text)
        assert "".join(gen.stream("Sum: ", seed=seed, max_tokens=200)) == text


def test_cfg_with_tracking(model) -> None:
    gen = generate.cfg(model, GRAMMAR, track=True)
    gen("Sum: ", seed=1, max_tokens=200)
    assert gen.logits_processor.chosen_tokens() == gen.last_result.token_ids


def test_cfg_bad_grammar(model) -> None:
    with pytest.raises(GrammarError):
        generate.cfg(model, 'start: "a" undefined_rule')

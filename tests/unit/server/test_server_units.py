"""The server's parts without a model: tool formats, request checks, the cache, and the response
processor's phases driven by random logits over a small byte vocabulary.

The processor is checked the way llama.cpp would use it: at every step it
masks random scores, the best allowed token is taken, and afterwards the text
must be in the family's format with arguments valid against their schemas,
the thinking block closed, and free text unable to pass for a call.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import numpy as np
import pytest

from outlines_gguf import Vocabulary
from outlines_gguf.server.constraints import ConstraintCache, json_schema_guide, regex_guide, text_constraint
from outlines_gguf.server.errors import APIError
from outlines_gguf.server.protocol import ChatCompletionRequest, validation_error
from outlines_gguf.server.reasoning import ThinkPlan, matched_prefix, overrunning_close, whitespace_tokens
from outlines_gguf.server.response import ResponseProcessor
from outlines_gguf.server.tool_formats import (
    EMPTY_PARAMETERS,
    GENERIC,
    HERMES,
    LLAMA3,
    MISTRAL,
    TOOL_FORMATS,
    build_tool_plan,
    detect_format,
    parse_tool_choice,
    parse_tools,
)

EXTRA = [b"<tool_call>", b"</think>", b"</think>x", b'{"', b'": ', b"\n\n", b"  ", b"[TOOL_CALLS]", b'"}']
CONTROL_TRIGGER = 256 + len(EXTRA)  # a control token: no text, like Mistral's [TOOL_CALLS]
EOG = CONTROL_TRIGGER + 1
TOKENS = [bytes([b]) for b in range(256)] + EXTRA + [b"", b""]
ID = {t: 256 + i for i, t in enumerate(EXTRA)}


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary(TOKENS, eog_ids=[EOG], special_ids=[CONTROL_TRIGGER], name="bytes+")


@pytest.fixture(scope="module")
def cache(vocab: Vocabulary) -> ConstraintCache:
    return ConstraintCache(vocab, 64)


CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 6}},
    "required": ["city"],
    "additionalProperties": False,
}
SUM = {
    "type": "object",
    "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99}},
    "required": ["a"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "city", "parameters": CITY}},
    {"type": "function", "function": {"name": "sum", "parameters": SUM}},
]
PARAMS = {"city": CITY, "sum": SUM}


def drive(
    proc: Any, vocab: Vocabulary, seed: int, bias: Any = None, max_tokens: int = 300
) -> tuple[bytes, bool]:
    """Generate as llama.cpp would: random scores, the processor masks them, the best allowed wins.

    ``bias`` adds to some tokens' scores: a dict, or a function of the step giving one.
    """
    rng = np.random.default_rng(seed)
    prompt = [ord("h"), ord("i")]
    ids = list(prompt)
    proc.reset()
    for step in range(max_tokens):
        scores = rng.normal(size=vocab.size).astype(np.float32)
        for token, value in (bias(step) if callable(bias) else bias or {}).items():
            scores[token] += value
        proc(np.array(ids, dtype=np.intc), scores)
        assert np.isfinite(scores).any(), "the processor allowed nothing"
        token = int(np.argmax(scores))
        if token == EOG:
            assert proc.error is None, proc.error
            return b"".join(vocab.tokens[i] for i in ids[len(prompt) :]), True
        ids.append(token)
    proc(np.array(ids, dtype=np.intc), np.zeros(vocab.size, dtype=np.float32))  # the last token, as at
    assert proc.error is None, proc.error  # max_tokens Generation shows it to the processor
    return b"".join(vocab.tokens[i] for i in ids[len(prompt) :]), False


def plan(
    cache: ConstraintCache,
    fmt: Any,
    mode: Any = "required",
    parallel: bool | None = None,
    trigger: int | None = None,
) -> Any:
    tools = parse_tools(TOOLS)
    return build_tool_plan(cache, fmt, tools, parse_tool_choice(mode, tools), parallel, trigger)


def check_calls(proc: ResponseProcessor) -> None:
    assert proc.calls
    for call in proc.calls:
        jsonschema.validate(json.loads(call.arguments.decode()), PARAMS[call.name])


CALL = {
    "hermes": rb'<tool_call>\n\{"name": "(city|sum)", "arguments": (\{.*?\})\}\n</tool_call>',
    "llama3": rb'\{"name": "(city|sum)", "parameters": (\{.*?\})\}',
    "mistral": rb'\{"name": "(city|sum)", "arguments": (\{.*?\})\}',
}


@pytest.mark.parametrize("fmt", [HERMES, LLAMA3, MISTRAL, GENERIC], ids=lambda f: f.name)
def test_required_calls_are_in_the_family_format(vocab: Vocabulary, cache: ConstraintCache, fmt: Any) -> None:
    tools = plan(cache, fmt)
    call = CALL["hermes" if fmt is GENERIC else fmt.name]
    sep = re.escape((fmt.separator or "").encode())
    whole = (
        re.escape(fmt.start.encode())
        + call
        + (b"(?:" + sep + call + b")*" if fmt.separator else b"")
        + re.escape(fmt.end.encode())
    )
    for seed in range(12):
        proc = ResponseProcessor(vocab, tools=tools)
        text, ended = drive(proc, vocab, seed)
        assert ended, text
        assert re.fullmatch(whole, text, re.DOTALL), text
        check_calls(proc)
        assert all(c.done for c in proc.calls) and proc.content == b""
        assert len(proc.calls) == len(re.findall(call, text, re.DOTALL))
        if fmt is LLAMA3:
            assert len(proc.calls) == 1  # one call per turn in Llama 3.1's format
    assert proc.calls[0].id.startswith("call_") if fmt is not MISTRAL else len(proc.calls[0].id) == 9


def test_named_and_single_calls(vocab: Vocabulary, cache: ConstraintCache) -> None:
    named = plan(cache, HERMES, {"type": "function", "function": {"name": "sum"}})
    single = plan(cache, HERMES, "required", parallel=False)
    for seed in range(8):
        proc = ResponseProcessor(vocab, tools=named)
        drive(proc, vocab, seed, bias={ID[b"<tool_call>"]: 3.0})
        assert [c.name for c in proc.calls] == ["sum"]
        proc = ResponseProcessor(vocab, tools=single)
        drive(proc, vocab, seed)
        assert len(proc.calls) == 1


def test_auto_text_never_starts_like_a_call(vocab: Vocabulary, cache: ConstraintCache) -> None:
    tools = plan(cache, HERMES, "auto", parallel=False)
    kinds = set()
    for seed in range(40):
        proc = ResponseProcessor(vocab, tools=tools)
        # pushing the first byte of a call: text may not start with it, calls may
        text, _ = drive(proc, vocab, seed, bias={ord("<"): 2.5, EOG: -2.0}, max_tokens=120)
        if proc.calls:
            assert proc.calls[0].done
            kinds.add("call")
            check_calls(proc)
            assert proc.content == b"" and text.startswith(b"<tool_call>")
        else:
            kinds.add("text")
            assert not text.startswith(b"<") and proc.content == text
    assert kinds == {"call", "text"}


def test_auto_special_trigger_starts_a_call_after_text(vocab: Vocabulary, cache: ConstraintCache) -> None:
    """A trigger that is one special token (Mistral's [TOOL_CALLS]) starts a call even after some text."""
    tools = plan(cache, MISTRAL, "auto", trigger=CONTROL_TRIGGER)
    assert tools.trigger_id == CONTROL_TRIGGER
    after_text = 0
    for seed in range(30):
        proc = ResponseProcessor(vocab, tools=tools)
        text, ended = drive(proc, vocab, seed, bias={CONTROL_TRIGGER: 2.0, EOG: -3.0}, max_tokens=600)
        if proc.calls:
            assert ended
            check_calls(proc)
            prefix = bytes(proc.content)
            assert text.startswith(prefix)
            rest = text[len(prefix) :]
            assert re.fullmatch(
                rb" \[" + CALL["mistral"] + rb"(?:, " + CALL["mistral"] + rb")*\]", rest, re.DOTALL
            ), rest
            after_text += bool(prefix)
    assert after_text > 0


def think_plan(vocab: Vocabulary, budget: int | None, starts_open: bool = True) -> ThinkPlan:
    close = b"</think>"
    return ThinkPlan(
        close=close,
        starts_open=starts_open,
        open_id=None,
        close_ids=tuple((ID[b"</think>"],) if k == 0 else tuple(close[k:]) for k in range(len(close))),
        budget=budget,
        overrun=tuple(overrunning_close(vocab, close)),
        whitespace=whitespace_tokens(vocab),
    )


def test_thinking_then_the_constraint(vocab: Vocabulary, cache: ConstraintCache) -> None:
    body = json_schema_guide(cache, SUM, lenient=False, param="x")
    for seed in range(20):
        proc = ResponseProcessor(vocab, body=body, think=think_plan(vocab, budget=6))
        # the overrunning token would write past </think> in one token: never allowed
        text, ended = drive(proc, vocab, seed, bias={ID[b"</think>x"]: 50.0, ID[b"\n\n"]: 1.5})
        assert ended and b"</think>x" not in text
        head, _, answer = text.partition(b"</think>")
        assert bytes(proc.reasoning) == head and b"</think>" not in proc.reasoning
        jsonschema.validate(json.loads(answer.strip()), SUM)
        assert bytes(proc.content) == answer.lstrip()  # the whitespace after </think> is not content
        assert not proc.thinking and proc.thought


def test_thinking_ends_on_its_own_and_byte_by_byte(vocab: Vocabulary, cache: ConstraintCache) -> None:
    body = regex_guide(cache, "[a-c]{3}", param="regex")
    for seed in range(10):
        proc = ResponseProcessor(vocab, body=body, think=think_plan(vocab, budget=None))

        # spelled byte by byte from the 5th token: the processor must see the tag across tokens
        def bias(step: int) -> dict[int, float]:
            return {b"</think>"[step - 5]: 30.0} if 5 <= step < 13 else {}

        text, ended = drive(proc, vocab, seed, bias=bias, max_tokens=400)
        assert ended
        assert re.fullmatch(rb"(?s)(.*?)</think>\s*[a-c]{3}", text), text
        assert bytes(proc.content).strip() == text[-3:]


def test_free_text_after_thinking_may_end(vocab: Vocabulary) -> None:
    proc = ResponseProcessor(vocab, think=think_plan(vocab, budget=3))
    text, ended = drive(proc, vocab, 1, bias={EOG: 1.0})
    assert ended and proc.is_finished and bytes(proc.content) in text


def test_failure_is_kept_not_raised(vocab: Vocabulary, cache: ConstraintCache) -> None:
    proc = ResponseProcessor(vocab, body=regex_guide(cache, "[0-9]+", param="regex"))
    scores = np.zeros(vocab.size, dtype=np.float32)
    proc(np.array([1, 2]), scores)
    bad = np.zeros(vocab.size, dtype=np.float32)
    proc(np.array([1, 2, ord("x")]), bad)  # a token the constraint forbids was injected
    assert proc.error is not None
    assert np.isneginf(bad[:EOG]).all() and bad[EOG] == 0.0  # end of generation forced
    with pytest.raises(Exception, match="failed during generation"):
        proc.raise_if_failed()


# -- formats, requests, cache --------------------------------------------------------------------


def test_detect_format() -> None:
    assert detect_format(None) is GENERIC
    assert detect_format("{{ messages }}") is GENERIC
    assert detect_format("... <tool_call>\n{{ tool }} ...") is HERMES
    assert detect_format("[AVAILABLE_TOOLS] ... [TOOL_CALLS] ...") is MISTRAL
    assert detect_format("<|start_header_id|>ipython ... <|python_tag|>") is LLAMA3
    assert detect_format('<|start_header_id|> {"name": function name, "parameters": ...}') is LLAMA3
    assert set(TOOL_FORMATS) == {"hermes", "llama3", "mistral", "generic"}


def test_tools_and_tool_choice_checks() -> None:
    tools = parse_tools([{"type": "function", "function": {"name": "noargs"}}])
    assert tools[0].parameters == EMPTY_PARAMETERS
    assert parse_tool_choice(None, tools).mode == "auto"
    assert parse_tool_choice(None, []).mode == "none"
    for bad_tools, param in [
        ([{"type": "retrieval"}], "tools[0].type"),
        ([{"type": "function", "function": {"name": "a b"}}], "tools[0].function.name"),
        ([{"type": "function", "function": {"name": "f"}}] * 2, "tools[1].function.name"),
        ([{"type": "function", "function": {"name": "f", "parameters": []}}], "tools[0].function.parameters"),
    ]:
        with pytest.raises(APIError) as caught:
            parse_tools(bad_tools)
        assert caught.value.status == 400 and caught.value.param == param
    with pytest.raises(APIError, match="needs tools"):
        parse_tool_choice("required", [])
    with pytest.raises(APIError, match="must be one of"):
        parse_tool_choice("always", tools)
    assert parse_tool_choice({"type": "function", "function": {"name": "noargs"}}, tools).named


def test_validation_errors_name_the_field() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        ChatCompletionRequest(messages=[{"role": "user", "content": "x"}], temperature=3)
    error = validation_error(caught.value)
    assert error.status == 400 and error.param == "temperature" and "(got 3)" in error.message
    with pytest.raises(ValidationError) as caught:
        ChatCompletionRequest(messages=[])
    assert validation_error(caught.value).param == "messages"


def test_cache_is_an_lru_keyed_by_content(vocab: Vocabulary, monkeypatch: pytest.MonkeyPatch) -> None:
    from outlines_gguf.server import constraints

    trims: list[int] = []
    monkeypatch.setattr(constraints, "release_free_memory", lambda: trims.append(1))
    small = ConstraintCache(vocab, max_entries=2)
    built: list[str] = []

    def build(name: str) -> Any:
        return lambda: built.append(name) or name

    assert small.get("k", "a", build("a")) == "a"
    assert small.get("k", "a", build("a2")) == "a"  # a hit: not built again
    small.get("k", "b", build("b"))
    small.get("k", "a", build("a3"))  # a becomes the most recent
    small.get("k", "c", build("c"))  # b is dropped
    small.get("k", "b", build("b2"))
    assert built == ["a", "b", "c", "b2"] and len(small) == 2
    assert trims == [1]  # memory handed back after an eviction (at most every TRIM_INTERVAL_S)
    assert small.stats() == {"entries": 2, "max_entries": 2, "hits": 2, "misses": 4}
    assert ConstraintCache.key("json", "{}") != ConstraintCache.key("regex", "{}")


def test_request_constraint_kinds(cache: ConstraintCache) -> None:
    def constraint(**fields: Any) -> Any:
        return text_constraint(
            ChatCompletionRequest(messages=[{"role": "user", "content": "x"}], **fields), cache
        )

    assert constraint() is None
    assert constraint(response_format={"type": "text"}) is None
    assert constraint(response_format={"type": "json_object"}).kind == "json_object"
    assert constraint(regex="[a-z]+").kind == "regex"
    assert constraint(extra_body={"choice": ["a", "b"]}).kind == "choice"
    assert constraint(extra_body={"grammar": 'root ::= "yes" | "no"'}).kind == "grammar"
    for fields, param in [
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": 3}}},
            "response_format.json_schema.schema",
        ),
        ({"choice": []}, "choice"),
        ({"grammar": "root ::= [a-z"}, "grammar"),  # GBNF with an unterminated class
        ({"grammar": "root ::= x\nx ::= x \"a\" | \"b\""}, "grammar"),  # left recursion: llama.cpp refuses it
    ]:
        with pytest.raises(APIError) as caught:
            constraint(**fields)
        assert caught.value.param == param, caught.value


def test_matched_prefix() -> None:
    assert matched_prefix(b"abc</th", b"</think>") == 4
    assert matched_prefix(b"abc<", b"</think>") == 1
    assert matched_prefix(b"abc", b"</think>") == 0
    assert matched_prefix(b"</think", b"</think>") == 7


def test_shared_folder_between_replicas(vocab: Vocabulary, tmp_path: Any) -> None:
    from outlines_gguf.server.shared_cache import SharedGuideFolder

    first = ConstraintCache(vocab, 8, SharedGuideFolder(tmp_path, "secret", vocab))
    guide = json_schema_guide(first, SUM, lenient=False, param="x")
    assert first.shared.stats() == {"loaded": 0, "stored": 1, "rejected": 0}

    def no_compile() -> Any:
        raise AssertionError("compiled again instead of loading the shared entry")

    second = ConstraintCache(vocab, 8, SharedGuideFolder(tmp_path, "secret", vocab))  # another replica
    key = ConstraintCache.key("json_schema", json.dumps(SUM, sort_keys=True, separators=(",", ":")))
    loaded = second.get("json_schema", json.dumps(SUM, sort_keys=True, separators=(",", ":")), no_compile)
    assert loaded is not guide and loaded.vocabulary is vocab  # the vocabulary is supplied, not pickled
    state = loaded.initial_state
    for token in b'{"a": 7':
        state = loaded.next_state(state, token)
    assert loaded.is_final(loaded.next_state(state, ord("}")))
    assert not loaded.is_final(state)
    # another key, or a file changed by someone else: never unpickled, compiled again
    stranger = SharedGuideFolder(tmp_path, "other", vocab)
    assert stranger.load(key) is None and stranger.rejected == 1
    path = second.shared.path(key)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    third = ConstraintCache(vocab, 8, SharedGuideFolder(tmp_path, "secret", vocab))
    built = []
    third.get(
        "json_schema", json.dumps(SUM, sort_keys=True, separators=(",", ":")), lambda: built.append(1) or 1
    )
    assert built == [1] and third.shared.rejected == 1
    with pytest.raises(ValueError, match="key"):
        SharedGuideFolder(tmp_path, "", vocab)

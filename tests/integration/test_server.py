"""The OpenAI-compatible server, driven by real clients: the ``openai`` SDK, instructor and raw HTTP.

A server runs in-process (uvicorn in a thread, 127.0.0.1, a free port) on the
random-weight test models: texts are gibberish, so tests check what the
constraints guarantee (validity against the schema, regex, grammar, tool
parameters), OpenAI's response shapes field by field, SSE chunk sequences,
and error codes and messages.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import instructor
import jsonschema
import lark
import openai
import pytest
from conftest import MODEL_FILES, MODELS, ROOT, require
from pydantic import BaseModel, ConfigDict, Field
from server_support import RunningServer, config_for
from server_templates import HERMES_TEMPLATE, LLAMA31_TEMPLATE, MISTRAL_TEMPLATE, THINK_TEMPLATE

from outlines_gguf import grammars
from outlines_gguf.llama_cpp.generation import Generation
from outlines_gguf.server.constraints import regex_guide
from outlines_gguf.server.protocol import ChatCompletionRequest
from outlines_gguf.server.response import ResponseProcessor

pytestmark = pytest.mark.model

API_KEY = "test-key"
BODY_LIMIT = 64 * 1024

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 10},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "minimum": -99, "maximum": 99},
                "b": {"type": "integer", "minimum": -99, "maximum": 99},
            },
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}
TOOLS = [WEATHER, ADD]
PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
USER = [{"role": "user", "content": "Tell me something."}]


def model_path(name: str) -> Path:
    return require(MODELS / MODEL_FILES[name])


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """tiny-qwen2 (ChatML without tools: the generic tool format), two instances, an API key."""
    config = config_for(
        model_path("qwen2-152k"), api_key=API_KEY, parallel=2, max_body_bytes=BODY_LIMIT, cache_entries=24
    )
    with RunningServer(config) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.root, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120) as c:
        yield c


def schema_format(schema: dict[str, Any], strict: bool | None = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "answer", "schema": schema}
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}


def sse_events(response: httpx.Response) -> list[str]:
    """The ``data:`` payloads of a server-sent-event stream, in order."""
    events = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            events.append(line[len("data:") :].strip())
        else:
            assert line == "" or line.startswith(":"), line  # blank separators, pings
    return events


def check_chat_shape(body: dict[str, Any], n: int = 1) -> None:
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{32}", body["id"])
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and abs(body["created"] - time.time()) < 600
    assert body["model"] == "tiny-qwen2"
    assert [c["index"] for c in body["choices"]] == list(range(n))
    for choice in body["choices"]:
        assert set(choice) == {"index", "message", "logprobs", "finish_reason"}
        assert choice["message"]["role"] == "assistant"
        assert choice["finish_reason"] in ("stop", "length", "tool_calls")
    u = body["usage"]
    assert u["prompt_tokens"] > 0 and u["completion_tokens"] > 0
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


# -- endpoints and shapes ------------------------------------------------------------------------


def test_models_health_and_unknown_route(
    server: RunningServer, client: openai.OpenAI, http: httpx.Client
) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny-qwen2"]
    assert models.data[0].object == "model" and models.data[0].owned_by == "outlines-gguf"
    health = httpx.get(f"{server.root}/health", timeout=30)  # no API key needed
    assert health.status_code == 200
    status = health.json()
    assert status["status"] == "ok" and status["instances"] == 2 and status["tool_format"] == "generic"
    missing = http.get("/v1/nothing")
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"message", "type", "param", "code"}


def test_json_schema_valid_with_exact_shape(http: httpx.Client) -> None:
    for seed in range(4):
        r = http.post(
            "/v1/chat/completions",
            json={
                "model": "anything",
                "messages": USER,
                "max_tokens": 120,
                "seed": seed,
                "response_format": schema_format(PERSON),
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        check_chat_shape(body)
        assert set(body) == {"id", "object", "created", "model", "system_fingerprint", "choices", "usage",
                             "timings"}
        assert 0 <= body["timings"]["queued_ms"] and 0 < body["timings"]["generation_ms"]
        assert body["timings"]["generation_ms"] < r.elapsed.total_seconds() * 1000
        choice = body["choices"][0]
        assert choice["finish_reason"] == "stop"
        assert set(choice["message"]) == {"role", "content"}
        jsonschema.validate(json.loads(choice["message"]["content"]), PERSON)


def test_same_seed_same_answer_and_n_choices(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = dict(
        model="m", messages=USER, max_tokens=120, response_format=schema_format(PERSON)
    )
    first = client.chat.completions.create(seed=7, **kwargs)
    again = client.chat.completions.create(seed=7, **kwargs)
    assert first.choices[0].message.content == again.choices[0].message.content
    many = client.chat.completions.create(seed=7, n=3, **kwargs)
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert many.choices[0].message.content == first.choices[0].message.content  # choice i uses seed + i
    for choice in many.choices:
        jsonschema.validate(json.loads(choice.message.content), PERSON)
    assert many.usage.prompt_tokens == first.usage.prompt_tokens  # the prompt is counted once


def test_json_object_is_an_object(client: openai.OpenAI) -> None:
    finished = 0
    for seed in (0, 4):  # seeds whose random text closes the object within the budget
        r = client.chat.completions.create(
            model="m", messages=USER, max_tokens=120, seed=seed, response_format={"type": "json_object"}
        )
        if r.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(r.choices[0].message.content), dict)
            finished += 1
        else:
            assert r.choices[0].message.content.startswith("{")
    assert finished >= 1


def test_extensions_regex_choice_grammar(client: openai.OpenAI, http: httpx.Client) -> None:
    r = client.chat.completions.create(
        model="m", messages=USER, max_tokens=20, seed=1, extra_body={"regex": r"[0-9]{3}-[a-z]{2,4}"}
    )
    assert re.fullmatch(r"[0-9]{3}-[a-z]{2,4}", r.choices[0].message.content)
    options = ["red", "green", "blue"]
    for seed in range(3):
        r = client.chat.completions.create(
            model="m", messages=USER, max_tokens=10, seed=seed, extra_body={"choice": options}
        )
        assert r.choices[0].message.content in options and r.choices[0].finish_reason == "stop"
    parser = lark.Lark(grammars.ARITHMETIC, parser="lalr")
    r = client.chat.completions.create(
        model="m", messages=USER, max_tokens=60, seed=2, extra_body={"grammar": "arithmetic"}
    )
    if r.choices[0].finish_reason == "stop":
        parser.parse(r.choices[0].message.content)
    sums = 'start: NUMBER "+" NUMBER\nNUMBER: /[0-9]{1,3}/\n'
    # the extension inside a literal "extra_body" object, as some clients send it
    raw = http.post(
        "/v1/chat/completions",
        json={"model": "m", "messages": USER, "max_tokens": 20, "seed": 3, "extra_body": {"grammar": sums}},
    )
    assert raw.status_code == 200, raw.text
    lark.Lark(sums, parser="lalr").parse(raw.json()["choices"][0]["message"]["content"])


def test_completions_endpoint(client: openai.OpenAI) -> None:
    r = client.completions.create(
        model="m", prompt="The year: ", max_tokens=8, seed=1, extra_body={"regex": "[12][0-9]{3}"}
    )
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert re.fullmatch("[12][0-9]{3}", r.choices[0].text) and r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens >= 1 and r.usage.prompt_tokens >= 3
    default = client.completions.create(model="m", prompt="Once upon a time", seed=1)
    assert default.choices[0].finish_reason in ("length", "stop")
    assert default.usage.completion_tokens <= 16  # OpenAI's default max_tokens for completions
    echo = client.completions.create(
        model="m", prompt="Numbers: ", max_tokens=5, seed=1, echo=True, extra_body={"regex": "[0-9]{2}"}
    )
    assert re.fullmatch("Numbers: [0-9]{2}", echo.choices[0].text)
    batch = client.completions.create(
        model="m", prompt=["A: ", "B: "], n=2, max_tokens=4, seed=1, extra_body={"choice": ["x", "y"]}
    )
    assert [c.index for c in batch.choices] == [0, 1, 2, 3]
    assert all(c.text in ("x", "y") for c in batch.choices)


def test_stop_strings_are_cut(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=USER, max_tokens=60, seed=3, stop=[" "])
    assert r.choices[0].finish_reason == "stop"
    assert " " not in r.choices[0].message.content
    chunks = client.chat.completions.create(
        model="m", messages=USER, max_tokens=60, seed=3, stop=[" "], stream=True
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content
    )


# -- streaming -----------------------------------------------------------------------------------


def test_stream_chunks_match_the_whole_answer(client: openai.OpenAI, http: httpx.Client) -> None:
    body = {
        "model": "m",
        "messages": USER,
        "max_tokens": 120,
        "seed": 5,
        "response_format": schema_format(PERSON),
    }
    whole = http.post("/v1/chat/completions", json=body).json()
    with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "tiny-qwen2" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(text), PERSON)
    # the SDK's view, with usage at the end
    stream = client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **body)
    parts = list(stream)
    assert parts[-1].choices == [] and parts[-1].usage.total_tokens == whole["usage"]["total_tokens"]
    assert "".join(p.choices[0].delta.content or "" for p in parts if p.choices) == text


def test_stream_completions(http: httpx.Client) -> None:
    body = {"model": "m", "prompt": "Code: ", "max_tokens": 10, "seed": 2, "regex": "[A-Z]{2}[0-9]{3}"}
    with http.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert re.fullmatch("[A-Z]{2}[0-9]{3}", text)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# -- tool calls ----------------------------------------------------------------------------------


def check_calls(message: Any, names: set[str]) -> list[Any]:
    calls = message.tool_calls
    assert calls, message
    for call in calls:
        assert re.fullmatch(r"call_[A-Za-z0-9]{24}", call.id) and call.type == "function"
        assert call.function.name in names
        jsonschema.validate(json.loads(call.function.arguments), PARAMS[call.function.name])
    assert len({c.id for c in calls}) == len(calls)
    return calls


def test_tool_choice_required_named_and_single(client: openai.OpenAI) -> None:
    for seed in range(3):
        r = client.chat.completions.create(
            model="m", messages=USER, max_tokens=150, seed=seed, tools=TOOLS, tool_choice="required"
        )
        assert r.choices[0].finish_reason == "tool_calls"
        assert r.choices[0].message.content is None
        check_calls(r.choices[0].message, {"get_weather", "add"})
    named = client.chat.completions.create(
        model="m",
        messages=USER,
        max_tokens=150,
        seed=1,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "add"}},
    )
    calls = check_calls(named.choices[0].message, {"add"})
    assert len(calls) == 1
    single = client.chat.completions.create(
        model="m",
        messages=USER,
        max_tokens=150,
        seed=2,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
    )
    assert len(check_calls(single.choices[0].message, {"get_weather", "add"})) == 1


def test_tool_calls_stream_like_openai(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = dict(
        model="m", messages=USER, max_tokens=150, seed=4, tools=TOOLS, tool_choice="required"
    )
    whole = client.chat.completions.create(**kwargs).choices[0].message
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        delta = chunk.choices[0].delta
        assert not delta.content
        for part in delta.tool_calls or []:
            if part.index not in calls:  # the first fragment announces the call
                assert part.id and part.type == "function" and part.function.name
                assert part.function.arguments == ""
                calls[part.index] = {"name": part.function.name, "arguments": ""}
            else:
                assert part.id is None and part.function.name is None
                calls[part.index]["arguments"] += part.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [(c["name"], c["arguments"]) for _, c in sorted(calls.items())] == [
        (c.function.name, c.function.arguments) for c in whole.tool_calls
    ]


def test_tool_choice_auto_and_none(client: openai.OpenAI) -> None:
    for seed in range(4):
        r = client.chat.completions.create(model="m", messages=USER, max_tokens=40, seed=seed, tools=TOOLS)
        message = r.choices[0].message
        if message.tool_calls:
            check_calls(message, {"get_weather", "add"})
        else:
            assert r.choices[0].finish_reason in ("stop", "length")
            assert not (message.content or "").startswith("<")  # text never looks like a call
    r = client.chat.completions.create(
        model="m", messages=USER, max_tokens=20, seed=1, tools=TOOLS, tool_choice="none"
    )
    assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason in ("stop", "length")


def test_conversation_with_tool_results(client: openai.OpenAI) -> None:
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 1}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    r = client.chat.completions.create(
        model="m", messages=history, max_tokens=150, seed=1, tools=TOOLS, tool_choice="required"
    )
    check_calls(r.choices[0].message, {"get_weather", "add"})


HERMES_CALL = r'<tool_call>\n\{"name": "(?:get_weather|add)", "arguments": \{.*?\}\}\n</tool_call>'
TOOL_TEMPLATES = [
    ("qwen2-152k", HERMES_TEMPLATE, "hermes", rf"{HERMES_CALL}(?:\n{HERMES_CALL})*"),
    ("llama3-128k", LLAMA31_TEMPLATE, "llama3", r'\{"name": "(get_weather|add)", "parameters": (\{.*?\})\}'),
    (
        "spm32k",
        MISTRAL_TEMPLATE,
        "mistral",
        r'\[TOOL_CALLS\] \[\{"name": "(get_weather|add)", "arguments": (\{.*?\})\}'
        r'(?:, \{"name": "(?:get_weather|add)", "arguments": \{.*?\}\})*\]',
    ),
]


@pytest.mark.parametrize(
    ("model", "template", "fmt", "raw"), TOOL_TEMPLATES, ids=[t[2] for t in TOOL_TEMPLATES]
)
def test_native_tool_formats(model: str, template: str, fmt: str, raw: str) -> None:
    """Each family's own format: detected from the template, written exactly, answered as tool_calls."""
    with RunningServer(config_for(model_path(model), chat_template=template)) as running:
        engine = running.engine
        assert engine is not None and engine.tool_format.name == fmt
        c = openai.OpenAI(base_url=running.base_url, api_key="none", max_retries=0, timeout=120)
        for seed in range(2):
            r = c.chat.completions.create(
                model="m", messages=USER, max_tokens=150, seed=seed, tools=TOOLS, tool_choice="required"
            )
            assert r.choices[0].finish_reason == "tool_calls"
            calls = r.choices[0].message.tool_calls
            for call in calls:
                jsonschema.validate(json.loads(call.function.arguments), PARAMS[call.function.name])
                if fmt == "mistral":
                    assert re.fullmatch("[A-Za-z0-9]{9}", call.id)
        # the text the model wrote is the family's format, byte for byte
        prepared = engine.prepare_chat(
            ChatCompletionRequest(
                model="m", messages=USER, tools=TOOLS, tool_choice="required", max_tokens=150
            )
        )
        assert "get_weather" in prepared.prompts[0]  # the template rendered the tools
        proc = ResponseProcessor(engine.vocabulary, body=None, tools=prepared.tools, think=None)
        gen = Generation(engine.instances[0].model, prepared.prompts[0], proc, max_tokens=600, seed=3)
        text = "".join(gen)
        assert gen.result is not None and gen.result.finish_reason == "eog"
        assert re.fullmatch(raw, text, re.DOTALL), text
        # an earlier call and its result, sent back, render in the family's template
        history = [
            *USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": calls[0].id,
                        "type": "function",
                        "function": {
                            "name": calls[0].function.name,
                            "arguments": calls[0].function.arguments,
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": calls[0].id, "content": "42"},
        ]
        again = c.chat.completions.create(model="m", messages=history, max_tokens=8, seed=1, tools=TOOLS)
        assert again.choices[0].finish_reason in ("stop", "length", "tool_calls")


# -- reasoning -----------------------------------------------------------------------------------


def test_thinking_block_then_constraint() -> None:
    with RunningServer(config_for(model_path("qwen2-152k"), chat_template=THINK_TEMPLATE)) as running:
        c = openai.OpenAI(base_url=running.base_url, api_key="none", max_retries=0, timeout=120)
        kwargs: dict[str, Any] = dict(
            model="m",
            messages=USER,
            max_tokens=150,
            seed=1,
            response_format=schema_format(PERSON),
            extra_body={"reasoning_budget": 12},
        )
        r = c.chat.completions.create(**kwargs)
        message = r.choices[0].message.model_dump()
        assert r.choices[0].finish_reason == "stop"
        assert message["reasoning_content"] and "</think>" not in message["reasoning_content"]
        jsonschema.validate(json.loads(message["content"]), PERSON)  # the constraint starts after </think>
        assert r.usage.completion_tokens > 12
        kinds = []
        reasoning = content = ""
        for chunk in c.chat.completions.create(stream=True, **kwargs):
            delta = chunk.choices[0].delta.model_dump()
            if delta.get("reasoning_content"):
                kinds.append("r")
                reasoning += delta["reasoning_content"]
            if delta.get("content"):
                kinds.append("c")
                content += delta["content"]
        assert (reasoning, content) == (message["reasoning_content"], message["content"])
        assert re.fullmatch("r+c+", "".join(kinds))  # all the thinking, then the answer
        tools = c.chat.completions.create(
            model="m",
            messages=USER,
            max_tokens=200,
            seed=2,
            tools=TOOLS,
            tool_choice="required",
            extra_body={"reasoning_budget": 5},
        )
        assert tools.choices[0].message.model_dump()["reasoning_content"]
        check_calls(tools.choices[0].message, {"get_weather", "add"})


# -- errors --------------------------------------------------------------------------------------


def bad(client: openai.OpenAI, **kwargs: Any) -> openai.BadRequestError:
    kwargs.setdefault("messages", USER)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", max_tokens=10, **kwargs)
    assert caught.value.status_code == 400
    return caught.value


def test_bad_requests_are_400_naming_the_problem(client: openai.OpenAI) -> None:
    # uniqueItems beside contains
    tags = {"type": "array", "contains": {"type": "string"}, "uniqueItems": True}
    schema = {"type": "object", "properties": {"tags": tags}}
    e = bad(client, response_format=schema_format(schema))
    assert e.param == "response_format.json_schema.schema" and e.type == "invalid_request_error"
    assert "#/properties/tags" in e.message and "uniqueItems" in e.message
    assert "strict: false" in e.message
    lenient = client.chat.completions.create(
        model="m", messages=USER, max_tokens=60, seed=1, response_format=schema_format(schema, strict=False)
    )
    assert lenient.choices[0].finish_reason in ("stop", "length")
    e = bad(
        client,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "foo"}}},
    )
    assert "unknown type 'foo'" in e.message
    e = bad(client, extra_body={"regex": "(a"})
    assert e.param == "regex" and "invalid regex" in e.message
    e = bad(client, extra_body={"grammar": "start: undefined_rule"})
    assert e.param == "grammar" and "invalid grammar" in e.message
    e = bad(client, response_format={"type": "xml"})
    assert e.param == "response_format.type" and "'xml'" in e.message
    e = bad(client, tools=TOOLS, tool_choice="sometimes")
    assert e.param == "tool_choice" and "'sometimes'" in e.message
    e = bad(client, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}})
    assert "'nope'" in e.message
    e = bad(client, tools=[{"type": "function", "function": {"name": "bad name!"}}])
    assert e.param == "tools[0].function.name"
    e = bad(client, tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}])
    assert e.param == "tools[0].function.parameters"
    e = bad(client, messages=[{"role": "robot", "content": "hi"}])
    assert e.param == "messages[0].role" and "'robot'" in e.message
    e = bad(
        client, messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    )
    assert "only text parts" in e.message
    e = bad(client, temperature=5)
    assert e.param == "temperature" and "2" in e.message
    e = bad(client, n=0)
    assert e.param == "n"
    e = bad(client, response_format={"type": "json_object"}, extra_body={"regex": "a"})
    assert "one constraint" in e.message
    e = bad(client, logprobs=True)
    assert e.param == "logprobs"
    e = bad(client, messages=[{"role": "user", "content": "word " * 3000}])
    assert e.code == "context_length_exceeded" and "1024" in e.message


def test_gbnf_grammar(client: openai.OpenAI) -> None:
    gbnf = 'root ::= "yes" | "no"'
    r = client.chat.completions.create(model="m", messages=USER, max_tokens=5, extra_body={"grammar": gbnf})
    assert r.choices[0].message.content in ("yes", "no")
    e = bad(client, extra_body={"grammar": 'root ::= "a\\q"'})  # an unknown escape: a 400 with the place
    assert "line 1" in e.message and "escape" in e.message


def test_http_level_errors(server: RunningServer, http: httpx.Client) -> None:
    url = f"{server.root}/v1/chat/completions"
    body = {"model": "m", "messages": USER, "max_tokens": 4}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        r = httpx.post(url, json=body, headers=headers, timeout=30)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).models.list()
    big = {**body, "messages": [{"role": "user", "content": "x" * (BODY_LIMIT + 10)}]}
    r = http.post("/v1/chat/completions", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit is counted while reading
        yield json.dumps(big).encode()

    r = http.post("/v1/chat/completions", content=chunked(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    r = http.post("/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = http.post("/v1/chat/completions", json={"model": "m"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_processor_failure_is_500_never_unconstrained(
    server: RunningServer, client: openai.OpenAI, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = server.engine
    assert engine is not None
    pattern = "[0-9]{6}"
    guide = regex_guide(engine.cache, pattern, param="regex")  # the guide requests will share
    original = guide.mask
    calls = [0]

    def failing(state: Any) -> Any:  # the third mask of a generation fails
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("injected mask failure")
        return original(state)

    monkeypatch.setattr(guide, "mask", failing)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="m", messages=USER, max_tokens=10, seed=1, extra_body={"regex": pattern}
        )
    assert caught.value.code == "processor_failed" and "injected mask failure" in caught.value.message
    calls[0] = 0
    with http.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "m", "messages": USER, "max_tokens": 10, "regex": pattern, "stream": True},
    ) as response:
        events = sse_events(response)
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert error["type"] == "server_error" and "injected mask failure" in error["message"]
    texts = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert re.fullmatch("[0-9]{2}", texts)  # what came before the failure was constrained


def test_model_without_chat_template() -> None:
    with RunningServer(config_for(model_path("spm32k"))) as running:
        c = openai.OpenAI(base_url=running.base_url, api_key="none", max_retries=0, timeout=60)
        e = bad(c)
        assert e.code == "no_chat_template" and "--chat-template" in e.message
        r = c.completions.create(
            model="m", prompt="Hello", max_tokens=5, seed=1, extra_body={"choice": ["a", "b"]}
        )
        assert r.choices[0].text in ("a", "b")


# -- clients, load, cancellation -----------------------------------------------------------------


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=120)


def test_instructor_json_schema_and_tools(client: openai.OpenAI) -> None:
    for mode in (instructor.Mode.JSON_SCHEMA, instructor.Mode.TOOLS):
        patched = instructor.from_openai(client, mode=mode)
        for seed in range(2):
            person = patched.chat.completions.create(
                model="m", response_model=Person, messages=USER, max_tokens=120, seed=seed, max_retries=0
            )
            assert isinstance(person, Person) and 0 <= person.age <= 120 and len(person.name) <= 12


def test_eight_concurrent_clients(server: RunningServer, http: httpx.Client) -> None:
    """8 clients at once, each with its own connection: no errors, every answer valid, both instances used."""
    engine = server.engine
    assert engine is not None
    served_before = [i.served for i in engine.instances]

    def one_client(k: int) -> list[str]:
        problems = []
        c = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=120)
        for j in range(3):
            seed = 100 * k + j
            if (k + j) % 2:
                r = c.chat.completions.create(
                    model="m", messages=USER, max_tokens=120, seed=seed, response_format=schema_format(PERSON)
                )
                try:
                    jsonschema.validate(json.loads(r.choices[0].message.content), PERSON)
                except (ValueError, jsonschema.ValidationError) as exc:
                    problems.append(f"client {k}: {exc}")
            else:
                r = c.chat.completions.create(
                    model="m", messages=USER, max_tokens=150, seed=seed, tools=TOOLS, tool_choice="required"
                )
                try:
                    check_calls(r.choices[0].message, {"get_weather", "add"})
                except (AssertionError, ValueError, jsonschema.ValidationError) as exc:
                    problems.append(f"client {k}: {exc}")
        return problems

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one_client, range(8), timeout=150))
    assert [p for ps in results for p in ps] == []
    served = [i.served - b for i, b in zip(engine.instances, served_before, strict=True)]
    assert sum(served) == 24 and min(served) > 0


def wait_for(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_client_disconnect_stops_generation(server: RunningServer, http: httpx.Client) -> None:
    engine = server.engine
    assert engine is not None
    before = engine.cancelled
    long = {"model": "m", "messages": USER, "max_tokens": 900, "seed": 1, "n": 4}  # seconds of work
    with http.stream("POST", "/v1/chat/completions", json={**long, "stream": True}) as response:
        lines = response.iter_lines()
        got = [line for _, line in zip(range(6), lines, strict=False)]
        assert any(line.startswith("data:") for line in got)
    assert wait_for(lambda: engine.cancelled == before + 1), "the streamed generation went on"
    with pytest.raises(httpx.TimeoutException):  # a non-streaming client that gives up
        http.post("/v1/chat/completions", json=long, timeout=0.5)
    assert wait_for(lambda: engine.cancelled == before + 2), "the generation went on after the client left"
    assert wait_for(lambda: not any(i.busy for i in engine.instances))


def test_compiled_constraints_are_cached_and_bounded(server: RunningServer, client: openai.OpenAI) -> None:
    engine = server.engine
    assert engine is not None
    schema = {
        "type": "object",
        "properties": {"k": {"type": "integer", "minimum": 0, "maximum": 5}},
        "required": ["k"],
        "additionalProperties": False,
    }
    client.chat.completions.create(
        model="m", messages=USER, max_tokens=20, response_format=schema_format(schema)
    )
    hits = engine.cache.hits
    reordered = {
        "additionalProperties": False,
        "required": ["k"],
        "type": "object",
        "properties": {"k": {"maximum": 5, "minimum": 0, "type": "integer"}},
    }
    client.chat.completions.create(
        model="m", messages=USER, max_tokens=20, response_format=schema_format(reordered)
    )  # same content, other order
    assert engine.cache.hits == hits + 1
    for i in range(40):  # many distinct schemas: the cache keeps at most its size
        distinct = {
            "type": "object",
            "properties": {f"k{i}": {"type": "integer"}},
            "required": [f"k{i}"],
            "additionalProperties": False,
        }
        client.chat.completions.create(
            model="m", messages=USER, max_tokens=12, seed=i, response_format=schema_format(distinct)
        )
    assert len(engine.cache) <= engine.cache.max_entries == 24


def test_serve_command_line() -> None:
    """``python -m outlines_gguf serve`` without ``--model``: the demo model; health, one request, stop."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [
        sys.executable,
        "-m",
        "outlines_gguf",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n-ctx",
        "512",
        "--n-threads",
        "1",
    ]
    env = {**os.environ, "OUTLINES_GGUF_MODELS": str(model_path("qwen2-152k").parent)}
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None

        assert wait_for(up, 60) and proc.poll() is None
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=60)
        r = c.chat.completions.create(
            model="m", messages=USER, max_tokens=8, extra_body={"choice": ["on", "off"]}
        )
        assert r.choices[0].message.content in ("on", "off")
        assert c.models.list().data[0].id == "tiny-qwen2"  # the demo model
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    help_text = subprocess.run(
        [sys.executable, "-m", "outlines_gguf", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert help_text.returncode == 0 and "--parallel" in help_text.stdout and "--api-key" in help_text.stdout


def test_fair_queue_round_robin_across_clients(server: RunningServer) -> None:
    """Unit check of the queue in front of the instances: one client's burst does not starve another."""
    from outlines_gguf.server.engine import FairQueue, Job

    class FakeJob:
        def __init__(self, client: str, k: int) -> None:
            self.client, self.k = client, k

    queue = FairQueue(max_size=5)
    for job in [FakeJob("a", 1), FakeJob("a", 2), FakeJob("a", 3), FakeJob("b", 1), FakeJob("c", 1)]:
        queue.put(job)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="busy"):
        queue.put(FakeJob("d", 1))  # type: ignore[arg-type]
    order = []
    for _ in range(5):
        job = queue.get()
        order.append((job.client, job.k))  # type: ignore[union-attr]
    assert order == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("a", 3)]
    stopped: list[Job | None] = []
    waiter = threading.Thread(target=lambda: stopped.append(queue.get()))
    waiter.start()
    queue.close()
    waiter.join(timeout=10)
    assert stopped == [None]


def test_readme_server_example(server: RunningServer, capsys: pytest.CaptureFixture) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## OpenAI-compatible server\n")
    section = readme[start : readme.index("\n## ", start + 1)]
    commands, example = re.findall(r"^```(?:bash|python)\n(.*?)^```", section, flags=re.M | re.S)
    assert "outlines-gguf serve --model" in commands and "pip install 'outlines-gguf[server]'" in commands
    url = "http://127.0.0.1:8000/v1"
    assert url in example
    namespace: dict[str, Any] = {}
    exec(example.replace(url, server.base_url).replace('api_key="none"', f'api_key="{API_KEY}"'), namespace)
    jsonschema.validate(json.loads(capsys.readouterr().out), namespace["pet"])

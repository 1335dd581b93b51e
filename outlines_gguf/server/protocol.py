"""OpenAI's request and response shapes, as far as this server speaks them.

Requests are Pydantic models that *allow* unknown fields: SDKs send fields
we do not use (``frequency_penalty: 0``, ``metadata``), and refusing them
would break clients for nothing. Fields that would change the answer and
that we cannot honour (``logprobs``, ``logit_bias``, a non-zero penalty) are
refused by :func:`check_unsupported` with a 400 naming them. Loosely typed
fields (``tool_choice``, ``response_format``, message contents) are checked
by the modules that use them, which give better messages than a union error.

Responses are built as plain dicts (cheaper than models, and exactly the
JSON OpenAI documents).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from outlines_gguf.server.errors import APIError, bad_request

MAX_N = 16
"""Most choices one request may ask for (they run one after another)."""
MAX_STOPS = 16


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)  # llama.cpp's extensions, as llama-server takes them
    min_p: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 2)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = Field(default=1, ge=1, le=MAX_N)
    user: str | None = None
    response_format: dict[str, Any] | None = None
    # Extensions (also accepted inside a literal "extra_body" object):
    regex: str | None = None
    grammar: str | None = None
    choice: list[str] | None = None
    extra_body: dict[str, Any] | None = None
    # Refused when set (see check_unsupported):
    logprobs: Any = None
    top_logprobs: int | None = None
    logit_bias: dict[str, Any] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None


class ChatCompletionRequest(_Request):
    """``POST /v1/chat/completions``."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    reasoning_budget: int | None = Field(default=None, ge=0)
    chat_template_kwargs: dict[str, Any] | None = None


class CompletionRequest(_Request):
    """``POST /v1/completions``."""

    prompt: str | list[str]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None


def check_unsupported(req: _Request) -> None:
    """A 400 for fields that would change the answer and that this server does not implement."""
    if req.logprobs not in (None, False, 0):
        raise bad_request("logprobs are not supported by this server", "logprobs")
    if req.top_logprobs:
        raise bad_request("top_logprobs is not supported by this server", "top_logprobs")
    if req.logit_bias:
        raise bad_request("logit_bias is not supported by this server", "logit_bias")
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(req, name):
            raise bad_request(f"{name} is not supported by this server (only 0)", name)
    if isinstance(req, CompletionRequest):
        if req.suffix:
            raise bad_request("suffix (fill-in-the-middle) is not supported by this server", "suffix")
        if req.best_of not in (None, 1):
            raise bad_request("best_of is not supported by this server (use n)", "best_of")


def stops_of(req: _Request) -> tuple[str, ...]:
    """``stop`` as a tuple of non-empty strings."""
    stop = req.stop
    stops = () if stop is None else (stop,) if isinstance(stop, str) else tuple(stop)
    if len(stops) > MAX_STOPS:
        raise bad_request(f"stop takes at most {MAX_STOPS} strings, got {len(stops)}", "stop")
    if any(not s for s in stops):
        raise bad_request("stop strings must be non-empty", "stop")
    return stops


def extension(req: _Request, name: str) -> Any:
    """An extension field, top level or inside a literal ``extra_body`` object."""
    value = getattr(req, name, None)
    if value is None and req.extra_body:
        value = req.extra_body.get(name)
    return value


def validation_error(exc: ValidationError | Sequence[Mapping[str, Any]]) -> APIError:
    """A Pydantic/FastAPI validation error as one 400 naming the first bad field."""
    errors = exc.errors() if isinstance(exc, ValidationError) else list(exc)
    if not errors:
        return bad_request("invalid request")
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) if loc else None
    if first.get("type") == "json_invalid":
        return bad_request(f"the request body is not valid JSON: {first.get('msg', '')}")
    if first.get("type") == "missing":
        return bad_request(f"{param}: this field is required", param)
    shown = repr(first.get("input"))
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    where = f"{param}: " if param else ""
    return bad_request(f"{where}{first.get('msg', 'invalid value')} (got {shown})", param)


# -- responses --------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    """An OpenAI-style object id (``chatcmpl-...``, ``cmpl-...``)."""
    return f"{prefix}-{uuid.uuid4().hex}"


ALPHANUMERIC = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def new_tool_call_id() -> str:
    """A tool call id like OpenAI's (``call_`` and 24 letters and digits)."""
    return "call_" + "".join(secrets.choice(ALPHANUMERIC) for _ in range(24))


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def models_list(model_id: str, created: int) -> dict[str, Any]:
    """``GET /v1/models``."""
    return {
        "object": "list",
        "data": [{"id": model_id, "object": "model", "created": created, "owned_by": "outlines-gguf"}],
    }

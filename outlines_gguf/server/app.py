"""The HTTP layer: FastAPI routes in OpenAI's shapes, the API key and body-size gate, SSE.

Routes do little: parse (Pydantic), prepare the request in the thread pool
(:meth:`Engine.prepare_chat`: checks, template, compile; errors are 400s),
queue it, then either collect the job's choices into one response or
stream them as server-sent events (``data: {chunk}`` ..., ``data: [DONE]``).
While a non-streaming request waits, the handler watches for the client
going away; a streaming response notices it when sending fails. Either way
the job is cancelled, which stops its generation.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outlines_gguf import __version__
from outlines_gguf.server.constraints import CompileNeededError
from outlines_gguf.server.engine import (
    STREAM_POLL_S,
    ChoiceResult,
    Engine,
    Job,
    Prepared,
    client_key,
    merge_deltas,
)
from outlines_gguf.server.errors import AUTHENTICATION, APIError, one_line, server_error
from outlines_gguf.server.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    models_list,
    new_id,
    now,
    usage,
    validation_error,
)

RequestT = TypeVar("RequestT", ChatCompletionRequest, CompletionRequest)
DISCONNECT_POLL_S = 0.2
"""How often a waiting non-streaming request checks whether its client is still there."""
FINGERPRINT = f"outlines-gguf-{__version__}"


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


class Gate:
    """ASGI middleware: the API key (401) and the request body limit (413) for ``/v1/`` routes.

    Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which would
    cost a task and a copy per request.
    """

    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.api_key is not None:
            auth = headers.get(b"authorization", b"").decode("latin-1")
            given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                error = APIError(401, "Incorrect API key provided: give it as 'Authorization: Bearer KEY'",
                                 type=AUTHENTICATION, code="invalid_api_key")
                await error_response(error)(scope, receive, send)
                return
        too_large = APIError(413, f"the request body is larger than the server's limit of "
                                  f"{self.max_body_bytes} bytes", code="request_too_large")
        declared = headers.get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                await error_response(too_large)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        # No length given (chunked): read it here, within the limit, and replay it.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                await error_response(too_large)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def create_app(engine: Engine) -> FastAPI:
    """The FastAPI application serving ``engine``."""
    app = FastAPI(title="outlines-gguf", version=__version__, docs_url=None, redoc_url=None)
    app.state.engine = engine
    compiler = ThreadPoolExecutor(1, thread_name_prefix="outlines-gguf-compile")
    engine.on_close(lambda: compiler.shutdown(wait=False, cancel_futures=True))
    app.add_middleware(Gate, api_key=engine.config.api_key, max_body_bytes=engine.config.max_body_bytes)
    created = now()

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(APIError(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(server_error(f"internal error: {type(exc).__name__}: {one_line(exc)}"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return engine.status()

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return models_list(engine.model_id, created)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Any:
        req = await parse(request, ChatCompletionRequest)
        prepared = await prepare(engine.prepare_chat, req)
        return await respond(request, req, prepared, "chatcmpl", "chat.completion")

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> Any:
        req = await parse(request, CompletionRequest)
        prepared = await prepare(engine.prepare_completion, req)
        return await respond(request, req, prepared, "cmpl", "text_completion")

    async def parse(request: Request, model: type[RequestT]) -> RequestT:
        """The body validated straight from its bytes (pydantic's JSON parser, no FastAPI layer)."""
        try:
            return model.model_validate_json(await request.body())
        except ValidationError as exc:
            raise validation_error(exc) from None

    async def prepare(fn: Callable[[Any], Prepared], req: Any) -> Prepared:
        """Right here when every constraint is compiled (the usual case: no thread hop), else in the
        compile thread, where a compile cannot hold up other requests. One thread: compiling is
        Python under the GIL anyway, and one thread's allocations stay in one malloc arena."""
        try:
            with engine.cache.cached_only():
                return fn(req)
        except CompileNeededError:
            return await asyncio.get_running_loop().run_in_executor(compiler, fn, req)

    async def respond(request: Request, req: Any, prepared: Prepared, prefix: str, kind: str) -> Any:
        host = request.client.host if request.client else None
        job = engine.submit(prepared, client_key(req, host), asyncio.get_running_loop())
        meta = {"id": new_id(prefix), "created": now(), "model": engine.model_id}
        try:
            first = await next_events(request, job)
        except BaseException:
            job.cancel()
            raise
        if first[0][0] == "error":
            raise first[0][1]
        if prepared.stream:  # the first choice started: its prompt fits, the stream can begin
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            return EventSourceResponse(stream(job, meta, kind, include_usage, first), ping=15)
        body = response_body(prepared, meta, kind, first[0][1])
        body["timings"] = job.timings  # an extension, as llama-server's: clients ignore unknown fields
        return JSONResponse(body)

    async def next_events(request: Request, job: Job) -> list[tuple[Any, ...]]:
        """The job's next events; cancels it (and answers 499) if the client goes away meanwhile."""
        while True:
            try:
                return await asyncio.wait_for(job.events(), DISCONNECT_POLL_S)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    job.cancel()
                    raise APIError(499, "the client closed the connection") from None

    async def stream(job: Job, meta: dict[str, Any], kind: str, include_usage: bool,
                     first: list[tuple[Any, ...]]) -> AsyncIterator[bytes]:
        """The job's events as OpenAI stream chunks, then ``[DONE]``."""
        chunk_kind = "chat.completion.chunk" if kind == "chat.completion" else kind
        chat = kind == "chat.completion"
        completion_tokens = 0

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            body = {**meta, "object": chunk_kind, "system_fingerprint": FINGERPRINT, "choices": choices,
                    **extra}
            return record(json.dumps(body, ensure_ascii=False))

        def choice(index: int, fields: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            if chat:
                return {"index": index, "delta": fields, "logprobs": None, "finish_reason": finish}
            return {"index": index, "text": fields.get("text", ""), "logprobs": None, "finish_reason": finish}

        try:
            events = first
            while True:
                out = []  # the chunks of the events collected together go out in one write
                finished = False
                for event in merge_deltas(events):
                    if event[0] == "start":
                        if chat:
                            out.append(chunk([choice(event[1], {"role": "assistant", "content": ""})]))
                    elif event[0] == "delta":
                        out.append(chunk([choice(event[1], event[2])]))
                    elif event[0] == "choice":
                        result: ChoiceResult = event[1]
                        completion_tokens += result.completion_tokens
                        out.append(chunk([choice(result.index, {}, result.finish_reason)]))
                    elif event[0] == "error":
                        out.append(record(json.dumps(event[1].body())))
                        finished = True
                        break
                    elif event[0] == "done":
                        if include_usage:
                            total = usage(prompt_total(job.prepared), completion_tokens)
                            out.append(chunk([], usage=total, timings=job.timings))
                        out.append(record("[DONE]"))
                        finished = True
                        break
                if out:
                    yield b"".join(out)
                if finished:
                    return
                events = await job.events(poll=STREAM_POLL_S)
        finally:
            job.cancel()

    return app


def record(data: str) -> bytes:
    """One server-sent event (``data: ...`` and a blank line), as sse-starlette writes them."""
    return b"data: " + data.encode() + b"\r\n\r\n"


def prompt_total(prepared: Prepared) -> int:
    return sum(prepared.prompt_tokens)


def response_body(prepared: Prepared, meta: dict[str, Any], kind: str, choices: list[ChoiceResult]) -> dict:
    """A whole (non-streaming) response."""
    completion = sum(c.completion_tokens for c in choices)
    out: list[dict[str, Any]] = []
    for c in sorted(choices, key=lambda c: c.index):
        if kind == "chat.completion":
            message: dict[str, Any] = {"role": "assistant", "content": c.text}
            if c.tool_calls:
                message["tool_calls"] = c.tool_calls
                message["content"] = c.text or None
            if c.reasoning is not None:
                message["reasoning_content"] = c.reasoning
            out.append(
                {"index": c.index, "message": message, "logprobs": None, "finish_reason": c.finish_reason}
            )
        else:
            out.append({"index": c.index, "text": c.text, "logprobs": None, "finish_reason": c.finish_reason})
    return {**meta, "object": kind, "system_fingerprint": FINGERPRINT, "choices": out,
            "usage": usage(prompt_total(prepared), completion)}

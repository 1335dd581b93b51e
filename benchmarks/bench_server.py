"""Benchmark the OpenAI-compatible server (``outlines-gguf serve``) against the library it wraps.

    .venv/bin/python benchmarks/bench_server.py                    # tiny-qwen2, and realistic-qwen2 if built
    .venv/bin/python benchmarks/bench_server.py --quick            # fewer rounds, 200 schemas
    .venv/bin/python benchmarks/bench_server.py --model m.gguf --out docs/bench/server.md

The server runs as a subprocess (``python -m outlines_gguf serve``), as users start it, for (c) and
(d), and also in this process (uvicorn in a thread, real HTTP on loopback) for (a) and (b); the library
runs in this process with the same settings (``n_ctx``, one thread per instance: on a two-core machine
that other work shares, llama.cpp's threads would otherwise wait on each other), in a thread of its own
as the server's generations are (see :func:`timed_library`). Four measurements, against the targets of
issue #18:

(a) **overhead per request** for an already-compiled schema: a chat request with ``response_format``
    through HTTP minus the library generating the same tokens (same prompt, same seed: the texts are
    compared) with ``generate.json``, the prompt already rendered; the median of paired differences.
    Measured against a server in this process on the library's own model object (so that only the
    server's work differs, not two processes' copies of the model), and against a server process;
(b) **tokens/s** through the server (whole and streamed) over tokens/s of the library, on a long JSON
    answer and on free text;
(c) **8 concurrent clients** sending 200 requests in all (JSON schemas, required tool calls, regexes,
    choices) to a server with ``--parallel 2``: errors, and outputs that fail validation;
(d) **resident memory** of the server process over 1,000 requests with distinct schemas.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from bench_common import (
    cpu_model,
    fmt_time,
    git_revision,
    load_average,
    package_version,
    rss_bytes,
    table,
    usable_cores,
)
from bench_stats import median, percentile

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
N_CTX = 2048
MESSAGES = [{"role": "user", "content": "Give me the answer as JSON."}]

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "maxItems": 3},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}
LONG = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "items": {"type": "string", "maxLength": 40}, "minItems": 8, "maxItems": 8}
    },
    "required": ["items"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 20},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7},
                },
                "required": ["city", "days"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
                "additionalProperties": False,
            },
        },
    },
]


def distinct_schema(i: int) -> dict[str, Any]:
    """The i-th of many different schemas (names, bounds, lengths, enums and shapes all vary)."""
    props: dict[str, Any] = {
        f"id_{i}": {"type": "integer", "minimum": i % 50, "maximum": 100 + i},
        f"label_{i % 97}": {"type": "string", "maxLength": 1 + i % 23},
        f"kind_{i % 13}": {"enum": [f"k{i}", f"k{i + 1}", f"other{i % 7}"]},
    }
    if i % 3 == 0:
        props[f"flags_{i}"] = {"type": "array", "items": {"type": "boolean"}, "maxItems": 1 + i % 4}
    if i % 5 == 0:
        props[f"nested_{i % 11}"] = {
            "type": "object",
            "properties": {"x": {"type": "number"}},
            "required": ["x"],
            "additionalProperties": False,
        }
    return {"type": "object", "properties": props, "required": sorted(props), "additionalProperties": False}


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


# -- the server process ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server_process(model: Path, parallel: int, log: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """``python -m outlines_gguf serve`` on a free loopback port; yields (process, base URL)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "outlines_gguf",
        "serve",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n-ctx",
        str(N_CTX),
        "--n-threads",
        "1",
        "--parallel",
        str(parallel),
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited: see {log}")
            try:
                if httpx.get(f"{root}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start in 120 s: see {log}")
            time.sleep(0.1)
        yield proc, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@contextmanager
def server_in_process(model: Path, lib: Any) -> Iterator[str]:
    """The server on the library's own model object, uvicorn in a thread: the same process, memory and
    weights as the library calls it is compared with, so only the server's work differs."""
    import uvicorn

    from outlines_gguf.server import Engine, ServerConfig, create_app

    engine = Engine(ServerConfig(model_path=model, n_ctx=N_CTX, n_threads=1), models=[lib])
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(engine), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        engine.close()
        sock.close()


def chat(client: httpx.Client, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES, **body})
    r.raise_for_status()
    return r.json()


def chat_stream(client: httpx.Client, **body: Any) -> tuple[str, int, dict[str, float]]:
    """Stream a chat answer; returns (text, completion tokens, timings) from the usage chunk."""
    text, tokens, timings = "", 0, {}
    payload = {
        "model": "m",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        **body,
    }
    with client.stream("POST", "/v1/chat/completions", json=payload) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data:") or line.endswith("[DONE]"):
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
                timings = chunk.get("timings", {})
            for choice in chunk["choices"]:
                text += choice["delta"].get("content") or ""
    return text, tokens, timings


# -- the measurements ------------------------------------------------------------------------------


def library_model(model: Path) -> Any:
    from outlines_gguf import models

    llm = models.llamacpp(str(model), n_ctx=N_CTX, n_threads=1)
    llm.vocabulary.prepare()
    return llm


def n_generated(result: Any, eog: frozenset[int]) -> int:
    ids = result.token_ids
    return len(ids) - (1 if ids and ids[-1] in eog else 0)


LIBRARY_THREAD = ThreadPoolExecutor(1, thread_name_prefix="library")


def timed_library(gen: Any, prompt: str, **options: Any) -> float:
    """Seconds of one library generation, run in a thread of its own like the server's generations.

    On the machine of these measurements a generation ran 20-30% slower in a process's main thread
    than in any other thread (the same call, alternated); both sides use a non-main thread so that
    only the server's work differs.
    """

    def run() -> float:
        t0 = time.perf_counter()
        gen(prompt, on_incomplete="return", **options)
        return time.perf_counter() - t0

    return LIBRARY_THREAD.submit(run).result()


def measure_overhead(lib: Any, client: httpx.Client, rounds: int) -> dict[str, Any]:
    from outlines_gguf import generate

    gen = generate.json(lib, PERSON)
    prompt = lib.apply_chat_template(MESSAGES)
    seeds = list(range(5))
    fmt = schema_format(PERSON)
    for seed in seeds:  # warm both: compile, masks, first calls
        gen(prompt, max_tokens=150, seed=seed, on_incomplete="return")
        chat(client, max_tokens=150, seed=seed, response_format=fmt)
    lib_times, srv_times, diffs, tokens, own = [], [], [], [], []
    mismatches = 0
    for r in range(rounds):
        for seed in seeds:
            server_first = (r + seed) % 2 == 1  # alternate the order: whichever runs second runs warmer
            if server_first:
                t0 = time.perf_counter()
                body = chat(client, max_tokens=150, seed=seed, response_format=fmt)
                t_srv = time.perf_counter() - t0
            t_lib = timed_library(gen, prompt, max_tokens=150, seed=seed)
            text = gen.last_result.text
            if not server_first:
                t0 = time.perf_counter()
                body = chat(client, max_tokens=150, seed=seed, response_format=fmt)
                t_srv = time.perf_counter() - t0
            mismatches += body["choices"][0]["message"]["content"] != text
            lib_times.append(t_lib)
            srv_times.append(t_srv)
            own.append(t_srv - body["timings"]["generation_ms"] / 1e3)
            diffs.append(t_srv - t_lib)
            tokens.append(n_generated(gen.last_result, lib.vocabulary.eog_ids))
    return {
        "pairs": len(diffs),
        "overhead_median": median(diffs),
        "own_median": median(own),
        "own_p90": percentile(own, 90),
        "overhead_p90": percentile(diffs, 90),
        "library_median": median(lib_times),
        "server_median": median(srv_times),
        "tokens_median": median(tokens),
        "mismatches": mismatches,
    }


def one_rate(
    kind: str,
    gen: Any,
    prompt: str,
    client: httpx.Client,
    max_tokens: int,
    seed: int,
    body: dict[str, Any],
    eog: frozenset[int],
) -> tuple[float, float]:
    """Tokens/s of one generation (by the library, or through the server whole or streamed) and, for
    the server, the share of the round trip that its generation took (from its ``timings``)."""
    if kind == "library":
        seconds = timed_library(gen, prompt, max_tokens=max_tokens, seed=seed)
        return n_generated(gen.last_result, eog) / seconds, float("nan")
    t0 = time.perf_counter()
    if kind == "server":
        reply = chat(client, max_tokens=max_tokens, seed=seed, **body)
        n, timings = reply["usage"]["completion_tokens"], reply["timings"]
    else:
        _, n, timings = chat_stream(client, max_tokens=max_tokens, seed=seed, **body)
    wall = time.perf_counter() - t0
    return n / wall, timings["generation_ms"] / 1e3 / wall


THROUGHPUT_SEEDS = 5


def measure_throughput(
    lib: Any, client: httpx.Client, repeats: int, free_tokens: int = 256
) -> list[dict[str, Any]]:
    """Per seed, the same tokens generated three ways, each ``repeats`` times (the order rotated); the
    best of the repeats per side and seed (the run least disturbed by other processes), then the
    median over seeds of the ratios."""
    from outlines_gguf import generate

    prompt = lib.apply_chat_template(MESSAGES)
    eog = lib.vocabulary.eog_ids
    out = []
    workloads = [
        (
            "JSON, 8 strings of ≤40 characters",
            generate.json(lib, LONG),
            {"response_format": schema_format(LONG)},
        ),
        ("free text", generate.text(lib), {}),
    ]
    for name, gen, body in workloads:
        max_tokens = 400 if body else free_tokens
        gen(prompt, max_tokens=max_tokens, seed=0, on_incomplete="return")
        chat(client, max_tokens=max_tokens, seed=0, **body)
        rates: dict[str, list[float]] = {"library": [], "server": [], "streamed": []}
        best: dict[str, list[float]] = {"library": [], "server": [], "streamed": []}
        shares: dict[str, list[float]] = {"server": [], "streamed": []}
        tokens = 0
        kinds = ["library", "server", "streamed"]
        for i, seed in enumerate(range(10, 10 + THROUGHPUT_SEEDS)):
            runs: dict[str, list[float]] = {k: [] for k in kinds}
            for r in range(repeats):
                turn = (i + r) % 3  # rotate: no side always runs first (colder)
                for kind in kinds[turn:] + kinds[:turn]:
                    rate, share = one_rate(kind, gen, prompt, client, max_tokens, seed, body, eog)
                    runs[kind].append(rate)
                    if kind != "library":
                        shares[kind].append(share)
            for kind in kinds:
                rates[kind] += runs[kind]
                best[kind].append(max(runs[kind]))
            tokens += n_generated(gen.last_result, eog)
        ratio = [s / lib for s, lib in zip(best["server"], best["library"], strict=True)]
        ratio_stream = [s / lib for s, lib in zip(best["streamed"], best["library"], strict=True)]
        out.append(
            {
                "workload": name,
                "tokens": tokens,
                "repeats": repeats,
                **{f"{k} tok/s": median(v) for k, v in rates.items()},
                "ratio": median(ratio),
                "ratio_stream": median(ratio_stream),
                "share": median(shares["server"]),
                "share_stream": median(shares["streamed"]),
                "ratio_all": median(
                    [s / lib for s, lib in zip(rates["server"], rates["library"], strict=True)]
                ),
                "ratio_stream_all": median(
                    [s / lib for s, lib in zip(rates["streamed"], rates["library"], strict=True)]
                ),
            }
        )
    return out


def valid_calls(message: dict[str, Any]) -> bool:
    params = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    calls = message.get("tool_calls") or []
    for call in calls:
        jsonschema.validate(json.loads(call["function"]["arguments"]), params[call["function"]["name"]])
    return bool(calls)


def measure_concurrency(root: str, clients: int, total: int) -> dict[str, Any]:
    schemas = [PERSON, distinct_schema(1), distinct_schema(2)]
    counter = iter(range(total))
    lock = threading.Lock()
    errors: list[str] = []
    invalid: list[str] = []
    latencies: list[float] = []

    def one_request(client: httpx.Client, i: int) -> None:
        kind = i % 5
        t0 = time.perf_counter()
        try:
            if kind < 3:
                schema = schemas[kind]
                body = chat(client, max_tokens=300, seed=i, response_format=schema_format(schema))
                choice = body["choices"][0]
                ok = choice["finish_reason"] == "stop"
                if ok:
                    jsonschema.validate(json.loads(choice["message"]["content"]), schema)
            elif kind == 3:
                body = chat(client, max_tokens=300, seed=i, tools=TOOLS, tool_choice="required")
                choice = body["choices"][0]
                ok = choice["finish_reason"] == "tool_calls" and valid_calls(choice["message"])
            else:
                body = chat(client, max_tokens=30, seed=i, regex=r"[A-Z]{3}-[0-9]{4}")
                ok = re.fullmatch(r"[A-Z]{3}-[0-9]{4}", body["choices"][0]["message"]["content"]) is not None
        except (httpx.HTTPError, KeyError) as exc:
            with lock:
                errors.append(f"{i}: {type(exc).__name__}: {exc}")
            return
        except (ValueError, jsonschema.ValidationError):
            ok = False
        with lock:
            latencies.append(time.perf_counter() - t0)
            if not ok:
                invalid.append(str(i))

    def worker() -> None:
        with httpx.Client(base_url=root, timeout=300) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                one_request(client, i)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    wall = time.perf_counter() - t0
    return {
        "clients": clients,
        "requests": total,
        "errors": len(errors),
        "invalid": len(invalid),
        "wall": wall,
        "p50": median(latencies),
        "p95": percentile(latencies, 95),
        "examples": (errors + invalid)[:5],
    }


def measure_memory(proc: subprocess.Popen, client: httpx.Client, n: int) -> dict[str, Any]:
    for i in range(20):  # warm-up on one schema: the server has run, its caches hold (almost) nothing
        chat(client, max_tokens=80, seed=i, response_format=schema_format(distinct_schema(100_000)))
    start = peak = rss_bytes(proc.pid)
    trace = []
    invalid = 0
    t0 = time.perf_counter()
    for i in range(n):
        schema = distinct_schema(i)
        body = chat(client, max_tokens=120, seed=i, response_format=schema_format(schema))
        choice = body["choices"][0]
        if choice["finish_reason"] == "stop":
            try:
                jsonschema.validate(json.loads(choice["message"]["content"]), schema)
            except (ValueError, jsonschema.ValidationError):
                invalid += 1
        rss = rss_bytes(proc.pid)
        peak = max(peak, rss)
        if (i + 1) % max(1, n // 4) == 0:
            trace.append((i + 1, rss))
    wall = time.perf_counter() - t0
    end = rss_bytes(proc.pid)
    health = client.get("/health").json()
    return {
        "schemas": n,
        "start": start,
        "end": end,
        "growth": max(peak, end) - start,  # the highest point, not just the end (memory is trimmed)
        "peak": peak,
        "trace": trace,
        "invalid": invalid,
        "wall": wall,
        "cache": health["constraint_cache"],
    }


# -- the report ------------------------------------------------------------------------------------


def mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def ratios(rows: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{w['workload']}: {w['ratio']:.3f}× whole, {w['ratio_stream']:.3f}× streamed" for w in rows
    )


def report(
    model: Path, results: dict[str, Any], args: argparse.Namespace, elapsed: float, start_load: str
) -> str:
    targets = []
    sections = []
    a, ap = results.get("overhead"), results.get("overhead_process")
    if a and ap:
        targets.append(
            (
                "server overhead per request, compiled schema ≤ 5 ms",
                a["overhead_median"] <= 5e-3,
                f"{fmt_time(a['overhead_median'])} median of {a['pairs']} paired requests (p90 "
                f"{fmt_time(a['overhead_p90'])}); server process: {fmt_time(ap['overhead_median'])}; "
                f"within each request: {fmt_time(a['own_median'])} / {fmt_time(ap['own_median'])}",
            )
        )
        sections.append(
            f"(a) Overhead: a chat request with `response_format` (a 4-property schema, compiled by the "
            "warm-up) answered by the server over HTTP (httpx, keep-alive), minus "
            "`generate.json(...)(prompt)` "
            f"on the same rendered prompt and seed ({a['tokens_median']:.0f} tokens at the median; "
            f"{a['mismatches']} of {a['pairs']} texts differed), pairs interleaved, which side runs first "
            "alternating. The server runs in the benchmark's process on the library's own model object, and "
            "the library is called from a thread of its own as the server's worker is (a process's main "
            "thread measured 20-30% slower here), so the two sides differ only by the server's work: library "
            f"{fmt_time(a['library_median'])}, server {fmt_time(a['server_median'])} (medians). The overhead "
            "is HTTP both ways (client included), request parsing, the chat template, the queue, tokenizing "
            "and the response. Against a separate `outlines-gguf serve` process (its own copy of the model): "
            f"{fmt_time(ap['overhead_median'])} median, p90 {fmt_time(ap['overhead_p90'])} (library "
            f"{fmt_time(ap['library_median'])}, server {fmt_time(ap['server_median'])}; {ap['mismatches']} "
            "texts differed). Within each request (the round trip minus the generation the server reports "
            "in its `timings`, the library's own loop: no second run to compare, so none of the run-to-run "
            f"noise): {fmt_time(a['own_median'])} median, p90 {fmt_time(a['own_p90'])} in-process; "
            f"{fmt_time(ap['own_median'])} median, p90 {fmt_time(ap['own_p90'])} as a process."
        )
    b, bp = results.get("throughput"), results.get("throughput_process")
    if b and bp:
        worst = min(min(w["ratio"], w["ratio_stream"]) for w in b)
        targets.append(
            (
                "tokens/s through the server ≥ 0.95× the library",
                worst >= 0.95,
                f"{ratios(b)} (server in-process); server process: {ratios(bp)}",
            )
        )
        rows = [
            (
                f"{w['workload']} ({setting})",
                w["tokens"],
                f"{w['library tok/s']:.0f}",
                f"{w['server tok/s']:.0f}",
                f"{w['streamed tok/s']:.0f}",
                f"{w['ratio']:.3f}× ({w['ratio_all']:.3f}×)",
                f"{w['ratio_stream']:.3f}× ({w['ratio_stream_all']:.3f}×)",
                f"{w['share']:.3f}× / {w['share_stream']:.3f}×",
            )
            for setting, group in (("in-process", b), ("server process", bp))
            for w in group
        ]
        sections.append(
            f"(b) Throughput: generated tokens over wall time, one request at a time. For each of "
            f"{THROUGHPUT_SEEDS} seeds the same tokens are generated three ways, {b[0]['repeats']} times "
            "each, "
            "the order rotated; per side and seed the best of the repeats (the run least disturbed by the "
            "other processes on this shared machine), then the median over seeds of the ratios; in "
            "parentheses the median ratio over all runs. The target is judged on the in-process server (as "
            "in (a): only the server's work differs); the server-process rows add the difference between "
            "two processes' copies of the model. The last column compares within each request: the "
            "generation the server ran (its `timings`) over the whole round trip, i.e. tokens/s through "
            "the server over tokens/s of the library's loop inside it, free of run-to-run noise.\n\n"
            + table(
                [
                    "workload",
                    "tokens",
                    "library tok/s",
                    "server tok/s",
                    "streamed tok/s",
                    "server ÷ library",
                    "streamed ÷ library",
                    "same request: whole / streamed",
                ],
                rows,
            )
        )
    c = results.get("concurrency")
    if c:
        targets.append(
            (
                f"{c['clients']} concurrent clients, {c['requests']} requests: 0 errors, 0 invalid",
                c["errors"] == 0 and c["invalid"] == 0,
                f"{c['errors']} errors, {c['invalid']} invalid",
            )
        )
        sections.append(
            f"(c) Concurrency: `--parallel 2`, {c['clients']} client threads with their own connections, "
            f"{c['requests']} requests in all (3 schemas, required tool calls over 2 tools, a regex; every "
            f"answer validated with `jsonschema`/`re`): {c['errors']} errors, {c['invalid']} invalid, "
            f"{c['wall']:.1f} s ({c['requests'] / c['wall']:.1f} requests/s), latency p50 "
            f"{fmt_time(c['p50'])}, p95 {fmt_time(c['p95'])}."
            + (f" Examples: {c['examples']}" if c["examples"] else "")
        )
    d = results.get("memory")
    if d:
        targets.append(
            (
                f"{d['schemas']:,} distinct schemas: resident memory grows < 50 MB",
                d["growth"] < 50 * 2**20,
                f"at most {mb(d['growth'])} ({mb(d['start'])} at the start, {mb(d['peak'])} at the highest, "
                f"{mb(d['end'])} at the end)",
            )
        )
        sections.append(
            "(d) Memory: resident set of a fresh `outlines-gguf serve` process after 20 warm-up requests on "
            f"one schema, then over {d['schemas']:,} requests with distinct schemas ({d['wall']:.0f} s, "
            f"{d['invalid']} invalid): "
            + ", ".join(f"{mb(r)} after {k:,}" for k, r in d["trace"])
            + f". Constraint cache at the end: {d['cache']}."
        )
    head = [
        f"### Server: `{model.name}`",
        "",
        f"`{' '.join(['.venv/bin/python', 'benchmarks/bench_server.py', *sys.argv[1:]])}`, {elapsed:.0f} s; "
        f"{cpu_model()}, {usable_cores()} cores; load average {start_load} at the start, {load_average()} "
        f"at the end; outlines-gguf {git_revision(REPO)}, "
        f"llama-cpp-python {package_version('llama_cpp_python')}, fastapi {package_version('fastapi')}, "
        f"uvicorn {package_version('uvicorn')}. Server settings: `--n-ctx {N_CTX} --n-threads 1`; the "
        "library runs in the benchmark's process with the same settings.",
        "",
        table(
            ["target", "result", "measured"],
            [(name, "**PASS**" if ok else "**FAIL**", detail) for name, ok, detail in targets],
        ),
        "",
    ]
    return "\n".join(head + [x for section in sections for x in (section, "")])


def run_model(model: Path, args: argparse.Namespace) -> str:
    start_load = load_average()
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    parts = set(args.parts)
    lib = library_model(model)
    if parts & {"a", "b"}:
        with (
            server_in_process(model, lib) as root,
            httpx.Client(base_url=root, timeout=600) as client,
        ):
            if "a" in parts:
                print(f"[{model.name}] (a) overhead, in-process server", flush=True)
                results["overhead"] = measure_overhead(lib, client, args.rounds)
            if "b" in parts:
                print(f"[{model.name}] (b) throughput, in-process server", flush=True)
                results["throughput"] = measure_throughput(lib, client, args.repeats, args.free_tokens)
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        log = Path(tmp) / "server.log"
        if parts & {"a", "b"}:
            with (
                server_process(model, 1, log) as (proc, root),
                httpx.Client(base_url=root, timeout=600) as client,
            ):
                if "a" in parts:
                    print(f"[{model.name}] (a) overhead, server process", flush=True)
                    results["overhead_process"] = measure_overhead(lib, client, args.rounds)
                if "b" in parts:
                    print(f"[{model.name}] (b) throughput, server process", flush=True)
                    results["throughput_process"] = measure_throughput(
                        lib, client, args.repeats, args.free_tokens
                    )
        if "d" in parts:  # a fresh server: nothing served before the measurement but its warm-up
            with (
                server_process(model, 1, log) as (proc, root),
                httpx.Client(base_url=root, timeout=600) as client,
            ):
                print(f"[{model.name}] (d) memory over {args.schemas} schemas", flush=True)
                results["memory"] = measure_memory(proc, client, args.schemas)
        del lib
        if "c" in parts:
            with server_process(model, 2, log) as (_, root):
                print(f"[{model.name}] (c) {args.clients} clients, {args.requests} requests", flush=True)
                results["concurrency"] = measure_concurrency(root, args.clients, args.requests)
    return report(model, results, args, time.perf_counter() - t0, start_load)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        type=Path,
        action="append",
        help="GGUF model(s) (default: tiny-qwen2.gguf, and realistic-qwen2.gguf if built)",
    )
    parser.add_argument("--parts", default="abcd", help="which measurements (default abcd)")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of (a), 5 seeds each (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per seed in (b) (default 3)")
    parser.add_argument("--free-tokens", type=int, default=256, help="max_tokens of (b)'s free text")
    parser.add_argument("--schemas", type=int, default=1000, help="distinct schemas for (d)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="requests in all for (c)")
    parser.add_argument("--quick", action="store_true", help="6 rounds, 2 repeats, 200 schemas, 80 requests")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown report here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.repeats, args.schemas, args.requests = 6, 2, 200, 80
    models = args.model or [
        p for p in (MODELS / "tiny-qwen2.gguf", MODELS / "realistic-qwen2.gguf") if p.exists()
    ]
    if not models:
        parser.error("no model: build them with scripts/build_test_models.py, or pass --model")
    if "OUTLINES_GGUF_CACHE_DIR" not in os.environ:  # a fresh disk cache, removed at the end
        folder = tempfile.mkdtemp(prefix="bench-server-cache-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["OUTLINES_GGUF_CACHE_DIR"] = folder
    sections = [run_model(m, args) for m in models]
    text = "\n".join(sections)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

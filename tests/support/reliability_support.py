"""Helpers shared by the reliability tests (tests/test_reliability_*.py)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from outlines_gguf import ByteDFA, OutlinesGGUFError

CORPUS = Path(__file__).resolve().parent.parent / "corpus"

HANG_SECONDS = 30.0
"""A compile that runs this long counts as a hang. The work budget stops the worst
inputs after one to three seconds; the margin is for a loaded CI machine."""


class Hang(BaseException):
    """Raised by :func:`no_hang` (a BaseException, so no ``except Exception`` swallows it)."""


@contextmanager
def no_hang(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Fail with :class:`Hang` if the body runs longer than ``seconds`` (main thread, Unix)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(compile_fn: Callable[[Any], Any], value: Any) -> tuple[str, Any, float]:
    """Compile ``value``: ("ok", result, seconds) or (error class name, error, seconds).

    Only the library's own errors are outcomes: anything else (a TypeError, a
    KeyError, a MemoryError, a hang) propagates and fails the test.
    """
    start = time.perf_counter()
    with no_hang():
        try:
            result = compile_fn(value)
        except OutlinesGGUFError as exc:
            return type(exc).__name__, exc, time.perf_counter() - start
    return "ok", result, time.perf_counter() - start


def assert_clear_error(exc: BaseException) -> None:
    """A library error caused by the input: a ValueError subclass with a message."""
    assert isinstance(exc, OutlinesGGUFError), repr(exc)
    assert isinstance(exc, ValueError), f"{type(exc).__name__} is not a ValueError: {exc}"
    assert str(exc).strip(), f"{type(exc).__name__} without a message"


def assert_valid_dfa(dfa: ByteDFA) -> None:
    """The shape invariants every compiled automaton has."""
    table, accepting = dfa.transitions, dfa.accepting
    assert table.dtype == np.int32 and table.ndim == 2 and table.shape[1] == 256
    assert accepting.dtype == np.bool_ and accepting.shape == (table.shape[0],)
    assert table.shape[0] >= 1
    assert table.min() >= -1 and table.max() < table.shape[0]


def load_corpus(name: str) -> list[dict[str, Any]]:
    """The entries of ``tests/corpus/<name>``: one JSON object a line."""
    with open(CORPUS / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def corpus_id(entry: dict[str, Any]) -> str:
    shown = {k: v for k, v in entry.items() if k != "expect"}
    text = entry.get("note") or json.dumps(shown, ensure_ascii=False)
    return text[:60]


def build_input(entry: dict[str, Any], key: str) -> Any:
    """The input an entry describes: ``key`` itself, or ``repeat``/``nest`` (too big to store)."""
    if "repeat" in entry:
        r = entry["repeat"]
        return r["open"] * r["times"] + r["inner"] + r["close"] * r["times"]
    if "nest" in entry:
        root: dict[str, Any] = {}
        node = root
        for _ in range(entry["nest"]["times"]):
            node[entry["nest"]["key"]] = {}
            node = node[entry["nest"]["key"]]
        return root
    return entry[key]


def random_walk(dfa: ByteDFA, rng: np.random.Generator, max_bytes: int = 40) -> bytes | None:
    """A random string the automaton accepts (None if the walk got too long)."""
    state, out = 0, bytearray()
    for _ in range(max_bytes):
        if dfa.accepting[state] and (rng.random() < 0.3 or not (dfa.transitions[state] >= 0).any()):
            return bytes(out)
        live = np.flatnonzero(dfa.transitions[state] >= 0)
        if live.size == 0:
            return bytes(out) if dfa.accepting[state] else None
        b = int(rng.choice(live))
        out.append(b)
        state = int(dfa.transitions[state, b])
    return bytes(out) if dfa.accepting[state] else None

"""Formatting, machine facts, worker processes and our library's cache reset, shared by the benchmarks
(statistics: ``bench_stats.py``; the engines and llama-cpp-python stand-ins: ``bench_engines.py``)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any


def fmt_time(seconds: float) -> str:
    """A duration with a unit that keeps 3 significant digits readable."""
    if seconds != seconds:  # NaN
        return "–"
    if abs(seconds) >= 1.0:
        return f"{seconds:.2f} s"
    if abs(seconds) >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def fmt_ratio(value: float) -> str:
    return "–" if value != value else f"{value:.2f}×"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table; ``|`` and newlines inside cells are escaped."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


# -- the machine -----------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU model as ``lscpu`` names it (``/proc/cpuinfo`` where lscpu is missing)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=True).stdout
        for line in out.splitlines():
            if line.strip().startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_average() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_revision(repo: Path) -> str:
    """HEAD's short hash, with "+ uncommitted changes" when the library's files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "outlines_gguf"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in outlines_gguf/" if dirty else "")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# -- our library's caches --------------------------------------------------------------------------


def make_cold(vocab: Any) -> None:
    """Forget every compiled constraint, so the next construction starts from scratch.

    ``outlines_gguf.clear_caches`` (compiled regexes, schemas, grammars, terminals, guides and
    the vocabulary's byte-class tries, built on the first dense state of a new pattern, which would
    otherwise make every run after the first look warmer than a fresh process), and the on-disk
    automaton cache when this benchmark owns its folder (``OUTLINES_GGUF_BENCH_OWNS_CACHE=1``).
    Kept: process-wide tables that do not depend on a constraint, which a long-running process
    builds once, as the peers pay their own one-time initialisation once per process.
    """
    import outlines_gguf

    outlines_gguf.clear_caches(vocab)
    folder = os.environ.get("OUTLINES_GGUF_CACHE_DIR")
    if folder and os.environ.get("OUTLINES_GGUF_BENCH_OWNS_CACHE") == "1":
        shutil.rmtree(folder, ignore_errors=True)


class WorkerGoneError(Exception):
    """A worker process exited, ran past its time or its memory limit."""


class ProcessWorker:
    """A function running in its own spawned process, talked to over a pipe.

    A crash, a hang or a memory blow-up in the worker costs only the job it
    was running: :meth:`wait` raises :class:`WorkerGoneError` and :meth:`stop`
    kills the process.
    """

    POLL_S = 0.05

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...], name: str) -> None:
        import multiprocessing

        self.target, self.args, self.name = target, args, name
        self.ctx = multiprocessing.get_context("spawn")
        self.process: Any = None
        self.conn: Any = None

    def spawn(self) -> None:
        parent, child = self.ctx.Pipe()
        self.process = self.ctx.Process(
            target=self.target, args=(*self.args, child), daemon=True, name=self.name
        )
        self.process.start()
        child.close()
        self.conn = parent

    def wait(self, timeout: float, memory_limit: int | None = None) -> Any:
        """The worker's next message; WorkerGoneError after ``timeout`` s, a memory overrun or its exit."""
        assert self.conn is not None and self.process is not None
        deadline = time.monotonic() + timeout
        while not self.conn.poll(self.POLL_S):
            if not self.process.is_alive() and not self.conn.poll(0):
                self.process.join(1)
                raise WorkerGoneError(f"the worker process {describe_exit(self.process.exitcode)}")
            if memory_limit is not None and rss_bytes(self.process.pid) > memory_limit:
                raise WorkerGoneError(f"memory limit exceeded ({memory_limit / 2**30:.1f} GiB)")
            if time.monotonic() > deadline:
                raise WorkerGoneError(f"timed out after {timeout:g} s")
        try:
            return self.conn.recv()
        except EOFError as exc:
            raise WorkerGoneError(f"the worker process {describe_exit(self.process.exitcode)}") from exc

    def stop(self) -> None:
        """Kill the worker (if running) and forget it."""
        if self.process is not None and self.process.is_alive():
            self.process.kill()
        if self.process is not None:
            self.process.join(5)
        if self.conn is not None:
            self.conn.close()
        self.process, self.conn = None, None

    def close(self, join_s: float = 10.0) -> None:
        """Ask the worker to finish (it reads None as "stop"), then stop it."""
        if self.conn is not None and self.process is not None and self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
                self.process.join(join_s)
        self.stop()


def describe_exit(code: int | None) -> str:
    """A process exit code in words."""
    if code is None:
        return "is still running"
    if code < 0:
        import signal

        try:
            return f"was killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"

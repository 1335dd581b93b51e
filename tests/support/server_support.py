"""Run the OpenAI-compatible server in-process for tests and benchmarks.

:class:`RunningServer` starts uvicorn in a thread on a socket bound to a free
loopback port (bound before the server starts, so there is no race for the
port) and stops it on exit. Only 127.0.0.1 is ever used.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from outlines_gguf.server import Engine, ServerConfig, create_app

STARTUP_TIMEOUT_S = 60.0


class RunningServer:
    """``with RunningServer(config) as server:`` ... ``server.base_url`` is ``http://127.0.0.1:PORT/v1``."""

    def __init__(self, config: ServerConfig, models: list[Any] | None = None) -> None:
        self.config = config
        self.models = models
        self.engine: Engine | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def __enter__(self) -> RunningServer:
        self.engine = Engine(self.config, self.models)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted sockets inherit it: without it, keep-alive requests wait 40 ms on delayed ACKs
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(create_app(self.engine), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.__exit__(None, None, None)
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.engine is not None:
            self.engine.close()
        if self._socket is not None:
            self._socket.close()


def config_for(model: Path, **options: Any) -> ServerConfig:
    """A server config on a test model: a small context (fast to load), one thread per instance
    (llama.cpp's threads wait on each other when a busy two-core machine is oversubscribed)."""
    options.setdefault("n_ctx", 1024)
    options.setdefault("n_threads", 1)
    return ServerConfig(model_path=model, **options)

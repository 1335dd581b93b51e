"""An OpenAI-compatible HTTP server for exact structured generation (``outlines-gguf serve``).

>>> from outlines_gguf.server import ServerConfig, serve
>>> serve(ServerConfig(model_path="model.gguf", port=8000))

Then any OpenAI client works against ``http://127.0.0.1:8000/v1``:
``response_format`` (``json_object``, ``json_schema``), the ``regex``,
``grammar`` and ``choice`` extensions, and ``tools`` are enforced exactly by
this library's processors. Needs the ``server`` extra
(``pip install 'outlines-gguf[server]'``: FastAPI, uvicorn, sse-starlette).

Modules: :mod:`.app` (routes, auth, body limit, SSE), :mod:`.protocol`
(OpenAI shapes), :mod:`.engine` (instances, fair queue, generation),
:mod:`.constraints` (compiled constraints, cached by content hash),
:mod:`.shared_cache` (that cache shared by replicas through a folder),
:mod:`.tool_formats` (each model family's tool-call format),
:mod:`.reasoning` (``<think>`` blocks), :mod:`.response` (the processor
that walks thinking, text and tool calls), :mod:`.chat` (chat templates),
:mod:`.config` (the settings).
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import sse_starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"the outlines-gguf server needs its extra ({exc.name} is missing): "
        "pip install 'outlines-gguf[server]'"
    ) from exc

from outlines_gguf.server.app import create_app
from outlines_gguf.server.config import ServerConfig
from outlines_gguf.server.engine import Engine

LIBRARY_GUIDES_IN_A_SERVER = 1
"""The library's process-wide guide cache in a server process (see :func:`serve`)."""


def serve(config: ServerConfig) -> None:
    """Load the model and serve until interrupted (uvicorn handles SIGINT/SIGTERM).

    The server keeps compiled constraints in its own cache, by content hash
    (``--cache-entries``); the library's process-wide guide cache would keep
    up to 64 more guides (with their masks: about a megabyte each on a 152k
    vocabulary) alive after the server dropped them, so in the server's own
    process it is shrunk to what compiling needs.
    """
    import uvicorn

    from outlines_gguf import compiler

    compiler.GUIDE_CACHE_SIZE = min(compiler.GUIDE_CACHE_SIZE, LIBRARY_GUIDES_IN_A_SERVER)
    engine = Engine(config)
    try:
        uvicorn.run(create_app(engine), host=config.host, port=config.port, log_level="info")
    finally:
        engine.close()


__all__ = ["Engine", "ServerConfig", "create_app", "serve"]

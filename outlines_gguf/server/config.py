"""The server's settings (the ``outlines-gguf serve`` flags)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outlines_gguf.server.constraints import DEFAULT_CACHE_ENTRIES

DEFAULT_MAX_BODY_BYTES = 8 * 2**20
"""Largest request body (a long conversation with big schemas fits; a runaway upload does not)."""
DEFAULT_MAX_QUEUE = 256
"""Requests waiting for a model instance beyond this are refused with 503."""


@dataclass
class ServerConfig:
    """What ``outlines-gguf serve`` was started with."""

    model_path: Path
    host: str = "127.0.0.1"
    port: int = 8000
    n_ctx: int = 4096
    n_gpu_layers: int = 0
    n_threads: int | None = None
    api_key: str | None = None
    parallel: int = 1
    """Model instances, each running one generation at a time."""
    chat_template: str | None = None
    """Replaces the model's own chat template (Jinja text)."""
    tool_format: str | None = None
    """hermes, llama3, mistral or generic; None: detected from the chat template."""
    model_alias: str | None = None
    """The model id clients see (default: the file name without .gguf)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    cache_entries: int = DEFAULT_CACHE_ENTRIES
    max_queue: int = DEFAULT_MAX_QUEUE
    reasoning_budget: int | None = None
    """Default cap on thinking tokens for reasoning models (a request's reasoning_budget wins)."""
    cache_dir: Path | None = None
    """A folder shared by replicas for compiled constraints (needs ``cache_key``)."""
    cache_key: str | None = None
    """The secret that signs the shared folder's entries."""

    @property
    def model_id(self) -> str:
        if self.model_alias:
            return self.model_alias
        name = Path(self.model_path).name
        return name[: -len(".gguf")] if name.endswith(".gguf") else name

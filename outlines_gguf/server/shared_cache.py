"""Compiled constraints shared through a folder, so replicas compile each constraint once.

Replicas of the server behind a load balancer each keep their own in-memory
:class:`~.constraints.ConstraintCache`. With ``--cache-dir`` (a folder all
replicas see: a network file system, a shared volume) a replica that
compiles a constraint also writes it there, and the others load it instead
of compiling it: loading a pickled JSON guide takes well under a millisecond
where compiling takes from ten milliseconds to a second.

Guides are pickled (without their masks; the vocabulary is left out and
supplied on loading), so an entry must never be read from an untrusted
folder: each file is signed with HMAC-SHA256 under ``--cache-key`` and is
unpickled only if the signature verifies. An entry is named by the SHA-256 of
the library's sources, the vocabulary's hash and the constraint, so another
version, another model or another constraint never matches; files are
written to a temporary name and renamed, so readers never see half a file.
Unreadable, foreign or stale entries are ignored (and compiled again).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import os
import pickle
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from outlines_gguf.tokens.vocabulary import Vocabulary

logger = logging.getLogger("outlines_gguf.server")

MAGIC = b"OGGUF-GUIDE-1\n"
MAX_FILES = 4096
"""Entries kept in the folder; past this the oldest tenth is removed."""


@lru_cache(maxsize=1)
def library_fingerprint() -> str:
    """A hash of the library's sources: a pickle from other code is never loaded."""
    package = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(package.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, vocabulary: Vocabulary) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.vocabulary = vocabulary

    def persistent_id(self, obj: Any) -> str | None:
        return "vocabulary" if obj is self.vocabulary else None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, vocabulary: Vocabulary) -> None:
        super().__init__(file)
        self.vocabulary = vocabulary

    def persistent_load(self, pid: Any) -> Any:
        if pid != "vocabulary":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return self.vocabulary


class SharedGuideFolder:
    """Signed, pickled guides in a folder shared by replicas (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike[str], key: str | bytes, vocabulary: Vocabulary) -> None:
        if not key:
            raise ValueError("a shared cache folder needs a key: its entries are signed with it")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._key = key.encode() if isinstance(key, str) else key
        self.vocabulary = vocabulary
        self._prefix = f"{library_fingerprint()}\0{vocabulary.hash}\0"
        self.loaded = 0
        self.stored = 0
        self.rejected = 0

    def path(self, key: str) -> Path:
        name = hashlib.sha256((self._prefix + key).encode()).hexdigest()
        return self.folder / f"{name}.guide"

    def load(self, key: str) -> Any | None:
        """The guide stored under ``key`` (a content hash), or None."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        head = len(MAGIC) + 32
        if not data.startswith(MAGIC) or len(data) < head:
            self.rejected += 1
            return None
        signature, payload = data[len(MAGIC): head], data[head:]
        if not hmac.compare_digest(signature, hmac.new(self._key, payload, hashlib.sha256).digest()):
            self.rejected += 1
            logger.warning("outlines-gguf server: %s is not signed with this cache key; ignored", path)
            return None
        try:
            value = _Unpickler(io.BytesIO(payload), self.vocabulary).load()
        except Exception as exc:  # signed by us, but not loadable here: compile again
            self.rejected += 1
            logger.warning("outlines-gguf server: cannot load %s (%s); compiling again", path, exc)
            return None
        self.loaded += 1
        return value

    def store(self, key: str, value: Any) -> None:
        """Write ``value`` under ``key``; failures are logged, never raised (the cache is optional)."""
        try:
            buffer = io.BytesIO()
            _Pickler(buffer, self.vocabulary).dump(value)
            payload = buffer.getvalue()
            signature = hmac.new(self._key, payload, hashlib.sha256).digest()
            fd, temp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(MAGIC + signature + payload)
                os.replace(temp, self.path(key))
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
            self.stored += 1
            if self.stored % 64 == 0:
                self._prune()
        except Exception as exc:
            logger.warning("outlines-gguf server: could not write a shared cache entry: %s", exc)

    def _prune(self) -> None:
        """Keep at most MAX_FILES entries (other replicas may be pruning too: races are harmless)."""
        entries = []
        for path in self.folder.glob("*.guide"):
            try:
                entries.append((path.stat().st_mtime, path))
            except OSError:
                continue
        if len(entries) > MAX_FILES:
            entries.sort()
            for _, path in entries[: len(entries) - MAX_FILES + MAX_FILES // 10]:
                path.unlink(missing_ok=True)

    def stats(self) -> dict[str, int]:
        return {"loaded": self.loaded, "stored": self.stored, "rejected": self.rejected}

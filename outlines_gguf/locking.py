"""Objects that threads share under one lock, and that pickle without it (a lock cannot be
pickled; the copy in the other process gets a new one)."""

from __future__ import annotations

import threading


class Locked:
    """Pickles without its ``_lock`` (an RLock), which is made anew on loading."""

    _lock: threading.RLock

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

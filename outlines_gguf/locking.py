"""Objects that threads share under one lock, and that pickle without it (a lock cannot be
pickled; the copy in the other process gets a new one)."""

from __future__ import annotations

import threading
from typing import Any


class Locked:
    """Pickles without its ``_lock``, which :meth:`_new_lock` makes anew on loading.

    Subclasses that keep more than a lock out of the pickle extend ``__getstate__``; those whose
    lock is not a fresh RLock (a plain Lock, or one shared with another object) override
    ``_new_lock``, and make their lock with it in ``__init__`` too.
    """

    _lock: Any  # an RLock by default; a Lock, or another object's lock, where _new_lock says so

    def _new_lock(self) -> Any:
        return threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = self._new_lock()

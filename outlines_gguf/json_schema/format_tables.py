"""The automata of the string formats, built when the package is made and shipped with it.

A format's regex is large (``uri-reference`` is 4,000 characters: 70 ms to build over
JSON-escaped characters, ``iri-reference`` 76 ms, ``uri`` 30 ms), and a process paid that the
first time a schema used the format: in a one-shot command line, most of its time to the
first token. They are pure functions of this package's code, so they are built once, by
``scripts/build_format_tables.py``, and stored in ``format_tables.npz`` (each automaton's
table over its byte classes), keyed by a hash of the regex: a format whose regex changed
is not found and is built as before, and ``tests/unit/json_schema/test_format_tables.py``
fails until the tables are written again (it also checks that each shipped automaton
accepts what a fresh build accepts).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np

from outlines_gguf.automata.dfa import ByteDFA, group_columns

TABLES = Path(__file__).with_name("format_tables.npz")

_lock = threading.Lock()
_loaded: dict[str, np.ndarray] | None = None


def regex_key(regex: str) -> str:
    """The name a format's regex is stored under."""
    return hashlib.sha256(regex.encode("utf-8")).hexdigest()[:24]


def _tables() -> dict[str, np.ndarray]:
    global _loaded
    with _lock:
        if _loaded is None:
            try:
                with np.load(TABLES) as data:
                    _loaded = {name: data[name] for name in data.files}
            except (OSError, ValueError):  # (not shipped, or unreadable: everything is built)
                _loaded = {}
        return _loaded


def shipped_format_dfa(regex: str) -> ByteDFA | None:
    """The shipped automaton of a format's content for ``regex`` (read-only), or None if
    there is none for this exact regex."""
    tables = _tables()
    key = regex_key(regex)
    table = tables.get(f"{key}.table")
    if table is None:
        return None
    byte_class, accepting = tables[f"{key}.classes"], tables[f"{key}.accepting"]
    transitions = np.ascontiguousarray(table.astype(np.int32)[:, byte_class.astype(np.intp)])
    transitions.flags.writeable = False
    accepting = accepting.astype(bool)
    accepting.flags.writeable = False
    return ByteDFA(transitions, accepting)


def write_tables(path: Path = TABLES) -> dict[str, int]:
    """Build every format's automaton and store them at ``path``; returns each format's
    number of states."""
    from outlines_gguf.json_schema.leaves import STRING_FORMATS
    from outlines_gguf.json_schema.scalars import build_format_dfa

    arrays: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    for name, regex in sorted(STRING_FORMATS.items()):
        dfa = build_format_dfa(regex)
        first, byte_class = group_columns(dfa.transitions)
        key = regex_key(regex)
        kind = np.int16 if dfa.n_states < 2**15 else np.int32
        arrays[f"{key}.table"] = dfa.transitions[:, first].astype(kind)
        arrays[f"{key}.classes"] = byte_class.astype(np.uint8)  # (at most 256 classes)
        arrays[f"{key}.accepting"] = dfa.accepting.astype(np.uint8)
        sizes[name] = dfa.n_states
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]  # (numpy types **kwds as allow_pickle)
    return sizes


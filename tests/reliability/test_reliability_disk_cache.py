"""The on-disk cache of compiled automata: a corrupted or stale entry is rebuilt, never trusted.

Entries are ``.npz`` files read with ``allow_pickle=False`` and checked
(header: library version, cache format, compiler fingerprint, constraint;
checksum; shape invariants) before use; anything wrong is deleted and
compiled again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from outlines_gguf import compile_json_schema, compile_regex, compiler, disk_cache
from outlines_gguf.compiler import compile_canonical

SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}, "tags": {"type": "array"}}}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OUTLINES_GGUF_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("OUTLINES_GGUF_CACHE", raising=False)  # the default: JSON schemas
    compile_canonical.cache_clear()
    compile_regex.cache_clear()
    yield tmp_path / f"dfa-v{disk_cache.CACHE_FORMAT}"
    compile_canonical.cache_clear()
    compile_regex.cache_clear()


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.npz")) if folder.is_dir() else []


def fresh_compile(schema=SCHEMA):
    compile_canonical.cache_clear()  # the in-memory cache: only the disk can answer now
    return compile_json_schema(schema)


def test_a_schema_is_compiled_once_then_loaded(cache_dir: Path, monkeypatch) -> None:
    first = fresh_compile()
    [path] = entries(cache_dir)
    assert path.name.startswith("json-")
    monkeypatch.setattr(compiler, "schema_to_dfa", lambda *a: pytest.fail("compiled again"))
    again = fresh_compile()
    assert np.array_equal(again.transitions, first.transitions)
    assert np.array_equal(again.accepting, first.accepting)


def test_what_is_cached_follows_the_setting(cache_dir: Path, monkeypatch) -> None:
    compile_regex(r"[0-9]{3}")
    assert entries(cache_dir) == []  # regexes: only on request
    monkeypatch.setenv("OUTLINES_GGUF_CACHE", "all")
    compile_regex(r"[0-9]{4}")
    assert [p.name[:6] for p in entries(cache_dir)] == ["regex-"]
    monkeypatch.setenv("OUTLINES_GGUF_CACHE", "0")
    fresh_compile()
    assert len(entries(cache_dir)) == 1  # nothing written when off


def _corrupt_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _corrupt_garbage(path: Path) -> None:
    path.write_bytes(os.urandom(300))


def _corrupt_empty(path: Path) -> None:
    path.write_bytes(b"")


def _rewrite(path: Path, **changes) -> None:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(arrays["header"].tobytes())
    header.update(changes.pop("header", {}))
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    arrays.update(changes)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _flip_a_transition(path: Path) -> None:
    with np.load(path) as data:
        table = data["transitions"].copy()
    table[0, ord("{")] = -1
    _rewrite(path, transitions=table)  # the checksum no longer matches


def _other_version(path: Path) -> None:
    _rewrite(path, header={"library": "0.0.0-other"})


def _other_compiler(path: Path) -> None:
    _rewrite(path, header={"fingerprint": "0" * 64})


def _other_constraint(path: Path) -> None:
    _rewrite(path, header={"key": "something else"})


def _bad_but_consistent(path: Path) -> None:
    """Out-of-range transitions with a checksum that matches them: the invariants catch it."""
    with np.load(path) as data:
        table, accepting = data["transitions"].copy(), data["accepting"]
    table[0, 0] = table.shape[0] + 5
    _rewrite(path, transitions=table, header={"checksum": disk_cache._checksum(table, accepting)})


def _wrong_dtype(path: Path) -> None:
    with np.load(path) as data:
        table, accepting = data["transitions"].astype(np.int64), data["accepting"]
    _rewrite(path, transitions=table, header={"checksum": disk_cache._checksum(table, accepting)})


def _extra_array(path: Path) -> None:
    _rewrite(path, extra=np.zeros(3))


def _header_not_json(path: Path) -> None:
    _rewrite(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["header"] = np.frombuffer(b"\xff\xfe not json", dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    "corrupt",
    [
        _corrupt_truncate,
        _corrupt_garbage,
        _corrupt_empty,
        _flip_a_transition,
        _other_version,
        _other_compiler,
        _other_constraint,
        _bad_but_consistent,
        _wrong_dtype,
        _extra_array,
        _header_not_json,
    ],
)
def test_a_bad_entry_is_deleted_and_rebuilt(cache_dir: Path, corrupt, caplog) -> None:
    good = fresh_compile()
    [path] = entries(cache_dir)
    corrupt(path)
    with caplog.at_level(logging.WARNING, logger="outlines_gguf"):
        rebuilt = fresh_compile()
    assert "deleted and compiled again" in caplog.text
    assert np.array_equal(rebuilt.transitions, good.transitions)
    [path] = entries(cache_dir)  # a good entry is written back
    assert disk_cache.load("json", _key()) is not None


def _key() -> str:
    canonical = json.dumps(SCHEMA, ensure_ascii=False, allow_nan=False)
    return json.dumps([canonical, None, 3, False, None], ensure_ascii=False)


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["OUTLINES_GGUF_CACHE_DIR"]) / "PWNED",))


def test_a_pickle_in_the_cache_is_never_unpickled(cache_dir: Path) -> None:
    fresh_compile()
    [path] = entries(cache_dir)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["transitions"] = np.array([_Payload()], dtype=object)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    assert b"PWNED" in path.read_bytes()  # the payload is in the file
    fresh_compile()
    assert not (cache_dir.parent / "PWNED").exists()
    assert len(entries(cache_dir)) == 1


def test_an_unwritable_cache_folder_is_not_an_error(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("OUTLINES_GGUF_CACHE_DIR", str(blocker))
    dfa = fresh_compile()
    assert dfa.n_states > 1


def test_the_folder_keeps_at_most_max_files(cache_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr(disk_cache, "MAX_FILES", 5)
    for i in range(9):
        fresh_compile({"type": "integer", "minimum": i})
    assert len(entries(cache_dir)) <= 5
    assert disk_cache.clear() >= 1 and entries(cache_dir) == []

"""Read the key/value metadata of a GGUF file, quickly and without weights.

Only the header and the metadata section are parsed; tensor data is never
touched. Large arrays (token lists of 150k strings) are decoded in one pass.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import Any

import numpy as np

from outlines_gguf.errors import GGUFFormatError

GGUF_MAGIC = b"GGUF"

# GGUF value types -> (struct format, numpy dtype) for scalars.
_SCALARS: dict[int, tuple[str, str]] = {
    0: ("<B", "<u1"),
    1: ("<b", "<i1"),
    2: ("<H", "<u2"),
    3: ("<h", "<i2"),
    4: ("<I", "<u4"),
    5: ("<i", "<i4"),
    6: ("<f", "<f4"),
    7: ("<?", "<u1"),
    10: ("<Q", "<u8"),
    11: ("<q", "<i8"),
    12: ("<d", "<f8"),
}
_STRING = 8
_ARRAY = 9


class _Cursor:
    """A read position in a buffer, with bounds checks that name the problem."""

    def __init__(self, buf: Any, path: str) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path

    def need(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise GGUFFormatError(f"{self.path}: truncated GGUF metadata at byte {self.pos}")

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        self.need(size)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> bytes:
        n = self.unpack("<Q")
        self.need(n)
        value = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return value

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            value = self.unpack(_SCALARS[vtype][0])
            return bool(value) if vtype == 7 else value
        if vtype == _STRING:
            return self.string().decode("utf-8", errors="surrogateescape")
        if vtype == _ARRAY:
            return self.array()
        raise GGUFFormatError(f"{self.path}: unknown GGUF value type {vtype} at byte {self.pos}")

    def array(self) -> Any:
        etype = self.unpack("<I")
        count = self.unpack("<Q")
        if etype in _SCALARS:
            dtype = np.dtype(_SCALARS[etype][1])
            nbytes = dtype.itemsize * count
            self.need(nbytes)
            out = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).copy()
            self.pos += nbytes
            return out.astype(bool) if etype == 7 else out
        if etype == _STRING:
            return self.string_array(count)
        if etype == _ARRAY:
            return [self.array() for _ in range(count)]
        raise GGUFFormatError(f"{self.path}: unknown GGUF array element type {etype}")

    def string_array(self, count: int) -> list[bytes]:
        """Strings stay raw bytes here: token texts need not be valid UTF-8."""
        buf, pos = self.buf, self.pos
        out: list[bytes] = []
        unpack_len = struct.Struct("<Q").unpack_from
        end = len(buf)
        append = out.append
        for _ in range(count):
            if pos + 8 > end:
                raise GGUFFormatError(f"{self.path}: truncated string array")
            (n,) = unpack_len(buf, pos)
            pos += 8
            if pos + n > end:
                raise GGUFFormatError(f"{self.path}: truncated string array")
            append(bytes(buf[pos : pos + n]))
            pos += n
        self.pos = pos
        return out


def gguf_tensor_count(path: str | os.PathLike[str]) -> int:
    """How many tensors a GGUF file holds, from its 24-byte header (0: a vocabulary-only file).

    Raises :class:`GGUFFormatError` for a file that is not GGUF, as
    :func:`read_gguf_metadata` does.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError as exc:
        raise GGUFFormatError(f"cannot open GGUF file {path!r}: {exc.strerror}") from exc
    if head[:4] != GGUF_MAGIC:
        raise GGUFFormatError(f"{path}: not a GGUF file (magic {head[:4]!r})")
    if len(head) < 24:
        raise GGUFFormatError(f"{path}: not a GGUF file (only {len(head)} bytes)")
    version, count = struct.unpack("<IQ", head[4:16])
    if version not in (2, 3):
        raise GGUFFormatError(f"{path}: unsupported GGUF version {version} (big-endian or too old?)")
    return int(count)


def read_gguf_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the metadata of a GGUF file as a dict.

    Scalars become Python values, numeric arrays numpy arrays, string arrays
    lists of ``bytes`` (raw, since token texts need not be valid UTF-8) and
    plain strings ``str``. Raises :class:`GGUFFormatError` for anything that is
    not a readable little-endian GGUF file (version 2 or 3).
    """
    path = os.fspath(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise GGUFFormatError(f"cannot open GGUF file {path!r}: {exc.strerror}") from exc
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 24:
            raise GGUFFormatError(f"{path}: not a GGUF file (only {size} bytes)")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            cur = _Cursor(buf, path)
            cur.need(4)
            if bytes(buf[:4]) != GGUF_MAGIC:
                raise GGUFFormatError(f"{path}: not a GGUF file (magic {bytes(buf[:4])!r})")
            cur.pos = 4
            version = cur.unpack("<I")
            if version not in (2, 3):
                raise GGUFFormatError(
                    f"{path}: unsupported GGUF version {version} (big-endian or too old?)"
                )
            cur.unpack("<Q")  # tensor count: tensors are never read here
            n_kv = cur.unpack("<Q")
            meta: dict[str, Any] = {}
            for _ in range(n_kv):
                key = cur.string().decode("utf-8", errors="replace")
                vtype = cur.unpack("<I")
                meta[key] = cur.value(vtype)
            return meta

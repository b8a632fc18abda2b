"""The bounded safetensors header pre-parser: it runs before safetensors or numpy see a byte of the file.

A safetensors file is ``u64 little-endian N`` + ``N`` bytes of UTF-8 JSON (space-padded) + the data section. The
JSON maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the data
section) and may hold ``__metadata__``, a map of strings to strings.

:func:`read_header` reads at most ``8 + limits.max_header_bytes`` bytes and checks, cheapest first:

    TRUNCATED         fewer than 8 bytes; N larger than the rest of the file; tensors ending past the end
    HEADER_TOO_LARGE  N above the limit (checked before the header is read)
    HEADER_NOT_JSON   not UTF-8, not JSON, not an object, duplicate keys, NaN, or an entry of the wrong shape
    BAD_METADATA      ``__metadata__`` not a map of strings to strings
    UNKNOWN_DTYPE     a dtype outside :data:`~ledger.updatefile.dtypes.DTYPES`
    BAD_SHAPE         a shape that is not a list of non-negative ints, or whose size × itemsize ≠ byte length
    BAD_OFFSETS       offsets not [begin, end] ints with begin ≤ end; tensors overlapping, leaving gaps, or
                      leaving trailing bytes (the tensors must tile the data section exactly)

Every failure is a :class:`~ledger.updatefile.errors.HeaderRejected` carrying its :class:`~ledger.reasons.Reason`.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ledger.reasons import Reason
from ledger.updatefile.dtypes import DTYPES
from ledger.updatefile.errors import HeaderRejected

DEFAULT_MAX_HEADER_BYTES = 16 * 1024 * 1024
METADATA_FIELD = "__metadata__"
_ENTRY_KEYS = frozenset({"dtype", "shape", "data_offsets"})


@dataclass(frozen=True)
class HeaderLimits:
    """Bounds the pre-parser enforces."""

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    """Largest JSON header accepted (``HEADER_TOO_LARGE`` above it)."""
    max_file_bytes: int | None = None
    """Largest file accepted (``TOO_LARGE``); None leaves the size to the caller's own limit."""
    max_dims: int = 16
    """Most dimensions a tensor may have (``BAD_SHAPE`` above it)."""


DEFAULT_LIMITS = HeaderLimits()


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor as the header describes it; ``start``/``end`` are absolute file offsets."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Header:
    """A validated header: tensors by name (sorted), the metadata map, and the layout of the file."""

    header_len: int
    file_size: int
    tensors: Mapping[str, TensorInfo]
    metadata: Mapping[str, str] | None

    @property
    def data_start(self) -> int:
        return 8 + self.header_len


Source = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO


def read_header(source: Source, limits: HeaderLimits = DEFAULT_LIMITS, *, name: str | None = None) -> Header:
    """Validate and return the header of a safetensors file given as a path, bytes, or a seekable binary file.

    Raises :class:`HeaderRejected` (with ``reason``) for every malformed or unsafe header; reads no more than
    ``8 + limits.max_header_bytes`` bytes.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source).cast("B")
        return _parse(_MemoryReader(view), len(view), limits, name or "<bytes>")
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        with open(path, "rb") as f:
            return _parse(f, os.fstat(f.fileno()).st_size, limits, name or str(path))
    size = source.seek(0, io.SEEK_END)
    source.seek(0)
    return _parse(source, size, limits, name or str(getattr(source, "name", "<stream>")))


class _MemoryReader:
    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._pos = 0

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos
        return pos

    def read(self, n: int) -> bytes:
        out = bytes(self._view[self._pos : self._pos + n])
        self._pos += len(out)
        return out


def _reject(reason: Reason, detail: str, source: str) -> HeaderRejected:
    return HeaderRejected(reason, detail, source=source)


def _parse(f: Any, size: int, limits: HeaderLimits, source: str) -> Header:
    if limits.max_file_bytes is not None and size > limits.max_file_bytes:
        raise _reject(Reason.TOO_LARGE, f"{size} bytes, limit {limits.max_file_bytes}", source)
    if size < 8:
        raise _reject(
            Reason.TRUNCATED, f"{size} bytes; a safetensors file starts with an 8-byte length", source
        )
    f.seek(0)
    n = int.from_bytes(f.read(8), "little")
    if n > limits.max_header_bytes:
        raise _reject(
            Reason.HEADER_TOO_LARGE, f"header of {n} bytes, limit {limits.max_header_bytes}", source
        )
    if n > size - 8:
        raise _reject(
            Reason.TRUNCATED, f"header of {n} bytes but only {size - 8} bytes follow the length", source
        )
    raw = f.read(n)
    if len(raw) != n:
        raise _reject(Reason.TRUNCATED, f"header cut off after {len(raw)} of {n} bytes", source)
    doc = _decode(raw, source)
    metadata = _metadata(doc.pop(METADATA_FIELD, None), source)
    data_len = size - 8 - n
    tensors = [_entry(key, value, limits, source) for key, value in doc.items()]
    _check_layout(tensors, data_len, source)
    start = 8 + n
    infos = {
        name: TensorInfo(name, dtype, shape, start + begin, start + end)
        for name, dtype, shape, begin, end in sorted(tensors)
    }
    return Header(header_len=n, file_size=size, tensors=infos, metadata=metadata)


def _decode(raw: bytes, source: str) -> dict[str, Any]:
    if not raw.startswith(b"{"):
        raise _reject(Reason.HEADER_NOT_JSON, "the header does not start with '{'", source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _reject(Reason.HEADER_NOT_JSON, f"not UTF-8 at byte {exc.start}", source) from None
    try:
        doc = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except _DuplicateKey as exc:
        raise _reject(Reason.HEADER_NOT_JSON, f"duplicate key {exc.key!r}", source) from None
    except RecursionError:
        raise _reject(Reason.HEADER_NOT_JSON, "nested too deeply", source) from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers with too many digits
        raise _reject(Reason.HEADER_NOT_JSON, str(exc), source) from None
    if not isinstance(doc, dict):
        raise _reject(
            Reason.HEADER_NOT_JSON, f"the header is a JSON {type(doc).__name__}, not an object", source
        )
    return doc


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _metadata(value: Any, source: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _reject(Reason.BAD_METADATA, "`__metadata__` must map strings to strings", source)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entry(
    name: str, value: Any, limits: HeaderLimits, source: str
) -> tuple[str, str, tuple[int, ...], int, int]:
    if not isinstance(value, dict) or value.keys() != _ENTRY_KEYS:
        raise _reject(
            Reason.HEADER_NOT_JSON,
            f"tensor {name!r} must be an object with exactly dtype, shape, data_offsets",
            source,
        )
    dtype = value["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise _reject(
            Reason.UNKNOWN_DTYPE,
            f"tensor {name!r} has dtype {dtype!r} (accepted: {', '.join(DTYPES)})",
            source,
        )
    shape = value["shape"]
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise _reject(
            Reason.BAD_SHAPE,
            f"tensor {name!r} shape {_clip(shape)} is not a list of non-negative ints",
            source,
        )
    if len(shape) > limits.max_dims:
        raise _reject(
            Reason.BAD_SHAPE, f"tensor {name!r} has {len(shape)} dimensions, limit {limits.max_dims}", source
        )
    offsets = value["data_offsets"]
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise _reject(
            Reason.BAD_OFFSETS,
            f"tensor {name!r} data_offsets {_clip(offsets)} are not [begin <= end]",
            source,
        )
    begin, end = offsets
    expected = math.prod(shape) * DTYPES[dtype].itemsize
    if expected != end - begin:
        raise _reject(
            Reason.BAD_SHAPE,
            f"tensor {name!r}: shape {shape} of {dtype} needs {expected} bytes, offsets give {end - begin}",
            source,
        )
    return name, dtype, tuple(shape), begin, end


def _check_layout(
    tensors: list[tuple[str, str, tuple[int, ...], int, int]], data_len: int, source: str
) -> None:
    cursor = 0
    for name, _dtype, _shape, begin, end in sorted(tensors, key=lambda t: (t[3], t[4])):
        if begin < cursor:
            raise _reject(
                Reason.BAD_OFFSETS, f"tensor {name!r} at [{begin}, {end}) overlaps the one before it", source
            )
        if begin > cursor:
            raise _reject(
                Reason.BAD_OFFSETS,
                f"a gap of {begin - cursor} bytes before tensor {name!r} at offset {begin}",
                source,
            )
        cursor = end
    if cursor > data_len:
        raise _reject(
            Reason.TRUNCATED, f"tensors need {cursor} bytes of data but the file holds {data_len}", source
        )
    if cursor < data_len:
        raise _reject(
            Reason.BAD_OFFSETS, f"{data_len - cursor} bytes after the last tensor belong to no tensor", source
        )


def _clip(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "…"

"""Writing and reading update, aggregate and genesis files (safetensors with one canonical metadata key).

Writing is deterministic: the bytes depend only on the tensors and the metadata, never on dict order, hash
seeds or the machine. The layout is exactly what ``safetensors.numpy.save(tensors, metadata={"meshprov": …})``
produces (tensors ordered by dtype, widest first, then by name; a JSON header without spaces, padded with spaces
to a multiple of 8), written here directly so a file can be streamed to disk one tensor at a time.

    write_update(path, tensors, UpdateMeta(...)) -> WrittenFile(path, size, cid)
    with open_writer(path, specs, meta) as w:      # stream: tensors in any order, one at a time
        w.write(key, array)

Reading runs the bounded header pre-parser (:func:`~ledger.updatefile.header.read_header`) and the strict
metadata parser before anything maps the data; tensors are then memory-mapped read-only, one at a time:

    with UpdateFile.open(path, kind="update") as f:
        f.metadata.round, f.keys(), f.dtype(k), f.shape(k), f.tensor(k)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

import numpy as np
from numpy.typing import NDArray

from ledger.content.unixfs import import_file
from ledger.updatefile.dtypes import BF16, DTYPES, dtype_name
from ledger.updatefile.errors import InvalidTensors, MetadataRejected
from ledger.updatefile.header import (
    DEFAULT_LIMITS,
    METADATA_FIELD,
    Header,
    HeaderLimits,
    TensorInfo,
    read_header,
)
from ledger.updatefile.metadata import (
    METADATA_KEY,
    AggregateMeta,
    GenesisMeta,
    Metadata,
    UpdateMeta,
    parse_metadata,
)

TensorLike = NDArray[Any] | BF16


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A tensor's dtype (safetensors name) and shape, known before its data is written."""

    dtype: str
    shape: tuple[int, ...]

    @classmethod
    def of(cls, value: TensorLike, key: str = "?") -> TensorSpec:
        if isinstance(value, BF16):
            return cls("BF16", tuple(int(d) for d in np.shape(value.bits)))
        array = np.asarray(value)
        name = dtype_name(array.dtype)
        if name is None:
            # uint16 is refused rather than guessed: bfloat16 bits say so by their wrapper (file_tensors does it)
            hint = (
                "; bfloat16 bits must be wrapped in BF16 (ledger.updatefile.file_tensors)"
                if array.dtype == np.uint16
                else ""
            )
            raise InvalidTensors(
                key, f"dtype {array.dtype} is not stored (accepted: {', '.join(DTYPES)}){hint}"
            )
        return cls(name, tuple(int(d) for d in array.shape))

    @property
    def nbytes(self) -> int:
        n = DTYPES[self.dtype].itemsize
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True, slots=True)
class WrittenFile:
    path: Path
    size: int
    cid: str
    """CIDv0 of the file as written (what ``ipfs add`` gives it)."""


def _layout(specs: Mapping[str, TensorSpec]) -> list[tuple[str, TensorSpec, int, int]]:
    """Tensors in file order with their data offsets: safetensors' order (widest dtype first, then by name)."""
    order = sorted(specs, key=lambda k: (-DTYPES[specs[k].dtype].rank, k))
    out, cursor = [], 0
    for key in order:
        spec = specs[key]
        out.append((key, spec, cursor, cursor + spec.nbytes))
        cursor += spec.nbytes
    return out


def _json_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def encode_header(specs: Mapping[str, TensorSpec], metadata_json: str) -> bytes:
    """The 8-byte length and the padded JSON header for these tensors and metadata value."""
    parts = [f"{_json_str(METADATA_FIELD)}:{{{_json_str(METADATA_KEY)}:{_json_str(metadata_json)}}}"]
    for key, spec, begin, end in _layout(specs):
        shape = ",".join(str(d) for d in spec.shape)
        parts.append(
            f'{_json_str(key)}:{{"dtype":"{spec.dtype}","shape":[{shape}],"data_offsets":[{begin},{end}]}}'
        )
    header = ("{" + ",".join(parts) + "}").encode("utf-8")
    header += b" " * (-len(header) % 8)
    if len(header) > DEFAULT_LIMITS.max_header_bytes:
        raise InvalidTensors("*", f"the header would be {len(header)} bytes, over the readers' limit")
    return len(header).to_bytes(8, "little") + header


def _check_specs(specs: Mapping[str, TensorSpec]) -> None:
    for key, spec in specs.items():
        if not isinstance(key, str) or not key:
            raise InvalidTensors(str(key), "tensor names must be non-empty strings")
        if key == METADATA_FIELD:
            raise InvalidTensors(key, "the name is reserved by safetensors")
        if spec.dtype not in DTYPES:
            raise InvalidTensors(key, f"dtype {spec.dtype} is not stored (accepted: {', '.join(DTYPES)})")
        if not all(isinstance(d, int) and d >= 0 for d in spec.shape):
            raise InvalidTensors(key, f"shape {spec.shape} is not a tuple of non-negative ints")


def _bytes_of(key: str, value: TensorLike, spec: TensorSpec) -> memoryview:
    """The tensor's little-endian C-order bytes (no copy when the array already is so)."""
    if isinstance(value, BF16):
        array = np.asarray(value.bits)
        target = DTYPES["BF16"].numpy
    else:
        array = np.asarray(value)
        target = DTYPES[spec.dtype].numpy
        if dtype_name(array.dtype) != spec.dtype:
            raise InvalidTensors(key, f"declared {spec.dtype}, given {array.dtype}")
    if tuple(array.shape) != spec.shape:
        raise InvalidTensors(key, f"declared shape {spec.shape}, given {tuple(array.shape)}")
    flat = np.ascontiguousarray(array, dtype=target).reshape(-1)
    return flat.view(np.uint8).data


class TensorWriter:
    """Writes tensors into a file whose header (hence every offset) was fixed up front; any order, each once."""

    def __init__(self, f: IO[bytes], specs: Mapping[str, TensorSpec], metadata: Metadata) -> None:
        _check_specs(specs)
        self._f = f
        self._specs = dict(specs)
        header = encode_header(self._specs, metadata.to_json())
        self._data_start = len(header)
        self._offsets = {key: begin for key, _spec, begin, _end in _layout(self._specs)}
        self._total = self._data_start + sum(s.nbytes for s in self._specs.values())
        self._pending = set(self._specs)
        f.seek(0)
        f.write(header)
        f.truncate(self._total)

    @property
    def pending(self) -> frozenset[str]:
        """Tensors not written yet."""
        return frozenset(self._pending)

    def write(self, key: str, value: TensorLike) -> None:
        if key not in self._specs:
            raise InvalidTensors(key, "not declared when the writer was opened")
        if key not in self._pending:
            raise InvalidTensors(key, "written twice")
        data = _bytes_of(key, value, self._specs[key])
        self._f.seek(self._data_start + self._offsets[key])
        self._f.write(data)
        self._pending.discard(key)

    def finish(self) -> int:
        if self._pending:
            raise InvalidTensors(
                sorted(self._pending)[0], f"never written ({len(self._pending)} tensor(s) missing)"
            )
        return self._total


@contextlib.contextmanager
def open_writer(
    path: str | os.PathLike[str], specs: Mapping[str, TensorSpec], metadata: Metadata
) -> Iterator[TensorWriter]:
    """Stream a file to ``path`` atomically: a temporary file beside it is renamed into place only if the block
    completes with every declared tensor written; otherwise it is removed and ``path`` is untouched."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "w+b") as f:
            writer = TensorWriter(f, specs, metadata)
            yield writer
            writer.finish()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_file(
    path: str | os.PathLike[str], tensors: Mapping[str, TensorLike], metadata: Metadata
) -> WrittenFile:
    """Write ``tensors`` with ``metadata`` to ``path`` atomically and return its size and CID."""
    specs = {key: TensorSpec.of(value, key) for key, value in tensors.items()}
    with open_writer(path, specs, metadata) as writer:
        for key in sorted(tensors):
            writer.write(key, tensors[key])
    target = Path(path)
    result = import_file(target)
    return WrittenFile(target, result.size, result.cid)


def write_update(
    path: str | os.PathLike[str], tensors: Mapping[str, TensorLike], meta: UpdateMeta
) -> WrittenFile:
    """Write an update (the delta of each state_dict entry against the base, in the base's dtype)."""
    if not isinstance(meta, UpdateMeta):
        raise TypeError("write_update takes UpdateMeta")
    return write_file(path, tensors, meta)


def write_aggregate(
    path: str | os.PathLike[str], tensors: Mapping[str, TensorLike], meta: AggregateMeta | GenesisMeta
) -> WrittenFile:
    """Write an aggregate (or the genesis model): full weights."""
    if not isinstance(meta, AggregateMeta | GenesisMeta):
        raise TypeError("write_aggregate takes AggregateMeta or GenesisMeta")
    return write_file(path, tensors, meta)


def serialize(tensors: Mapping[str, TensorLike], metadata: Metadata) -> Iterator[memoryview]:
    """The file's bytes in order, without a copy: the header, then each tensor's data in file order (the tensors'
    own buffers; a copy only where an array is not little-endian C-contiguous already). The same bytes
    :func:`write_file` writes, for writers that hash or store them as they go (``node.packaging``)."""
    specs = {key: TensorSpec.of(value, key) for key, value in tensors.items()}
    _check_specs(specs)
    yield memoryview(encode_header(specs, metadata.to_json()))
    for key, spec, _begin, _end in _layout(specs):
        yield _bytes_of(key, tensors[key], spec)


def encode(tensors: Mapping[str, TensorLike], metadata: Metadata) -> bytes:
    """The whole file in memory (for small files and tests); the same bytes :func:`write_file` writes."""
    return b"".join(serialize(tensors, metadata))


class UpdateFile:
    """A validated update/aggregate/genesis file whose tensors are read lazily and read-only.

    It satisfies :class:`ledger.aggregation.source.TensorSource`. ``tensor(key)`` memory-maps one tensor at a
    time, so reading N files costs address space, not memory. ``BF16`` tensors come back as ``uint16`` bits.
    """

    def __init__(
        self, header: Header, metadata: Metadata, *, path: Path | None, file: IO[bytes] | None, data: Any
    ) -> None:
        self.header = header
        self.metadata = metadata
        self.path = path
        self._file = file
        self._data = data

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, limits: HeaderLimits = DEFAULT_LIMITS, kind: str | None = None
    ) -> UpdateFile:
        """Open and validate a file: header pre-parser, then metadata (``kind`` to require update/aggregate/…)."""
        target = Path(path)
        f = open(target, "rb")  # noqa: SIM115 - owned by the UpdateFile, closed by close()
        try:
            header = read_header(f, limits, name=str(target))
            metadata = _metadata_of(header, kind, str(target))
        except BaseException:
            f.close()
            raise
        return cls(header, metadata, path=target, file=f, data=None)

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        limits: HeaderLimits = DEFAULT_LIMITS,
        kind: str | None = None,
        name: str = "<bytes>",
    ) -> UpdateFile:
        header = read_header(data, limits, name=name)
        return cls(header, _metadata_of(header, kind, name), path=None, file=None, data=bytes(data))

    # --- tensors -------------------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        """Tensor names, sorted."""
        return list(self.header.tensors)

    def __iter__(self) -> Iterator[str]:
        return iter(self.header.tensors)

    def __contains__(self, key: object) -> bool:
        return key in self.header.tensors

    def __len__(self) -> int:
        return len(self.header.tensors)

    def info(self, key: str) -> TensorInfo:
        return self.header.tensors[key]

    def dtype(self, key: str) -> str:
        """The safetensors dtype name (``F32``, ``BF16``, …): compare these, not numpy dtypes, across files."""
        return self.header.tensors[key].dtype

    def numpy_dtype(self, key: str) -> np.dtype[Any]:
        return DTYPES[self.dtype(key)].numpy

    def shape(self, key: str) -> tuple[int, ...]:
        return self.header.tensors[key].shape

    def tensor(self, key: str) -> NDArray[Any]:
        """The tensor as a read-only array backed by the file (memory-mapped), in its stored dtype."""
        info = self.header.tensors[key]
        dtype = DTYPES[info.dtype].numpy
        if info.nbytes == 0:
            empty = np.zeros(info.shape, dtype)
            empty.flags.writeable = False
            return empty
        if self._data is not None:
            return np.frombuffer(self._data, dtype, count=info.size, offset=info.start).reshape(info.shape)
        if self._file is None or self._file.closed:
            raise ValueError("I/O operation on a closed UpdateFile")
        return np.memmap(self._file, dtype=dtype, mode="r", offset=info.start, shape=info.shape)

    def tensors(self) -> Iterator[tuple[str, NDArray[Any]]]:
        """``(key, tensor)`` in sorted key order, one mapping at a time."""
        for key in self.keys():
            yield key, self.tensor(key)

    # --- lifetime ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the file; arrays already returned stay valid (each holds its own mapping)."""
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "<bytes>"
        return f"UpdateFile({where!r}, kind={self.metadata.kind}, tensors={len(self)})"


def _metadata_of(header: Header, kind: str | None, source: str) -> Metadata:
    meta = header.metadata
    if meta is None or METADATA_KEY not in meta:
        raise MetadataRejected(f"no `{METADATA_KEY}` key in `__metadata__`", source=source)
    if len(meta) != 1:
        others = sorted(k for k in meta if k != METADATA_KEY)
        raise MetadataRejected(
            f"`__metadata__` must hold only `{METADATA_KEY}`, also has {others}", source=source
        )
    try:
        return parse_metadata(meta[METADATA_KEY], kind=kind)
    except MetadataRejected as exc:
        raise MetadataRejected(exc.detail, source=source) from None

"""Update vectors kept as files on disk and read through memory maps, so a validator compares N updates without
holding N models in memory.

The copy checks and the scorer need each update's whole vector (``ledger.checks.flatten``); as float64 arrays in
memory that is 8 bytes per parameter per update, and at 25M parameters × 16 updates 3.3 GB growing with N
(docs/benchmarks.md, "Round at real size"). Here each vector is written once to a ``.npy`` file in the round's
directory and mapped read-only; ``ledger.checks.vectors`` hands every block it has read back to the page cache,
so resident memory stays at a few blocks whatever N. Float32 files are exact for float32, float16 and bfloat16
models (their deltas are float32-representable); a model with any float64 parameter keeps float64 files, so the
values — and every cosine the protocol takes of them — are the same bits as in memory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ledger.aggregation.source import TensorInfo, TensorSource
from ledger.checks.vectors import flatten


def vector_dtype(layout: Sequence[TensorInfo]) -> np.dtype[Any]:
    """float32 when every parameter tensor is stored in at most 32 bits (exact), else float64."""
    wide = any(info.parameter and not info.bfloat16 and info.dtype.itemsize > 4 for info in layout)
    return np.dtype(np.float64 if wide else np.float32)


def vector_file(source: TensorSource, layout: Sequence[TensorInfo], path: Path) -> NDArray[Any]:
    """The source's vector written to ``path`` (atomically: a crash leaves no partial file under that name) and
    returned as a read-only memory map."""
    size = sum(info.size for info in layout if info.parameter)
    tmp = path.with_name(path.name + ".tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=vector_dtype(layout), shape=(size,))
    try:
        flatten(source, layout, out=out)
        out.flush()
    finally:
        del out
    tmp.replace(path)
    return load_vector(path)


def load_vector(path: Path) -> NDArray[Any]:
    """A vector file, mapped read-only."""
    vector: NDArray[Any] = np.load(path, mmap_mode="r")
    return vector


def running_sum(vectors: Sequence[NDArray[Any]]) -> NDArray[np.float64]:
    """The float64 sum of the vectors, added one after another in order (the same bits as summing the stacked
    float64 rows along axis 0), reading each mapped vector once without stacking them."""
    from ledger.aggregation.stream import release_pages

    total = np.zeros(vectors[0].shape, np.float64)
    step = 1 << 20
    for v in vectors:
        for start in range(0, v.size, step):
            stop = min(start + step, v.size)
            np.add(total[start:stop], v[start:stop], out=total[start:stop])
            release_pages(v[start:stop])
    return total


class VectorWriter:
    """An update's vector file written while the update streams in (a ``StreamChecks`` sink): each parameter
    tensor's bytes are written at their place in the vector as they arrive, so the vector is ready when the
    download ends, without the update file ever being written or read back.

    The bytes of a tensor whose dtype is the vector's (float32 models: all of them) go to the file as they are
    (``os.pwrite`` from the store's buffer: no conversion, no copy in Python); float16 and bfloat16 are widened
    exactly. Plain writes, not a memory map: faulting in a fresh file mapping page by page costs several times
    the copy (docs/benchmarks.md, "Worker verification")."""

    def __init__(self, path: Path, layout: Sequence[TensorInfo]) -> None:
        self.path = path
        self.dtype = vector_dtype(layout)
        self._offsets: dict[str, int] = {}
        size = 0
        for info in layout:
            if info.parameter:
                self._offsets[info.key] = size
                size += info.size
        self.size = size
        self._tmp = path.with_name(path.name + ".tmp")
        with open(self._tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f,
                {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (size,)},
            )
            self._data_start = f.tell()
        self._fd: int | None = os.open(self._tmp, os.O_WRONLY)
        os.ftruncate(self._fd, self._data_start + size * self.dtype.itemsize)

    def __call__(self, info: TensorInfo, first: int, data: memoryview) -> None:
        assert self._fd is not None
        at = self._data_start + (self._offsets[info.key] + first) * self.dtype.itemsize
        if info.bfloat16:
            bits = np.frombuffer(data, np.dtype("<u2"))
            out: Any = (bits.astype(np.uint32) << 16).view(np.float32).astype(self.dtype, copy=False)
        elif info.dtype == self.dtype:
            out = data
        else:
            out = np.frombuffer(data, info.dtype).astype(self.dtype)
        view = memoryview(out).cast("B")
        while view:
            written = os.pwrite(self._fd, view, at)
            view, at = view[written:], at + written

    def finish(self) -> NDArray[Any]:
        """Close the file, put it in place (atomically) and return it mapped read-only."""
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        self._tmp.replace(self.path)
        return load_vector(self.path)

    def abort(self) -> None:
        """Remove the partial file (a failed download or a rejected update)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._tmp.unlink(missing_ok=True)


class VectorSource:
    """An update as a ``TensorSource`` from its vector file and its small non-parameter tensors (what
    ``StreamChecks.kept`` holds): every tensor in the dtype the update file stored it in, exactly (a float32
    vector holds float16 and bfloat16 values exactly), so the held-out loss is computed from the same values."""

    def __init__(
        self, vector: NDArray[Any], layout: Sequence[TensorInfo], kept: Mapping[str, NDArray[Any]]
    ) -> None:
        self._vector = vector
        self._infos = {info.key: info for info in layout}
        self._kept = kept
        self._offsets: dict[str, int] = {}
        size = 0
        for info in layout:
            if info.parameter:
                self._offsets[info.key] = size
                size += info.size
        if size != vector.size:
            raise ValueError(f"a vector of {vector.size} values for a layout of {size} parameters")
        missing = [i.key for i in layout if not i.parameter and i.key not in kept]
        if missing:
            raise ValueError(f"no values for {missing}")

    def keys(self) -> list[str]:
        return sorted(self._infos)

    def dtype(self, key: str) -> np.dtype[Any]:
        return self._infos[key].dtype

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._infos[key].shape)

    def tensor(self, key: str) -> NDArray[Any]:
        info = self._infos[key]
        if not info.parameter:
            return np.asarray(self._kept[key]).reshape(info.shape)
        start = self._offsets[key]
        values = self._vector[start : start + info.size]
        if info.bfloat16:
            from ledger.updatefile.dtypes import float32_to_bf16

            return float32_to_bf16(values).reshape(info.shape)
        if values.dtype != info.dtype:
            values = values.astype(info.dtype)
        return values.reshape(info.shape)


def save_kept(path: Path, kept: Mapping[str, NDArray[Any]]) -> None:
    """The small non-parameter tensors beside the vector (atomically), for a retried job or a later scorer."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        arrays: dict[str, Any] = {f"t{i}": v for i, v in enumerate(kept.values())}
        np.savez(f, keys=np.array(list(kept), dtype=str), **arrays)
    tmp.replace(path)


def load_kept(path: Path) -> dict[str, NDArray[Any]]:
    with np.load(path, allow_pickle=False) as data:
        keys = [str(k) for k in data["keys"]]
        return {k: np.array(data[f"t{i}"]) for i, k in enumerate(keys)}

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

from collections.abc import Sequence
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

"""An update as one vector, and the inner products the scorer and the copy checks take of whole vectors.

:func:`flatten` lays an update's floating-point tensors end to end in sorted key order (the protocol's order;
integer buffers such as BatchNorm's batch counter are left out, as they are from every norm). :func:`dot` sums
the elementwise products in chunks of :data:`~ledger.aggregation.numerics.CHUNK` from the vector's first element
(``np.add.reduce`` per chunk, chunk sums added in order), never BLAS: two validators comparing the same two
vectors get the same bits, so a cosine at the 0.95 threshold cannot be a duplicate on one machine and not on
another. Vectors may be float32 (what a worker keeps of earlier rounds) or float64; blocks are widened to
float64 before they are multiplied.

Memory: a validator compares N updates of a model, so it may keep their vectors as float32 files on disk
(``flatten(..., out=np.lib.format.open_memmap(...))``; exact for float32, float16 and bfloat16 models) rather
than N float64 copies in RAM. :func:`flatten` and :func:`dot` hand every memory-mapped block they have read
or written back to the page cache (``release_pages``), so reading N mapped vectors costs a few blocks of
resident memory, not N models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ledger.aggregation.numerics import CHUNK, chunk_sums
from ledger.aggregation.source import TensorInfo, TensorSource, describe_source, load_values
from ledger.aggregation.stream import release_pages

Vector = NDArray[Any]
"""A 1-D float32 or float64 array: an update's parameters in protocol order."""

_BLOCK = 32 * CHUNK  # elements widened to float64 at a time (2 MiB per operand)


def flatten(
    source: TensorSource,
    layout: Sequence[TensorInfo] | None = None,
    *,
    dtype: Any = np.float64,
    out: Vector | None = None,
) -> Vector:
    """The source's floating-point tensors, in sorted key order, as one vector (``dtype``: float64 or float32).

    ``layout`` (``describe_source(base)``) may be passed to avoid describing the source again; bfloat16 tensors
    are widened exactly. ``out``: a 1-D array of the right size to fill (e.g. a float32 memory map on disk)
    instead of a new one in memory; ``dtype`` is then its dtype."""
    infos = [info for info in (layout if layout is not None else describe_source(source)) if info.parameter]
    size = sum(info.size for info in infos)
    if out is None:
        out = np.empty(size, dtype)
    elif out.ndim != 1 or out.size != size:
        raise ValueError(f"flatten needs a 1-D output of {size} elements, got shape {out.shape}")
    scratch = np.empty(_BLOCK, np.float64)
    offset = 0
    for info in infos:
        flat = np.asarray(source.tensor(info.key)).reshape(-1)
        for start in range(0, info.size, _BLOCK):
            stop = min(start + _BLOCK, info.size)
            block = load_values(info, flat[start:stop], scratch[: stop - start])
            release_pages(flat[start:stop])
            out[offset + start : offset + stop] = block
            release_pages(out[offset + start : offset + stop])
        offset += info.size
    return out


def dot(a: Vector, b: Vector) -> float:
    """``<a, b>`` in the protocol's fixed summation order (module docstring)."""
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"cannot compare vectors of shapes {a.shape} and {b.shape}: the layouts differ")
    same = a is b  # a norm: one widened copy squared, the same products as two copies multiplied
    total = 0.0
    x = np.empty(min(_BLOCK, a.size), np.float64)
    y = x if same else np.empty_like(x)
    for start in range(0, a.size, _BLOCK):
        stop = min(start + _BLOCK, a.size)
        n = stop - start
        np.copyto(x[:n], a[start:stop], casting="safe")
        release_pages(a[start:stop])
        if not same:
            np.copyto(y[:n], b[start:stop], casting="safe")
            release_pages(b[start:stop])
        with np.errstate(over="ignore", invalid="ignore"):
            np.multiply(x[:n], y[:n], out=x[:n])
        for value in chunk_sums(x[:n].reshape(1, -1))[0].tolist():
            total += value
    return total


def norm(a: Vector) -> float:
    return math.sqrt(dot(a, a))


def cosine(a: Vector, b: Vector) -> float | None:
    """Cosine of two whole vectors, clamped to [-1, 1]; None when either is zero (no direction) or the products
    are not finite."""
    na, nb = norm(a), norm(b)
    if not (na > 0 and nb > 0) or not (math.isfinite(na) and math.isfinite(nb)):
        return None
    c = dot(a, b) / (na * nb)
    if not math.isfinite(c):
        return None
    return max(-1.0, min(1.0, c))

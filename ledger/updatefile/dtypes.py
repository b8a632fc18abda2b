"""The tensor dtypes meshprov accepts in update files, as safetensors names them.

Each entry gives the little-endian numpy dtype used to map the bytes, the item size, and the rank safetensors
uses to order tensors in a file (larger ranks first, so every tensor stays aligned to its item size).

numpy has no bfloat16: ``BF16`` tensors are read as their raw ``uint16`` bit patterns; :func:`bf16_to_float32`
and :func:`float32_to_bf16` convert (wrap bits in :class:`BF16` to write them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class DType:
    name: str
    numpy: np.dtype[Any]
    itemsize: int
    rank: int


def _dtype(name: str, numpy: str, rank: int) -> DType:
    dt = np.dtype(numpy)
    return DType(name, dt, dt.itemsize, rank)


# Ranks follow the order of safetensors' Dtype enum (BOOL < U8 < I8 < I16 < F16 < BF16 < I32 < F32 < F64 < I64).
DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        _dtype("BOOL", "?", 0),
        _dtype("U8", "u1", 1),
        _dtype("I8", "i1", 2),
        _dtype("I16", "<i2", 3),
        _dtype("F16", "<f2", 4),
        _dtype("BF16", "<u2", 5),
        _dtype("I32", "<i4", 6),
        _dtype("F32", "<f4", 7),
        _dtype("F64", "<f8", 8),
        _dtype("I64", "<i8", 9),
    )
}

_BY_NUMPY: dict[tuple[str, int], str] = {
    ("b", 1): "BOOL",
    ("u", 1): "U8",
    ("i", 1): "I8",
    ("i", 2): "I16",
    ("f", 2): "F16",
    ("i", 4): "I32",
    ("f", 4): "F32",
    ("f", 8): "F64",
    ("i", 8): "I64",
}


def dtype_name(dtype: np.dtype[Any]) -> str | None:
    """The safetensors name for a numpy dtype, or None when meshprov does not store it."""
    return _BY_NUMPY.get((dtype.kind, dtype.itemsize))


@dataclass(frozen=True)
class BF16:
    """bfloat16 tensor data given as its ``uint16`` bit patterns (numpy has no bfloat16 type)."""

    bits: NDArray[np.uint16]

    def __post_init__(self) -> None:
        if np.asarray(self.bits).dtype != np.uint16:
            raise TypeError("BF16 wraps a uint16 array of bit patterns")


def bf16_to_float32(bits: NDArray[Any]) -> NDArray[np.float32]:
    """Exact widening of bfloat16 bit patterns to float32."""
    return (np.asarray(bits, dtype="<u2").astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16(values: NDArray[Any]) -> NDArray[np.uint16]:
    """Round float32 values to bfloat16 bit patterns (round to nearest, ties to even; NaN stays NaN)."""
    x = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = x + (np.uint32(0x7FFF) + ((x >> 16) & np.uint32(1)))
    out = (rounded >> 16).astype(np.uint16)
    nan = np.isnan(np.ascontiguousarray(values, dtype=np.float32))
    out[nan] = ((x[nan] >> 16) | np.uint32(0x0040)).astype(np.uint16)
    return out


def float64_to_bf16(values: NDArray[Any]) -> NDArray[np.uint16]:
    """Round float64 values to bfloat16 bit patterns *once* (round to nearest, ties to even; NaN stays NaN).

    Rounding to float32 first and then to bfloat16 rounds twice, and that misses by one bit exactly when the
    float32 result lands on a bfloat16 midpoint it was not equal to (a value just beside a midpoint is rounded
    onto it, then tied to even). Rounding to nearest is monotonic, so everywhere else the float32 step cannot
    cross a midpoint and the double rounding is exact. Those few midpoint entries are fixed up from the side of
    the midpoint the float64 value lies on; the rest costs what the float32 route costs (it runs on every
    aggregated bfloat16 value). Overflow gives ±Inf, as rounding to the nearest would.
    """
    x = np.ascontiguousarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        nearest = x.astype(np.float32)
    out = float32_to_bf16(nearest)
    bits = nearest.reshape(-1).view(np.uint32)
    flat_x = x.reshape(-1)
    at_midpoint = np.flatnonzero((bits & np.uint32(0xFFFF)) == np.uint32(0x8000))
    if at_midpoint.size:
        xs = flat_x[at_midpoint]
        mids = nearest.reshape(-1)[at_midpoint].astype(np.float64)
        wrong = at_midpoint[(mids != xs) & ~np.isnan(xs)]  # inexact, not NaN
        if wrong.size:
            further = np.abs(flat_x[wrong]) > np.abs(nearest.reshape(-1)[wrong].astype(np.float64))
            truncated = (bits[wrong] >> np.uint32(16)).astype(np.uint16)
            out.reshape(-1)[wrong] = truncated + further.astype(np.uint16)  # away from zero: one bit up
    return out

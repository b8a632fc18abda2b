"""What aggregation and the checks read: a `TensorSource`, anything with named, shaped, typed tensors.

`ledger.updatefile.UpdateFile` satisfies it structurally (memory-mapped tensors); `ArraySource` wraps in-memory
arrays for tests, the list-of-arrays rules and callers that already hold a model.

A tensor's declared dtype may be a numpy dtype or a safetensors name (``"F32"``, ``"BF16"``, …). numpy has no
bfloat16, so ``BF16`` tensors arrive as their ``uint16`` bit patterns: :class:`TensorInfo` remembers that, and
:func:`load_values` / :func:`store_values` convert, so the rules only ever see float64. meshprov stores no
``U16``, so a ``uint16`` array (as ``node.statedict`` hands bfloat16 over) is read as bfloat16 too.
:attr:`TensorInfo.kind` says how a tensor's deltas aggregate (``ledger.updatefile.deltas``);
:func:`load_deltas` reads a slice of an update's tensor as the rules see it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ledger.updatefile.deltas import Kind, delta_kind
from ledger.updatefile.dtypes import dtype_name, float64_to_bf16

F64 = NDArray[np.float64]

_SAFETENSORS_NAMES = {
    "BOOL": "?",
    "U8": "u1",
    "I8": "i1",
    "I16": "<i2",
    "U16": "<u2",
    "I32": "<i4",
    "U32": "<u4",
    "I64": "<i8",
    "U64": "<u8",
    "F16": "<f2",
    "BF16": "<u2",
    "F32": "<f4",
    "F64": "<f8",
}


STATISTICS = frozenset({"running_mean", "running_var"})
"""Last name components of the float buffers that take no part in norms (:attr:`TensorInfo.statistic`)."""


class TensorSource(Protocol):
    """Named tensors. ``tensor`` may return a memory map: callers read it block by block, never copy it whole."""

    def keys(self) -> Iterable[str]: ...

    def dtype(self, key: str) -> Any: ...

    def shape(self, key: str) -> Sequence[int]: ...

    def tensor(self, key: str) -> NDArray[Any]: ...


class ArraySource:
    """A `TensorSource` over arrays held in memory."""

    def __init__(self, tensors: Mapping[str, NDArray[Any]]) -> None:
        self._tensors = {k: np.asarray(v) for k, v in tensors.items()}

    def keys(self) -> list[str]:
        return sorted(self._tensors)

    def dtype(self, key: str) -> np.dtype[Any]:
        return self._tensors[key].dtype

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._tensors[key].shape)

    def tensor(self, key: str) -> NDArray[Any]:
        return self._tensors[key]


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's layout: key, storage dtype (``uint16`` for bfloat16), shape, and whether it is bfloat16."""

    key: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    bfloat16: bool = False

    @property
    def size(self) -> int:
        # math.prod on Python ints: exact, and np.prod costs ~4 µs a call over thousands of tensors
        return math.prod(self.shape)

    @property
    def floating(self) -> bool:
        """A floating-point tensor (bfloat16 included): checked for NaN and Inf."""
        return self.bfloat16 or self.dtype.kind == "f"

    @property
    def statistic(self) -> bool:
        """A normalisation layer's running statistics, by torch's names (``…running_mean``, ``…running_var`` of
        BatchNorm, InstanceNorm, SyncBatchNorm): floats that are averaged, not trained."""
        return self.floating and self.key.rpartition(".")[2] in STATISTICS

    @property
    def parameter(self) -> bool:
        """Floating tensors other than running statistics are parameters: they count in norms, clipping,
        distances, fingerprints and the copy vectors.

        Integer and bool tensors are buffers (BatchNorm's ``num_batches_tracked``): a batch counter's delta would
        swamp the norm of the weights. Running statistics are left out for the same reason: they move towards the
        members' data statistics (on unnormalised inputs by hundreds of units), which would outweigh the weights'
        step, fail honest updates on the scale ratio and make different members' updates look like copies. Every
        buffer is still aggregated by the rule (docs/aggregation.md, "Buffers and dtypes").
        """
        return self.floating and not self.statistic

    def same_dtype(self, other: TensorInfo) -> bool:
        """Stored alike (compared without formatting labels: validators do this for every tensor)."""
        return self.dtype == other.dtype and self.bfloat16 == other.bfloat16

    @property
    def label(self) -> str:
        return "BF16" if self.bfloat16 else str(self.dtype)

    @property
    def name(self) -> str:
        """The safetensors dtype name (``F32``, ``BF16``, ``I64``, …), which fixes how deltas are read."""
        if self.bfloat16:
            return "BF16"
        name = dtype_name(self.dtype)
        if name is None:
            raise ValueError(f"tensor {self.key!r}: dtype {self.dtype} is not stored in update files")
        return name

    @property
    def kind(self) -> Kind:
        """How its deltas aggregate: ``float`` (parameters and float buffers), ``int``, ``u8`` or ``bool``."""
        return delta_kind(self.name)


def tensor_info(source: TensorSource, key: str) -> TensorInfo:
    declared = source.dtype(key)
    shape = tuple(int(d) for d in source.shape(key))
    if isinstance(declared, np.dtype):
        # meshprov stores no U16: a uint16 array is bfloat16's bits (ledger.updatefile.deltas), as files read.
        return TensorInfo(key, declared, shape, bfloat16=declared == np.uint16)
    name = declared if isinstance(declared, str) else getattr(declared, "name", None)
    if isinstance(name, str) and name.upper() in _SAFETENSORS_NAMES:
        return TensorInfo(
            key, np.dtype(_SAFETENSORS_NAMES[name.upper()]), shape, bfloat16=name.upper() == "BF16"
        )
    return TensorInfo(key, source.tensor(key).dtype, shape)


def describe_source(source: TensorSource) -> list[TensorInfo]:
    """The source's tensors in protocol order (sorted keys)."""
    return [tensor_info(source, k) for k in sorted(source.keys())]


def load_values(info: TensorInfo, x: NDArray[Any], out: F64) -> F64:
    """Copy ``x`` (a slice of the tensor, possibly memory-mapped) into the float64 buffer ``out``."""
    if info.bfloat16:
        widened = np.left_shift(x.astype(np.uint32), 16).view(np.float32)
        np.copyto(out, widened.reshape(out.shape))
    else:
        np.copyto(out, x.reshape(out.shape), casting="safe")
    return out


def load_deltas(info: TensorInfo, x: NDArray[Any], out: F64) -> F64:
    """Copy a slice of an update's tensor into float64 as the rules read deltas (ledger.updatefile.deltas):
    bfloat16 widened, U8 as signed bytes (two's complement), BOOL flips as 0/1, the rest as they are."""
    if info.kind == "u8":
        np.copyto(out, x.view(np.int8).reshape(out.shape), casting="safe")
        return out
    return load_values(info, x, out)


def store_values(info: TensorInfo, values: F64, out: NDArray[Any]) -> None:
    """Cast float64 ``values`` into ``out`` (the tensor's storage dtype), the same way on every machine.

    Floats round once to nearest even (bfloat16 too: ``float64_to_bf16``); integer buffers round half to even
    and saturate; bool is ``value >= 0.5``. Non-finite results are left for the caller to detect.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if info.bfloat16:
            np.copyto(out, float64_to_bf16(values))
        elif info.dtype.kind == "f":
            np.copyto(out, values, casting="unsafe")
        elif info.dtype.kind == "b":
            np.copyto(out, values >= 0.5)
        else:
            limits = np.iinfo(info.dtype)
            high = float(limits.max)
            if int(high) > limits.max:  # 2**63 - 1 rounds up to 2**63 in float64
                high = float(np.nextafter(high, 0.0))
            rounded = np.clip(np.rint(values), float(limits.min), high)
            np.copyto(out, rounded, casting="unsafe")


def finite_storage(info: TensorInfo, stored: NDArray[Any]) -> bool:
    """Whether stored values are all finite (integers always are)."""
    if info.bfloat16:
        return bool(((stored & np.uint16(0x7F80)) != np.uint16(0x7F80)).all())
    if info.dtype.kind == "f":
        return bool(np.isfinite(stored).all())
    return True

"""What an update file holds for each tensor, by dtype: the one definition of a delta, and of applying one.

An update holds, for every tensor of the base model, a *delta* in the base tensor's dtype:

    F16 F32 F64 BF16   local − base, correctly rounded to the dtype (nearest, ties to even)
    I8 I16 I32 I64     local − base, exact; refused when it does not fit the dtype
    U8                 local − base as a signed byte (two's complement, read back as int8): −128..127, else refused
    BOOL               local XOR base: which entries the member flipped

(a float64 difference rounded to a narrower float is the correctly rounded difference: float64 has more than
twice their precision, so the double rounding is innocuous), and applying a delta is the inverse: ``base + delta`` rounded once for floats; exact and saturated to the dtype
for integers (U8's delta read as int8); ``base XOR delta`` for booleans. BatchNorm's int64
``num_batches_tracked`` thus travels as the number of batches the member tracked this round.

numpy has no bfloat16: in a state given as numpy arrays, bfloat16 tensors are their ``uint16`` bit patterns
(safetensors' ``U16`` is not a dtype meshprov stores, so a ``uint16`` array always means bfloat16 here). The
aggregation rules (``ledger.aggregation``) read these deltas the same way; docs/aggregation.md says what each rule
does with each kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ledger.updatefile.dtypes import BF16, DTYPES, bf16_to_float32, dtype_name, float64_to_bf16
from ledger.updatefile.errors import InvalidTensors

Kind = Literal["float", "int", "u8", "bool"]
"""How a dtype's deltas are formed and aggregated (see the module docstring)."""

_KINDS: dict[str, Kind] = {
    "F64": "float",
    "F32": "float",
    "F16": "float",
    "BF16": "float",
    "I64": "int",
    "I32": "int",
    "I16": "int",
    "I8": "int",
    "U8": "u8",
    "BOOL": "bool",
}


def delta_kind(name: str) -> Kind:
    """The kind of a safetensors dtype name (``F32``, ``BF16``, ``I64``, …)."""
    try:
        return _KINDS[name]
    except KeyError:
        raise ValueError(f"dtype {name} is not stored (accepted: {', '.join(DTYPES)})") from None


def state_dtype(array: NDArray[Any]) -> str | None:
    """The safetensors name of a state array: ``uint16`` is bfloat16's bits; None when meshprov cannot store it."""
    if array.dtype == np.uint16:
        return "BF16"
    return dtype_name(array.dtype)


def as_float64(name: str, values: NDArray[Any]) -> NDArray[np.float64]:
    """Exact float64 values of a tensor stored as ``name`` (bfloat16 from its bits; U8 deltas are not this)."""
    if name == "BF16":
        return bf16_to_float32(values).astype(np.float64)
    return np.asarray(values).astype(np.float64)


def round_to(name: str, values: NDArray[np.float64]) -> NDArray[Any]:
    """Round float64 values once to a float dtype (bfloat16 as bits): nearest, ties to even; overflow → ±Inf."""
    if name == "BF16":
        return float64_to_bf16(values)
    with np.errstate(over="ignore"):
        return values.astype(DTYPES[name].numpy)


def tensor_delta(name: str, local: NDArray[Any], base: NDArray[Any], *, key: str = "?") -> NDArray[Any]:
    """The delta of one tensor (dtype ``name``, both arrays in its storage dtype) as the update file holds it."""
    return np.asarray(_tensor_delta(name, local, base, key))


def _tensor_delta(name: str, local: NDArray[Any], base: NDArray[Any], key: str) -> Any:
    local, base = np.asarray(local), np.asarray(base)
    if local.shape != base.shape:
        raise InvalidTensors(key, f"local shape {local.shape} differs from the base's {base.shape}")
    storage = DTYPES[name].numpy
    if local.dtype != storage or base.dtype != storage:
        raise InvalidTensors(key, f"local {local.dtype} and base {base.dtype} must both be stored as {name}")
    kind = delta_kind(name)
    if kind == "float":
        if name != "BF16":
            return _native_float(np.subtract, local, base)
        return round_to(name, as_float64(name, local) - as_float64(name, base))
    if kind == "bool":
        return np.logical_xor(local, base)
    diff = local.astype(np.int64) - base.astype(np.int64)  # I64 may wrap: detected below
    if kind == "u8":
        low, high = -128, 127
    else:
        info = np.iinfo(storage)
        low, high = int(info.min), int(info.max)
    wrapped = name == "I64" and bool((((local ^ base) & (local ^ diff)) < 0).any())
    if wrapped or (diff.size and (int(diff.min()) < low or int(diff.max()) > high)):
        raise InvalidTensors(
            key,
            f"the change of this {name} buffer does not fit a {name} delta ({low}..{high}): an integer buffer "
            "may not move that far in one round",
        )
    return diff.astype(np.int8).view(np.uint8) if kind == "u8" else diff.astype(storage)


def apply_tensor_delta(name: str, base: NDArray[Any], delta: NDArray[Any]) -> NDArray[Any]:
    """``base + delta`` for one tensor, in its storage dtype (floats rounded once, integers saturated)."""
    return np.asarray(_apply(name, base, delta))


def _apply(name: str, base: NDArray[Any], delta: NDArray[Any]) -> Any:
    kind = delta_kind(name)
    base, delta = np.asarray(base), np.asarray(delta)
    if kind == "float":
        if name != "BF16":
            return _native_float(np.add, base, delta)
        return round_to(name, as_float64(name, base) + as_float64(name, delta))
    if kind == "bool":
        return np.logical_xor(base, delta)
    increments = delta.view(np.int8) if kind == "u8" else delta
    return saturating_add(base, increments.astype(np.int64))


def _native_float(op: Any, left: NDArray[Any], right: NDArray[Any]) -> Any:
    # One IEEE operation in the storage dtype is the correctly rounded result the float64 route defines (a
    # float64 result rounded to F32, or a float32 one to F16, is innocuous double rounding: 53 >= 2*24 + 2 and
    # 24 >= 2*11 + 2), at a tenth of the cost: members form a 25M-parameter delta in 0.03 s instead of 0.4 s.
    with np.errstate(over="ignore", invalid="ignore"):
        return op(left, right)


def apply_float64_delta(name: str, base: NDArray[Any], delta: NDArray[np.float64]) -> NDArray[Any]:
    """``base`` plus an *aggregated* delta given in float64 (what the aggregation rules return), in the dtype.

    Floats: ``base + delta`` in float64, rounded once to the dtype. Integers (U8 too): the delta rounded half to
    even, then added to the base exactly and saturated to the dtype. BOOL: an entry flips where the delta, the
    rule's result over the members' 0/1 flips, is above one half (a tie keeps the base's value).
    ``delta`` must be finite (the caller checks: a non-finite aggregate is refused, not stored).
    """
    kind = delta_kind(name)
    base = np.asarray(base)
    if kind == "float":
        return np.asarray(round_to(name, as_float64(name, base) + delta))
    if kind == "bool":
        return np.asarray(np.logical_xor(base, delta > 0.5))
    # float64 holds every int64 increment a sum of deltas can reach only up to 2**53; beyond, rint is still
    # deterministic. Clamp below 2**63 so the cast to int64 is defined; beyond it the increment saturates.
    rounded = np.rint(delta)
    limit = float(np.nextafter(float(2**63), 0.0))
    increments = np.clip(rounded, -limit, limit).astype(np.int64)
    wide = np.iinfo(np.int64)
    increments = np.where(rounded >= 2.0**63, wide.max, np.where(rounded <= -(2.0**63), wide.min, increments))
    return saturating_add(base, increments)


def saturating_add(base: NDArray[Any], increments: NDArray[np.int64]) -> NDArray[Any]:
    """``base + increments`` exactly, clamped to the range of ``base``'s integer dtype."""
    info = np.iinfo(base.dtype)
    wide = base.astype(np.int64)
    with np.errstate(over="ignore"):
        total = wide + increments
    # Two's complement overflow of the int64 sum: both operands share a sign the result lacks.
    over = ((wide ^ total) & (increments ^ total)) < 0
    total = np.where(over, np.where(increments > 0, np.iinfo(np.int64).max, np.iinfo(np.int64).min), total)
    return np.asarray(np.clip(total, int(info.min), int(info.max)).astype(base.dtype))


def state_delta(
    local: Mapping[str, NDArray[Any]], base: Mapping[str, NDArray[Any]]
) -> dict[str, NDArray[Any]]:
    """The update of a local state against its base (numpy states, bfloat16 as ``uint16`` bits), key by key.

    Keys, shapes and dtypes must agree (:class:`InvalidTensors` names the first that does not)."""
    _same_keys(local, base)
    return {key: tensor_delta(_name(key, base[key]), local[key], base[key], key=key) for key in sorted(base)}


def apply_state_delta(
    base: Mapping[str, NDArray[Any]], delta: Mapping[str, NDArray[Any]]
) -> dict[str, NDArray[Any]]:
    """The state a delta describes: ``base + delta`` key by key (the inverse of :func:`state_delta`)."""
    _same_keys(delta, base)
    out: dict[str, NDArray[Any]] = {}
    for key in sorted(base):
        name = _name(key, base[key])
        d = np.asarray(delta[key])
        if d.shape != np.shape(base[key]) or d.dtype != DTYPES[name].numpy:
            raise InvalidTensors(key, f"delta {d.dtype}{list(d.shape)} does not match the base's {name}")
        out[key] = apply_tensor_delta(name, base[key], d)
    return out


def file_tensors(state: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any] | BF16]:
    """A numpy state ready for the file writer: ``uint16`` (bfloat16 bits) wrapped in :class:`BF16`."""
    return {
        key: BF16(np.asarray(value)) if np.asarray(value).dtype == np.uint16 else np.asarray(value)
        for key, value in state.items()
    }


def _name(key: str, array: NDArray[Any]) -> str:
    name = state_dtype(np.asarray(array))
    if name is None:
        raise InvalidTensors(
            key, f"dtype {np.asarray(array).dtype} is not stored (accepted: {', '.join(DTYPES)})"
        )
    return name


def _same_keys(state: Mapping[str, Any], base: Mapping[str, Any]) -> None:
    missing, extra = sorted(set(base) - set(state)), sorted(set(state) - set(base))
    if missing or extra:
        first = (missing or extra)[0]
        raise InvalidTensors(first, f"keys differ from the base's: missing {missing[:5]}, extra {extra[:5]}")

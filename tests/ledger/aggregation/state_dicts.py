"""A state dict of every kind a torch model carries, as numpy (bfloat16 as uint16 bits), and members' updates
of it: a BatchNorm CNN (running statistics, the int64 ``num_batches_tracked``) with a float16 head, a bfloat16
projection and bool, uint8 and int32 buffers. Shared by the aggregation, checks and replay tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ledger.aggregation.source import TensorInfo
from ledger.updatefile.deltas import apply_float64_delta, state_delta
from ledger.updatefile.dtypes import bf16_to_float32, float32_to_bf16

State = dict[str, NDArray[Any]]


def mixed_base(seed: int = 0) -> State:
    rng = np.random.default_rng(seed)
    return {
        "conv.weight": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
        "conv.bias": rng.standard_normal(4).astype(np.float32),
        "bn.weight": np.ones(4, np.float32),
        "bn.bias": np.zeros(4, np.float32),
        "bn.running_mean": rng.standard_normal(4).astype(np.float32),
        "bn.running_var": rng.uniform(0.5, 2.0, 4).astype(np.float32),
        "bn.num_batches_tracked": np.array(10, np.int64),
        "head.weight": rng.standard_normal((3, 4)).astype(np.float16),
        "head.bias": rng.standard_normal(3).astype(np.float16),
        "proj.weight": float32_to_bf16(rng.standard_normal((2, 3)).astype(np.float32)),
        "mask": np.array([True, False, True, False]),
        "codes": np.array([0, 7, 128, 255], np.uint8),
        "steps": np.array([5, -3], np.int32),
    }


def mixed_local(base: State, member: int, *, batches: int | None = None) -> State:
    """Member ``member``'s local state after a round of "training" from ``base``."""
    rng = np.random.default_rng(100 + member)
    out: State = {}
    for key, value in base.items():
        if key == "proj.weight":
            moved = bf16_to_float32(value) + 0.05 * rng.standard_normal(value.shape).astype(np.float32)
            out[key] = float32_to_bf16(moved)
        elif value.dtype.kind == "f":
            out[key] = (value + 0.05 * rng.standard_normal(value.shape)).astype(value.dtype)
        else:
            out[key] = value.copy()
    out["bn.running_var"] = np.abs(out["bn.running_var"]) + np.float32(0.1)
    out["bn.num_batches_tracked"] = base["bn.num_batches_tracked"] + (
        3 + member if batches is None else batches
    )
    out["mask"] = base["mask"] ^ np.array([member % 2 == 0, member < 2, False, True])
    out["codes"] = np.clip(base["codes"].astype(np.int64) + rng.integers(-5, 6, 4), 0, 255).astype(np.uint8)
    out["steps"] = base["steps"] + np.array([member, -member], np.int32)
    return out


def mixed_deltas(base: State, members: int) -> list[State]:
    return [state_delta(mixed_local(base, m), base) for m in range(members)]


def delta_f64(info: TensorInfo, delta: NDArray[Any]) -> NDArray[np.float64]:
    """A delta as the rules read it: bfloat16 widened, U8 as signed bytes, bools as 0/1."""
    if info.bfloat16:
        return bf16_to_float32(delta).astype(np.float64).reshape(-1)
    if info.kind == "u8":
        return delta.view(np.int8).astype(np.float64).reshape(-1)
    return np.asarray(delta).astype(np.float64).reshape(-1)


def reference_rule(
    rule: str,
    deltas: Sequence[NDArray[np.float64]],
    *,
    weights: Sequence[int],
    scales: Sequence[float],
    trim: int = 0,
    selected: Sequence[int] = (),
) -> NDArray[np.float64]:
    """Each rule written plainly on whole vectors (inputs in digest order), in the protocol's order of sums."""
    if rule == "fedavg":
        acc = np.zeros_like(deltas[0])
        for d, w, s in zip(deltas, weights, scales, strict=True):
            acc = acc + (float(w) * s) * d
        return acc / float(sum(weights))
    if rule == "mean":
        acc = np.zeros_like(deltas[0])
        for i in selected:
            acc = acc + scales[i] * deltas[i]
        return acc / float(len(selected))
    stacked = np.sort(np.stack([s * d for d, s in zip(deltas, scales, strict=True)]), axis=0)
    kept = stacked[trim : len(deltas) - trim]
    acc = kept[0].copy()
    for row in kept[1:]:
        acc = acc + row
    return acc / float(len(kept)) + 0.0


def apply_reference(info: TensorInfo, base: NDArray[Any], delta: NDArray[np.float64]) -> NDArray[Any]:
    return apply_float64_delta(info.name, np.asarray(base).reshape(-1), delta).reshape(info.shape)

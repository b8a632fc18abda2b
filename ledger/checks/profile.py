"""One streaming pass over an update's tensors: all finite?, its L2 norm, and its fingerprint.

The norm is the protocol's sum of squares (:mod:`ledger.aggregation.numerics`) over the floating-point tensors
in sorted key order: bit for bit the norm the aggregator uses for clipping. Finiteness comes for free: the sum
of squares of float16/32/bfloat16 values cannot overflow float64, so it is finite exactly when every value is;
only when it is not are the values looked at one by one (and float64 tensors told apart from an overflow).

The fingerprint is the update's values at :data:`FINGERPRINT_SIZE` fixed positions, evenly spread over the
concatenated floating-point tensors (position ``j * P // K`` for ``j < K``): enough to recognise a copy of
another update (cosine ~ 1) without keeping the update around.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ledger.aggregation.numerics import CHUNK, add_sumsq
from ledger.aggregation.source import TensorInfo, TensorSource, load_values
from ledger.aggregation.stream import release_pages

FINGERPRINT_SIZE = 256
_BLOCK = 32 * CHUNK


@dataclass(frozen=True)
class UpdateProfile:
    """What the round-level checks need of one update; JSON-ready through :meth:`to_dict`."""

    digest: bytes
    norm: float
    fingerprint: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest.hex(), "norm": self.norm, "fingerprint": list(self.fingerprint)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UpdateProfile:
        return cls(
            bytes.fromhex(data["digest"]), float(data["norm"]), tuple(float(v) for v in data["fingerprint"])
        )


@dataclass(frozen=True)
class Scan:
    """Result of :func:`scan`: ``non_finite`` names the first tensor holding NaN/Inf (the scan stops there)."""

    sumsq: float
    fingerprint: tuple[float, ...]
    non_finite: str | None = None

    @property
    def norm(self) -> float:
        return math.sqrt(self.sumsq)


def fingerprint_positions(total: int, size: int = FINGERPRINT_SIZE) -> list[int]:
    """Flat positions sampled from ``total`` floating-point values (all of them when there are fewer)."""
    k = min(size, total)
    return [j * total // k for j in range(k)]


def scan(source: TensorSource, layout: Sequence[TensorInfo]) -> Scan:
    """Read the update once, block by block, computing its sum of squares and fingerprint."""
    params = [info for info in layout if info.parameter]
    positions = fingerprint_positions(sum(info.size for info in params))
    sample: list[float] = []
    buf = np.empty(_BLOCK, np.float64)
    sq = np.empty(_BLOCK, np.float64)
    total = 0.0
    offset = 0  # flat position of the current tensor among all floating-point values
    for info in params:
        flat = source.tensor(info.key).reshape(-1)
        for start in range(0, info.size, _BLOCK):
            stop = min(start + _BLOCK, info.size)
            block = load_values(info, flat[start:stop], buf[: stop - start])
            release_pages(flat[start:stop])
            total = add_sumsq(total, block, sq[: stop - start])
            if not math.isfinite(total) and not np.isfinite(block).all():
                return Scan(total, tuple(sample), non_finite=info.key)
            while len(sample) < len(positions) and positions[len(sample)] < offset + stop:
                sample.append(float(block[positions[len(sample)] - offset - start]))
        offset += info.size
    return Scan(total, tuple(sample))

"""The aggregation rules as pure NumPy functions on lists of arrays (in the manner of Flower's ``aggregate.py``).

Each rule takes the N contributors' values for the *same* coordinates (a whole tensor, or one block of it: the
streaming driver in :mod:`ledger.aggregation.stream` calls these on blocks) and returns the aggregated delta in
float64. Inputs are in the protocol's order (ascending digest); ``scales`` are the per-input norm-clipping factors
(:func:`clip_factors`), 1.0 when there is no clipping. The selection maths of multi-krum works on the N x N
matrix of squared distances, which the driver builds in a streaming pass.

All arithmetic follows :mod:`ledger.aggregation.numerics`: float64, fixed order, no BLAS.

Every rule runs on every tensor of a state dict, by the kind of its dtype (``ledger.updatefile.deltas``): on
float deltas (parameters and float buffers such as BatchNorm's running statistics, bfloat16 widened exactly),
clipped by ``scales``; on integer buffers' increments (``num_batches_tracked``: U8 read as signed bytes) and on
bool flips (0/1) with scales of 1. The driver then rounds once to the dtype: floats to nearest even, integers half
to even added exactly to the base and saturated, bools flipped where the result exceeds one half
(docs/aggregation.md, "Buffers and dtypes").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ledger.aggregation.errors import BadWeight
from ledger.aggregation.numerics import F64, load_f64, selection_network, sort_rows

MAX_WEIGHT = 10_000
"""The largest FedAvg weight: a consensus score (SCORE_ONE, 1.0 in fixed point). Weights are integers in
1..MAX_WEIGHT, so no input can outweigh the others by more than 10,000 to 1 and no sum can leave the exact
float64 integers, whatever a member claims (protocol R2)."""

Array = NDArray[Any]
Consumed = Callable[[Array], None] | None
"""Called with each input right after it has been read, so a streaming caller can release its pages."""
Loader = Callable[[Array, F64], F64]
"""Reads one input's values into a float64 buffer: ``load_f64`` by default; the streaming driver passes one that
widens bfloat16 bits in place, so no input is ever held widened beside the others."""


def weighted_sum(
    arrays: Sequence[Array],
    coeffs: Sequence[float],
    *,
    out: F64 | None = None,
    scratch: F64 | None = None,
    consumed: Consumed = None,
    load: Loader = load_f64,
) -> F64:
    """``sum_i coeffs[i] * arrays[i]`` in float64, accumulated in list order (the deterministic core of fedavg)."""
    shape = np.shape(arrays[0])
    acc = np.empty(shape, np.float64) if out is None else out
    tmp = np.empty(shape, np.float64) if scratch is None else scratch
    acc.fill(0.0)
    for x, c in zip(arrays, coeffs, strict=True):
        load(x, tmp)
        if consumed is not None:
            consumed(x)
        np.multiply(tmp, c, out=tmp)
        np.add(acc, tmp, out=acc)
    return acc


def fedavg(
    arrays: Sequence[Array],
    weights: Sequence[int],
    scales: Sequence[float] | None = None,
    *,
    out: F64 | None = None,
    scratch: F64 | None = None,
    consumed: Consumed = None,
    load: Loader = load_f64,
) -> F64:
    """Mean weighted by the consensus scores: ``sum_i (w_i * s_i) * x_i / sum_i w_i``."""
    total = fedavg_divisor(weights)
    scales = [1.0] * len(arrays) if scales is None else scales
    coeffs = [float(w) * s for w, s in zip(weights, scales, strict=True)]
    acc = weighted_sum(arrays, coeffs, out=out, scratch=scratch, consumed=consumed, load=load)
    np.divide(acc, total, out=acc)
    return acc


def fedavg_divisor(weights: Sequence[int]) -> float:
    """``sum(weights)`` as an exact float; every weight must be an integer in 1..MAX_WEIGHT."""
    check_weights(weights)
    return float(sum(int(w) for w in weights))


def check_weights(weights: Sequence[int]) -> None:
    """Refuse a weight that no accepted update's consensus can be (``BadWeight``)."""
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, int | np.integer) or not 1 <= w <= MAX_WEIGHT:
            raise BadWeight(list(weights), f"each must be an integer in 1..{MAX_WEIGHT}, got {w!r}")


def mean(
    arrays: Sequence[Array],
    scales: Sequence[float] | None = None,
    *,
    out: F64 | None = None,
    scratch: F64 | None = None,
    consumed: Consumed = None,
    load: Loader = load_f64,
) -> F64:
    """Unweighted mean (multi-krum's average of the selected updates)."""
    scales = [1.0] * len(arrays) if scales is None else scales
    acc = weighted_sum(arrays, scales, out=out, scratch=scratch, consumed=consumed, load=load)
    np.divide(acc, float(len(arrays)), out=acc)
    return acc


def trimmed_mean(
    arrays: Sequence[Array],
    trim: int,
    scales: Sequence[float] | None = None,
    *,
    stack: F64 | None = None,
    out: F64 | None = None,
    consumed: Consumed = None,
    load: Loader = load_f64,
) -> F64:
    """Per coordinate: sort the N values, drop ``trim`` from each end, average the rest.

    The kept values are summed in ascending order and divided by their count. Ties cannot be broken differently
    on different machines: the sorted values are the same whatever order equal values arrive in, and the sign of
    a zero result is normalised (``+ 0.0``).
    """
    n = len(arrays)
    if not 0 <= 2 * trim < n:
        raise ValueError(f"cannot trim {trim} from each end of {n} values")
    shape = np.shape(arrays[0])
    size = int(np.prod(shape))
    buf = np.empty((n + 1, size), np.float64) if stack is None else stack
    rows = [buf[i, :size] for i in range(n)]
    for i, x in enumerate(arrays):
        load(x, rows[i])
        if consumed is not None:
            consumed(x)
        if scales is not None and scales[i] != 1.0:
            np.multiply(rows[i], scales[i], out=rows[i])
    wanted = tuple(range(trim, n - trim))
    ordered, _ = sort_rows(rows, selection_network(n, wanted), buf[n, :size])
    acc = np.empty(size, np.float64) if out is None else out.reshape(size)
    np.copyto(acc, ordered[trim])
    for row in ordered[trim + 1 : n - trim]:
        np.add(acc, row, out=acc)
    np.divide(acc, float(n - 2 * trim), out=acc)
    np.add(acc, 0.0, out=acc)  # -0.0 -> +0.0: min/max may order signed zeros either way
    return acc.reshape(shape)


def median(
    arrays: Sequence[Array],
    scales: Sequence[float] | None = None,
    *,
    stack: F64 | None = None,
    out: F64 | None = None,
    consumed: Consumed = None,
    load: Loader = load_f64,
) -> F64:
    """Coordinate-wise median; for even N the mean of the two middle values (``(a + b) / 2``)."""
    return trimmed_mean(
        arrays, (len(arrays) - 1) // 2, scales, stack=stack, out=out, consumed=consumed, load=load
    )


# --- norms, clipping, multi-krum ----------------------------------------------------------------------------


def clip_factors(norms: Sequence[float], bound: float | None) -> list[float]:
    """Per-input factor ``min(1, bound / norm)``: scaling by it brings every update's L2 norm to at most ``bound``."""
    if bound is None:
        return [1.0] * len(norms)
    if not bound > 0:
        raise ValueError(f"clip bound must be positive, got {bound}")
    return [1.0 if norm <= bound else bound / norm for norm in norms]


def sq_distances(gram: F64, scales: Sequence[float]) -> F64:
    """Squared distances between the clipped inputs from their Gram matrix: ``|s_i x_i - s_j x_j|^2``.

    Expanded as ``s_i^2 G_ii + s_j^2 G_jj - 2 s_i s_j G_ij`` (clamped at 0) so that one streaming pass yields
    both the norms (for clipping) and the distances.
    """
    n = gram.shape[0]
    out = np.zeros((n, n), np.float64)
    for i in range(n):
        for j in range(i + 1, n):
            si, sj = float(scales[i]), float(scales[j])
            d = (si * si * float(gram[i, i]) + sj * sj * float(gram[j, j])) - 2.0 * si * sj * float(
                gram[i, j]
            )
            out[i, j] = out[j, i] = max(d, 0.0)
    return out


def krum_scores(sq_dist: F64, f: int) -> list[float]:
    """Krum score of each input: the sum of its ``n - f - 2`` smallest squared distances to the others.

    The neighbour count is clamped to ``1 .. n - 1`` so that small rounds still get a score (with n < 2f + 3
    Krum's guarantee does not hold; the selection is still deterministic). Sums run in ascending order.
    """
    n = sq_dist.shape[0]
    if n == 1:
        return [0.0]
    k = min(max(n - f - 2, 1), n - 1)
    scores = []
    for i in range(n):
        others = sorted(float(sq_dist[i, j]) for j in range(n) if j != i)
        total = 0.0
        for d in others[:k]:
            total += d
        scores.append(total)
    return scores


def multi_krum_select(sq_dist: F64, f: int, m: int = 0) -> list[int]:
    """Indices (ascending) of the ``m`` inputs with the lowest Krum scores; ``m = 0`` keeps ``n - f``.

    ``m`` is clamped to ``1 .. n``. Equal scores go to the input that comes first in digest order.
    """
    n = sq_dist.shape[0]
    keep = m if m > 0 else n - f
    keep = min(max(keep, 1), n)
    scores = krum_scores(sq_dist, f)
    ranked = sorted(range(n), key=lambda i: (scores[i], i))
    return sorted(ranked[:keep])


def l2_norm(sumsq: float) -> float:
    """Norm from a protocol sum of squares (``math.sqrt`` is correctly rounded)."""
    return math.sqrt(sumsq)

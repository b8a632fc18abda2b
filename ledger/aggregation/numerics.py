"""Deterministic float64 building blocks shared by the rules, the streaming driver and the checks.

Every number that can change an aggregate's bytes (a clipping factor, a Krum distance, a weighted sum) is
computed here in an order fixed by the protocol, so that every machine gets the same bits:

* **Elementwise** operations (``+``, ``*``, ``min``, ``max``) on float64 are exactly rounded IEEE-754 operations:
  their result does not depend on the CPU, the SIMD width or the library. Sums *across inputs* are therefore
  written as explicit sequential elementwise accumulation (``acc += c_i * x_i`` for i in digest order).
* **Sums over coordinates** (norms, inner products) go through :func:`chunk_sums`: each tensor is cut into
  chunks of :data:`CHUNK` consecutive elements (C order, starting at its first element; the last chunk may be
  shorter); each chunk is summed by ``np.add.reduce`` on a contiguous float64 row, which is NumPy's pairwise
  summation (blocks of 128 with 8 accumulators, halving above that: a fixed tree that depends only on the
  length, compiled without reassociation); a tensor's chunk sums are added sequentially, starting from 0.0, into
  the tensor's sum; the tensors' sums are added sequentially in sorted key order. Per-tensor sums let a
  validator compute a norm in file order while it hashes the file, and still get the same bits.
  ``tests/test_aggregation_numerics.py`` pins that algorithm against a pure-Python transcription, so a NumPy
  that summed differently would fail the suite rather than change CIDs. BLAS (``np.dot``, ``@``) is never used:
  its blocking and threading vary by machine.
* **Order statistics** (median, trimmed mean) use a sorting network of elementwise ``minimum``/``maximum`` over
  the N inputs: it is vectorised across coordinates (much faster than sorting each coordinate's N values), and
  its output is the sorted values whatever the input order, so ties cannot be broken differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

CHUNK = 1 << 13
"""Elements per reduction chunk. Part of the protocol: changing it changes norms in the last bits."""


def load_f64(x: NDArray[Any], out: F64) -> F64:
    """Copy ``x`` (any real dtype, possibly a memory map slice) into the float64 buffer ``out``."""
    np.copyto(out, x.reshape(out.shape), casting="safe")
    return out


def chunk_sums(rows: F64) -> F64:
    """Per-chunk sums of each row of a 2-D float64 array: shape (R, ceil(L / CHUNK)).

    ``rows`` must have contiguous rows (a row stride larger than its length is fine); chunks start at column 0.
    """
    n_rows, length = rows.shape
    full = length // CHUNK
    tail = length - full * CHUNK
    out = np.empty((n_rows, full + (1 if tail else 0)), dtype=np.float64)
    if full:
        np.add.reduce(rows[:, : full * CHUNK].reshape(n_rows, full, CHUNK), axis=2, out=out[:, :full])
    if tail:
        np.add.reduce(rows[:, full * CHUNK :], axis=1, out=out[:, full])
    return out


def accumulate_chunks(acc: F64, sums: F64) -> None:
    """``acc[r] += sums[r, c]`` for c = 0, 1, … in order: the sequential half of the protocol's sum."""
    for c in range(sums.shape[1]):
        np.add(acc, sums[:, c], out=acc)


def add_sumsq(acc: float, block: F64, scratch: F64) -> float:
    """``acc`` plus the sum of squares of a 1-D float64 block that starts on a chunk boundary of its tensor.

    ``scratch`` may be ``block`` itself (squared in place: fastest). Squares that overflow give inf (no
    warning): callers decide whether that is an error.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        np.multiply(block, block, out=scratch)
    sums = chunk_sums(scratch.reshape(1, -1))
    for value in sums[0].tolist():
        acc += value
    return acc


# --- sorting networks ---------------------------------------------------------------------------------------


@cache
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort on ``n`` wires, as (low, high) comparator pairs in execution order.

    Built for the next power of two; comparators that touch a wire >= n are dropped, which is sound because those
    wires would carry +inf and never move.
    """
    size = 1
    while size < n:
        size *= 2
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple((a, b) for a, b in pairs if b < n)


@cache
def selection_network(n: int, wanted: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """The comparators of :func:`sorting_network` that can influence the ``wanted`` output positions."""
    needed = set(wanted)
    kept: list[tuple[int, int]] = []
    for a, b in reversed(sorting_network(n)):
        if a in needed or b in needed:
            kept.append((a, b))
            needed.update((a, b))
    kept.reverse()
    return tuple(kept)


def sort_rows(rows: Sequence[F64], network: Sequence[tuple[int, int]], spare: F64) -> tuple[list[F64], F64]:
    """Apply a comparator network to equally long float64 rows: (rows in sorted position order, new spare).

    Rows are swapped by reference, so the returned arrays are the caller's buffers (rows and ``spare``) in a new
    order. Inputs must hold no NaN (NaN would not sort).
    """
    out = list(rows)
    for a, b in network:
        np.minimum(out[a], out[b], out=spare)
        np.maximum(out[a], out[b], out=out[b])
        out[a], spare = spare, out[a]
    return out, spare

"""The streaming aggregation driver: memory-mapped update files in, one aggregated tensor at a time out.

    agg = prepare(base, contributions, spec)     # sorts by digest; first pass(es) if the rule needs them
    for key, weights in agg.tensors():           # full weights = base + aggregated delta, in the base's dtype
        writer.write(key, weights)

Memory grows with the model, not with N: tensors are read block by block from every input (pages are handed
back to the page cache as soon as a block is consumed), fedavg and the mean of multi-krum accumulate a float64
block, order statistics stack N values of a bounded block of coordinates, and only the output tensor being
produced is held whole. Passes over the inputs:

    fedavg, trimmed-mean, median   1 (2 with clipping: norms first)
    multi-krum                     2 (Gram matrix: norms and pairwise distances; then the mean of the selected)
"""

from __future__ import annotations

import functools
import mmap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ledger.aggregation import numerics, rules
from ledger.aggregation.errors import InputMismatch, NoInputs, NonFiniteAggregate
from ledger.aggregation.numerics import CHUNK, F64, accumulate_chunks, add_sumsq, chunk_sums
from ledger.aggregation.source import (
    TensorInfo,
    TensorSource,
    describe_source,
    finite_storage,
    load_deltas,
    load_values,
    tensor_info,
)
from ledger.aggregation.spec import AggregationSpec, Rule, sort_by_digest
from ledger.updatefile.deltas import apply_float64_delta
from ledger.updatefile.dtypes import float64_to_bf16

DEFAULT_MEMORY_BUDGET = 64 << 20
"""Bytes of float64 scratch buffers the driver may use (on top of the output tensor being produced)."""

_PAGE = mmap.PAGESIZE
_AHEAD = 2 << 20


@dataclass(frozen=True)
class Contribution:
    """One accepted update: its digest (32 bytes, from the chain), its tensors and its FedAvg ``weight``, the
    update's consensus score (``consensus_weights``: an integer in 1..10,000). ``num_samples``, the member's
    claim, is carried for the record only: no rule reads it (protocol R2)."""

    digest: bytes
    source: TensorSource = field(compare=False, repr=False)
    weight: int = 1
    num_samples: int | None = None


class Aggregation:
    """One aggregation after its planning pass(es); :meth:`tensors` streams the result.

    ``inputs`` are in digest order; ``selected`` indexes the inputs the rule uses (all but for multi-krum);
    ``norms`` (when clipping or multi-krum needed them) and ``scales`` (clipping factors) follow ``inputs``.
    """

    def __init__(
        self,
        base: TensorSource,
        inputs: Sequence[Contribution],
        spec: AggregationSpec,
        layout: Sequence[TensorInfo],
        *,
        norms: Sequence[float] | None,
        scales: Sequence[float],
        selected: Sequence[int],
        krum_scores: Sequence[float] | None,
        memory_budget: int,
    ) -> None:
        self.base = base
        self.inputs = tuple(inputs)
        self.spec = spec
        self.layout = tuple(layout)
        self.norms = None if norms is None else tuple(norms)
        self.scales = tuple(scales)
        self.selected = tuple(selected)
        self.krum_scores = None if krum_scores is None else tuple(krum_scores)
        self.memory_budget = memory_budget

    @property
    def digests(self) -> tuple[bytes, ...]:
        return tuple(c.digest for c in self.inputs)

    def summary(self) -> dict[str, Any]:
        """JSON-ready record of what was aggregated and how (for the aggregate's metadata and the audit)."""
        out: dict[str, Any] = {
            **self.spec.describe(),
            "inputs": [d.hex() for d in self.digests],
            "selected": [self.inputs[i].digest.hex() for i in self.selected],
        }
        if self.spec.rule is Rule.FEDAVG:
            out["weights"] = [c.weight for c in self.inputs]
        if self.norms is not None:
            out["norms"] = list(self.norms)
        if self.spec.clip is not None:
            out["clip_factors"] = list(self.scales)
        if self.krum_scores is not None:
            out["krum_scores"] = list(self.krum_scores)
        return out

    def tensors(self) -> Iterator[tuple[str, NDArray[Any]]]:
        """Yield ``(key, full weights)`` in sorted key order; each array is in the base's dtype and shape."""
        chosen = [self.inputs[i] for i in self.selected]
        n = len(chosen)
        ordered = self.spec.rule in (Rule.TRIMMED_MEAN, Rule.MEDIAN)
        width = _order_block(n, self.memory_budget) if ordered else _sum_block(self.memory_budget)
        acc = np.empty(width, np.float64)
        scratch = np.empty(width, np.float64)
        stack = np.empty((n + 1, width), np.float64) if ordered else None
        trim = self.spec.trim_count(n)
        fedavg_weights = [c.weight for c in chosen]
        for info in self.layout:
            # Clipping scales parameters only: an integer or bool buffer's delta is not part of the norm.
            scales = [self.scales[i] for i in self.selected] if info.parameter else [1.0] * n
            base = _flat(self.base.tensor(info.key))
            sources = [_flat(c.source.tensor(info.key)) for c in chosen]
            result = np.empty(info.size, info.dtype)
            for start in range(0, info.size, width):
                stop = min(start + width, info.size)
                blocks = [s[start:stop] for s in sources]
                length = stop - start
                load: rules.Loader = numerics.load_f64
                if info.bfloat16:  # widened straight into the rule's float64 rows, one input at a time
                    load = functools.partial(load_deltas, info)
                elif info.kind == "u8":  # U8 deltas are signed bytes (ledger.updatefile.deltas)
                    blocks = [b.view(np.int8) for b in blocks]  # views of the maps: still released
                if stack is not None:
                    delta = rules.trimmed_mean(
                        blocks, trim, scales, stack=stack, out=acc[:length], consumed=release_pages, load=load
                    )
                elif self.spec.rule is Rule.FEDAVG:
                    out, tmp = acc[:length], scratch[:length]
                    delta = rules.fedavg(
                        blocks,
                        fedavg_weights,
                        scales,
                        out=out,
                        scratch=tmp,
                        consumed=release_pages,
                        load=load,
                    )
                else:
                    out, tmp = acc[:length], scratch[:length]
                    delta = rules.mean(
                        blocks, scales, out=out, scratch=tmp, consumed=release_pages, load=load
                    )
                _store(info, base[start:stop], delta, result[start:stop])
                release_pages(base[start:stop])
            yield info.key, result.reshape(info.shape)


def prepare(
    base: TensorSource,
    contributions: Sequence[Contribution],
    spec: AggregationSpec,
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Aggregation:
    """Validate the inputs against the base, order them by digest and run the rule's planning pass(es)."""
    if not contributions:
        raise NoInputs()
    inputs = sort_by_digest(contributions, lambda c: c.digest)
    layout = describe_source(base)
    for c in inputs:
        _check_layout(c, layout)
    rules.check_weights(
        [c.weight for c in inputs]
    )  # refuse bad weights before any reading, whatever the rule

    n = len(inputs)
    norms: list[float] | None = None
    scales = [1.0] * n
    selected = list(range(n))
    scores: list[float] | None = None
    if spec.rule is Rule.MULTI_KRUM:
        gram = gram_matrix([c.source for c in inputs], layout, memory_budget=memory_budget)
        norms = [rules.l2_norm(float(gram[i, i])) for i in range(n)]
        scales = rules.clip_factors(norms, spec.clip_norm)
        sq = rules.sq_distances(gram, scales)
        scores = rules.krum_scores(sq, spec.krum_f)
        selected = rules.multi_krum_select(sq, spec.krum_f, spec.krum_m)
    elif spec.clip is not None:
        norms = [rules.l2_norm(sumsq(c.source, layout, memory_budget=memory_budget)) for c in inputs]
        scales = rules.clip_factors(norms, spec.clip_norm)
    if norms is not None:
        for c, norm in zip(inputs, norms, strict=True):
            if not np.isfinite(norm):
                raise NonFiniteAggregate(c.digest.hex(), "the norm of input")
    return Aggregation(
        base,
        inputs,
        spec,
        layout,
        norms=norms,
        scales=scales,
        selected=selected,
        krum_scores=scores,
        memory_budget=memory_budget,
    )


def aggregate(
    base: TensorSource,
    contributions: Sequence[Contribution],
    spec: AggregationSpec,
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> dict[str, NDArray[Any]]:
    """The whole aggregate in memory (one model's worth): ``dict(prepare(...).tensors())``."""
    return dict(prepare(base, contributions, spec, memory_budget=memory_budget).tensors())


# --- planning passes ---------------------------------------------------------------------------------------


def sumsq(
    source: TensorSource, layout: Sequence[TensorInfo], *, memory_budget: int = DEFAULT_MEMORY_BUDGET
) -> float:
    """The protocol sum of squares of a source's parameter tensors (its squared L2 norm)."""
    width = _sum_block(memory_budget)
    buf = np.empty(width, np.float64)
    total = 0.0
    for info in layout:
        if not info.parameter:
            continue
        flat = _flat(source.tensor(info.key))
        tensor_total = 0.0
        for start in range(0, info.size, width):
            stop = min(start + width, info.size)
            block = load_values(info, flat[start:stop], buf[: stop - start])
            release_pages(flat[start:stop])
            tensor_total = add_sumsq(tensor_total, block, block)
        total += tensor_total
    return total


def gram_matrix(
    sources: Sequence[TensorSource],
    layout: Sequence[TensorInfo],
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> F64:
    """``G[i, j] = <x_i, x_j>`` over the parameter tensors, every entry summed in the protocol order."""
    n = len(sources)
    width = _gram_block(n, memory_budget)
    stack = np.empty((n, width), np.float64)
    prod = np.empty((n, width), np.float64)
    gram = np.zeros((n, n), np.float64)
    per_tensor = np.empty((n, n), np.float64)
    for info in layout:
        if not info.parameter:
            continue
        per_tensor.fill(0.0)
        flats = [_flat(s.tensor(info.key)) for s in sources]
        for start in range(0, info.size, width):
            stop = min(start + width, info.size)
            length = stop - start
            for i, flat in enumerate(flats):
                load_values(info, flat[start:stop], stack[i, :length])
                release_pages(flat[start:stop])
            for i in range(n):
                with np.errstate(over="ignore", invalid="ignore"):  # inf norms are refused by prepare()
                    np.multiply(stack[i:, :length], stack[i, :length], out=prod[: n - i, :length])
                    accumulate_chunks(per_tensor[i, i:], chunk_sums(prod[: n - i, :length]))
        with np.errstate(over="ignore", invalid="ignore"):
            np.add(gram, per_tensor, out=gram)
    upper = np.triu_indices(n, 1)
    gram[upper[1], upper[0]] = gram[upper]
    return gram


# --- helpers -----------------------------------------------------------------------------------------------


def _check_layout(c: Contribution, layout: Sequence[TensorInfo]) -> None:
    keys = sorted(c.source.keys())
    expected = [info.key for info in layout]
    if keys != expected:
        extra = sorted(set(keys) - set(expected))
        missing = sorted(set(expected) - set(keys))
        raise InputMismatch(c.digest, ",".join(extra or missing) or "?", "key set", keys, expected)
    for info in layout:
        got = tensor_info(c.source, info.key)
        if got.shape != info.shape:
            raise InputMismatch(c.digest, info.key, "shape", got.shape, info.shape)
        if not got.same_dtype(info):
            raise InputMismatch(c.digest, info.key, "dtype", got.label, info.label)


def _sum_block(budget: int) -> int:
    # Two float64 buffers; 2**18 elements (2 MiB each) measured fastest here (cache-resident, few numpy calls).
    return max(CHUNK, min(1 << 18, budget // 16 // CHUNK * CHUNK))


def _order_block(n: int, budget: int) -> int:
    # n + 1 rows of float64; 2**15 columns measured fastest for the sorting network at n = 16.
    return max(1024, min(1 << 15, budget // (8 * (n + 3))))


def _gram_block(n: int, budget: int) -> int:
    # Two n-row float64 stacks; a multiple of CHUNK so blocks start on chunk boundaries.
    return max(CHUNK, budget // (16 * n) // CHUNK * CHUNK)


def _flat(array: NDArray[Any]) -> NDArray[Any]:
    return array.reshape(-1)


def _store(info: TensorInfo, base: NDArray[Any], delta: F64, out: NDArray[Any]) -> None:
    """``out = base + delta`` in the tensor's dtype, as ``ledger.updatefile.deltas.apply_float64_delta`` defines
    it for each kind (floats rounded once; integers rounded, added exactly, saturated; bools flipped by majority).
    ``delta`` is the driver's scratch block: floats are summed into it in place (no temporaries on the hot path)."""
    if not np.isfinite(delta).all():
        raise NonFiniteAggregate(info.key, "the aggregate")
    if info.kind == "float":
        np.add(delta, load_values(info, base, np.empty_like(delta)) if info.bfloat16 else base, out=delta)
        with np.errstate(over="ignore"):
            np.copyto(out, float64_to_bf16(delta) if info.bfloat16 else delta, casting="unsafe")
    else:
        np.copyto(out, apply_float64_delta(info.name, base, delta))
    if not finite_storage(info, out):
        raise NonFiniteAggregate(info.key, f"the aggregate cast to {info.label}")


def release_pages(view: NDArray[Any], *, ahead: int = _AHEAD) -> None:
    """Hand a consumed slice of a memory map back to the page cache (no-op for other arrays).

    Pages of a mapping that has been read stay in the process's resident set until unmapped; without this a
    pass over N memory-mapped updates would show N models of resident memory. ``MADV_DONTNEED`` on a read-only
    file mapping only drops our page-table entries; the data stays cached and is re-read on the next access.
    A fault maps a whole page-cache folio (up to 2 MiB), so ``ahead`` bytes past the slice are dropped too:
    they are mapped again, from the cache, when their own block is read.
    """
    mm = getattr(view, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or view.nbytes < _PAGE:
        return
    try:
        origin = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    except (TypeError, ValueError):  # a closed or writable-only map: nothing to do
        return
    start = view.ctypes.data - origin
    first = -(-start // _PAGE) * _PAGE
    last = min(start + view.nbytes + ahead, len(mm)) // _PAGE * _PAGE
    if last > first:
        mm.madvise(mmap.MADV_DONTNEED, first, last - first)

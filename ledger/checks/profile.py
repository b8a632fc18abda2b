"""One streaming pass over an update: all finite?, its L2 norm, its fingerprint — and, from a file, its CID.

The norm is the protocol's sum of squares (:mod:`ledger.aggregation.numerics`): per tensor, chunk sums added
in order; tensors added in sorted key order. Per-tensor sums let :func:`scan_file` work in *file* order while it
feeds the same bytes to the Kubo CID hasher, so a validator reads each update once, and the result is still bit
for bit the norm the aggregator uses for clipping.

Finiteness comes for free: the sum of squares of float16/32/bfloat16 values cannot overflow float64, so it is
finite exactly when every value is; only when it is not are the values looked at one by one (which also tells a
float64 overflow, reported as a too-large norm, from a NaN or an Inf).

The fingerprint is the update's values at :data:`FINGERPRINT_SIZE` fixed positions, evenly spread over the
concatenated floating-point tensors in sorted key order (position ``j * P // K`` for ``j < K``): enough to
recognise a verbatim copy of another update without keeping the update around. Near copies (noise, scaling) need
the whole vectors: ``ledger.checks.copies``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ledger.aggregation.numerics import CHUNK, add_sumsq
from ledger.aggregation.source import TensorInfo, TensorSource, load_values
from ledger.aggregation.stream import release_pages

FINGERPRINT_SIZE = 256
_SUB = 16 * CHUNK  # elements converted to float64 at a time: 1 MiB, cache-resident
_READ = 16 * 262144  # bytes read per batch: a whole number of Kubo chunks, so the hasher never copies


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
    """Result of a scan: ``non_finite`` names the first tensor (sorted order) holding NaN/Inf."""

    sumsq: float
    fingerprint: tuple[float, ...]
    non_finite: str | None = None
    digest: bytes | None = None
    """The file's Kubo digest, when :func:`scan_file` hashed it."""

    @property
    def norm(self) -> float:
        return math.sqrt(self.sumsq)


def fingerprint_positions(total: int, size: int = FINGERPRINT_SIZE) -> list[int]:
    """Flat positions sampled from ``total`` floating-point values (all of them when there are fewer)."""
    k = min(size, total)
    return [j * total // k for j in range(k)]


class TensorScanner:
    """Consumes one tensor's bytes in order, in pieces of any size: its sum of squares, finiteness, samples."""

    def __init__(
        self, info: TensorInfo, samples_at: Sequence[int], buf: np.ndarray[Any, np.dtype[np.float64]]
    ) -> None:
        self.info = info
        self.itemsize = info.dtype.itemsize
        self.total = 0.0
        self.non_finite = False
        self.samples: list[float] = []
        self._wanted = list(samples_at)  # local element indices, ascending
        self._done = 0  # elements consumed
        self._carry = bytearray()
        self._buf = buf

    def feed(self, data: memoryview) -> None:
        if self.non_finite:
            return
        chunk_bytes = CHUNK * self.itemsize
        if self._carry:
            take = min(chunk_bytes - len(self._carry), len(data))
            self._carry += data[:take]
            data = data[take:]
            if len(self._carry) == chunk_bytes:
                self._consume(memoryview(self._carry))
                self._carry = bytearray()
        whole = len(data) // chunk_bytes * chunk_bytes
        sub_bytes = _SUB * self.itemsize
        for start in range(0, whole, sub_bytes):
            self._consume(data[start : min(start + sub_bytes, whole)])
        if whole < len(data):
            self._carry += data[whole:]

    def finish(self) -> None:
        """Consume the last, short chunk."""
        if self._carry and not self.non_finite:
            self._consume(memoryview(self._carry))
            self._carry = bytearray()

    def _consume(self, data: memoryview) -> None:
        values = np.frombuffer(data, dtype=self.info.dtype)
        n = values.size
        block = load_values(self.info, values, self._buf[:n])
        end = self._done + n
        lo = len(self.samples)
        hi = bisect.bisect_left(self._wanted, end, lo)
        self.samples.extend(block[[i - self._done for i in self._wanted[lo:hi]]].tolist())
        self.total = add_sumsq(self.total, block, block)
        # Not finite: NaN/Inf in the values, or (float64 only) a square that overflowed; look at the values again.
        if (
            not math.isfinite(self.total)
            and not np.isfinite(load_values(self.info, values, self._buf[:n])).all()
        ):
            self.non_finite = True
        self._done = end


def _plan(layout: Sequence[TensorInfo]) -> list[tuple[TensorInfo, list[int]]]:
    """Floating-point tensors in sorted key order, each with its local fingerprint positions (parameters only:
    running statistics are scanned for NaN/Inf but take no part in the norm or the fingerprint)."""
    floats = [info for info in layout if info.floating]
    positions = fingerprint_positions(sum(info.size for info in floats if info.parameter))
    plan: list[tuple[TensorInfo, list[int]]] = []
    offset = 0
    for info in floats:
        if not info.parameter:
            plan.append((info, []))
            continue
        lo = bisect.bisect_left(positions, offset)
        hi = bisect.bisect_left(positions, offset + info.size)
        plan.append((info, [p - offset for p in positions[lo:hi]]))
        offset += info.size
    return plan


def _result(scanners: Sequence[TensorScanner], digest: bytes | None = None) -> Scan:
    total = 0.0
    samples: list[float] = []
    for s in scanners:  # sorted key order
        if s.non_finite:
            return Scan(math.nan, tuple(samples), non_finite=s.info.key, digest=digest)
        if s.info.parameter:
            total += s.total
            samples.extend(s.samples)
    return Scan(total, tuple(samples), digest=digest)


def scan(source: TensorSource, layout: Sequence[TensorInfo]) -> Scan:
    """Scan a source's tensors (memory-mapped files are read block by block and their pages handed back)."""
    buf = np.empty(_SUB, np.float64)
    scanners = []
    for info, wanted in _plan(layout):
        scanner = TensorScanner(info, wanted, buf)
        flat = source.tensor(info.key).reshape(-1)
        for start in range(0, info.size, _SUB):
            piece = flat[start : start + _SUB]
            scanner.feed(piece.view(np.uint8).data)
            release_pages(piece)
            if scanner.non_finite:
                break
        scanner.finish()
        scanners.append(scanner)
        if scanner.non_finite:
            break
    return _result(scanners)


def scan_file(
    path: Path,
    tensors: Mapping[str, tuple[int, int]],
    layout: Sequence[TensorInfo] | None,
    *,
    hash_cid: bool = True,
    batch_bytes: int = _READ,
) -> Scan:
    """Read the file once, in order: feed every byte to the Kubo CID hasher and each floating-point tensor's bytes
    (``tensors``: key -> absolute [start, end) offsets from the validated header) to its scanner.

    With ``layout`` None only the CID is computed (a file whose header or layout was already rejected).
    ``batch_bytes`` (any size; a multiple of 262144 avoids copies in the hasher) is the read size.
    """
    from ledger.content.unixfs import UnixfsHasher

    hasher = UnixfsHasher() if hash_cid else None
    buf = np.empty(_SUB, np.float64)
    scanners = [TensorScanner(info, wanted, buf) for info, wanted in _plan(layout or [])]
    spans = sorted((tensors[s.info.key][0], tensors[s.info.key][1], s) for s in scanners)
    batch = bytearray(batch_bytes)
    view = memoryview(batch)
    pos = 0
    nxt = 0  # first span not yet finished
    with open(path, "rb", buffering=0) as f:
        while True:
            n = _read_full(f, view)
            if hasher is not None and n:
                hasher.update(view[:n])
            end = pos + n
            i = nxt
            while i < len(spans) and spans[i][0] < end:
                start, stop, scanner = spans[i]
                if stop > pos:
                    scanner.feed(view[max(start, pos) - pos : min(stop, end) - pos])
                if stop <= end:
                    scanner.finish()
                    nxt = i + 1
                i += 1
            pos = end
            if n < len(view):
                break
    digest = hasher.finish().digest if hasher is not None else None
    return _result(sorted(scanners, key=lambda s: s.info.key), digest)


def _read_full(f: Any, view: memoryview) -> int:
    filled = 0
    while filled < len(view):
        got = f.readinto(view[filled:])
        if not got:
            break
        filled += got
    return filled

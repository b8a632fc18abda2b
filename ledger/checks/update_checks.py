"""The validator checks of one update, cheapest first; the first failure decides the reason code.

Per update, as soon as it is submitted (:func:`verify_update`)::

     1 TOO_LARGE           size limit (the fetcher applies it during the download: :func:`check_size`)
     2 CID_MISMATCH        the Kubo-identical CID of the bytes differs from the digest on chain
   3-9 header / metadata   the bounded safetensors pre-parser and the strict metadata parser
                           (HEADER_TOO_LARGE, TRUNCATED, HEADER_NOT_JSON, UNKNOWN_DTYPE, BAD_OFFSETS, BAD_SHAPE,
                           BAD_METADATA)
    10 METADATA_MISMATCH   task, round, base model, contributor or num_samples differ from the chain record
 11-13 layout              KEYS_MISMATCH, then per key in sorted order SHAPE_MISMATCH, DTYPE_MISMATCH
    14 NON_FINITE          NaN or Inf anywhere                                \
    15 NORM_TOO_LARGE      L2 norm above the absolute bound                    | one streaming pass
    20 SCALE_OUT_OF_PROPORTION  L2 norm above a multiple of the base's norm    |
    17 NORM_TOO_SMALL      L2 norm at or below the free-rider floor           /
    22 PRIVACY_BUDGET_EXCEEDED  the task's anchored privacy budget over the member's submissions so far
                           (ledger.checks.privacy_budget; validator and audit rejudge, after 1-17, before the
                           round checks)

Once the submission window has closed, over the updates that passed (:func:`judge_in_round`)::

    16 NORM_OUTLIER        robust z-score of the log norm against the round's other updates
    18 DUPLICATE           a copy of an earlier submission in the round (by another member, over whole vectors)
    21 NEAR_COPY           a copy of another member's update accepted in the last rounds (``judge_round``)

Last, and only if the validator has held-out data (:func:`check_loss`)::

    19 LOSS_REGRESSION     held-out loss of base + update above the base's by more than ``loss_delta``

The free-rider floor is checked before the round-level z-score (the brief lists it after): it needs no round, and
a zero update is better reported as NORM_TOO_SMALL than as an outlier (its log norm is -inf).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
from numpy.typing import NDArray

from ledger.aggregation.source import (
    TensorInfo,
    TensorSource,
    describe_source,
    tensor_info,
)
from ledger.checks.limits import CheckLimits
from ledger.checks.profile import _SUB, Scan, TensorScanner, UpdateProfile, _plan, _result, scan, scan_file
from ledger.checks.round import RoundStats
from ledger.checks.verdict import Verdict
from ledger.content.multiformats import digest_to_cid
from ledger.reasons import Reason

LossFn = Callable[[Mapping[str, NDArray[Any]]], float]
"""Held-out loss of full model weights (by state_dict key; bfloat16 tensors given as float32). The caller owns
the data and the framework: ledger never imports torch."""


@dataclass(frozen=True)
class ChainRecord:
    """What the chain records for a submission; a field left None is not compared (an offline check)."""

    digest: bytes | None = None
    task: int | None = None
    round: int | None = None
    base: bytes | None = None
    """Digest of the round's base model."""
    contributor: str | None = None
    num_samples: int | None = None


def base_norm(base: TensorSource, layout: Sequence[TensorInfo] | None = None) -> float | None:
    """The L2 norm of a base model over its floating-point tensors (what SCALE_OUT_OF_PROPORTION compares an
    update's norm with), computed as an update's norm is; None when it is not finite (the check then skips).

    One pass over the base: compute it once per round and pass it to :func:`verify_update`."""
    norm = scan(base, list(layout) if layout is not None else describe_source(base)).norm
    return norm if math.isfinite(norm) else None


def kubo_digest(path: Path) -> bytes:
    """The 32-byte digest inside a file's Kubo CID, hashed on one thread."""
    from ledger.content.unixfs import import_file

    return import_file(path, workers=1).digest


# --- the individual checks (each returns None when it passes) ------------------------------------------------


def check_size(size: int, limits: CheckLimits) -> Verdict | None:
    if size > limits.max_update_bytes:
        return Verdict(Reason.TOO_LARGE, f"{size} bytes, limit {limits.max_update_bytes}")
    return None


def check_digest(digest: bytes, record: ChainRecord) -> Verdict | None:
    if record.digest is not None and digest != record.digest:
        return Verdict(
            Reason.CID_MISMATCH,
            f"the bytes hash to {digest_to_cid(digest)}, the chain records {digest_to_cid(record.digest)}",
            digest=digest,
        )
    return None


def check_metadata(meta: Any, record: ChainRecord) -> Verdict | None:
    """Compare an :class:`~ledger.updatefile.UpdateMeta` with the chain record."""
    from ledger.content.multiformats import cid_to_digest

    problems = []
    if record.task is not None and meta.task != record.task:
        problems.append(f"task {meta.task} (chain: {record.task})")
    if record.round is not None and meta.round != record.round:
        problems.append(f"round {meta.round} (chain: {record.round})")
    if record.base is not None and cid_to_digest(meta.base) != record.base:
        problems.append(f"base {meta.base} (chain: {digest_to_cid(record.base)})")
    if record.contributor is not None and meta.contributor.lower() != record.contributor.lower():
        problems.append(f"contributor {meta.contributor} (chain: {record.contributor})")
    if record.num_samples is not None and meta.num_samples != record.num_samples:
        problems.append(f"num_samples {meta.num_samples} (chain: {record.num_samples})")
    if problems:
        return Verdict(Reason.METADATA_MISMATCH, "metadata names " + "; ".join(problems))
    return None


def check_layout(update: TensorSource, base_layout: Sequence[TensorInfo]) -> Verdict | None:
    """Same keys as the base, then for each key in sorted order the same shape and the same dtype."""
    keys = set(update.keys())
    expected = {info.key for info in base_layout}
    if keys != expected:
        missing, extra = sorted(expected - keys), sorted(keys - expected)
        parts = ([f"missing {_names(missing)}"] if missing else []) + (
            [f"extra {_names(extra)}"] if extra else []
        )
        return Verdict(Reason.KEYS_MISMATCH, ", ".join(parts))
    for info in base_layout:
        got = tensor_info(update, info.key)
        if got.shape != info.shape:
            return Verdict(
                Reason.SHAPE_MISMATCH, f"{info.key!r} has shape {list(got.shape)}, base {list(info.shape)}"
            )
        if not got.same_dtype(info):
            return Verdict(Reason.DTYPE_MISMATCH, f"{info.key!r} is {got.label}, base {info.label}")
    return None


def check_values(result: Scan, limits: CheckLimits, base_scale: float | None = None) -> Verdict | None:
    """NON_FINITE, NORM_TOO_LARGE, SCALE_OUT_OF_PROPORTION (against ``base_scale``, the base's L2 norm from
    :func:`base_norm`; None skips it), NORM_TOO_SMALL from the streaming scan."""
    if result.non_finite is not None:
        return Verdict(Reason.NON_FINITE, f"{result.non_finite!r} holds NaN or Inf")
    norm = result.norm
    if not math.isfinite(norm):
        return Verdict(Reason.NORM_TOO_LARGE, "the norm overflows float64", norm=norm)
    if limits.max_norm is not None and norm > limits.max_norm:
        return Verdict(Reason.NORM_TOO_LARGE, f"norm {norm:.6g} > bound {limits.max_norm:g}", norm=norm)
    ratio = limits.max_scale_ratio
    if ratio is not None and base_scale is not None and base_scale > 0 and norm > ratio * base_scale:
        return Verdict(
            Reason.SCALE_OUT_OF_PROPORTION,
            f"norm {norm:.6g} is {norm / base_scale:.3g}x the base's {base_scale:.6g} (bound {ratio:g}x)",
            norm=norm,
        )
    if norm <= limits.min_norm:
        return Verdict(Reason.NORM_TOO_SMALL, f"norm {norm:.6g} <= floor {limits.min_norm:g}", norm=norm)
    return None


def check_in_round(profile: UpdateProfile, stats: RoundStats, limits: CheckLimits) -> Verdict | None:
    """NORM_OUTLIER, then DUPLICATE (the update must be one of ``stats``' profiles)."""
    z = stats.zscore(profile.digest, limits)
    if (
        z is not None
        and limits.zscore_threshold is not None
        and _outlier(z, stats.peers(profile.digest), limits)
    ):
        return Verdict(
            Reason.NORM_OUTLIER,
            f"robust z-score {z:+.2f} of log norm {profile.norm:.6g} (threshold {limits.zscore_threshold:g})",
            zscore=z,
        )
    original = stats.duplicate_of(profile.digest, limits)
    if original is not None:
        return Verdict(
            Reason.DUPLICATE,
            f"a copy of {digest_to_cid(original.digest)}, submitted earlier in the round",
            zscore=z,
            duplicate_of=original.digest,
        )
    return None


BOTH_SIDES_PEERS = 3
"""With fewer peers than this (a round of three, when the task anchors ``zscore_min_peers`` 2) only a norm far above
is an outlier: two peers cannot tell which of three norms is off when one is far below (an honest member whose
update shrank as its shard converged), and a small update moves FedAvg little and is paid little (the m⁴
discount), while a boosted one is the attack (docs/aggregation.md, "Rounds of three updates")."""


def _outlier(z: float, peers: int, limits: CheckLimits) -> bool:
    assert limits.zscore_threshold is not None
    return z > limits.zscore_threshold or (peers >= BOTH_SIDES_PEERS and z < -limits.zscore_threshold)


def check_loss(
    update: TensorSource,
    base: TensorSource,
    evaluate: LossFn,
    limits: CheckLimits,
    *,
    base_loss: float | None = None,
) -> Verdict:
    """LOSS_REGRESSION when ``evaluate(base + update)`` exceeds the margins over ``base_loss``: ``loss_delta``
    (absolute) and ``loss_ratio`` (relative), whichever are set (``CheckLimits.loss_bound``; with neither set, the
    absolute margin 0).

    ``base_loss`` is computed with ``evaluate(base)`` when not given (pass it to evaluate the base once per
    round). Holds one model's weights in memory. Returns an ACCEPTED verdict carrying both losses when it passes.
    """
    if base_loss is None:
        base_loss = float(evaluate(_weights(base, None)))
    loss = float(evaluate(_weights(base, update)))
    bound = limits.loss_bound(base_loss) if limits.loss_gate else base_loss
    if not math.isfinite(loss) or loss > bound:
        return Verdict(
            Reason.LOSS_REGRESSION,
            f"held-out loss {loss:.6g} > base {base_loss:.6g} + {_margins(limits, base_loss)}",
            loss=loss,
            base_loss=base_loss,
        )
    return Verdict(Reason.ACCEPTED, loss=loss, base_loss=base_loss)


def _margins(limits: CheckLimits, base_loss: float) -> str:
    """The margin that decided, as the detail names it: ``5`` (absolute), ``50% (ratio 1.5)``, or both."""
    parts = []
    if limits.loss_delta is not None or limits.loss_ratio is None:
        parts.append(f"{limits.loss_delta or 0.0:g}")
    if limits.loss_ratio is not None:
        parts.append(f"{(limits.loss_ratio - 1) * abs(base_loss):.6g} (ratio {limits.loss_ratio:g})")
    return " and ".join(parts) if len(parts) == 1 else f"min({', '.join(parts)})"


# --- orchestration -------------------------------------------------------------------------------------------


def verify_update(
    path: str | Path,
    *,
    base: TensorSource,
    record: ChainRecord | None = None,
    limits: CheckLimits | None = None,
    digest: bytes | None = None,
    base_layout: Sequence[TensorInfo] | None = None,
    base_scale: float | None = None,
) -> Verdict:
    """Run the per-update checks on a downloaded file; an accepted verdict carries the update's profile.

    The file is read once: its Kubo CID is computed while its values are scanned. Pass ``digest`` when the CID
    of these bytes is already known (proven while downloading them) to skip the hashing. ``base_layout``
    (``describe_source(base)``) and ``base_scale`` (:func:`base_norm`) may be passed to avoid re-reading the base
    per update; without ``base_scale`` the base is scanned here when the scale check needs it.
    """
    from ledger.updatefile import FileRejected, HeaderLimits, UpdateFile

    target = Path(path)
    record = record or ChainRecord()
    limits = limits or CheckLimits()
    layout = list(base_layout) if base_layout is not None else describe_source(base)

    failed = check_size(target.stat().st_size, limits)
    if failed:
        return failed
    # Header, metadata and layout only need the header: read it first so the values can be scanned in the same
    # pass as the hashing, but report in the protocol's order (a CID mismatch outranks everything after it).
    header_limits = HeaderLimits(
        max_header_bytes=limits.max_header_bytes, max_file_bytes=limits.max_update_bytes
    )
    try:
        with UpdateFile.open(target, limits=header_limits, kind="update") as update:
            failed = check_metadata(update.metadata, record) or check_layout(update, layout)
            spans = {name: (t.start, t.end) for name, t in update.header.tensors.items()}
    except FileRejected as exc:
        failed, spans = Verdict(exc.reason, exc.detail), {}
    result = scan_file(target, spans, None if failed else layout, hash_cid=digest is None)
    digest = digest if digest is not None else result.digest
    assert digest is not None
    failed = check_digest(digest, record) or failed
    if not failed and base_scale is None and limits.max_scale_ratio is not None:
        base_scale = base_norm(base, layout)
    failed = failed or check_values(result, limits, base_scale)
    if failed:
        return failed.but(digest=digest)
    profile = UpdateProfile(digest, result.norm, result.fingerprint)
    return Verdict(Reason.ACCEPTED, norm=result.norm, digest=digest, profile=profile)


TensorSink = Callable[[TensorInfo, int, memoryview], None]
"""Called by :class:`StreamChecks` with a parameter tensor's bytes as they arrive: ``(info, first, data)``, where
``data`` holds whole elements of the tensor (its stored dtype) starting at element ``first``."""


class _Prefix:
    """The first bytes of a stream as a seekable file of the stream's full size, for the header pre-parser (which
    reads the 8-byte length, then at most that many bytes, and never past them)."""

    def __init__(self, data: bytes, size: int) -> None:
        self._data, self._size, self._pos = data, size, 0

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = self._size + pos if whence == 2 else pos
        return self._pos

    def read(self, n: int) -> bytes:
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out


@dataclass
class _Span:
    start: int
    end: int
    info: TensorInfo
    scanner: TensorScanner | None
    keep: bytearray | None
    """Bytes of a small tensor kept for the update's source (running statistics, integer buffers)."""
    carry: bytearray


class StreamChecks:
    """The per-update checks of :func:`verify_update`, run on the update's bytes as a store hands them over:
    one pass, nothing written, nothing read back.

    ``size`` is the content's size (the DAG's root says it before the first byte). Feed every piece in order
    with :meth:`feed`; :meth:`finish` takes the digest the download proved and returns the same verdict
    :func:`verify_update` returns for a file of these bytes. The header is parsed as soon as its bytes are in
    (bounded: at most ``8 + limits.max_header_bytes`` bytes are buffered before the length is checked), then
    each floating-point tensor's bytes go to its scanner (finite, norm, fingerprint) and, for parameters, to
    ``sink`` (e.g. the update's vector file: ``worker.vectorfiles.VectorWriter``). Tensors that are not
    parameters (running statistics, integer buffers) are kept in memory, bounded by the base's layout, for
    :attr:`kept`.
    """

    def __init__(
        self,
        size: int,
        *,
        base: TensorSource,
        record: ChainRecord | None = None,
        limits: CheckLimits | None = None,
        base_layout: Sequence[TensorInfo] | None = None,
        base_scale: float | None = None,
        sink: TensorSink | None = None,
    ) -> None:
        self.size = size
        self.base = base
        self.record = record or ChainRecord()
        self.limits = limits or CheckLimits()
        self.layout = list(base_layout) if base_layout is not None else describe_source(base)
        self.base_scale = base_scale
        self.sink = sink
        self.failed: Verdict | None = check_size(size, self.limits)
        self.kept: dict[str, NDArray[Any]] = {}
        self._prefix = bytearray()
        self._header_end: int | None = None
        self._pos = 0
        self._spans: list[_Span] = []
        self._next = 0
        self._scanners: list[TensorScanner] = []
        self._buf = np.empty(_SUB, np.float64)

    def feed(self, data: memoryview | bytes) -> None:
        view = memoryview(data).cast("B")
        start = self._pos
        self._pos += len(view)
        if self.failed is not None:
            return  # the digest is still proven by the caller; nothing else is looked at
        if self._header_end is None:
            used = 0
            while (want := self._wanted() - len(self._prefix)) > 0 and used < len(view):
                self._prefix += view[used : used + want]
                used += min(want, len(view) - used)
            if len(self._prefix) < self._wanted():
                return
            self._parse_header()
            if self.failed is not None:
                return
        assert self._header_end is not None
        end = self._pos
        i = self._next
        while i < len(self._spans) and self._spans[i].start < end:
            span = self._spans[i]
            if span.end > start:
                lo, hi = max(span.start, start), min(span.end, end)
                self._feed_span(span, lo, view[lo - start : hi - start])
            if span.end <= end:
                self._finish_span(span)
                self._next = i + 1
            i += 1

    def _wanted(self) -> int:
        """Bytes of prefix needed: the length field, then the header it announces (if within the bound)."""
        if len(self._prefix) < 8:
            return 8
        n = int.from_bytes(self._prefix[:8], "little")
        if n > self.limits.max_header_bytes or n > self.size - 8:
            return 8  # the pre-parser rejects the length itself: buffer nothing more
        return 8 + n

    def _parse_header(self) -> None:
        from ledger.updatefile import FileRejected, HeaderLimits, UpdateFile
        from ledger.updatefile.format import _metadata_of
        from ledger.updatefile.header import read_header

        header_limits = HeaderLimits(
            max_header_bytes=self.limits.max_header_bytes, max_file_bytes=self.limits.max_update_bytes
        )
        try:
            prefix = cast("BinaryIO", _Prefix(bytes(self._prefix), self.size))
            header = read_header(prefix, header_limits, name="<stream>")
            metadata = _metadata_of(header, "update", "<stream>")
        except FileRejected as exc:
            self.failed = Verdict(exc.reason, exc.detail)
            return
        update = UpdateFile(header, metadata, path=None, file=None, data=None)
        self.failed = check_metadata(metadata, self.record) or check_layout(update, self.layout)
        self._header_end = header.data_start
        self._prefix = bytearray()
        if self.failed is not None:
            return
        wanted = {info.key: positions for info, positions in _plan(self.layout)}
        for info in self.layout:
            t = header.tensors[info.key]
            scanner = None
            if info.key in wanted:
                scanner = TensorScanner(info, wanted[info.key], self._buf)
                self._scanners.append(scanner)
            keep = None if info.parameter else bytearray()
            self._spans.append(_Span(t.start, t.end, info, scanner, keep, bytearray()))
        self._spans.sort(key=lambda s: s.start)

    def _feed_span(self, span: _Span, lo: int, data: memoryview) -> None:
        if span.scanner is not None:
            span.scanner.feed(data)
        if span.keep is not None:
            span.keep += data
        elif self.sink is not None and not (span.scanner is not None and span.scanner.non_finite):
            item = span.info.dtype.itemsize
            done = lo - span.start - len(span.carry)  # bytes of the tensor handed to the sink so far
            if span.carry:
                take = min(item - len(span.carry), len(data))
                span.carry += data[:take]
                data = data[take:]
                if len(span.carry) == item:
                    self.sink(span.info, done // item, memoryview(bytes(span.carry)))
                    done += item
                    span.carry = bytearray()
            whole = len(data) // item * item
            if whole:
                self.sink(span.info, done // item, data[:whole])
            span.carry += data[whole:]

    def _finish_span(self, span: _Span) -> None:
        if span.scanner is not None:
            span.scanner.finish()
        if span.keep is not None:
            values = np.frombuffer(bytes(span.keep), dtype=span.info.dtype)
            self.kept[span.info.key] = values.reshape(span.info.shape)
            span.keep = None

    def finish(self, digest: bytes) -> Verdict:
        """The verdict, once every byte was fed and the store proved ``digest`` (the Kubo digest of the bytes)."""
        if self._pos != self.size:
            raise ValueError(f"{self._pos} bytes fed of a {self.size}-byte content")
        if self.failed is None and self._header_end is None:
            self._parse_header()  # shorter than its header: the pre-parser says how
        failed = check_digest(digest, self.record) or self.failed
        if failed is not None:
            return failed.but(digest=digest)
        result = _result(sorted(self._scanners, key=lambda s: s.info.key), digest)
        base_scale = self.base_scale
        if base_scale is None and self.limits.max_scale_ratio is not None:
            base_scale = base_norm(self.base, self.layout)
        failed = check_values(result, self.limits, base_scale)
        if failed:
            return failed.but(digest=digest)
        profile = UpdateProfile(digest, result.norm, result.fingerprint)
        return Verdict(Reason.ACCEPTED, norm=result.norm, digest=digest, profile=profile)


def judge_in_round(verdict: Verdict, stats: RoundStats | None, limits: CheckLimits | None = None) -> Verdict:
    """Apply the round-level checks to a verdict from :func:`verify_update` (rejects pass through unchanged)."""
    if not verdict.accepted or verdict.profile is None or stats is None:
        return verdict
    limits = limits or CheckLimits()
    failed = check_in_round(verdict.profile, stats, limits)
    if failed:
        return failed.but(norm=verdict.norm, digest=verdict.digest, profile=verdict.profile)
    return verdict.but(zscore=stats.zscore(verdict.profile.digest, limits))


def check_update(
    path: str | Path,
    base_path: str | Path,
    *,
    record: ChainRecord | None = None,
    limits: CheckLimits | None = None,
    stats: RoundStats | None = None,
    evaluate: LossFn | None = None,
    base_loss: float | None = None,
) -> Verdict:
    """Every check that applies, in order, on files: what `meshprov worker check` and an auditor's replay run.

    Without a ``record`` the update's metadata is compared only with the base file (its CID must be the
    update's ``base``); without ``stats`` the round-level checks are skipped; without ``evaluate`` (or with
    ``limits.loss_delta`` None) the loss check is.
    """
    from ledger.updatefile import UpdateFile

    limits = limits or CheckLimits()
    record = record or ChainRecord(base=kubo_digest(Path(base_path)))
    with UpdateFile.open(base_path) as base:
        verdict = verify_update(path, base=base, record=record, limits=limits)
        verdict = judge_in_round(verdict, stats, limits)
        if verdict.accepted and evaluate is not None and limits.loss_gate:
            with UpdateFile.open(path) as update:
                loss = check_loss(update, base, evaluate, limits, base_loss=base_loss)
            verdict = verdict.but(
                reason=loss.reason, detail=loss.detail, loss=loss.loss, base_loss=loss.base_loss
            )
    return verdict


# --- helpers -------------------------------------------------------------------------------------------------


def _names(keys: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(repr(k) for k in keys[:most])
    return shown + (f" and {len(keys) - most} more" if len(keys) > most else "")


def _weights(base: TensorSource, update: TensorSource | None) -> dict[str, NDArray[Any]]:
    """Full weights ``base + update`` (or the base alone) in each tensor's dtype, the delta applied as
    ``ledger.updatefile.deltas`` defines it for the dtype; bfloat16 given as float32 (exact)."""
    from ledger.aggregation.stream import release_pages
    from ledger.updatefile.deltas import apply_tensor_delta
    from ledger.updatefile.dtypes import bf16_to_float32

    out: dict[str, NDArray[Any]] = {}
    for info in describe_source(base):
        values = np.asarray(base.tensor(info.key))
        if update is not None:
            delta = update.tensor(info.key)
            values = apply_tensor_delta(info.name, values, np.asarray(delta))
            # An update read from one memory map of its whole vector (worker.vectorfiles.VectorSource) would
            # otherwise keep every page it was read through resident until the evaluation ends: one more model.
            release_pages(delta)
        else:
            values = np.array(values)
        out[info.key] = bf16_to_float32(values).reshape(info.shape) if info.bfloat16 else values
    return out

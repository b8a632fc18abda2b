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
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ledger.aggregation.source import (
    TensorInfo,
    TensorSource,
    describe_source,
    tensor_info,
)
from ledger.checks.limits import CheckLimits
from ledger.checks.profile import Scan, UpdateProfile, scan, scan_file
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
    if z is not None and limits.zscore_threshold is not None and abs(z) > limits.zscore_threshold:
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


def check_loss(
    update: TensorSource,
    base: TensorSource,
    evaluate: LossFn,
    limits: CheckLimits,
    *,
    base_loss: float | None = None,
) -> Verdict:
    """LOSS_REGRESSION when ``evaluate(base + update)`` exceeds ``base_loss + limits.loss_delta``.

    ``base_loss`` is computed with ``evaluate(base)`` when not given (pass it to evaluate the base once per
    round). Holds one model's weights in memory. Returns an ACCEPTED verdict carrying both losses when it passes.
    """
    delta = 0.0 if limits.loss_delta is None else limits.loss_delta
    if base_loss is None:
        base_loss = float(evaluate(_weights(base, None)))
    loss = float(evaluate(_weights(base, update)))
    if not math.isfinite(loss) or loss > base_loss + delta:
        return Verdict(
            Reason.LOSS_REGRESSION,
            f"held-out loss {loss:.6g} > base {base_loss:.6g} + {delta:g}",
            loss=loss,
            base_loss=base_loss,
        )
    return Verdict(Reason.ACCEPTED, loss=loss, base_loss=base_loss)


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
        if verdict.accepted and evaluate is not None and limits.loss_delta is not None:
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
    from ledger.updatefile.deltas import apply_tensor_delta
    from ledger.updatefile.dtypes import bf16_to_float32

    out: dict[str, NDArray[Any]] = {}
    for info in describe_source(base):
        values = np.asarray(base.tensor(info.key))
        if update is not None:
            values = apply_tensor_delta(info.name, values, np.asarray(update.tensor(info.key)))
        else:
            values = np.array(values)
        out[info.key] = bf16_to_float32(values).reshape(info.shape) if info.bfloat16 else values
    return out

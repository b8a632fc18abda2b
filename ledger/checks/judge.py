"""Judging a round from files: per-update verdicts, the round's final verdicts, the ballot that encodes them.

What a validator (``worker.verify``), `meshprov worker check` and the robustness experiment (``lab``) all run, so
that they judge alike: the worker only adds fetching, caching and voting around these.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ledger.aggregation.source import TensorInfo, TensorSource
from ledger.checks.copies import Copy, find_copies
from ledger.checks.limits import CheckLimits
from ledger.checks.profile import UpdateProfile
from ledger.checks.round import round_stats
from ledger.checks.update_checks import ChainRecord, LossFn, check_loss, judge_in_round, verify_update
from ledger.checks.vectors import Vector
from ledger.checks.verdict import Verdict
from ledger.content.multiformats import digest_to_cid
from ledger.reasons import Reason


@dataclass(frozen=True)
class Judged:
    """An update's per-update verdict and, when the loss check ran, its loss verdict."""

    verdict: Verdict
    loss: Verdict | None = None

    def to_json(self) -> str:
        return json.dumps(
            {"verdict": self.verdict.to_dict(), "loss": None if self.loss is None else self.loss.to_dict()},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Judged:
        data = json.loads(text)
        loss = data.get("loss")
        return cls(Verdict.from_dict(data["verdict"]), Verdict.from_dict(loss) if loss else None)


def judge_update(
    path: Path,
    *,
    base: TensorSource,
    layout: Sequence[TensorInfo],
    record: ChainRecord,
    limits: CheckLimits,
    digest: bytes | None = None,
    evaluate: LossFn | None = None,
    base_loss: float | None = None,
    base_scale: float | None = None,
) -> Judged:
    """The per-update checks of a downloaded update file (and the loss, if the validator can evaluate it).

    ``digest`` is the Kubo digest of the file's bytes when the download proved it (the file is then read once,
    by the value scan); None hashes the file here. ``base_scale`` is the base's norm (``base_norm``), computed
    once per round; None scans the base here when the scale check needs it."""
    verdict = verify_update(
        path,
        base=base,
        record=record,
        limits=limits,
        digest=digest,
        base_layout=layout,
        base_scale=base_scale,
    )
    if verdict.digest is None and record.digest is not None:
        verdict = verdict.but(digest=record.digest)
    loss = None
    if verdict.accepted and evaluate is not None and limits.loss_gate:
        from ledger.updatefile import UpdateFile

        with UpdateFile.open(path) as update:
            loss = check_loss(update, base, evaluate, limits, base_loss=base_loss)
    return Judged(verdict, loss)


def judge_round(
    judged: Sequence[Judged],
    limits: CheckLimits,
    *,
    vectors: Sequence[Vector | None] | None = None,
    authors: Sequence[str] | None = None,
    history: Iterable[tuple[str, Vector]] = (),
) -> list[Verdict]:
    """Final verdicts of a round's updates (in submission order) from their per-update verdicts.

    The round-level checks run over the updates that passed the per-update checks; an update whose digest an
    earlier submission already has is a DUPLICATE (the chain lets two members submit the same digest, but only
    one of them can have written it); then the z-score; then, given the updates' ``vectors`` (``flatten`` of
    each update that passed the per-update checks, None for the others) and their ``authors`` (the contributors
    the chain recorded), the whole-vector copy checks (``ledger.checks.copies``: NEAR_COPY against ``history``,
    the last rounds' accepted ``(contributor, vector)``, and DUPLICATE within the round); the loss check comes
    last. Without vectors only verbatim value copies are caught (the profiles' fingerprints).
    """
    if vectors is not None and (
        authors is None or len(vectors) != len(judged) or len(authors) != len(judged)
    ):
        raise ValueError("judge_round needs one vector (or None) and one author per judged update")
    seen: dict[bytes, int] = {}
    profiles: list[UpdateProfile] = []
    for i, j in enumerate(judged):
        p = j.verdict.profile
        if j.verdict.accepted and p is not None and p.digest not in seen:
            seen[p.digest] = i
            profiles.append(p)
    stats = round_stats(profiles) if profiles else None
    copies: list[Copy | None] = [None] * len(judged)
    if vectors is not None and authors is not None and limits.near_copy_cosine is not None:
        candidates = [
            v
            if j.verdict.accepted
            and j.verdict.profile is not None
            and seen.get(j.verdict.profile.digest) == i
            else None
            for i, (j, v) in enumerate(zip(judged, vectors, strict=True))
        ]
        copies = find_copies(
            candidates,
            authors,
            history,
            threshold=limits.near_copy_cosine,
            spread=limits.near_copy_spread,
        )
        limits = replace(limits, duplicate_cosine=None)  # the whole vectors decide, not the fingerprints
    out = []
    for i, j in enumerate(judged):
        v = j.verdict
        p = v.profile
        if v.accepted and p is not None and seen.get(p.digest) != i:
            earlier = digest_to_cid(p.digest)
            out.append(
                v.but(reason=Reason.DUPLICATE, detail=f"the same bytes as {earlier}, submitted earlier")
            )
            continue
        v = judge_in_round(v, stats, limits)
        copy = copies[i]
        if v.accepted and copy is not None:
            original = judged[copy.index].verdict.digest if copy.index is not None else None
            v = v.but(reason=copy.reason, detail=copy.detail, duplicate_of=original)
        if v.accepted and j.loss is not None:
            v = v.but(
                reason=j.loss.reason, detail=j.loss.detail, loss=j.loss.loss, base_loss=j.loss.base_loss
            )
        out.append(v)
    return out


def ballot_for(verdicts: Sequence[Verdict], todo: int) -> tuple[int, int, bytes]:
    """``voteBatch`` arguments for the updates in the bitmap ``todo``: (indexes, accepts, reasons)."""
    accepts = 0
    reasons = bytearray()
    for i, v in enumerate(verdicts):
        if not todo >> i & 1:
            continue
        reasons.append(int(v.reason))
        if v.accepted:
            accepts |= 1 << i
    return todo, accepts, bytes(reasons)

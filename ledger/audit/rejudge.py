"""`audit rejudge`: recompute every deterministic check of a round and list the validators' ballots that disagree.

The checks and their settings are the task's: the limits its specification anchors (``checks``, applied over
the defaults by ``ledger.checks.anchored``), run by the same code the validators run (``ledger.checks``:
``judge_update`` per update, the privacy budget the specification anchors (``ledger.checks.privacy_budget``:
``PRIVACY_BUDGET_EXCEEDED`` from the member's submissions so far on chain and their records in the store), then
``judge_round`` for same-bytes duplicates and the norm z-score). What no
auditor can recompute is left out and said so: the held-out loss (``LOSS_REGRESSION``: each validator's own
data), the whole-vector copy checks (``NEAR_COPY``, and ``DUPLICATE`` of a copy that is not byte-identical: each
validator's history of earlier rounds) and the contribution score itself.

A revealed score disagrees with the checks when

* ``accepted-rejected``: the checks reject the update (a hard reason) and the validator scored it above zero;
* ``rejected-accepted``: the checks pass it and the validator hard-rejected it (-10,000) for a reason the
  checks recompute;
* ``other-reason``: both reject, for different reasons (the checks run cheapest first and the first failure
  decides, the ones an auditor cannot recompute last: a validator with the task's settings gives the same code).

A hard reject for a reason the auditor cannot recompute is listed as ``unverifiable``, not as a disagreement.
Each disagreement carries the evidence: the checks' reason and detail, the validator's score and reason, and the
transaction that revealed it.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.exit_codes import ExitCode
from ledger.reasons import Reason

if TYPE_CHECKING:
    from ledger.audit.source import Source, SourceInfo
    from ledger.checks import CheckLimits, Judged
    from ledger.checks.privacy_budget import Budget, BudgetJudge
    from ledger.settings import Settings

NOT_RECOMPUTED = frozenset({Reason.LOSS_REGRESSION, Reason.NEAR_COPY, Reason.DUPLICATE})
"""Hard-reject reasons an auditor cannot recompute: they depend on a validator's data or history (a DUPLICATE the
checks find here, byte for byte, still counts against a validator that accepted it)."""


@dataclass
class Ballot:
    validator: str
    index: int
    cid: str
    kind: str  # accepted-rejected, rejected-accepted, other-reason, unverifiable
    score: int
    reason: str
    checks_reason: str
    checks_detail: str
    tx_hash: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Rejudged:
    index: int
    cid: str
    contributor: str
    reason: str  # the checks' verdict: ACCEPTED or the reason code's name
    detail: str
    recomputed: bool  # False: the content could not be fetched

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RejudgeReport:
    task_id: int
    round: int
    limits: dict[str, Any]
    limits_from: str
    source: SourceInfo
    privacy_budget: dict[str, float] | None = None  # {"epsilon", "delta"} the specification anchors
    updates: list[Rejudged] = field(default_factory=list)
    ballots: list[Ballot] = field(default_factory=list)  # disagreements and unverifiable hard rejects
    validators: dict[str, dict[str, int]] = field(default_factory=dict)  # per validator: agree/disagree/…
    notes: list[str] = field(default_factory=list)

    @property
    def disagreements(self) -> list[Ballot]:
        return [b for b in self.ballots if b.kind != "unverifiable"]

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.MISMATCH if self.disagreements else ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "round": self.round,
            "limits_from": self.limits_from,
            "limits": self.limits,
            "privacy_budget": self.privacy_budget,
            "updates": [u.to_dict() for u in self.updates],
            "disagreements": [b.to_dict() for b in self.disagreements],
            "unverifiable": [b.to_dict() for b in self.ballots if b.kind == "unverifiable"],
            "validators": self.validators,
            "not_recomputed": sorted(r.name for r in NOT_RECOMPUTED),
            "notes": self.notes,
            "source": self.source.to_dict(),
        }


def task_limits(source: Source, settings: Settings, task_id: int) -> tuple[CheckLimits, str, Budget | None]:
    """The limits the task anchors (its specification's ``checks`` over the defaults), where they came from, and
    its privacy budget (``checks.privacy_epsilon``/``privacy_delta``; None: none).

    A specification that is not in the store, or a legacy one, anchors none: the defaults apply, and the report
    says so. The loss margin is dropped: no auditor has a validator's held-out data."""
    from dataclasses import replace

    from ledger.checks import CheckLimits
    from ledger.checks.anchored import anchored_limits
    from ledger.checks.privacy_budget import budget_of
    from ledger.content import open_store, read_bytes
    from ledger.content.errors import ContentError
    from ledger.index.models import cid_of
    from ledger.recipe import MAX_SPEC_BYTES, LegacyTaskSpec, parse_task_spec

    defaults = CheckLimits(max_update_bytes=settings.max_update_bytes)
    cid = cid_of(source.queries.task(task_id).spec_digest) or ""
    store = open_store(settings)
    try:
        raw = read_bytes(store, cid, max_bytes=MAX_SPEC_BYTES)
    except (ContentError, OSError):
        return (
            replace(defaults, loss_delta=None),
            f"defaults: the specification {cid} is not in the store",
            None,
        )
    finally:
        store.close()
    try:
        spec = parse_task_spec(raw)
    except LegacyTaskSpec:
        return replace(defaults, loss_delta=None), f"defaults: the specification {cid} is a legacy one", None
    limits = anchored_limits(spec.checks, defaults)
    return replace(limits, loss_delta=None), f"the specification {cid}", budget_of(spec.checks)


def rejudge(source: Source, settings: Settings, task_id: int, round_: int) -> RejudgeReport:
    from ledger.aggregation.source import describe_source
    from ledger.checks import ChainRecord, Judged, base_norm, judge_round, judge_update
    from ledger.checks.anchored import describe
    from ledger.content import cid_to_digest, fetch_to_file, open_store
    from ledger.content.errors import ContentError, ContentTooLarge
    from ledger.updatefile import UpdateFile

    detail = source.queries.round(task_id, round_)
    limits, limits_from, budget = task_limits(source, settings, task_id)
    report = RejudgeReport(task_id, round_, describe(limits), limits_from, source.info)
    base_cid = detail.base_cid or ""
    store = open_store(settings)
    try:
        privacy = _budget_judge(source, store, task_id, round_, budget)
        if budget is not None:
            report.privacy_budget = {"epsilon": budget.epsilon, "delta": budget.delta}
        with tempfile.TemporaryDirectory(prefix="meshprov-rejudge-") as tmp:
            work = Path(tmp)
            base_path = work / "base.safetensors"
            fetch_to_file(store, base_cid, base_path, max_bytes=settings.max_update_bytes)
            with contextlib.ExitStack() as stack:
                base = stack.enter_context(UpdateFile.open(base_path))
                layout = describe_source(base)
                scale = base_norm(base, layout)
                judged: list[Judged | None] = []
                for u in detail.updates:
                    cid = u.cid or ""
                    path = work / f"{u.index}.safetensors"
                    record = ChainRecord(
                        digest=cid_to_digest(cid),
                        task=task_id,
                        round=round_,
                        base=cid_to_digest(base_cid),
                        contributor=u.contributor,
                        num_samples=u.num_samples,
                    )
                    try:
                        fetch_to_file(store, cid, path, max_bytes=limits.max_update_bytes)
                    except ContentTooLarge:
                        judged.append(_too_large(cid, limits.max_update_bytes))
                        continue
                    except ContentError as exc:
                        report.notes.append(
                            f"update {u.index} ({cid}): not re-judged, {str(exc).splitlines()[0]}"
                        )
                        judged.append(None)
                        continue
                    one = judge_update(
                        path,
                        base=base,
                        layout=layout,
                        record=record,
                        limits=limits,
                        digest=record.digest,
                        base_scale=scale,
                    )
                    if one.verdict.accepted and privacy is not None:
                        # As the validator judges: after the update's own checks, before the round's.
                        over = privacy.judge(u.contributor, round_, u.index)
                        one = Judged(over) if over is not None else one
                    judged.append(one)
                present = [j for j in judged if j is not None]
                final = iter(judge_round(present, limits))
                verdicts = [next(final) if j is not None else None for j in judged]
    finally:
        store.close()
    for u, verdict in zip(detail.updates, verdicts, strict=True):
        cid = u.cid or ""
        if verdict is None:
            report.updates.append(Rejudged(u.index, cid, u.contributor, "-", "content unavailable", False))
            continue
        checks_reason = Reason(int(verdict.reason))
        report.updates.append(
            Rejudged(u.index, cid, u.contributor, checks_reason.name, verdict.detail or "", True)
        )
        for s in u.scores:
            kind = _compare(checks_reason, s.score, s.reason)
            tally = report.validators.setdefault(
                s.validator, {"agree": 0, "disagree": 0, "unverifiable": 0, "not_recomputed": 0}
            )
            if kind is None:
                tally["agree"] += 1
                continue
            tally["unverifiable" if kind == "unverifiable" else "disagree"] += 1
            report.ballots.append(
                Ballot(
                    s.validator,
                    u.index,
                    cid,
                    kind,
                    s.score,
                    Reason(s.reason).name if s.reason in Reason._value2member_map_ else str(s.reason),
                    checks_reason.name,
                    verdict.detail or "",
                    s.tx_hash,
                )
            )
    for u, verdict in zip(detail.updates, verdicts, strict=True):
        if verdict is None:
            for s in u.scores:
                report.validators.setdefault(
                    s.validator, {"agree": 0, "disagree": 0, "unverifiable": 0, "not_recomputed": 0}
                )["not_recomputed"] += 1
    if not any(u.scores for u in detail.updates):
        report.notes.append("no validator has revealed scores in this round yet")
    return report


def _budget_judge(
    source: Source, store: Any, task_id: int, round_: int, budget: Budget | None
) -> BudgetJudge | None:
    """The validators' privacy-budget check (``ledger.checks.privacy_budget``) over the task's submissions up to
    ``round_`` as the index has them from the chain's logs, each record read from the store as a validator reads
    it."""
    if budget is None:
        return None
    from ledger.checks.privacy_budget import BudgetJudge, Submitted, read_released

    submitted = [
        Submitted(u.round, u.index, u.contributor, u.cid or "")
        for rd in source.queries.task_rounds(task_id, settlement=False)
        if rd.round <= round_
        for u in rd.updates
    ]
    return BudgetJudge(budget, submitted, lambda cid, label: read_released(store, cid, label))


def _compare(checks: Reason, score: int, reason: int) -> str | None:
    """The kind of disagreement between the checks' verdict and one revealed (score, reason); None: agreement."""
    from ledger.chain.scores import REJECT

    if checks is not Reason.ACCEPTED:
        if score > 0:
            return "accepted-rejected"
        # The recomputed checks all run before the ones an auditor cannot recompute (cheapest first, loss and
        # whole-vector copies last), so a validator with the task's settings reports the same first failure.
        return "other-reason" if score == REJECT and reason != int(checks) else None
    if score == REJECT:
        return "unverifiable" if reason in {int(r) for r in NOT_RECOMPUTED} else "rejected-accepted"
    return None


def _too_large(cid: str, limit: int) -> Judged:
    from ledger.checks import Judged, Verdict

    return Judged(Verdict(Reason.TOO_LARGE, f"{cid} is larger than {limit:,} bytes"))

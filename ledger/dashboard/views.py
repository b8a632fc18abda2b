"""The index's answers as the API's response models (models.py): tasks, a task's overview, a round, a lineage.

Pure functions from the dataclasses of ``ledger/index/models.py`` (what ``Queries`` returns) to the pages' data:
states, CIDs, token amounts in MESH, reasons with their slugs and help. No SQL: every read is a query of
``ledger/index/queries``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from ledger.chain.scores import SCORE_ONE
from ledger.dashboard import formatting as fmt
from ledger.dashboard.models import (
    CurrentRound,
    Lineage,
    LineageRound,
    LineageUpdate,
    LineageView,
    ReasonCount,
    RecipeView,
    RoundDetail,
    RoundPoint,
    RoundState,
    ScoreRow,
    Settlement,
    TaskSummary,
    Totals,
    UpdateRow,
    ValidatorRow,
)
from ledger.index import models as index
from ledger.index.models import cid_of


def round_state(
    finalized: bool, closed_at: int | None, opened_at: int, window: int, now: float
) -> RoundState:
    if finalized:
        return "finalized"
    if closed_at is not None or now >= opened_at + window:
        return "scoring"
    return "submissions"


def reason_counts(scores: Iterable[index.ScoreCount]) -> list[ReasonCount]:
    """Scores as counts by reason: every score that is not a hard reject under code 0 (a reason comes only with
    a hard reject); code 0 first, then the most given."""
    counts: dict[int, int] = defaultdict(int)
    for v in scores:
        counts[v.reason] += v.count
    return [
        ReasonCount(code=code, reason=fmt.reason_slug(code), help=fmt.reason_help(code), count=n)
        for code, n in sorted(counts.items(), key=lambda kv: (kv[0] != 0, -kv[1], kv[0]))
    ]


# ─── tasks and the overview ─────────────────────────────────────────────────────────────────────────────────
def task_summary(p: index.TaskProgress) -> TaskSummary:
    t = p.task
    genesis = t.genesis_cid or ""
    return TaskSummary(
        task_id=t.task_id,
        rule=t.rule_description,
        quorum=t.quorum,
        submission_window=t.submission_window,
        commit_window=t.commit_window,
        reveal_window=t.reveal_window,
        finalize_grace=t.finalize_grace,
        max_samples=t.max_samples,
        reward_per_round=str(t.reward_per_round),
        reward_per_round_mesh=fmt.mesh(t.reward_per_round),
        genesis_cid=genesis,
        rounds=p.rounds_opened,
        finalized=p.rounds_finalized,
        latest_model_cid=cid_of(p.latest_aggregate) or genesis,
    )


def overview(o: index.TaskOverview, task: TaskSummary, now: float) -> dict[str, Any]:
    """The overview's fields for one task: its live round, every round as a chart point, totals, verdicts."""
    points: list[RoundPoint] = []
    totals = {"updates": 0, "accepted": 0, "rejected": 0, "pending": 0, "accrued": 0}
    for r in o.rounds:
        count = r.submissions
        totals["updates"] += count
        if r.accepted is None or r.rewards_accrued is None:  # not finalized
            totals["pending"] += count
        else:
            totals["accepted"] += r.accepted
            totals["rejected"] += count - r.accepted
            totals["accrued"] += r.rewards_accrued
        points.append(
            RoundPoint(
                round=r.round,
                state=round_state(r.finalized, r.closed_at, r.opened_at, task.submission_window, now),
                opened_at=r.opened_at,
                finalized_at=r.finalized_at,
                duration_s=r.finalized_at - r.opened_at if r.finalized_at is not None else None,
                submissions=count,
                accepted=r.accepted,
                rejected=count - r.accepted if r.accepted is not None else None,
                aggregate_cid=cid_of(r.aggregate_digest),
                carried_over=r.carried_over,
                rewards_accrued=str(r.rewards_accrued) if r.rewards_accrued is not None else None,
                rewards_accrued_mesh=fmt.mesh(r.rewards_accrued) if r.rewards_accrued is not None else None,
            )
        )
    current = None
    if o.rounds:
        live, point = o.rounds[-1], points[-1]
        submission_end = (
            live.closed_at if live.closed_at is not None else live.opened_at + task.submission_window
        )
        current = CurrentRound(
            round=live.round,
            state=point.state,
            base_cid=cid_of(live.base_digest) or "",
            opened_at=live.opened_at,
            submission_deadline=submission_end,
            commit_deadline=submission_end + task.commit_window,
            reveal_deadline=submission_end + task.commit_window + task.reveal_window,
            submissions=point.submissions,
            contributors=o.role_holders.get("contributor", 0),
            scores_revealed=o.live_round_scores,
            scores_expected=o.role_holders.get("validator", 0) * point.submissions,
            aggregate_cid=point.aggregate_cid,
        )
    return {
        "task": task,
        "current_round": current,
        "rounds": points,
        "totals": Totals(
            contributors=o.contributors,
            validators=o.validators,
            rounds_finalized=o.rounds_finalized,
            updates=totals["updates"],
            accepted=totals["accepted"],
            rejected=totals["rejected"],
            pending=totals["pending"],
            rewards_accrued=str(totals["accrued"]),
            rewards_accrued_mesh=fmt.mesh(totals["accrued"]),
        ),
        "verdicts": reason_counts(o.scores),
    }


# ─── a round ────────────────────────────────────────────────────────────────────────────────────────────────
def round_detail(c: index.RoundContext, now: float) -> RoundDetail:
    """A round's page without update sizes (the read model adds those from the content store)."""
    r, task = c.round, c.task
    return RoundDetail(
        task_id=r.task_id,
        round=r.round,
        state=round_state(r.finalized, r.closed_at, r.opened_at, task.submission_window, now),
        base_cid=r.base_cid or "",
        aggregate_cid=r.aggregate_cid,
        carried_over=r.carried_over,
        opened_by=r.opened_by,
        opened_at=r.opened_at,
        closed_at=r.closed_at,
        finalized_at=c.finalized_at,
        finalized_block=r.finalized_block,
        finalized_tx=r.finalized_tx,
        finalized_by=r.finalized_by,
        rule=task.rule_description if r.finalized else None,
        submissions=len(r.updates),
        accepted=len(r.accepted_indexes) if r.finalized else None,
        rewards_accrued=str(r.rewards_accrued) if r.rewards_accrued is not None else None,
        rewards_accrued_mesh=fmt.mesh(r.rewards_accrued) if r.rewards_accrued is not None else None,
        update_bytes=None,
        validators=[_validator_row(m) for m in r.validators],
        updates=[_update_row(u) for u in r.updates],
        settlements=[_settlement(c) for c in r.reputation],
        previous_round=r.round - 1 if r.round > 1 else None,
        next_round=r.round + 1 if r.round < c.last_round else None,
    )


def with_sizes(detail: RoundDetail, sizes: dict[str, int | None]) -> RoundDetail:
    """The round with its updates' sizes, and their total when every size is known."""
    updates = [u.model_copy(update={"size_bytes": sizes.get(u.cid)}) for u in detail.updates]
    known = [u.size_bytes for u in updates if u.size_bytes is not None]
    total = sum(known) if updates and len(known) == len(updates) else None
    return detail.model_copy(update={"updates": updates, "update_bytes": total})


def _update_row(u: index.Update) -> UpdateRow:
    grouped: dict[int, int] = defaultdict(int)
    for v in u.scores:
        if v.reason:
            grouped[v.reason] += 1
    return UpdateRow(
        index=u.index,
        contributor=u.contributor,
        cid=u.cid or "",
        num_samples=u.num_samples,
        size_bytes=None,
        verdict=u.verdict,
        consensus=u.consensus,
        consensus_value=fmt.score_value(u.consensus) if u.consensus is not None else None,
        positive_scores=u.positive_scores,
        other_scores=u.other_scores,
        scores=[
            ScoreRow(
                validator=v.validator,
                score=v.score,
                score_value=fmt.score_value(v.score),
                reason_code=v.reason,
                reason=fmt.reason_slug(v.reason),
                reason_help=fmt.reason_help(v.reason),
                # As the contract measures it: |s - c| capped at one full score (SCORE_ONE).
                distance=min(abs(v.score - u.consensus), SCORE_ONE) if u.consensus is not None else 0,
            )
            for v in u.scores
        ],
        reasons=reason_counts(index.ScoreCount(False, code, n) for code, n in grouped.items()),
    )


def _validator_row(m: index.RoundValidator) -> ValidatorRow:
    return ValidatorRow(
        validator=m.validator,
        weight=m.weight,
        committed=m.committed,
        revealed=m.revealed,
        distance=m.distance,
        absent=m.absent,
        reputation=m.reputation,
        reward=str(m.reward) if m.reward is not None else None,
        reward_mesh=fmt.mesh(m.reward) if m.reward is not None else None,
    )


def _settlement(c: index.ReputationChange) -> Settlement:
    return Settlement(
        account=c.account,
        role="validator" if c.role == 1 else "contributor",
        reputation=c.reputation,
        delta=c.delta,
        reward=str(c.reward),
        reward_mesh=fmt.mesh(c.reward),
        score=c.score,
        distance=c.distance,
        absent=c.absent,
    )


# ─── lineage ────────────────────────────────────────────────────────────────────────────────────────────────
def lineage(digest: str, found: list[index.Lineage]) -> Lineage:
    views = []
    for lin in found:
        rounds = [
            LineageRound(
                round=r.round,
                base_cid=r.base_cid or "",
                aggregate_cid=r.aggregate_cid,
                submitted=len(r.updates),
                accepted=len(r.accepted_indexes),
                updates=[_lineage_update(u) for u in r.updates],
            )
            for r in lin.rounds
        ]
        views.append(
            LineageView(
                role=lin.role,
                task_id=lin.task.task_id,
                rule=lin.task.rule_description,
                recipe=_recipe(lin.task),
                genesis_cid=lin.task.genesis_cid or "",
                verified=lin.verified,
                problems=lin.problems,
                depth=lin.depth,
                rounds=rounds,
                update=_lineage_update(lin.update) if lin.update is not None else None,
                update_round=lin.update.round if lin.update is not None else None,
                used_in_round=lin.used_in.round if lin.used_in is not None else None,
            )
        )
    return Lineage(cid=cid_of(digest) or "", digest=digest, lineages=views)


def _recipe(t: index.TaskRecord) -> RecipeView:
    spec = t.spec
    recipe = spec.recipe or {}
    return RecipeView(
        status=spec.status,
        name=recipe.get("name"),
        version=recipe.get("version"),
        cid=recipe.get("cid"),
        summary=spec.recipe_summary,
        hyperparameters=dict(spec.hyperparameters),
        spec_cid=t.spec_cid,
    )


def reject_reasons(u: index.Update) -> list[str]:
    """Slugs of the reasons of the update's hard rejects."""
    return sorted({fmt.reason_slug(v.reason) for v in u.scores if v.reason})


def _lineage_update(u: index.Update) -> LineageUpdate:
    return LineageUpdate(
        index=u.index,
        contributor=u.contributor,
        cid=u.cid or "",
        verdict=u.verdict,
        consensus=u.consensus,
        reasons=reject_reasons(u),
        dataset=u.dataset,
        frameworks=u.frameworks,
        metadata=u.metadata,
    )

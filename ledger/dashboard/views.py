"""The index's answers as the API's response models (models.py): tasks, a task's overview, a round, a lineage.

Pure functions from the dataclasses of ``ledger/index/models.py`` (what ``Queries`` returns) to the pages' data:
states, CIDs, token amounts in MESH, reasons with their slugs and help. No SQL: every read is a query of
``ledger/index/queries``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from ledger.dashboard import formatting as fmt
from ledger.dashboard.models import (
    CurrentRound,
    Lineage,
    LineageRound,
    LineageUpdate,
    LineageView,
    ReasonCount,
    RoundDetail,
    RoundPoint,
    RoundState,
    Settlement,
    TaskSummary,
    Totals,
    UpdateRow,
    VoteRow,
)
from ledger.index import models as index
from ledger.index.models import cid_of


def round_state(
    finalized: bool, closed_at: int | None, opened_at: int, window: int, now: float
) -> RoundState:
    if finalized:
        return "finalized"
    if closed_at is not None or now >= opened_at + window:
        return "voting"
    return "submissions"


def reason_counts(votes: Iterable[index.VoteCount]) -> list[ReasonCount]:
    """Votes as counts by reason: every accepting vote under code 0; accepted first, then the most given."""
    counts: dict[int, int] = defaultdict(int)
    for v in votes:
        counts[0 if v.accept else v.reason] += v.count
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
        vote_window=t.vote_window,
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
    totals = {"updates": 0, "accepted": 0, "rejected": 0, "pending": 0, "minted": 0}
    for r in o.rounds:
        count = r.submissions
        totals["updates"] += count
        if r.accepted is None or r.rewards_minted is None:  # not finalized
            totals["pending"] += count
        else:
            totals["accepted"] += r.accepted
            totals["rejected"] += count - r.accepted
            totals["minted"] += r.rewards_minted
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
                rewards_minted=str(r.rewards_minted) if r.rewards_minted is not None else None,
                rewards_minted_mesh=fmt.mesh(r.rewards_minted) if r.rewards_minted is not None else None,
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
            vote_deadline=submission_end + task.vote_window,
            submissions=point.submissions,
            contributors=o.role_holders.get("contributor", 0),
            votes_cast=o.live_round_votes,
            votes_expected=o.role_holders.get("validator", 0) * point.submissions,
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
            rewards_minted=str(totals["minted"]),
            rewards_minted_mesh=fmt.mesh(totals["minted"]),
        ),
        "verdicts": reason_counts(o.votes),
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
        carried_over=r.finalized and not r.accepted_indexes,
        opened_by=r.opened_by,
        opened_at=r.opened_at,
        closed_at=r.closed_at,
        finalized_at=c.finalized_at,
        finalized_block=r.finalized_block,
        finalized_tx=r.finalized_tx,
        aggregator=r.aggregator,
        rule=task.rule_description if r.finalized else None,
        submissions=len(r.updates),
        accepted=len(r.accepted_indexes) if r.finalized else None,
        rewards_minted=str(r.rewards_minted) if r.rewards_minted is not None else None,
        rewards_minted_mesh=fmt.mesh(r.rewards_minted) if r.rewards_minted is not None else None,
        update_bytes=None,
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
    for v in u.votes:
        if not v.accept:
            grouped[v.reason] += 1
    return UpdateRow(
        index=u.index,
        contributor=u.contributor,
        cid=u.cid or "",
        num_samples=u.num_samples,
        size_bytes=None,
        verdict=u.verdict,
        accept_votes=u.accept_votes,
        reject_votes=u.reject_votes,
        votes=[
            VoteRow(
                validator=v.validator,
                accept=v.accept,
                reason_code=v.reason,
                reason=fmt.reason_slug(0 if v.accept else v.reason),
                reason_help=fmt.reason_help(0 if v.accept else v.reason),
            )
            for v in u.votes
        ],
        reasons=reason_counts(index.VoteCount(False, code, n) for code, n in grouped.items()),
    )


def _settlement(c: index.ReputationChange) -> Settlement:
    return Settlement(
        account=c.account,
        role="validator" if c.role == 1 else "contributor",
        reputation=c.reputation,
        delta=c.delta,
        reward=str(c.reward),
        reward_mesh=fmt.mesh(c.reward),
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


def reject_reasons(u: index.Update) -> list[str]:
    """Slugs of the reasons the update's rejecting votes gave."""
    return sorted({fmt.reason_slug(v.reason) for v in u.votes if not v.accept})


def _lineage_update(u: index.Update) -> LineageUpdate:
    return LineageUpdate(
        index=u.index,
        contributor=u.contributor,
        cid=u.cid or "",
        verdict=u.verdict,
        reasons=reject_reasons(u),
    )

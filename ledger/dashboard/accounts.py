"""Members as the API's response models: the leaderboard (ranking and rows) and one member's page.

The figures come from the index's queries: every member's from the incremental fold (``Queries.members``), one
member's record from ``Queries.member`` (its own rows only: its submissions with the scores on them and their
consensus, reputation, rewards accrued and claimed, its revealed scores counted by reason). Here they are ranked and shaped for the pages.
"""

from __future__ import annotations

from typing import Literal

from ledger.dashboard import formatting as fmt
from ledger.dashboard.models import (
    ClaimPoint,
    Contributor,
    LeaderboardRow,
    ReputationPoint,
    RewardPoint,
    RoleChangeRow,
    ScoreSummary,
    SubmissionRow,
)
from ledger.dashboard.views import reason_counts, reject_reasons
from ledger.index.models import Member, MemberRecord, ScoreTally

SORTS = ("rewards", "reputation", "accepted", "rejected", "submissions", "scores", "address")
RoleFilter = Literal["contributor", "validator", "all"]


def ranked(all_members: dict[str, Member], role: RoleFilter, sort: str) -> list[Member]:
    """Members of ``role`` ordered for the leaderboard: by ``sort`` descending (address ascending), ties by
    address."""
    chosen = [m for m in all_members.values() if m.is_(role)]

    def reputation(m: Member) -> int:
        value = m.validator_reputation if role == "validator" else m.contributor_reputation
        return -1 if value is None else value

    keys = {
        "rewards": lambda m: (-m.rewards, m.address),
        "reputation": lambda m: (-reputation(m), -m.rewards, m.address),
        "accepted": lambda m: (-m.accepted, m.rejected, m.address),
        "rejected": lambda m: (-m.rejected, m.address),
        "submissions": lambda m: (-m.submissions, m.address),
        "scores": lambda m: (-m.scores, m.address),
        "address": lambda m: (m.address.lower(),),
    }
    return sorted(chosen, key=keys[sort])


def row(rank: int, m: Member) -> LeaderboardRow:
    return LeaderboardRow(
        rank=rank,
        address=m.address,
        roles=m.roles,
        contributor_reputation=m.contributor_reputation,
        validator_reputation=m.validator_reputation,
        rewards=str(m.rewards),
        rewards_mesh=fmt.mesh(m.rewards),
        claimed=str(m.claimed),
        claimed_mesh=fmt.mesh(m.claimed),
        submissions=m.submissions,
        accepted=m.accepted,
        rejected=m.rejected,
        pending=m.pending,
        carried_over=m.carried_over,
        scores=m.scores,
    )


def contributor(record: MemberRecord) -> Contributor:
    """One member's page: submissions (newest first) with their consensus, verdicts and reasons, reputation and
    rewards (accrued and claimed) over time, a summary of the scores it revealed."""
    times = record.block_times
    submissions = [
        SubmissionRow(
            task_id=u.task_id,
            round=u.round,
            index=u.index,
            cid=u.cid or "",
            num_samples=u.num_samples,
            verdict=u.verdict,
            consensus=u.consensus,
            positive_scores=u.positive_scores,
            other_scores=u.other_scores,
            reasons=reject_reasons(u),
            block_number=u.block_number,
            timestamp=times.get(u.block_number),
        )
        for u in reversed(record.submissions)
    ]
    latest: dict[int, int] = {}
    reputation = []
    for c in record.reputation:
        reputation.append(
            ReputationPoint(
                task_id=c.task_id,
                round=c.round,
                role="validator" if c.role == 1 else "contributor",
                reputation=c.reputation,
                delta=c.delta,
                block_number=c.block_number,
                timestamp=c.timestamp,
                score=c.score,
                distance=c.distance,
                absent=c.absent,
            )
        )
        latest[c.role] = c.reputation
    rewards = []
    total = 0
    for r in record.rewards:
        total += r.amount
        rewards.append(
            RewardPoint(
                task_id=r.task_id,
                round=r.round,
                role="validator" if r.role == 1 else "contributor",
                amount=str(r.amount),
                amount_mesh=fmt.mesh(r.amount),
                cumulative_mesh=fmt.mesh(total),
                block_number=r.block_number,
                timestamp=times.get(r.block_number),
            )
        )
    claims = []
    claimed = 0
    for cl in record.claims:
        claimed += cl.amount
        claims.append(
            ClaimPoint(
                amount=str(cl.amount),
                amount_mesh=fmt.mesh(cl.amount),
                cumulative_mesh=fmt.mesh(claimed),
                block_number=cl.block_number,
                timestamp=times.get(cl.block_number),
            )
        )
    verdicts = [s.verdict for s in submissions]
    return Contributor(
        address=record.address,
        roles=record.roles,
        contributor_reputation=latest.get(0),
        validator_reputation=latest.get(1),
        rewards=str(total),
        rewards_mesh=fmt.mesh(total),
        claimed=str(claimed),
        claimed_mesh=fmt.mesh(claimed),
        unclaimed=str(total - claimed),
        unclaimed_mesh=fmt.mesh(total - claimed),
        submitted=len(submissions),
        accepted=verdicts.count("accepted"),
        rejected=verdicts.count("rejected"),
        pending=verdicts.count("pending"),
        carried_over=verdicts.count("carried-over"),
        submissions=submissions,
        reputation=reputation,
        rewards_history=rewards,
        claims=claims,
        role_changes_scheduled=[
            RoleChangeRow(
                role=rc.role,
                grant=rc.grant,
                cancelled=rc.cancelled,
                execute_after=rc.execute_after,
                block_number=rc.block_number,
            )
            for rc in record.role_changes_scheduled
        ],
        scores=score_summary(record.scores_revealed) if record.scores_revealed is not None else None,
    )


def score_summary(tally: ScoreTally) -> ScoreSummary:
    return ScoreSummary(
        scores=sum(c.count for c in tally.counts),
        positive=sum(c.count for c in tally.counts if c.positive),
        rejects=sum(c.count for c in tally.counts if c.reason),
        rounds=tally.rounds,
        by_reason=reason_counts(tally.counts),
    )

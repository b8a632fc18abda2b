"""Members: the leaderboard and one member's page, computed straight from the index's tables.

Each reads a few columns of a few tables as driver tuples and folds them in Python (latest reputation per role,
reward sums of uint256 strings, verdicts from the finalization bitmaps). ``Queries.leaderboard`` and
``Queries.account`` answer the same questions for the audit CLI; these are shaped for pages (counts by reason
instead of every vote of a validator, timestamps joined per row) and stay within a page's time budget on an index
of 1,000 members × 100 rounds (benchmarks/dashboard.py). The tests check both agree on a real run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import Connection, func, select, tuple_

from ledger.dashboard import formatting as fmt
from ledger.dashboard.models import (
    Contributor,
    LeaderboardRow,
    ReasonCount,
    ReputationPoint,
    RewardPoint,
    SubmissionRow,
    VoteSummary,
)
from ledger.dashboard.sql import current_roles, raw
from ledger.index import schema

SORTS = ("rewards", "reputation", "accepted", "rejected", "submissions", "votes", "address")
RoleFilter = Literal["contributor", "validator", "all"]


@dataclass
class Member:
    address: str
    roles: list[str] = field(default_factory=list)
    contributor_reputation: int | None = None
    validator_reputation: int | None = None
    rewards: int = 0
    submissions: int = 0
    accepted: int = 0
    rejected: int = 0
    pending: int = 0
    votes: int = 0

    def is_(self, role: RoleFilter) -> bool:
        if role == "contributor":
            return (
                "contributor" in self.roles or self.submissions > 0 or self.contributor_reputation is not None
            )
        if role == "validator":
            return "validator" in self.roles or self.votes > 0 or self.validator_reputation is not None
        return True


def members(conn: Connection, task_id: int | None) -> dict[str, Member]:
    """Every account with a role, reputation, reward, submission or vote; counts within ``task_id`` if given
    (reputation is the ledger's, across tasks)."""
    out: dict[str, Member] = {}

    def member(address: str) -> Member:
        m = out.get(address)
        if m is None:
            m = out[address] = Member(address)
        return m

    rc = schema.reputation_changes.c
    latest: dict[tuple[str, int], int] = {}
    for account, role, value in raw(
        conn, select(rc.account, rc.role, rc.reputation).order_by(rc.block_number, rc.log_index, rc.id)
    ):
        latest[(account, role)] = value
    for (account, role), value in latest.items():
        if role == 0:
            member(account).contributor_reputation = int(value)
        elif role == 1:
            member(account).validator_reputation = int(value)

    rw = schema.rewards.c
    rq = select(rw.account, rw.amount)
    if task_id is not None:
        rq = rq.where(rw.task_id == task_id)
    sums: dict[str, int] = defaultdict(int)
    for account, amount in raw(conn, rq):
        sums[account] += int(amount)
    for account, total in sums.items():
        member(account).rewards = total

    f = schema.finalizations.c
    fq = select(f.task_id, f.round, f.accepted_bitmap)
    s = schema.submissions.c
    sq = select(s.contributor, s.task_id, s.round, s.idx)
    if task_id is not None:
        fq = fq.where(f.task_id == task_id)
        sq = sq.where(s.task_id == task_id)
    bitmaps = {(t, r): int(b, 16) for t, r, b in raw(conn, fq)}
    for contributor, t, r, idx in raw(conn, sq):
        m = member(contributor)
        m.submissions += 1
        bitmap = bitmaps.get((t, r))
        if bitmap is None:
            m.pending += 1
        elif bitmap >> idx & 1:
            m.accepted += 1
        else:
            m.rejected += 1

    v = schema.votes.c
    vq = select(v.validator, func.count()).group_by(v.validator)
    if task_id is not None:
        vq = vq.where(v.task_id == task_id)
    for validator, count in raw(conn, vq):
        member(validator).votes = int(count)

    for account, roles in current_roles(conn).items():
        member(account).roles = roles
    return out


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
        "votes": lambda m: (-m.votes, m.address),
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
        submissions=m.submissions,
        accepted=m.accepted,
        rejected=m.rejected,
        pending=m.pending,
        votes=m.votes,
    )


def contributor(conn: Connection, who: str) -> Contributor | None:
    """One member's page: submissions with verdicts and reasons, reputation and rewards over time, a summary of
    the votes cast. None when the index has no record of the address."""
    b = schema.blocks.c
    s = schema.submissions.c
    subs = raw(
        conn,
        select(s.task_id, s.round, s.idx, s.digest, s.num_samples, s.block_number, b.timestamp)
        .outerjoin(schema.blocks, b.number == s.block_number)
        .where(s.contributor == who)
        .order_by(s.block_number.desc(), s.log_index.desc()),
    )
    keys = sorted({(int(t), int(r)) for t, r, *_ in subs})
    f = schema.finalizations.c
    bitmaps: dict[tuple[int, int], int] = {}
    for start in range(0, len(keys), 400):
        chunk = keys[start : start + 400]
        for t, r, bitmap in raw(
            conn,
            select(f.task_id, f.round, f.accepted_bitmap).where(tuple_(f.task_id, f.round).in_(chunk)),
        ):
            bitmaps[(int(t), int(r))] = int(bitmap, 16)
    v = schema.votes.c
    votes_on: dict[tuple[int, int, int], list[tuple[bool, int]]] = defaultdict(list)
    for t, r, idx, accept, reason in raw(
        conn,
        select(v.task_id, v.round, v.idx, v.accept, v.reason)
        .join(
            schema.submissions,
            (s.task_id == v.task_id) & (s.round == v.round) & (s.idx == v.idx),
        )
        .where(s.contributor == who)
        .order_by(v.block_number, v.log_index),
    ):
        votes_on[(int(t), int(r), int(idx))].append((bool(accept), int(reason)))

    submissions: list[SubmissionRow] = []
    counts = {"accepted": 0, "rejected": 0, "pending": 0}
    for t, r, idx, digest, samples, block, ts in subs:
        bitmap = bitmaps.get((int(t), int(r)))
        verdict: Literal["accepted", "rejected", "pending"] = (
            "pending" if bitmap is None else ("accepted" if bitmap >> int(idx) & 1 else "rejected")
        )
        counts[verdict] += 1
        ballots = votes_on.get((int(t), int(r), int(idx)), [])
        from ledger.index.models import cid_of

        submissions.append(
            SubmissionRow(
                task_id=int(t),
                round=int(r),
                index=int(idx),
                cid=cid_of(str(digest)) or "",
                num_samples=int(samples),
                verdict=verdict,
                accept_votes=sum(1 for a, _ in ballots if a),
                reject_votes=sum(1 for a, _ in ballots if not a),
                reasons=sorted({fmt.reason_slug(code) for a, code in ballots if not a}),
                block_number=int(block),
                timestamp=int(ts) if ts is not None else None,
            )
        )

    rc = schema.reputation_changes.c
    reputation: list[ReputationPoint] = []
    previous: dict[int, int] = {}
    latest: dict[int, int] = {}
    for t, r, role_code, reputation_value, block, ts in raw(
        conn,
        select(rc.task_id, rc.round, rc.role, rc.reputation, rc.block_number, b.timestamp)
        .outerjoin(schema.blocks, b.number == rc.block_number)
        .where(rc.account == who)
        .order_by(rc.block_number, rc.log_index, rc.id),
    ):
        role, value = int(role_code), int(reputation_value)
        reputation.append(
            ReputationPoint(
                task_id=int(t),
                round=int(r),
                role="validator" if role == 1 else "contributor",
                reputation=value,
                delta=value - previous.get(role, 0),
                block_number=int(block),
                timestamp=int(ts) if ts is not None else None,
            )
        )
        previous[role] = latest[role] = value

    rw = schema.rewards.c
    rewards: list[RewardPoint] = []
    total = 0
    for t, r, role, amount, block, ts in raw(
        conn,
        select(rw.task_id, rw.round, rw.role, rw.amount, rw.block_number, b.timestamp)
        .outerjoin(schema.blocks, b.number == rw.block_number)
        .where(rw.account == who)
        .order_by(rw.block_number, rw.log_index, rw.id),
    ):
        total += int(amount)
        rewards.append(
            RewardPoint(
                task_id=int(t),
                round=int(r),
                role="validator" if int(role) == 1 else "contributor",
                amount=str(amount),
                amount_mesh=fmt.mesh(amount),
                cumulative_mesh=fmt.mesh(total),
                block_number=int(block),
                timestamp=int(ts) if ts is not None else None,
            )
        )

    summary = vote_summary(conn, who)
    roles = current_roles(conn, who).get(who, [])
    if not (roles or subs or reputation or rewards or summary is not None):
        return None
    return Contributor(
        address=who,
        roles=roles,
        contributor_reputation=latest.get(0),
        validator_reputation=latest.get(1),
        rewards=str(total),
        rewards_mesh=fmt.mesh(total),
        submitted=len(submissions),
        accepted=counts["accepted"],
        rejected=counts["rejected"],
        pending=counts["pending"],
        submissions=submissions,
        reputation=reputation,
        rewards_history=rewards,
        votes=summary,
    )


def vote_summary(conn: Connection, who: str) -> VoteSummary | None:
    v = schema.votes.c
    grouped = raw(
        conn,
        select(v.accept, v.reason, func.count()).where(v.validator == who).group_by(v.accept, v.reason),
    )
    if not grouped:
        return None
    rounds = conn.execute(
        select(func.count()).select_from(
            select(v.task_id, v.round).where(v.validator == who).distinct().subquery()
        )
    ).scalar_one()
    accepts = sum(int(n) for accept, _, n in grouped if accept)
    rejects = sum(int(n) for accept, _, n in grouped if not accept)
    return VoteSummary(
        votes=accepts + rejects,
        accepts=accepts,
        rejects=rejects,
        rounds=int(rounds),
        by_reason=reason_counts(grouped),
    )


def reason_counts(grouped: list[tuple[object, ...]]) -> list[ReasonCount]:
    """(accept, reason, count) rows as counts by reason: every accepting vote under code 0."""
    counts: dict[int, int] = defaultdict(int)
    for accept, reason, n in grouped:
        counts[0 if accept else int(reason)] += int(n)  # type: ignore[call-overload]
    return [
        ReasonCount(code=code, reason=fmt.reason_slug(code), help=fmt.reason_help(code), count=n)
        for code, n in sorted(counts.items(), key=lambda kv: (kv[0] != 0, -kv[1], kv[0]))
    ]

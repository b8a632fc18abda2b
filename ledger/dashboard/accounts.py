"""Members: the leaderboard and one member's page, computed straight from the index's tables.

Each reads a few columns of a few tables as driver tuples and folds them in Python (latest reputation per role,
reward sums of uint256 strings, verdicts from the finalization bitmaps). ``Queries.leaderboard`` and
``Queries.account`` answer the same questions for the audit CLI; these are shaped for pages (counts by reason
instead of every vote of a validator, timestamps joined per row) and stay within a page's time budget on an index
of 1,000 members × 100 rounds (benchmarks/dashboard.py). The tests check both agree on a real run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Literal

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


class MemberFold:
    """Every account with a role, reputation, reward, submission or vote, kept current by folding in only the rows
    the index gained since the last call; counts within ``task_id`` if given (reputation is the ledger's).

    Sound because the index is insert-only and the follower commits a batch's rows with the blocks holding them:
    every row of a block at or below the newest stored block ``upto`` is in, and rows added later belong to later
    blocks. A reorganisation deletes rows and their blocks together, so if block ``upto`` is gone or has another
    hash, :meth:`advance` says so and the caller starts a new fold from scratch (the same code from block -1).
    A submission's verdict waits in ``pending`` until its round's finalization is folded in.
    """

    def __init__(self, task_id: int | None) -> None:
        self.task_id = task_id
        self.upto = -1
        self.upto_hash = ""
        self.members: dict[str, Member] = {}
        self.pending: dict[tuple[int, int], list[tuple[str, int]]] = defaultdict(list)

    def _member(self, address: str) -> Member:
        m = self.members.get(address)
        if m is None:
            m = self.members[address] = Member(address)
        return m

    def advance(self, conn: Connection, newest: tuple[int, str]) -> bool:
        """Fold in the rows of blocks (upto, newest]; False when the folded history was rewound."""
        if self.upto >= 0:
            b = schema.blocks.c
            still = conn.execute(select(b.hash).where(b.number == self.upto)).scalar()
            if still != self.upto_hash or newest[0] < self.upto:
                return False
        lo, hi = self.upto, newest[0]

        def new(table: Any, *, by_task: bool = True) -> Any:
            if lo < 0:
                # From scratch nearly every row qualifies: "+ 0" keeps the planner off the block_number index,
                # whose range scan would fetch the whole table row by row (5x slower on SQLite).
                cond = (table.c.block_number + 0) <= hi
            else:
                cond = (table.c.block_number > lo) & (table.c.block_number <= hi)
            if by_task and self.task_id is not None:
                cond = cond & (table.c.task_id == self.task_id)
            return cond

        # Tallies per account first, applied to the members once: the loops below run over every row of the
        # biggest tables on a fold from scratch, and an attribute update per row costs more than the query.
        rc = schema.reputation_changes.c
        latest: dict[tuple[str, int], int] = {}
        for account, role, value in raw(
            conn,
            select(rc.account, rc.role, rc.reputation)
            .where(new(schema.reputation_changes, by_task=False))
            .order_by(rc.block_number, rc.log_index, rc.id),
        ):
            latest[(account, role)] = value
        for (account, role), value in latest.items():
            if role == 0:
                self._member(account).contributor_reputation = int(value)
            elif role == 1:
                self._member(account).validator_reputation = int(value)
        rw = schema.rewards.c
        rewards: dict[str, int] = defaultdict(int)
        for account, amount in raw(conn, select(rw.account, rw.amount).where(new(schema.rewards))):
            rewards[account] += int(amount)
        for account, total in rewards.items():
            self._member(account).rewards += total
        # Submissions before finalizations: a round's finalization comes after all of its submissions.
        s = schema.submissions.c
        submitted: dict[str, int] = defaultdict(int)
        for contributor, t, r, idx in raw(
            conn, select(s.contributor, s.task_id, s.round, s.idx).where(new(schema.submissions))
        ):
            submitted[contributor] += 1
            self.pending[(int(t), int(r))].append((contributor, int(idx)))
        for contributor, n in submitted.items():
            m = self._member(contributor)
            m.submissions += n
            m.pending += n
        f = schema.finalizations.c
        accepted: dict[str, int] = defaultdict(int)
        rejected: dict[str, int] = defaultdict(int)
        for t, r, bitmap_hex in raw(
            conn, select(f.task_id, f.round, f.accepted_bitmap).where(new(schema.finalizations))
        ):
            bitmap = int(bitmap_hex, 16)
            for contributor, idx in self.pending.pop((int(t), int(r)), []):
                if bitmap >> idx & 1:
                    accepted[contributor] += 1
                else:
                    rejected[contributor] += 1
        for contributor in accepted.keys() | rejected.keys():
            m = self._member(contributor)
            m.accepted += accepted.get(contributor, 0)
            m.rejected += rejected.get(contributor, 0)
            m.pending -= accepted.get(contributor, 0) + rejected.get(contributor, 0)
        v = schema.votes.c
        if lo < 0:
            # Votes are the biggest table: count them all on the validator index, less the few of blocks
            # beyond ``hi`` (a batch committed since ``newest`` was read), instead of filtering every row.
            counted = select(v.validator, func.count()).group_by(v.validator)
            later = select(v.validator, func.count()).where(v.block_number > hi).group_by(v.validator)
            if self.task_id is not None:
                counted = counted.where(v.task_id == self.task_id)
                later = later.where(v.task_id == self.task_id)
            beyond = {validator: int(n) for validator, n in raw(conn, later)}
            for validator, count in raw(conn, counted):
                if int(count) - beyond.get(validator, 0):
                    self._member(validator).votes += int(count) - beyond.get(validator, 0)
        else:
            for validator, count in raw(
                conn, select(v.validator, func.count()).where(new(schema.votes)).group_by(v.validator)
            ):
                self._member(validator).votes += int(count)
        for account, roles in current_roles(conn).items():
            self._member(account).roles = roles
        self.upto, self.upto_hash = newest
        return True

    def snapshot(self) -> dict[str, Member]:
        """Copies: a ranking memoized for one version must not change when the fold moves on."""
        return {a: replace(m, roles=list(m.roles)) for a, m in self.members.items()}


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

"""Every member's figures (reputation, rewards accrued and claimed, submissions by verdict, scores revealed), kept current incrementally: the
leaderboard of the dashboard and of ``Queries.leaderboard``.

A fold reads a few columns of a few tables as driver tuples and tallies them in Python (latest reputation per
role, reward sums of uint256 strings, verdicts from the finalization bitmaps). Kept by its caller, it folds in only
the rows the index gained since: after a round, a few hundred rows instead of the whole index (benchmarks/
dashboard.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, func, select

from ledger.index import schema
from ledger.index.models import AccountSummary, Member
from ledger.index.queries.rows import current_roles, newest_block, raw


class MemberFold:
    """Every account with a role, reputation, reward, submission or score, kept current by folding in only the rows
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
        if self.task_id is None:
            # Claims are the ledger's, not a task's: a task's board shows what its rounds accrued only.
            cl = schema.claims.c
            for account, amount in raw(
                conn, select(cl.account, cl.amount).where(new(schema.claims, by_task=False))
            ):
                self._member(account).claimed += int(amount)
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
        carried: dict[str, int] = defaultdict(int)
        for t, r, bitmap_hex, carried_over in raw(
            conn,
            select(f.task_id, f.round, f.accepted_bitmap, f.carried_over).where(new(schema.finalizations)),
        ):
            bitmap = int(bitmap_hex, 16)
            for contributor, idx in self.pending.pop((int(t), int(r)), []):
                if carried_over:
                    carried[contributor] += 1
                elif bitmap >> idx & 1:
                    accepted[contributor] += 1
                else:
                    rejected[contributor] += 1
        for contributor in accepted.keys() | rejected.keys() | carried.keys():
            m = self._member(contributor)
            m.accepted += accepted.get(contributor, 0)
            m.rejected += rejected.get(contributor, 0)
            m.carried_over += carried.get(contributor, 0)
            m.pending -= (
                accepted.get(contributor, 0) + rejected.get(contributor, 0) + carried.get(contributor, 0)
            )
        v = schema.scores.c
        if lo < 0:
            # Scores are the biggest table: count them all on the validator index, less the few of blocks
            # beyond ``hi`` (a batch committed since ``newest`` was read), instead of filtering every row.
            counted = select(v.validator, func.count()).group_by(v.validator)
            later = select(v.validator, func.count()).where(v.block_number > hi).group_by(v.validator)
            if self.task_id is not None:
                counted = counted.where(v.task_id == self.task_id)
                later = later.where(v.task_id == self.task_id)
            beyond = {validator: int(n) for validator, n in raw(conn, later)}
            for validator, count in raw(conn, counted):
                if int(count) - beyond.get(validator, 0):
                    self._member(validator).scores += int(count) - beyond.get(validator, 0)
        else:
            for validator, count in raw(
                conn, select(v.validator, func.count()).where(new(schema.scores)).group_by(v.validator)
            ):
                self._member(validator).scores += int(count)
        for account, roles in current_roles(conn).items():
            self._member(account).roles = roles
        self.upto, self.upto_hash = newest
        return True

    def snapshot(self) -> dict[str, Member]:
        """Copies: a ranking memoized for one version must not change when the fold moves on."""
        return {a: replace(m, roles=list(m.roles)) for a, m in self.members.items()}


def current(conn: Connection, fold: MemberFold | None, task_id: int | None) -> MemberFold | None:
    """``fold`` brought up to the newest stored block, or a fold from scratch when there is none yet or the index
    was rewound under it; None while the index holds no block."""
    newest = newest_block(conn)
    if newest is None:
        return None
    head = (newest[0], newest[1])
    if fold is None or fold.task_id != task_id or not fold.advance(conn, head):
        fold = MemberFold(task_id)
        fold.advance(conn, head)
    return fold


def leaderboard(conn: Connection, task_id: int | None) -> list[AccountSummary]:
    """Every account with a reputation, or with submissions or scores (in the task if given): its latest
    reputations, rewards and counts; most rewarded first."""
    fold = current(conn, None, task_id)
    members = fold.members.values() if fold is not None else []
    out = [
        AccountSummary(
            address=m.address,
            contributor_reputation=m.contributor_reputation,
            validator_reputation=m.validator_reputation,
            total_rewards=m.rewards,
            submissions=m.submissions,
            accepted=m.accepted,
            scores=m.scores,
        )
        for m in members
        # Members holding a role and nothing else (the admin, the aggregator) are not on the board.
        if m.contributor_reputation is not None
        or m.validator_reputation is not None
        or m.rewards
        or m.submissions
        or m.scores
    ]
    return sorted(out, key=lambda s: (-s.total_rewards, s.address))

"""Questions the index answers, and the only SQL that reads it: ``Queries(db)`` answers ``meshprov audit``, the
dashboard (pages, API, metrics), ``meshprov node status`` and ``--trustless`` (on a throwaway index filled straight
from the chain's logs) alike. Each method opens a connection and calls one of:

    tasks.py        a task, every task, how far each got
    rounds.py       rounds in full (validator set, updates, scores, consensus, outcome, settlement), the rounds as a list, a task's overview
    lineage.py      a model's lineage back to genesis (and the links that do not hold), anchors, an update
    accounts.py     an account's history (every score it revealed) or its record for a page (its scores counted)
    members.py      every member's figures, folded incrementally (the leaderboard)
    activity.py     what each task did, for the metrics
    settlements.py  reputation series with deltas, rewards
    rows.py         driver tuples, counts, block times, the newest block, current roles
    errors.py       UnknownTask, UnknownRound, NotAnchored

Queries return the dataclasses of ``ledger/index/models.py``; what people see (the audit's tables, the dashboard's
response models) is made from those by their readers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection

from ledger.index.db import IndexDB
from ledger.index.models import (
    AccountHistory,
    AccountSummary,
    Anchor,
    IndexStatus,
    Lineage,
    MemberRecord,
    Round,
    RoundContext,
    RoundSummary,
    TaskActivity,
    TaskOverview,
    TaskProgress,
    TaskRecord,
    Update,
)
from ledger.index.queries import accounts, activity, lineage, members, rounds, rows, tasks
from ledger.index.queries.errors import NotAnchored, UnknownRound, UnknownTask

if TYPE_CHECKING:
    from ledger.index.queries.members import MemberFold

__all__ = ["NotAnchored", "Queries", "UnknownRound", "UnknownTask"]


class Queries:
    """Read-only questions over one index."""

    def __init__(self, db: IndexDB) -> None:
        self.db = db

    # ─── the index itself ───────────────────────────────────────────────────────────────────────────────────
    def status(self, head: int | None = None) -> IndexStatus | None:
        with self.db.connect() as conn:
            cp = self.db.checkpoint(conn)
            if cp is None:
                return None
            events, tasks_ = rows.counts(conn)
        return IndexStatus(
            chain_id=cp.chain_id,
            ledger=cp.ledger,
            start_block=cp.start_block,
            block_number=cp.block_number,
            block_hash=cp.block_hash,
            updated_at=cp.updated_at,
            events=events,
            tasks=tasks_,
            head=head,
        )

    def counts(self) -> tuple[int, int]:
        """(events, tasks) in the index."""
        with self.db.connect() as conn:
            return rows.counts(conn)

    def newest_block(self) -> tuple[int, str, int] | None:
        """(number, hash, timestamp) of the newest stored block: a version of the index's data (see rows.py)."""
        with self.db.connect() as conn:
            return rows.newest_block(conn)

    def roles(self) -> dict[str, list[str]]:
        """The roles every account holds now."""
        with self.db.connect() as conn:
            return rows.current_roles(conn)

    # ─── tasks and rounds ───────────────────────────────────────────────────────────────────────────────────
    def tasks(self) -> list[TaskRecord]:
        with self.db.connect() as conn:
            return tasks.tasks(conn)

    def task(self, task_id: int, conn: Connection | None = None) -> TaskRecord:
        """The task, or UnknownTask naming the tasks indexed."""
        if conn is None:
            with self.db.connect() as own:
                return tasks.task(own, task_id)
        return tasks.task(conn, task_id)

    def task_progress(self) -> list[TaskProgress]:
        """Every task with its rounds opened and finalized and its latest model."""
        with self.db.connect() as conn:
            return tasks.progress(conn)

    def rounds(self, task_id: int) -> list[RoundSummary]:
        """Every round of a task, oldest first, without per-update detail."""
        with self.db.connect() as conn:
            tasks.task(conn, task_id)
            return rounds.summaries(conn, task_id)[0]

    def task_overview(self, task_id: int) -> TaskOverview:
        """A task at a glance: its rounds, who took part, its scores by sign and reason, the role holders."""
        with self.db.connect() as conn:
            return rounds.overview(conn, task_id)

    def round(self, task_id: int, round_: int) -> Round:
        """One round in full: its validator set, updates with every score and their consensus, the outcome, reputation changes, distances and rewards."""
        with self.db.connect() as conn:
            return rounds.one_round(conn, task_id, round_)

    def round_context(self, task_id: int, round_: int) -> RoundContext:
        """One round in full, with its task, the time it was finalized and the task's last round."""
        with self.db.connect() as conn:
            return rounds.context(conn, task_id, round_)

    def task_rounds(self, task_id: int, *, settlement: bool = True) -> list[Round]:
        """Every round of a task in full, oldest first (the export)."""
        with self.db.connect() as conn:
            tasks.task(conn, task_id)
            found = rounds.load_rounds(conn, task_id, 1, None, settlement=settlement)
        return [found[n] for n in sorted(found)]

    # ─── lineage and anchors ────────────────────────────────────────────────────────────────────────────────
    def anchors(self, digest: str) -> list[Anchor]:
        """Every place ``digest`` appears: a task's genesis, a round's aggregate, a submitted update."""
        with self.db.connect() as conn:
            return lineage.anchors(conn, digest)

    def lineage(self, digest: str) -> list[Lineage]:
        """The history of a model (or update) back to genesis; one Lineage per task that anchors it.

        Raises NotAnchored when no task, round or submission names the digest.
        """
        with self.db.connect() as conn:
            return lineage.lineage(conn, digest)

    def updates(self, digest: str) -> list[Update]:
        """Every submission of ``digest``, with its scores, consensus and outcome."""
        with self.db.connect() as conn:
            return lineage.updates(conn, digest)

    # ─── accounts and members ───────────────────────────────────────────────────────────────────────────────
    def account(self, address: str) -> AccountHistory:
        """A member's submissions (with scores and consensus), scores revealed, reputation over time and rewards accrued and claimed, oldest first."""
        with self.db.connect() as conn:
            return accounts.history(conn, address)

    def member(self, address: str) -> MemberRecord:
        """A member's record for a page: as :meth:`account`, with the scores it revealed counted by sign and reason."""
        with self.db.connect() as conn:
            return accounts.member(conn, address)

    def members(self, task_id: int | None, fold: MemberFold | None = None) -> MemberFold | None:
        """Every member's figures (counts within ``task_id`` if given) at the newest stored block: ``fold``
        advanced by the rows added since it was last advanced, or a fold from scratch when there is none or the
        index was rewound under it. None while the index holds no block."""
        with self.db.connect() as conn:
            return members.current(conn, fold, task_id)

    def leaderboard(self, task_id: int | None = None) -> list[AccountSummary]:
        """Every account with a reputation, submissions or scores: its latest reputations, rewards and counts
        (within ``task_id`` if given; reputation is the ledger's); most rewarded first."""
        with self.db.connect() as conn:
            return members.leaderboard(conn, task_id)

    # ─── metrics ────────────────────────────────────────────────────────────────────────────────────────────
    def activity(self, recent_rounds: int) -> dict[int, TaskActivity]:
        """What each task did (see activity.py), with the update digests of its last ``recent_rounds`` rounds."""
        with self.db.connect() as conn:
            return activity.activity(conn, recent_rounds)

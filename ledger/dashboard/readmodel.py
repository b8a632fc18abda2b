"""The dashboard's read model: every page's data from the index, as the API's response models.

Read-only: it runs SELECTs on the index and never writes (the optional follower in ``follow.py`` is what
writes). Answers are memoized per version of the index's data (``memo.py``), so a page costs a query per
request once computed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Literal

from sqlalchemy import func, select

from ledger.audit.errors import parse_address
from ledger.dashboard import accounts
from ledger.dashboard import formatting as fmt
from ledger.dashboard.errors import BadParameter, NothingIndexed, UnknownAddress
from ledger.dashboard.memo import Version, VersionedMemo
from ledger.dashboard.models import (
    Contributor,
    CurrentRound,
    IndexInfo,
    Leaderboard,
    Lineage,
    LineageRound,
    LineageUpdate,
    LineageView,
    Overview,
    RoundDetail,
    RoundPoint,
    RoundState,
    Settlement,
    TaskSummary,
    Totals,
    UpdateRow,
    VoteRow,
)
from ledger.dashboard.sizes import SizeLookup
from ledger.dashboard.sql import block_times, current_roles, newest_block, raw
from ledger.index import schema
from ledger.index.db import IndexDB, redact
from ledger.index.models import Round, TaskRecord, Update, cid_of
from ledger.index.queries import Queries

log = logging.getLogger(__name__)


def parse_cid(text: str) -> str:
    """The ``0x`` digest of a CIDv0, CIDv1 or ``0x`` bytes32; InvalidCID (→ 422) otherwise."""
    from ledger.content import cid_to_digest, digest_to_cid

    value = text.strip()
    if value[:2] in ("0x", "0X"):
        value = digest_to_cid(value)
    return "0x" + cid_to_digest(value).hex()


def round_state(
    finalized: bool, closed_at: int | None, opened_at: int, window: int, now: float
) -> RoundState:
    if finalized:
        return "finalized"
    if closed_at is not None or now >= opened_at + window:
        return "voting"
    return "submissions"


class ReadModel:
    def __init__(
        self,
        db: IndexDB,
        *,
        sizes: SizeLookup | None = None,
        head: Callable[[], int | None] | None = None,
    ) -> None:
        self.db = db
        self.queries = Queries(db)
        self.sizes = sizes or SizeLookup(None)
        self.head = head or (lambda: None)
        self.memo = VersionedMemo()
        self._tables = False
        self._folds: dict[int | None, accounts.MemberFold] = {}
        self._fold_lock = threading.Lock()

    def _ensure_tables(self) -> None:
        """Create the index's (empty) tables if the database has none yet, so that a dashboard started before
        its indexer shows an empty index rather than failing; idempotent, and it touches no index data. Raises
        IndexUnavailable (→ 503) while the database cannot be reached."""
        if not self._tables:
            self.db.create()
            self._tables = True

    # ─── versions and status ────────────────────────────────────────────────────────────────────────────────
    def version(self) -> Version:
        self._ensure_tables()
        with self.db.connect() as conn:
            newest = newest_block(conn)
        return (newest[0], newest[1]) if newest else None

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        return self.memo.get(self.version(), key, compute)

    def status(self) -> IndexInfo | None:
        self._ensure_tables()
        cp = self.db.checkpoint()
        if cp is None:
            return None
        counts = self.cached(("counts",), self._counts)
        head = self.head()
        return IndexInfo(
            chain_id=cp.chain_id,
            ledger=cp.ledger,
            start_block=cp.start_block,
            block_number=cp.block_number,
            updated_at=cp.updated_at,
            events=counts[0],
            tasks=counts[1],
            head=head,
            behind=None if head is None else max(0, head - cp.block_number),
        )

    def require_status(self) -> IndexInfo:
        info = self.status()
        if info is None:
            raise NothingIndexed(redact(self.db.url))
        return info

    def _counts(self) -> tuple[int, int]:
        with self.db.connect() as conn:
            events = conn.execute(select(func.count()).select_from(schema.events)).scalar_one()
            tasks = conn.execute(select(func.count()).select_from(schema.tasks)).scalar_one()
        return int(events), int(tasks)

    def now(self) -> float:
        """The later of the wall clock and the newest indexed block (a dev chain may run ahead of the clock)."""
        self._ensure_tables()
        with self.db.connect() as conn:
            newest = newest_block(conn)
        return max(time.time(), float(newest[2]) if newest else 0.0)

    # ─── tasks and the overview ─────────────────────────────────────────────────────────────────────────────
    def tasks(self) -> list[TaskSummary]:
        return list(self.cached(("tasks",), self._tasks))

    def _tasks(self) -> list[TaskSummary]:
        records = self.queries.tasks()
        with self.db.connect() as conn:
            r, f = schema.rounds.c, schema.finalizations.c
            opened = {
                int(t): int(n) for t, n in raw(conn, select(r.task_id, func.count()).group_by(r.task_id))
            }
            finals: dict[int, tuple[int, int, str]] = {}  # task: (last round, finalized, last aggregate)
            for t, rnd, digest in raw(conn, select(f.task_id, f.round, f.aggregate_digest)):
                last_round, count, last_digest = finals.get(int(t), (0, 0, ""))
                if int(rnd) > last_round:
                    last_round, last_digest = int(rnd), str(digest)
                finals[int(t)] = (last_round, count + 1, last_digest)
        return [self._task_summary(t, opened.get(t.task_id, 0), finals.get(t.task_id)) for t in records]

    @staticmethod
    def _task_summary(t: TaskRecord, opened: int, final: tuple[int, int, str] | None) -> TaskSummary:
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
            rounds=opened,
            finalized=final[1] if final else 0,
            latest_model_cid=(cid_of(final[2]) or genesis) if final else genesis,
        )

    def overview(self, task_id: int | None = None) -> Overview:
        info = self.require_status()
        tasks = self.tasks()
        if task_id is None and tasks:
            task_id = tasks[-1].task_id
        if task_id is not None and not any(t.task_id == task_id for t in tasks):
            self.queries.task(task_id)  # raises UnknownTask with the known ids
        body = self.cached(("overview", task_id), lambda: self._overview(task_id, tasks))
        return Overview(index=info, tasks=tasks, **body)

    def _overview(self, task_id: int | None, tasks: list[TaskSummary]) -> dict[str, Any]:
        empty: dict[str, Any] = {
            "task": None,
            "current_round": None,
            "rounds": [],
            "totals": None,
            "verdicts": [],
        }
        if task_id is None:
            return empty
        task = next(t for t in tasks if t.task_id == task_id)
        now = self.now()
        with self.db.connect() as conn:
            r, f, c = schema.rounds.c, schema.finalizations.c, schema.closures.c
            s, v = schema.submissions.c, schema.votes.c
            opened = raw(
                conn,
                select(r.round, r.base_digest, r.opened_at).where(r.task_id == task_id).order_by(r.round),
            )
            finals = {
                int(n): (int(block), str(digest), int(accepted), str(minted))
                for n, block, digest, accepted, minted in raw(
                    conn,
                    select(
                        f.round, f.block_number, f.aggregate_digest, f.accepted_count, f.rewards_minted
                    ).where(f.task_id == task_id),
                )
            }
            closed = {
                int(n): int(at)
                for n, at in raw(conn, select(c.round, c.closed_at).where(c.task_id == task_id))
            }
            submitted = {
                int(n): int(k)
                for n, k in raw(
                    conn, select(s.round, func.count()).where(s.task_id == task_id).group_by(s.round)
                )
            }
            times = block_times(conn, [blk for blk, *_ in finals.values()])
            contributors = conn.execute(
                select(func.count(func.distinct(s.contributor))).where(s.task_id == task_id)
            ).scalar_one()
            validators = conn.execute(
                select(func.count(func.distinct(v.validator))).where(v.task_id == task_id)
            ).scalar_one()
            grouped = raw(
                conn,
                select(v.accept, v.reason, func.count())
                .where(v.task_id == task_id)
                .group_by(v.accept, v.reason),
            )
            roles = current_roles(conn)
            current_votes = 0
            if opened:
                last = int(opened[-1][0])
                current_votes = int(
                    conn.execute(
                        select(func.count()).where(v.task_id == task_id, v.round == last)
                    ).scalar_one()
                )
        points: list[RoundPoint] = []
        totals = {"updates": 0, "accepted": 0, "rejected": 0, "pending": 0, "minted": 0}
        for number, _base, opened_time in opened:
            n, opened_at = int(number), int(opened_time)
            count = submitted.get(n, 0)
            final = finals.get(n)
            finalized_at = times.get(final[0]) if final else None
            totals["updates"] += count
            if final:
                totals["accepted"] += final[2]
                totals["rejected"] += count - final[2]
                totals["minted"] += int(final[3])
            else:
                totals["pending"] += count
            points.append(
                RoundPoint(
                    round=n,
                    state=round_state(
                        final is not None, closed.get(n), opened_at, task.submission_window, now
                    ),
                    opened_at=opened_at,
                    finalized_at=finalized_at,
                    duration_s=finalized_at - opened_at if finalized_at is not None else None,
                    submissions=count,
                    accepted=final[2] if final else None,
                    rejected=count - final[2] if final else None,
                    aggregate_cid=cid_of(final[1]) if final else None,
                    rewards_minted=final[3] if final else None,
                    rewards_minted_mesh=fmt.mesh(final[3]) if final else None,
                )
            )
        current = None
        if opened:
            n, base, opened_at = int(opened[-1][0]), str(opened[-1][1]), int(opened[-1][2])
            submission_end = closed.get(n, opened_at + task.submission_window)
            point = points[-1]
            current = CurrentRound(
                round=n,
                state=point.state,
                base_cid=cid_of(base) or "",
                opened_at=opened_at,
                submission_deadline=submission_end,
                vote_deadline=submission_end + task.vote_window,
                submissions=point.submissions,
                contributors=sum(1 for held in roles.values() if "contributor" in held),
                votes_cast=current_votes,
                votes_expected=sum(1 for held in roles.values() if "validator" in held) * point.submissions,
                aggregate_cid=point.aggregate_cid,
            )
        return {
            "task": task,
            "current_round": current,
            "rounds": points,
            "totals": Totals(
                contributors=int(contributors),
                validators=int(validators),
                rounds_finalized=len(finals),
                updates=totals["updates"],
                accepted=totals["accepted"],
                rejected=totals["rejected"],
                pending=totals["pending"],
                rewards_minted=str(totals["minted"]),
                rewards_minted_mesh=fmt.mesh(totals["minted"]),
            ),
            "verdicts": accounts.reason_counts(grouped),
        }

    def warm_up(self) -> None:
        """Compute the costly answers once (the full member fold, the overview) so that later requests only fold
        in what is new; failures are left for the requests to report."""
        try:
            if self.status() is not None:
                self.leaderboard()
                self.overview()
        except Exception as exc:  # a warm-up must never take the server down; requests will say what is wrong
            log.debug("warm-up skipped: %s", exc)

    # ─── members ────────────────────────────────────────────────────────────────────────────────────────────
    def members(self, task_id: int | None) -> dict[str, accounts.Member]:
        """Every member's figures (within a task if given) at the index's current version."""

        def compute() -> dict[str, accounts.Member]:
            with self._fold_lock, self.db.connect() as conn:
                newest = newest_block(conn)
                if newest is None:
                    return {}
                head = (newest[0], newest[1])
                fold = self._folds.get(task_id)
                if fold is None or not fold.advance(conn, head):
                    fold = accounts.MemberFold(task_id)  # first use, or the index was rewound: from scratch
                    fold.advance(conn, head)
                    self._folds[task_id] = fold
                return fold.snapshot()

        return dict(self.cached(("members", task_id), compute))

    def leaderboard(
        self,
        *,
        task_id: int | None = None,
        role: Literal["contributor", "validator", "all"] = "contributor",
        sort: str = "rewards",
        offset: int = 0,
        limit: int = 100,
    ) -> Leaderboard:
        self.require_status()
        if sort not in accounts.SORTS:
            raise BadParameter("sort", sort, "one of " + ", ".join(accounts.SORTS))
        if task_id is not None:
            self.queries.task(task_id)
        ordered: list[accounts.Member] = self.cached(
            ("ranked", task_id, role, sort), lambda: accounts.ranked(self.members(task_id), role, sort)
        )
        page = ordered[offset : offset + limit]
        return Leaderboard(
            task_id=task_id,
            role=role,
            sort=sort,
            total=len(ordered),
            offset=offset,
            limit=limit,
            rows=[accounts.row(offset + i + 1, m) for i, m in enumerate(page)],
        )

    def contributor(self, address: str) -> Contributor:
        who = parse_address(address)
        self.require_status()

        def compute() -> Contributor | None:
            with self.db.connect() as conn:
                return accounts.contributor(conn, who)

        found: Contributor | None = self.cached(("contributor", who), compute)
        if found is None:
            raise UnknownAddress(who)
        return found

    # ─── rounds ─────────────────────────────────────────────────────────────────────────────────────────────
    def round(self, task_id: int, round_: int) -> RoundDetail:
        self.require_status()
        detail: RoundDetail = self.cached(("round", task_id, round_), lambda: self._round(task_id, round_))
        if detail.update_bytes is None and self.sizes.available:
            detail = self._with_sizes(detail)
        return detail

    def _round(self, task_id: int, round_: int) -> RoundDetail:
        r = self.queries.round(task_id, round_)
        task = self.queries.task(task_id)
        with self.db.connect() as conn:
            times = block_times(conn, [r.finalized_block] if r.finalized_block is not None else [])
            last = conn.execute(
                select(func.max(schema.rounds.c.round)).where(schema.rounds.c.task_id == task_id)
            ).scalar_one()
        finalized_at = times.get(r.finalized_block) if r.finalized_block is not None else None
        detail = RoundDetail(
            task_id=task_id,
            round=round_,
            state=round_state(r.finalized, r.closed_at, r.opened_at, task.submission_window, self.now()),
            base_cid=r.base_cid or "",
            aggregate_cid=r.aggregate_cid,
            carried_over=r.finalized and not r.accepted_indexes,
            opened_by=r.opened_by,
            opened_at=r.opened_at,
            closed_at=r.closed_at,
            finalized_at=finalized_at,
            finalized_block=r.finalized_block,
            finalized_tx=r.finalized_tx,
            aggregator=r.aggregator,
            rule=task.rule_description if r.finalized else None,
            submissions=len(r.updates),
            accepted=len(r.accepted_indexes) if r.finalized else None,
            rewards_minted=str(r.rewards_minted) if r.rewards_minted is not None else None,
            rewards_minted_mesh=fmt.mesh(r.rewards_minted) if r.rewards_minted is not None else None,
            update_bytes=None,
            updates=[_update_row(u, None) for u in r.updates],
            settlements=_settlements(r),
            previous_round=round_ - 1 if round_ > 1 else None,
            next_round=round_ + 1 if last is not None and round_ < int(last) else None,
        )
        return self._with_sizes(detail) if self.sizes.available else detail

    def _with_sizes(self, detail: RoundDetail) -> RoundDetail:
        sizes = self.sizes.sizes([u.cid for u in detail.updates])
        updates = [u.model_copy(update={"size_bytes": sizes.get(u.cid)}) for u in detail.updates]
        known = [u.size_bytes for u in updates if u.size_bytes is not None]
        total = sum(known) if updates and len(known) == len(updates) else None
        return detail.model_copy(update={"updates": updates, "update_bytes": total})

    # ─── lineage ────────────────────────────────────────────────────────────────────────────────────────────
    def lineage(self, cid_text: str) -> Lineage:
        digest = parse_cid(cid_text)
        self.require_status()
        return self.cached(("lineage", digest), lambda: self._lineage(digest))  # type: ignore[no-any-return]

    def _lineage(self, digest: str) -> Lineage:
        views = []
        for lin in self.queries.lineage(digest):
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


def _reject_reasons(u: Update) -> list[str]:
    return sorted({fmt.reason_slug(v.reason) for v in u.votes if not v.accept})


def _lineage_update(u: Update) -> LineageUpdate:
    return LineageUpdate(
        index=u.index,
        contributor=u.contributor,
        cid=u.cid or "",
        verdict=u.verdict,
        reasons=_reject_reasons(u),
    )


def _update_row(u: Update, size: int | None) -> UpdateRow:
    grouped: dict[tuple[bool, int], int] = defaultdict(int)
    for v in u.votes:
        if not v.accept:
            grouped[(False, v.reason)] += 1
    return UpdateRow(
        index=u.index,
        contributor=u.contributor,
        cid=u.cid or "",
        num_samples=u.num_samples,
        size_bytes=size,
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
        reasons=accounts.reason_counts([(a, code, n) for (a, code), n in grouped.items()]),
    )


def _settlements(r: Round) -> list[Settlement]:
    return [
        Settlement(
            account=c.account,
            role="validator" if c.role == 1 else "contributor",
            reputation=c.reputation,
            delta=c.delta,
            reward=str(c.reward),
            reward_mesh=fmt.mesh(c.reward),
        )
        for c in r.reputation
    ]

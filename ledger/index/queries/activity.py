"""What each task did, for the metrics: its live round, its finalized rounds (opening, finalization time,
submissions, rewards accrued), every update's wait from submission to finalization, scores by sign and reason,
updates by verdict, and the updates of its last rounds. Full scans: the dashboard reads them once per version of
the index."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import aliased

from ledger.index import schema
from ledger.index.models import FinalizedRound, ScoreCount, TaskActivity
from ledger.index.queries.rows import raw


def activity(conn: Connection, recent_rounds: int) -> dict[int, TaskActivity]:
    """Every task's activity; ``recent`` holds the update digests of its last ``recent_rounds`` rounds."""
    tasks: dict[int, TaskActivity] = {}

    def of(task_id: object) -> TaskActivity:
        t = int(task_id)  # type: ignore[call-overload]
        if t not in tasks:
            tasks[t] = TaskActivity(t)
        return tasks[t]

    r, f, s, v = schema.rounds.c, schema.finalizations.c, schema.submissions.c, schema.scores.c
    for task_id, last in raw(conn, select(r.task_id, func.max(r.round)).group_by(r.task_id)):
        of(task_id).current_round = int(last)
    fin_block = aliased(schema.blocks)
    finalized_at: dict[tuple[int, int], int] = {}
    for task_id, rnd, accrued, count, opened_at, ts in raw(
        conn,
        select(f.task_id, f.round, f.rewards_accrued, f.submission_count, r.opened_at, fin_block.c.timestamp)
        .join(schema.rounds, (r.task_id == f.task_id) & (r.round == f.round))
        .join(fin_block, fin_block.c.number == f.block_number)
        .order_by(f.task_id, f.round),
    ):
        of(task_id).finalized.append(
            FinalizedRound(int(rnd), int(opened_at), int(ts), int(count), int(accrued))
        )
        finalized_at[(int(task_id), int(rnd))] = int(ts)
    sub_block = aliased(schema.blocks)
    for task_id, rnd, ts in raw(
        conn,
        select(s.task_id, s.round, sub_block.c.timestamp).join(
            sub_block, sub_block.c.number == s.block_number
        ),
    ):
        done = finalized_at.get((int(task_id), int(rnd)))
        if done is not None:
            of(task_id).latencies.append(done - int(ts))
    for task_id, positive, reason, n in raw(
        conn, select(v.task_id, v.positive, v.reason, func.count()).group_by(v.task_id, v.positive, v.reason)
    ):
        of(task_id).scores.append(ScoreCount(bool(positive), int(reason), int(n)))
    for task_id, figures in tasks.items():
        first = max(1, figures.current_round - recent_rounds + 1)
        by_round: dict[int, list[str]] = defaultdict(list)
        for rnd, digest in raw(
            conn,
            select(s.round, s.digest).where(s.task_id == task_id, s.round >= first).order_by(s.round, s.idx),
        ):
            by_round[int(rnd)].append(str(digest))
        figures.recent = sorted(by_round.items())
    bitmaps = {
        (int(t), int(n)): (int(b, 16), bool(carried))
        for t, n, b, carried in raw(conn, select(f.task_id, f.round, f.accepted_bitmap, f.carried_over))
    }
    verdicts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for t, n, idx in raw(conn, select(s.task_id, s.round, s.idx)):
        final = bitmaps.get((int(t), int(n)))
        if final is None:
            verdict = "pending"
        elif final[1]:
            verdict = "carried-over"
        else:
            verdict = "accepted" if final[0] >> int(idx) & 1 else "rejected"
        verdicts[int(t)][verdict] += 1
    for task_id, counts in verdicts.items():
        of(task_id).verdicts.update(counts)
    return tasks

"""Tasks: one task or all of them, and how far each got (rounds opened and finalized, its latest model)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, func, select

from ledger.index import schema
from ledger.index.content import spec_from_row
from ledger.index.models import TaskProgress, TaskRecord, TaskSpecInfo
from ledger.index.queries.errors import UnknownTask
from ledger.index.queries.rows import raw


def _with_spec() -> Select[Any]:
    """Tasks with what their specification says, when it was read from the content store (schema v3)."""
    ts = schema.task_specs.c
    return select(
        schema.tasks,
        *(c.label(f"spec_{c.name}") for c in schema.task_specs.columns if c.name != "digest"),
    ).select_from(schema.tasks.outerjoin(schema.task_specs, ts.digest == schema.tasks.c.spec_digest))


def tasks(conn: Connection) -> list[TaskRecord]:
    rows = conn.execute(_with_spec().order_by(schema.tasks.c.task_id)).mappings().all()
    return [task_record(r) for r in rows]


def task(conn: Connection, task_id: int) -> TaskRecord:
    """The task; UnknownTask (naming the tasks indexed) when the index has no such task."""
    row = conn.execute(_with_spec().where(schema.tasks.c.task_id == task_id)).mappings().first()
    if row is None:
        known = [
            int(t)
            for t in conn.execute(select(schema.tasks.c.task_id).order_by(schema.tasks.c.task_id)).scalars()
        ]
        raise UnknownTask(task_id, known)
    return task_record(row)


def last_round(conn: Connection, task_id: int) -> int:
    """The task's last opened round (0 before the first)."""
    last = conn.execute(
        select(func.max(schema.rounds.c.round)).where(schema.rounds.c.task_id == task_id)
    ).scalar_one()
    return int(last or 0)


def progress(conn: Connection) -> list[TaskProgress]:
    """Every task with its rounds opened and finalized and the model its last finalized round produced."""
    r, f = schema.rounds.c, schema.finalizations.c
    opened = {int(t): int(n) for t, n in raw(conn, select(r.task_id, func.count()).group_by(r.task_id))}
    finals: dict[int, tuple[int, int, str]] = {}  # task: (last round, finalized, last aggregate)
    for t, rnd, digest in raw(conn, select(f.task_id, f.round, f.aggregate_digest)):
        last, count, latest = finals.get(int(t), (0, 0, ""))
        if int(rnd) > last:
            last, latest = int(rnd), str(digest)
        finals[int(t)] = (last, count + 1, latest)
    out = []
    for record in tasks(conn):
        final = finals.get(record.task_id)
        out.append(
            TaskProgress(
                task=record,
                rounds_opened=opened.get(record.task_id, 0),
                rounds_finalized=final[1] if final else 0,
                latest_aggregate=final[2] if final else None,
            )
        )
    return out


def task_record(r: Any) -> TaskRecord:
    return TaskRecord(
        task_id=int(r["task_id"]),
        admin=str(r["admin"]),
        spec_digest=str(r["spec_digest"]),
        genesis_digest=str(r["genesis_digest"]),
        rule=int(r["rule"]),
        rule_param=int(r["rule_param"]),
        quorum=int(r["quorum"]),
        submission_window=int(r["submission_window"]),
        commit_window=int(r["commit_window"]),
        reveal_window=int(r["reveal_window"]),
        finalize_grace=int(r["finalize_grace"]),
        max_samples=int(r["max_samples"]),
        reward_per_round=int(r["reward_per_round"]),
        block_number=int(r["block_number"]),
        tx_hash=str(r["tx_hash"]),
        spec=_spec_info(r),
    )


def _spec_info(r: Any) -> TaskSpecInfo:
    if r.get("spec_status") is None:  # not read from the store yet (or selected without the join)
        return TaskSpecInfo()
    facts = spec_from_row({k[len("spec_") :]: v for k, v in r.items() if k.startswith("spec_")})
    return TaskSpecInfo(
        facts.status, facts.recipe, facts.hyperparameters, facts.seed, facts.dataset, facts.problem
    )

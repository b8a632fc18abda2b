"""Settlement rows: reputation values as series (each with its change and its block's timestamp), rewards
accrued and rewards claimed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from ledger.index import schema
from ledger.index.models import Claim, ReputationChange, Reward
from ledger.index.queries.rows import raw


def reputation_series(conn: Connection, *where: Any) -> list[ReputationChange]:
    """The reputation values matching ``where`` in chain order, each with its change from the account's previous
    value in that role among those read (so read an account's values from its first) and its block's time."""
    rc, b = schema.reputation_changes.c, schema.blocks.c
    stmt = (
        select(
            rc.account,
            rc.role,
            rc.reputation,
            rc.reward,
            rc.task_id,
            rc.round,
            rc.block_number,
            b.timestamp,
            rc.score,
            rc.distance,
            rc.absent,
        )
        .outerjoin(schema.blocks, b.number == rc.block_number)
        .where(*where)
        .order_by(rc.block_number, rc.log_index, rc.id)
    )
    previous: dict[tuple[str, int], int] = {}
    out = []
    for account, role, value, reward, task_id, round_, block, ts, score, distance, absent in raw(conn, stmt):
        key = (str(account), int(role))
        out.append(
            ReputationChange(
                account=key[0],
                role=key[1],
                reputation=int(value),
                delta=int(value) - previous.get(key, 0),
                reward=int(reward),
                task_id=int(task_id),
                round=int(round_),
                block_number=int(block),
                timestamp=int(ts) if ts is not None else None,
                score=int(score),
                distance=int(distance),
                absent=bool(absent),
            )
        )
        previous[key] = int(value)
    return out


def rewards(conn: Connection, *where: Any) -> tuple[list[Reward], dict[int, int]]:
    """The rewards matching ``where`` in chain order, and the timestamps of their blocks."""
    rw, b = schema.rewards.c, schema.blocks.c
    stmt = (
        select(rw.account, rw.role, rw.amount, rw.task_id, rw.round, rw.block_number, b.timestamp)
        .outerjoin(schema.blocks, b.number == rw.block_number)
        .where(*where)
        .order_by(rw.block_number, rw.log_index, rw.id)
    )
    out, times = [], {}
    for account, role, amount, task_id, round_, block, ts in raw(conn, stmt):
        out.append(Reward(str(account), int(role), int(amount), int(task_id), int(round_), int(block)))
        if ts is not None:
            times[int(block)] = int(ts)
    return out, times


def claims(conn: Connection, *where: Any) -> tuple[list[Claim], dict[int, int]]:
    """The claims matching ``where`` in chain order, and the timestamps of their blocks."""
    c, b = schema.claims.c, schema.blocks.c
    stmt = (
        select(c.account, c.amount, c.block_number, c.tx_hash, b.timestamp)
        .outerjoin(schema.blocks, b.number == c.block_number)
        .where(*where)
        .order_by(c.block_number, c.log_index, c.id)
    )
    out, times = [], {}
    for account, amount, block, tx, ts in raw(conn, stmt):
        out.append(Claim(str(account), int(amount), int(block), str(tx)))
        if ts is not None:
            times[int(block)] = int(ts)
    return out, times

"""The SQL every query shares: rows as the driver returns them, table counts, block timestamps, the newest block,
who holds which role now."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from sqlalchemy import Connection, Select, func, select

from ledger.index import schema
from ledger.index.models import ScheduledRoleChange


def raw(conn: Connection, stmt: Select[Any], params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """All rows of a SELECT as the DB-API driver returns them: building SQLAlchemy Rows costs more than the
    query itself on the big tables (scores, submissions, reputation values). The columns read this way need no
    result processing but ``int()`` or ``bool()`` (SQLite gives booleans as 0 and 1). ``params``: values of the
    statement's bound parameters."""
    result = conn.execute(stmt, params)
    try:
        return list(result.cursor.fetchall())
    finally:
        result.close()


def counts(conn: Connection) -> tuple[int, int]:
    """(events, tasks) in the index."""
    events = conn.execute(select(func.count()).select_from(schema.events)).scalar_one()
    tasks = conn.execute(select(func.count()).select_from(schema.tasks)).scalar_one()
    return int(events), int(tasks)


def block_times(conn: Connection, numbers: Iterable[int]) -> dict[int, int]:
    """Timestamps of the given blocks (the index stores every block that holds an event)."""
    wanted = sorted(set(numbers))
    out: dict[int, int] = {}
    b = schema.blocks.c
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        out.update(
            {int(n): int(t) for n, t in raw(conn, select(b.number, b.timestamp).where(b.number.in_(chunk)))}
        )
    return out


def newest_block(conn: Connection) -> tuple[int, str, int] | None:
    """(number, hash, timestamp) of the newest stored block: it changes whenever any answer can (the follower
    commits a batch's rows with the blocks that hold them, and a rewind deletes both)."""
    b = schema.blocks.c
    rows = raw(conn, select(b.number, b.hash, b.timestamp).order_by(b.number.desc()).limit(1))
    return (int(rows[0][0]), str(rows[0][1]), int(rows[0][2])) if rows else None


@cache
def role_names() -> dict[str, str]:
    """Role ids (keccak of the contracts' role names) to names."""
    from eth_utils.crypto import keccak

    names = {"0x" + "00" * 32: "admin"}
    for name in ("CONTRIBUTOR", "VALIDATOR", "AGGREGATOR"):
        names["0x" + keccak(text=f"{name}_ROLE").hex()] = name.lower()
    return names


def scheduled_role_changes(conn: Connection, account: str | None = None) -> list[ScheduledRoleChange]:
    """Role changes scheduled or cancelled (of ``account`` only if given), in chain order."""
    r = schema.scheduled_role_changes.c
    stmt = select(
        r.role, r.account, r.granted, r.cancelled, r.execute_after, r.block_number, r.tx_hash
    ).order_by(r.block_number, r.log_index)
    if account is not None:
        stmt = stmt.where(r.account == account)
    names = role_names()
    return [
        ScheduledRoleChange(
            names.get(str(role), str(role)),
            str(who),
            bool(grant),
            bool(cancelled),
            int(after) if after is not None else None,
            int(block),
            str(tx),
        )
        for role, who, grant, cancelled, after, block, tx in raw(conn, stmt)
    ]


def current_roles(conn: Connection, account: str | None = None) -> dict[str, list[str]]:
    """Roles each account (or just ``account``) holds now: grants and revocations in chain order."""
    r = schema.role_changes.c
    stmt = select(r.account, r.role, r.granted).order_by(r.block_number, r.log_index)
    if account is not None:
        stmt = stmt.where(r.account == account)
    held: dict[str, dict[str, bool]] = {}
    names = role_names()
    for who, role, granted in raw(conn, stmt):
        held.setdefault(str(who), {})[names.get(str(role), str(role))] = bool(granted)
    return {who: sorted(k for k, v in roles.items() if v) for who, roles in held.items()}

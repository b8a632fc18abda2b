"""One account's record: its roles, submissions with the votes on them and their verdicts, reputation over time,
rewards, and the votes it cast (every vote for the audit, counted by reason for a page)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, func, select, tuple_

from ledger.chain.types import checksum
from ledger.index import schema
from ledger.index.models import AccountHistory, MemberRecord, Update, Vote, VoteCount, VoteTally
from ledger.index.queries.rows import current_roles, raw
from ledger.index.queries.settlements import reputation_series, rewards


def history(conn: Connection, address: str) -> AccountHistory:
    """A member's submissions (with verdicts), every vote it cast, reputation over time and rewards, oldest
    first (the audit's answer)."""
    who = checksum(address)
    out = AccountHistory(who, current_roles(conn, who).get(who, []))
    out.submissions = submissions(conn, who)[0]
    for v in conn.execute(
        select(schema.votes)
        .where(schema.votes.c.validator == who)
        .order_by(schema.votes.c.block_number, schema.votes.c.log_index, schema.votes.c.idx)
    ).mappings():
        out.votes.append(_vote(v))
        out.vote_rounds.append((int(v["task_id"]), int(v["round"])))
    out.reputation = reputation_series(conn, schema.reputation_changes.c.account == who)
    out.rewards = rewards(conn, schema.rewards.c.account == who)[0]
    return out


def member(conn: Connection, address: str) -> MemberRecord:
    """A member's record as a page shows it: like :func:`history`, but the votes it cast counted by reason
    (a validator casts one per update) and with the times of the blocks of its submissions and rewards."""
    who = checksum(address)
    subs, times = submissions(conn, who)
    paid, paid_times = rewards(conn, schema.rewards.c.account == who)
    return MemberRecord(
        address=who,
        roles=current_roles(conn, who).get(who, []),
        submissions=subs,
        reputation=reputation_series(conn, schema.reputation_changes.c.account == who),
        rewards=paid,
        block_times={**times, **paid_times},
        votes_cast=vote_tally(conn, who),
    )


def submissions(conn: Connection, who: str) -> tuple[list[Update], dict[int, int]]:
    """The account's submissions in chain order, each with the votes on it (in chain order) and its verdict once
    its round is finalized; and the timestamps of their blocks. Reads only the account's rows: its
    submissions, the votes on them joined in SQL, the bitmaps of their rounds."""
    s, b = schema.submissions.c, schema.blocks.c
    rows = raw(
        conn,
        select(
            s.task_id,
            s.round,
            s.idx,
            s.contributor,
            s.digest,
            s.num_samples,
            s.relayer,
            s.block_number,
            s.tx_hash,
            b.timestamp,
        )
        .outerjoin(schema.blocks, b.number == s.block_number)
        .where(s.contributor == who)
        .order_by(s.block_number, s.log_index),
    )
    keys = sorted({(int(t), int(r)) for t, r, *_ in rows})
    f = schema.finalizations.c
    bitmaps: dict[tuple[int, int], int] = {}
    for start in range(0, len(keys), 400):
        chunk = keys[start : start + 400]
        for t, r, bitmap in raw(
            conn,
            select(f.task_id, f.round, f.accepted_bitmap).where(tuple_(f.task_id, f.round).in_(chunk)),
        ):
            bitmaps[(int(t), int(r))] = int(bitmap, 16)
    # Driver values as they come (ints and strings, as in rounds.py): a validator's member page builds these
    # for every vote on its submissions.
    v = schema.votes.c
    votes: dict[tuple[int, int, int], list[Vote]] = defaultdict(list)
    for t, r, idx, validator, accept, reason, block, tx in raw(
        conn,
        select(v.task_id, v.round, v.idx, v.validator, v.accept, v.reason, v.block_number, v.tx_hash)
        .join(schema.submissions, (s.task_id == v.task_id) & (s.round == v.round) & (s.idx == v.idx))
        .where(s.contributor == who)
        .order_by(v.block_number, v.log_index),
    ):
        votes[(t, r, idx)].append(Vote(validator, idx, bool(accept), reason, block, tx))
    out: list[Update] = []
    times: dict[int, int] = {}
    for t, r, idx, contributor, digest, samples, relayer, block, tx, ts in rows:
        u = Update(t, r, idx, contributor, digest, samples, relayer, block, tx, votes.get((t, r, idx), []))
        bitmap = bitmaps.get((t, r))
        if bitmap is not None:
            u.accepted = bool(bitmap >> idx & 1)
        if ts is not None:
            times[block] = ts
        out.append(u)
    return out, times


def vote_tally(conn: Connection, who: str) -> VoteTally | None:
    """The votes the account cast, counted by (accept, reason), and the rounds it voted in; None if it never
    voted."""
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
    return VoteTally(
        counts=[VoteCount(bool(accept), int(reason), int(n)) for accept, reason, n in grouped],
        rounds=int(rounds),
    )


def _vote(v: Any) -> Vote:
    return Vote(
        validator=str(v["validator"]),
        index=int(v["idx"]),
        accept=bool(v["accept"]),
        reason=int(v["reason"]),
        block_number=int(v["block_number"]),
        tx_hash=str(v["tx_hash"]),
    )

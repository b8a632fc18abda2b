"""One account's record: its roles, submissions with the scores on them, their consensus and verdicts, reputation
over time, rewards accrued and claimed, and the scores it revealed (every score for the audit, counted by sign and
reason for a page)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, func, select, tuple_

from ledger.chain.types import checksum
from ledger.index import schema
from ledger.index.models import AccountHistory, MemberRecord, Score, ScoreCount, ScoreTally, Update
from ledger.index.queries.rows import current_roles, raw, scheduled_role_changes
from ledger.index.queries.settlements import claims, reputation_series, rewards


def history(conn: Connection, address: str) -> AccountHistory:
    """A member's submissions (with scores, consensus and verdicts), every score it revealed, reputation over time,
    rewards accrued and claimed, oldest first (the audit's answer)."""
    who = checksum(address)
    out = AccountHistory(who, current_roles(conn, who).get(who, []))
    out.submissions = submissions(conn, who)[0]
    for v in conn.execute(
        select(schema.scores)
        .where(schema.scores.c.validator == who)
        .order_by(schema.scores.c.block_number, schema.scores.c.log_index, schema.scores.c.idx)
    ).mappings():
        out.scores.append(_score(v))
        out.score_rounds.append((int(v["task_id"]), int(v["round"])))
    out.reputation = reputation_series(conn, schema.reputation_changes.c.account == who)
    out.rewards = rewards(conn, schema.rewards.c.account == who)[0]
    out.claims = claims(conn, schema.claims.c.account == who)[0]
    out.role_changes_scheduled = scheduled_role_changes(conn, who)
    return out


def member(conn: Connection, address: str) -> MemberRecord:
    """A member's record as a page shows it: like :func:`history`, but the scores it revealed counted by sign and
    reason (a validator scores every update) and with the times of the blocks of its submissions, rewards and
    claims."""
    who = checksum(address)
    subs, times = submissions(conn, who)
    paid, paid_times = rewards(conn, schema.rewards.c.account == who)
    claimed, claim_times = claims(conn, schema.claims.c.account == who)
    return MemberRecord(
        address=who,
        roles=current_roles(conn, who).get(who, []),
        submissions=subs,
        reputation=reputation_series(conn, schema.reputation_changes.c.account == who),
        rewards=paid,
        block_times={**times, **paid_times, **claim_times},
        scores_revealed=score_tally(conn, who),
        claims=claimed,
        role_changes_scheduled=scheduled_role_changes(conn, who),
    )


def submissions(conn: Connection, who: str) -> tuple[list[Update], dict[int, int]]:
    """The account's submissions in chain order, each with the scores on it (in chain order), its consensus and
    verdict once its round is finalized; and the timestamps of their blocks. Reads only the account's rows: its
    submissions, the scores and consensus of them joined in SQL, the bitmaps of their rounds."""
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
    carried: set[tuple[int, int]] = set()
    for start in range(0, len(keys), 400):
        chunk = keys[start : start + 400]
        for t, r, bitmap, carried_over in raw(
            conn,
            select(f.task_id, f.round, f.accepted_bitmap, f.carried_over).where(
                tuple_(f.task_id, f.round).in_(chunk)
            ),
        ):
            bitmaps[(int(t), int(r))] = int(bitmap, 16)
            if carried_over:
                carried.add((int(t), int(r)))
    # Driver values as they come (ints and strings, as in rounds.py): a contributor's page builds these for
    # every score on its submissions.
    v = schema.scores.c
    scores: dict[tuple[int, int, int], list[Score]] = defaultdict(list)
    for t, r, idx, validator, score, reason, block, tx in raw(
        conn,
        select(v.task_id, v.round, v.idx, v.validator, v.score, v.reason, v.block_number, v.tx_hash)
        .join(schema.submissions, (s.task_id == v.task_id) & (s.round == v.round) & (s.idx == v.idx))
        .where(s.contributor == who)
        .order_by(v.block_number, v.log_index),
    ):
        scores[(t, r, idx)].append(Score(validator, idx, int(score), int(reason), block, tx))
    cs = schema.consensus.c
    consensus = {
        (int(t), int(r), int(idx)): int(score)
        for t, r, idx, score in raw(
            conn,
            select(cs.task_id, cs.round, cs.idx, cs.score)
            .join(schema.submissions, (s.task_id == cs.task_id) & (s.round == cs.round) & (s.idx == cs.idx))
            .where(s.contributor == who),
        )
    }
    out: list[Update] = []
    times: dict[int, int] = {}
    for t, r, idx, contributor, digest, samples, relayer, block, tx, ts in rows:
        u = Update(t, r, idx, contributor, digest, samples, relayer, block, tx, scores.get((t, r, idx), []))
        bitmap = bitmaps.get((t, r))
        if bitmap is not None:
            u.accepted = bool(bitmap >> idx & 1)
            u.consensus = consensus.get((int(t), int(r), int(idx)))
            u.carried_over = (int(t), int(r)) in carried
        if ts is not None:
            times[block] = ts
        out.append(u)
    return out, times


def score_tally(conn: Connection, who: str) -> ScoreTally | None:
    """The scores the account revealed, counted by (positive, reason), and the rounds it revealed in; None if it
    never revealed."""
    v = schema.scores.c
    grouped = raw(
        conn,
        select(v.positive, v.reason, func.count()).where(v.validator == who).group_by(v.positive, v.reason),
    )
    if not grouped:
        return None
    rounds = conn.execute(
        select(func.count()).select_from(
            select(v.task_id, v.round).where(v.validator == who).distinct().subquery()
        )
    ).scalar_one()
    return ScoreTally(
        counts=[ScoreCount(bool(positive), int(reason), int(n)) for positive, reason, n in grouped],
        rounds=int(rounds),
    )


def _score(v: Any) -> Score:
    return Score(
        validator=str(v["validator"]),
        index=int(v["idx"]),
        score=int(v["score"]),
        reason=int(v["reason"]),
        block_number=int(v["block_number"]),
        tx_hash=str(v["tx_hash"]),
    )

"""Rounds: a task's rounds in full (validator set, updates, every score, the consensus and outcome, the
settlement) loaded in bulk, the rounds as a list, and a task at a glance (the overview).

Every reader takes a handful of tables in bulk (one SELECT per table, filtered by task and round) and assembles the
result in Python: a lineage 100 rounds deep is a few thousand rows, not thousands of queries.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Connection, Select, bindparam, func, select

from ledger.chain.types import bits
from ledger.index import schema
from ledger.index.models import (
    Round,
    RoundContext,
    RoundSummary,
    RoundValidator,
    Score,
    ScoreCount,
    TaskOverview,
    Update,
)
from ledger.index.queries.errors import UnknownRound
from ledger.index.queries.rows import block_times, current_roles, raw
from ledger.index.queries.settlements import reputation_series, rewards
from ledger.index.queries.tasks import last_round, task


def load_rounds(
    conn: Connection, task_id: int, first: int, last: int | None, *, settlement: bool
) -> dict[int, Round]:
    """Rounds first..last of a task (last None: all), each with its validator set, updates, scores, consensus and
    outcome, and with ``settlement`` the reputation changes and rewards of each."""

    def within(table: Any) -> Any:
        cond = (table.c.task_id == task_id) & (table.c.round >= first)
        if last is not None:
            cond = cond & (table.c.round <= last)
        return cond

    # The statements of a lineage are built once (bound parameters): building and caching a SELECT costs about
    # as much as running one of the small ones.
    st = _statements(last is not None)
    params = {"task_id": task_id, "first": first, "last": last}
    out: dict[int, Round] = {}
    for n, base, opened_by, opened_at, block in raw(conn, st.rounds, params):
        out[int(n)] = Round(
            task_id=task_id,
            round=int(n),
            base_digest=str(base),
            opened_by=str(opened_by),
            opened_at=int(opened_at),
            opened_block=int(block),
        )
    for n, closed_at in raw(conn, st.closures, params):
        if int(n) in out:
            out[int(n)].closed_at = int(closed_at)
    for (
        n,
        aggregate,
        finalized_by,
        carried_over,
        bitmap,
        accepted_count,
        submission_count,
        rule,
        rule_param,
        rewards_accrued,
        block,
        tx,
    ) in raw(conn, st.finalizations, params):
        rd = out.get(int(n))
        if rd is None:
            continue
        rd.aggregate_digest = str(aggregate)
        rd.finalized_by = str(finalized_by)
        rd.carried_over = bool(carried_over)
        rd.accepted_indexes = bits(int(bitmap, 16))
        rd.accepted_count = int(accepted_count)
        rd.submission_count = int(submission_count)
        rd.rule = int(rule)
        rd.rule_param = int(rule_param)
        rd.rewards_accrued = int(rewards_accrued)
        rd.finalized_block = int(block)
        rd.finalized_tx = str(tx)
    for round_no, position, validator, weight in raw(conn, st.validators, params):
        if round_no in out:
            out[round_no].validators.append(RoundValidator(str(validator), int(position), int(weight)))
    committed = {(int(n), str(who)) for n, who in raw(conn, st.commitments, params)}
    # Per round, then per index: a lookup by two ints without building a tuple key per row.
    consensus: dict[int, dict[int, int]] = {}
    for n, idx, score in raw(conn, st.consensus, params):
        by_index = consensus.get(int(n))
        if by_index is None:
            by_index = consensus[int(n)] = {}
        by_index[int(idx)] = int(score)
    # The two big reads (a score per validator and update, an update per contributor and round) take the
    # driver's tuples in one fetchall: building a Row per score costs more than the query itself (a lineage
    # 100 rounds deep has 8,000 scores). The loop over the scores does as little per row as it can: the rows of
    # one reveal (one validator, one round) come together, so the round's map and the reveal are looked up once
    # per reveal, not once per score.
    scores: dict[int, dict[int, list[Score]]] = {}
    revealed: set[tuple[int, str]] = set()
    this_round: object = None
    this_validator: object = None
    of_round: dict[int, list[Score]] = {}
    for round_no, idx, validator, score, reason, block, tx in raw(conn, st.scores, params):
        if round_no != this_round or validator != this_validator:
            this_round, this_validator = round_no, validator
            revealed.add((int(round_no), str(validator)))
            found = scores.get(round_no)
            if found is None:
                found = scores[round_no] = {}
            of_round = found
        listed = of_round.get(idx)
        if listed is None:
            listed = of_round[idx] = []
        listed.append(Score(validator, idx, int(score), int(reason), block, tx))
    for n, rd in out.items():
        for member in rd.validators:
            member.committed = (n, member.validator) in committed
            member.revealed = (n, member.validator) in revealed
    accepted_sets = {n: set(rd.accepted_indexes) for n, rd in out.items() if rd.finalized}
    no_scores: dict[int, list[Score]] = {}
    no_consensus: dict[int, int] = {}
    rd = None
    this_round = None
    chosen: set[int] | None = None
    round_scores = no_scores
    round_consensus = no_consensus
    for round_no, idx, contributor, digest, samples, relayer, block, tx, status, dataset, fw, dp in raw(
        conn, st.submissions, params
    ):
        if round_no != this_round:  # the rows come round by round: look the round up once
            this_round = round_no
            rd = out.get(round_no)
            chosen = accepted_sets.get(round_no)
            round_scores = scores.get(round_no, no_scores)
            round_consensus = consensus.get(int(round_no), no_consensus)
        if rd is None:
            continue
        u = Update(task_id, round_no, idx, contributor, digest, samples, relayer, block, tx)
        if status is not None:
            u.metadata = str(status)
            u.dataset = dataset
            u.frameworks = json.loads(fw) if fw is not None else None
            u.privacy = json.loads(dp) if dp is not None else None
        listed = round_scores.get(idx)
        u.scores = listed if listed is not None else []
        if chosen is not None:
            u.accepted = idx in chosen
            u.consensus = round_consensus.get(int(idx))
            u.carried_over = rd.carried_over
        rd.updates.append(u)
    if settlement:
        rc = schema.reputation_changes.c
        settled = raw(conn, select(rc.account, rc.block_number).where(within(schema.reputation_changes)))
        if settled:
            # A delta needs each account's value before the round: read the series of the accounts involved.
            accounts = sorted({str(account) for account, _ in settled})
            last_block = max(int(block) for _, block in settled)
            for change in reputation_series(conn, rc.account.in_(accounts), rc.block_number <= last_block):
                if change.task_id == task_id and change.round in out:
                    out[change.round].reputation.append(change)
        for rd in out.values():
            _settle_validators(rd)
        for reward in rewards(conn, within(schema.rewards))[0]:
            if reward.round in out:
                out[reward.round].rewards.append(reward)
    return out


class _Statements(NamedTuple):
    rounds: Select[Any]
    closures: Select[Any]
    finalizations: Select[Any]
    validators: Select[Any]
    commitments: Select[Any]
    consensus: Select[Any]
    scores: Select[Any]
    submissions: Select[Any]


@cache
def _statements(bounded: bool) -> _Statements:
    """The SELECTs of :func:`load_rounds`, with the task and the rounds first..last (``bounded``) or first..
    as bound parameters ``task_id``, ``first``, ``last``."""

    def within(table: Any) -> Any:
        cond = (table.c.task_id == bindparam("task_id")) & (table.c.round >= bindparam("first"))
        if bounded:
            cond = cond & (table.c.round <= bindparam("last"))
        return cond

    r, c, f = schema.rounds.c, schema.closures.c, schema.finalizations.c
    rv, cm, cs, v = schema.round_validators.c, schema.commitments.c, schema.consensus.c, schema.scores.c
    s, um = schema.submissions.c, schema.update_meta.c
    return _Statements(
        rounds=select(r.round, r.base_digest, r.opened_by, r.opened_at, r.block_number).where(
            within(schema.rounds)
        ),
        closures=select(c.round, c.closed_at).where(within(schema.closures)),
        finalizations=select(
            f.round,
            f.aggregate_digest,
            f.finalized_by,
            f.carried_over,
            f.accepted_bitmap,
            f.accepted_count,
            f.submission_count,
            f.rule,
            f.rule_param,
            f.rewards_accrued,
            f.block_number,
            f.tx_hash,
        ).where(within(schema.finalizations)),
        validators=select(rv.round, rv.position, rv.validator, rv.weight)
        .where(within(schema.round_validators))
        .order_by(rv.round, rv.position),
        commitments=select(cm.round, cm.validator).where(within(schema.commitments)),
        consensus=select(cs.round, cs.idx, cs.score).where(within(schema.consensus)),
        scores=select(v.round, v.idx, v.validator, v.score, v.reason, v.block_number, v.tx_hash)
        .where(within(schema.scores))
        .order_by(v.block_number, v.log_index, v.idx),
        # Each update's metadata facts (read from the content store, schema v3) come with it in the same read.
        submissions=select(
            s.round,
            s.idx,
            s.contributor,
            s.digest,
            s.num_samples,
            s.relayer,
            s.block_number,
            s.tx_hash,
            um.status,
            um.dataset,
            um.frameworks,
            um.privacy,
        )
        .select_from(schema.submissions.outerjoin(schema.update_meta, um.digest == s.digest))
        .where(within(schema.submissions))
        .order_by(s.round, s.idx),
    )


def _settle_validators(rd: Round) -> None:
    """Each member of the round's set gets its settlement: the validator settlements follow the set's order."""
    settled = [c for c in rd.reputation if c.role == 1]
    if len(settled) != len(rd.validators):
        return  # not finalized yet (or a record that does not match its set: shown without settlement)
    for member, change in zip(rd.validators, settled, strict=True):
        if change.account != member.validator:
            return
        member.distance = change.distance
        member.absent = change.absent
        member.reputation = change.reputation
        member.reward = change.reward


def one_round(conn: Connection, task_id: int, round_: int) -> Round:
    """One round in full; UnknownTask or UnknownRound when the index has no such task or round."""
    task(conn, task_id)
    return _round_of(conn, task_id, round_)


def context(conn: Connection, task_id: int, round_: int) -> RoundContext:
    """One round in full, with its task, the time it was finalized and the task's last round."""
    record = task(conn, task_id)
    r = _round_of(conn, task_id, round_)
    block = r.finalized_block
    return RoundContext(
        round=r,
        task=record,
        finalized_at=block_times(conn, [block]).get(block) if block is not None else None,
        last_round=last_round(conn, task_id),
    )


def _round_of(conn: Connection, task_id: int, round_: int) -> Round:
    found = load_rounds(conn, task_id, round_, round_, settlement=True)
    if round_ not in found:
        raise UnknownRound(task_id, round_, last_round(conn, task_id))
    return found[round_]


def summaries(conn: Connection, task_id: int) -> tuple[list[RoundSummary], int]:
    """Every opened round of a task, oldest first, without per-update detail; and how many rounds of the task
    were finalized."""
    r, f, c, s = schema.rounds.c, schema.finalizations.c, schema.closures.c, schema.submissions.c
    opened = raw(
        conn, select(r.round, r.base_digest, r.opened_at).where(r.task_id == task_id).order_by(r.round)
    )
    finals = {
        int(n): (str(digest), int(accepted), int(accrued), int(block), bool(carried))
        for n, digest, accepted, accrued, block, carried in raw(
            conn,
            select(
                f.round,
                f.aggregate_digest,
                f.accepted_count,
                f.rewards_accrued,
                f.block_number,
                f.carried_over,
            ).where(f.task_id == task_id),
        )
    }
    closed = {
        int(n): int(at) for n, at in raw(conn, select(c.round, c.closed_at).where(c.task_id == task_id))
    }
    submitted = {
        int(n): int(k)
        for n, k in raw(conn, select(s.round, func.count()).where(s.task_id == task_id).group_by(s.round))
    }
    times = block_times(conn, [final[3] for final in finals.values()])
    out = []
    for number, base, opened_at in opened:
        n = int(number)
        final = finals.get(n)
        out.append(
            RoundSummary(
                task_id=task_id,
                round=n,
                base_digest=str(base),
                aggregate_digest=final[0] if final else None,
                opened_at=int(opened_at),
                submissions=submitted.get(n, 0),
                accepted=final[1] if final else None,
                rewards_accrued=final[2] if final else None,
                finalized_block=final[3] if final else None,
                closed_at=closed.get(n),
                finalized_at=times.get(final[3]) if final else None,
                carried_over=final[4] if final else False,
            )
        )
    return out, len(finals)


def overview(conn: Connection, task_id: int) -> TaskOverview:
    """A task at a glance: its rounds, who took part, its scores by sign and reason, the scores revealed in its
    live round, how many accounts hold each role now."""
    record = task(conn, task_id)
    rounds, finalized = summaries(conn, task_id)
    s, v = schema.submissions.c, schema.scores.c
    contributors = conn.execute(
        select(func.count(func.distinct(s.contributor))).where(s.task_id == task_id)
    ).scalar_one()
    validators = conn.execute(
        select(func.count(func.distinct(v.validator))).where(v.task_id == task_id)
    ).scalar_one()
    scores = [
        ScoreCount(bool(positive), int(reason), int(n))
        for positive, reason, n in raw(
            conn,
            select(v.positive, v.reason, func.count())
            .where(v.task_id == task_id)
            .group_by(v.positive, v.reason),
        )
    ]
    live_scores = 0
    if rounds:
        live_scores = int(
            conn.execute(
                select(func.count()).where(v.task_id == task_id, v.round == rounds[-1].round)
            ).scalar_one()
        )
    holders: dict[str, int] = {}
    for held in current_roles(conn).values():
        for role in held:
            holders[role] = holders.get(role, 0) + 1
    return TaskOverview(
        task=record,
        rounds=rounds,
        rounds_finalized=finalized,
        contributors=int(contributors),
        validators=int(validators),
        scores=scores,
        live_round_scores=live_scores,
        role_holders=holders,
    )

"""Where a model comes from: its lineage back to the task's genesis model (with the links that do not hold), every
place a digest is anchored, every submission of an update."""

from __future__ import annotations

from sqlalchemy import Connection, select

from ledger.index import schema
from ledger.index.models import Anchor, Lineage, Round, TaskRecord, Update
from ledger.index.queries.errors import NotAnchored
from ledger.index.queries.rounds import load_rounds
from ledger.index.queries.tasks import task


def anchors(conn: Connection, digest: str) -> list[Anchor]:
    """Every place ``digest`` appears: a task's genesis, a round's aggregate, a submitted update."""
    d = digest.lower()
    out: list[Anchor] = []
    for r in conn.execute(select(schema.tasks).where(schema.tasks.c.genesis_digest == d)).mappings():
        out.append(Anchor("genesis", int(r["task_id"]), None, int(r["block_number"]), str(r["tx_hash"])))
    for r in conn.execute(
        select(schema.finalizations).where(schema.finalizations.c.aggregate_digest == d)
    ).mappings():
        out.append(
            Anchor(
                "aggregate",
                int(r["task_id"]),
                int(r["round"]),
                int(r["block_number"]),
                str(r["tx_hash"]),
            )
        )
    subs = conn.execute(select(schema.submissions).where(schema.submissions.c.digest == d)).mappings().all()
    for s in subs:
        task_id, round_, idx = int(s["task_id"]), int(s["round"]), int(s["idx"])
        positives = (
            conn.execute(
                select(schema.scores.c.positive).where(
                    schema.scores.c.task_id == task_id,
                    schema.scores.c.round == round_,
                    schema.scores.c.idx == idx,
                )
            )
            .scalars()
            .all()
        )
        consensus = conn.execute(
            select(schema.consensus.c.score).where(
                schema.consensus.c.task_id == task_id,
                schema.consensus.c.round == round_,
                schema.consensus.c.idx == idx,
            )
        ).scalar()
        final = conn.execute(
            select(schema.finalizations.c.accepted_bitmap, schema.finalizations.c.carried_over).where(
                schema.finalizations.c.task_id == task_id, schema.finalizations.c.round == round_
            )
        ).first()
        if final is None:
            verdict = "pending"
        elif final[1]:
            verdict = "carried-over"
        else:
            verdict = "accepted" if int(final[0], 16) >> idx & 1 else "rejected"
        out.append(
            Anchor(
                "update",
                task_id,
                round_,
                int(s["block_number"]),
                str(s["tx_hash"]),
                contributor=str(s["contributor"]),
                index=idx,
                verdict=verdict,
                consensus=int(consensus) if consensus is not None else None,
                positive_scores=sum(1 for v in positives if v),
                other_scores=sum(1 for v in positives if not v),
            )
        )
    return sorted(out, key=lambda a: (a.block_number, a.role))


def lineage(conn: Connection, digest: str) -> list[Lineage]:
    """The history of a model (or update) back to genesis; one Lineage per task that anchors it.

    Raises NotAnchored when no task, round or submission names the digest.
    """
    d = digest.lower()
    # Rounds that produced d from accepted updates; a round that accepted nothing carries its base over, so the
    # first round that produced d is the one its history starts from.
    produced: dict[int, int] = {}
    for r in conn.execute(
        select(
            schema.finalizations.c.task_id,
            schema.finalizations.c.round,
            schema.finalizations.c.accepted_count,
        )
        .where(schema.finalizations.c.aggregate_digest == d)
        .order_by(schema.finalizations.c.round)
    ):
        task_id, round_, count = int(r[0]), int(r[1]), int(r[2])
        if count > 0 and task_id not in produced:
            produced[task_id] = round_
    out = [_model_lineage(conn, d, task_id, round_) for task_id, round_ in sorted(produced.items())]
    if out:
        return out
    genesis = (
        conn.execute(
            select(schema.tasks.c.task_id)
            .where(schema.tasks.c.genesis_digest == d)
            .order_by(schema.tasks.c.task_id)
        )
        .scalars()
        .all()
    )
    if genesis:
        return [Lineage(d, "genesis", task(conn, int(t))) for t in genesis]
    subs = conn.execute(
        select(schema.submissions.c.task_id, schema.submissions.c.round, schema.submissions.c.idx)
        .where(schema.submissions.c.digest == d)
        .order_by(schema.submissions.c.block_number, schema.submissions.c.log_index)
    ).all()
    for task_id, round_, idx in subs:
        out.append(_update_lineage(conn, d, int(task_id), int(round_), int(idx)))
    if not out:
        raise NotAnchored(d)
    return out


def updates(conn: Connection, digest: str) -> list[Update]:
    """Every submission of ``digest``, with its scores, consensus and outcome."""
    d = digest.lower()
    out = []
    subs = conn.execute(select(schema.submissions).where(schema.submissions.c.digest == d)).mappings().all()
    for s in subs:
        rounds = load_rounds(conn, int(s["task_id"]), int(s["round"]), int(s["round"]), settlement=False)
        for u in rounds[int(s["round"])].updates:
            if u.index == int(s["idx"]):
                out.append(u)
    return out


def _model_lineage(conn: Connection, d: str, task_id: int, last_round: int) -> Lineage:
    record = task(conn, task_id)
    found = load_rounds(conn, task_id, 1, last_round, settlement=False)
    rounds = [found[n] for n in sorted(found, reverse=True)]
    lineage = Lineage(d, "aggregate", record, rounds)
    lineage.problems = check_chain(record, rounds, last_round)
    return lineage


def _update_lineage(conn: Connection, d: str, task_id: int, round_: int, idx: int) -> Lineage:
    record = task(conn, task_id)
    found = load_rounds(conn, task_id, 1, round_, settlement=False)
    this = found[round_]
    update = next(u for u in this.updates if u.index == idx)
    # The model the update was trained on, and its history.
    rounds = [found[n] for n in sorted(found, reverse=True) if n < round_]
    lineage = Lineage(d, "update", record, rounds, update=update, used_in=this if update.accepted else None)
    lineage.problems = check_chain(record, rounds, round_ - 1)
    if this.base_digest != (rounds[0].aggregate_digest if rounds else record.genesis_digest):
        lineage.problems.append(f"round {round_}'s base is not the model the previous round produced")
    return lineage


def check_chain(task: TaskRecord, rounds_newest_first: list[Round], last_round: int) -> list[str]:
    """Links that must hold in any honest history: each base is the previous aggregate, round 1's base is the
    genesis model, every round up to ``last_round`` is there and finalized, accepted indexes name submissions."""
    problems = []
    by_round = {r.round: r for r in rounds_newest_first}
    for n in range(1, last_round + 1):
        rd = by_round.get(n)
        if rd is None:
            problems.append(f"round {n} is missing from the record")
            continue
        expected_base = (
            task.genesis_digest
            if n == 1
            else (by_round[n - 1].aggregate_digest if n - 1 in by_round else None)
        )
        if expected_base is not None and rd.base_digest != expected_base:
            problems.append(f"round {n}'s base {rd.base_digest} is not the previous model {expected_base}")
        if not rd.finalized:
            problems.append(f"round {n} is not finalized")
            continue
        indexes = {u.index for u in rd.updates}
        for i in rd.accepted_indexes:
            if i not in indexes:
                problems.append(f"round {n} accepted update {i}, which was never submitted")
        if rd.accepted_count is not None and rd.accepted_count != len(rd.accepted_indexes):
            problems.append(f"round {n}'s accepted count {rd.accepted_count} disagrees with its bitmap")
        if not rd.accepted_indexes and rd.aggregate_digest != rd.base_digest:
            problems.append(f"round {n} accepted nothing but its aggregate is not its base")
        if (rd.rule, rd.rule_param) != (task.rule, task.rule_param):
            problems.append(f"round {n} was aggregated with rule {rd.rule}/{rd.rule_param}, not the task's")
    return problems

"""Questions the index answers: lineage of a model, a round's detail, an account's history, where a digest is
anchored, task and round lists, a leaderboard. The dashboard and ``meshprov audit`` use these, and so does
``--trustless`` (on a throwaway index filled straight from the chain's logs).

Every query reads a handful of tables in bulk (one SELECT per table, filtered by task and round) and assembles
the result in Python: a lineage 100 rounds deep is a few thousand rows, not thousands of queries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Select, func, select

from ledger.chain.types import bits, checksum
from ledger.errors import NotFound
from ledger.index import schema
from ledger.index.db import IndexDB
from ledger.index.models import (
    AccountHistory,
    AccountSummary,
    Anchor,
    IndexStatus,
    Lineage,
    ReputationChange,
    Reward,
    Round,
    RoundSummary,
    TaskRecord,
    Update,
    Vote,
)


class UnknownTask(NotFound):
    def __init__(self, task_id: int, known: list[int]) -> None:
        self.task_id = task_id
        shown = ", ".join(map(str, known[:10])) if known else "none"
        super().__init__(f"task {task_id} is not in the index (tasks indexed: {shown})")


class UnknownRound(NotFound):
    def __init__(self, task_id: int, round_: int, last: int) -> None:
        self.task_id = task_id
        self.round = round_
        super().__init__(
            f"task {task_id} has no round {round_} in the index (rounds 1..{last} were opened)",
            hint="rounds are numbered from 1; the live round is the last opened",
        )


class NotAnchored(NotFound):
    def __init__(self, digest: str) -> None:
        from ledger.index.models import cid_of

        self.digest = digest
        super().__init__(
            f"{cid_of(digest)} is not anchored: no task, round or submission of this ledger names it",
            hint="check the CID, or that the index is up to date (`meshprov index follow --once`)",
        )


def _role_names() -> dict[str, str]:
    from eth_utils.crypto import keccak

    names = {"0x" + "00" * 32: "admin"}
    for name in ("CONTRIBUTOR", "VALIDATOR", "AGGREGATOR"):
        names["0x" + keccak(text=f"{name}_ROLE").hex()] = name.lower()
    return names


class Queries:
    """Read-only questions over one index."""

    def __init__(self, db: IndexDB) -> None:
        self.db = db

    # ─── status, tasks, rounds ──────────────────────────────────────────────────────────────────────────────
    def status(self, head: int | None = None) -> IndexStatus | None:
        with self.db.connect() as conn:
            cp = self.db.checkpoint(conn)
            if cp is None:
                return None
            events = conn.execute(select(func.count()).select_from(schema.events)).scalar_one()
            tasks = conn.execute(select(func.count()).select_from(schema.tasks)).scalar_one()
        return IndexStatus(
            chain_id=cp.chain_id,
            ledger=cp.ledger,
            start_block=cp.start_block,
            block_number=cp.block_number,
            block_hash=cp.block_hash,
            updated_at=cp.updated_at,
            events=int(events),
            tasks=int(tasks),
            head=head,
        )

    def tasks(self) -> list[TaskRecord]:
        with self.db.connect() as conn:
            rows = conn.execute(select(schema.tasks).order_by(schema.tasks.c.task_id)).mappings().all()
        return [_task(r) for r in rows]

    def task(self, task_id: int, conn: Connection | None = None) -> TaskRecord:
        if conn is None:
            with self.db.connect() as own:
                return self.task(task_id, own)
        row = conn.execute(select(schema.tasks).where(schema.tasks.c.task_id == task_id)).mappings().first()
        if row is None:
            known = [
                int(t)
                for t in conn.execute(
                    select(schema.tasks.c.task_id).order_by(schema.tasks.c.task_id)
                ).scalars()
            ]
            raise UnknownTask(task_id, known)
        return _task(row)

    def rounds(self, task_id: int) -> list[RoundSummary]:
        """Every round of a task, oldest first, without per-update detail."""
        with self.db.connect() as conn:
            self.task(task_id, conn)
            opened = (
                conn.execute(
                    select(schema.rounds)
                    .where(schema.rounds.c.task_id == task_id)
                    .order_by(schema.rounds.c.round)
                )
                .mappings()
                .all()
            )
            finals = {
                int(r["round"]): r
                for r in conn.execute(
                    select(schema.finalizations).where(schema.finalizations.c.task_id == task_id)
                ).mappings()
            }
            counts: dict[int, int] = {
                int(n): int(c)
                for n, c in conn.execute(
                    select(schema.submissions.c.round, func.count())
                    .where(schema.submissions.c.task_id == task_id)
                    .group_by(schema.submissions.c.round)
                ).all()
            }
        out = []
        for r in opened:
            n = int(r["round"])
            f = finals.get(n)
            out.append(
                RoundSummary(
                    task_id=task_id,
                    round=n,
                    base_digest=str(r["base_digest"]),
                    aggregate_digest=str(f["aggregate_digest"]) if f else None,
                    opened_at=int(r["opened_at"]),
                    submissions=int(counts.get(n, 0)),
                    accepted=int(f["accepted_count"]) if f else None,
                    rewards_minted=int(f["rewards_minted"]) if f else None,
                    finalized_block=int(f["block_number"]) if f else None,
                )
            )
        return out

    def round(self, task_id: int, round_: int) -> Round:
        """One round in full: updates with every vote, the outcome, reputation changes and rewards."""
        with self.db.connect() as conn:
            self.task(task_id, conn)
            found = self._rounds(conn, task_id, round_, round_, settlement=True)
            if round_ not in found:
                last = conn.execute(
                    select(func.max(schema.rounds.c.round)).where(schema.rounds.c.task_id == task_id)
                ).scalar_one()
                raise UnknownRound(task_id, round_, int(last or 0))
        return found[round_]

    def task_rounds(self, task_id: int, *, settlement: bool = True) -> list[Round]:
        """Every round of a task in full, oldest first (the export)."""
        with self.db.connect() as conn:
            self.task(task_id, conn)
            found = self._rounds(conn, task_id, 1, None, settlement=settlement)
        return [found[n] for n in sorted(found)]

    # ─── lineage and anchors ────────────────────────────────────────────────────────────────────────────────
    def anchors(self, digest: str) -> list[Anchor]:
        """Every place ``digest`` appears: a task's genesis, a round's aggregate, a submitted update."""
        d = digest.lower()
        out: list[Anchor] = []
        with self.db.connect() as conn:
            for r in conn.execute(select(schema.tasks).where(schema.tasks.c.genesis_digest == d)).mappings():
                out.append(
                    Anchor("genesis", int(r["task_id"]), None, int(r["block_number"]), str(r["tx_hash"]))
                )
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
            subs = (
                conn.execute(select(schema.submissions).where(schema.submissions.c.digest == d))
                .mappings()
                .all()
            )
            for s in subs:
                task_id, round_, idx = int(s["task_id"]), int(s["round"]), int(s["idx"])
                votes = (
                    conn.execute(
                        select(schema.votes.c.accept).where(
                            schema.votes.c.task_id == task_id,
                            schema.votes.c.round == round_,
                            schema.votes.c.idx == idx,
                        )
                    )
                    .scalars()
                    .all()
                )
                final = conn.execute(
                    select(schema.finalizations.c.accepted_bitmap).where(
                        schema.finalizations.c.task_id == task_id, schema.finalizations.c.round == round_
                    )
                ).scalar()
                verdict = (
                    "pending" if final is None else ("accepted" if int(final, 16) >> idx & 1 else "rejected")
                )
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
                        accept_votes=sum(1 for v in votes if v),
                        reject_votes=sum(1 for v in votes if not v),
                    )
                )
        return sorted(out, key=lambda a: (a.block_number, a.role))

    def lineage(self, digest: str) -> list[Lineage]:
        """The history of a model (or update) back to genesis; one Lineage per task that anchors it.

        Raises NotAnchored when no task, round or submission names the digest.
        """
        d = digest.lower()
        with self.db.connect() as conn:
            # Rounds that produced d from accepted updates; a round that accepted nothing carries its base over,
            # so the first round that produced d is the one its history starts from.
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
            out = [
                self._model_lineage(conn, d, task_id, round_) for task_id, round_ in sorted(produced.items())
            ]
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
                return [Lineage(d, "genesis", self.task(int(t), conn)) for t in genesis]
            subs = conn.execute(
                select(schema.submissions.c.task_id, schema.submissions.c.round, schema.submissions.c.idx)
                .where(schema.submissions.c.digest == d)
                .order_by(schema.submissions.c.block_number, schema.submissions.c.log_index)
            ).all()
            for task_id, round_, idx in subs:
                out.append(self._update_lineage(conn, d, int(task_id), int(round_), int(idx)))
        if not out:
            raise NotAnchored(d)
        return out

    def updates(self, digest: str) -> list[Update]:
        """Every submission of ``digest``, with its votes and outcome."""
        d = digest.lower()
        out = []
        with self.db.connect() as conn:
            subs = (
                conn.execute(select(schema.submissions).where(schema.submissions.c.digest == d))
                .mappings()
                .all()
            )
            for s in subs:
                rounds = self._rounds(
                    conn, int(s["task_id"]), int(s["round"]), int(s["round"]), settlement=False
                )
                for u in rounds[int(s["round"])].updates:
                    if u.index == int(s["idx"]):
                        out.append(u)
        return out

    def _model_lineage(self, conn: Connection, d: str, task_id: int, last_round: int) -> Lineage:
        task = self.task(task_id, conn)
        found = self._rounds(conn, task_id, 1, last_round, settlement=False)
        rounds = [found[n] for n in sorted(found, reverse=True)]
        lineage = Lineage(d, "aggregate", task, rounds)
        lineage.problems = _check_chain(task, rounds, last_round)
        return lineage

    def _update_lineage(self, conn: Connection, d: str, task_id: int, round_: int, idx: int) -> Lineage:
        task = self.task(task_id, conn)
        found = self._rounds(conn, task_id, 1, round_, settlement=False)
        this = found[round_]
        update = next(u for u in this.updates if u.index == idx)
        # The model the update was trained on, and its history.
        rounds = [found[n] for n in sorted(found, reverse=True) if n < round_]
        lineage = Lineage(d, "update", task, rounds, update=update, used_in=this if update.accepted else None)
        lineage.problems = _check_chain(task, rounds, round_ - 1)
        if this.base_digest != (rounds[0].aggregate_digest if rounds else task.genesis_digest):
            lineage.problems.append(f"round {round_}'s base is not the model the previous round produced")
        return lineage

    # ─── accounts ───────────────────────────────────────────────────────────────────────────────────────────
    def account(self, address: str) -> AccountHistory:
        """A member's submissions (with verdicts), votes, reputation over time and rewards, oldest first."""
        who = checksum(address)
        with self.db.connect() as conn:
            roles_rows = conn.execute(
                select(schema.role_changes)
                .where(schema.role_changes.c.account == who)
                .order_by(schema.role_changes.c.block_number, schema.role_changes.c.log_index)
            ).mappings()
            held: dict[str, bool] = {}
            names = _role_names()
            for r in roles_rows:
                held[names.get(str(r["role"]), str(r["role"]))] = bool(r["granted"])
            history = AccountHistory(who, sorted(k for k, v in held.items() if v))
            subs = (
                conn.execute(
                    select(schema.submissions)
                    .where(schema.submissions.c.contributor == who)
                    .order_by(schema.submissions.c.block_number, schema.submissions.c.log_index)
                )
                .mappings()
                .all()
            )
            keys = {(int(s["task_id"]), int(s["round"])) for s in subs}
            votes_by = _votes_for(conn, keys)
            finals = _finals_for(conn, keys)
            for s in subs:
                u = _update(s)
                key = (u.task_id, u.round)
                u.votes = votes_by.get((u.task_id, u.round, u.index), [])
                if key in finals:
                    u.accepted = bool(finals[key] >> u.index & 1)
                history.submissions.append(u)
            for v in conn.execute(
                select(schema.votes)
                .where(schema.votes.c.validator == who)
                .order_by(schema.votes.c.block_number, schema.votes.c.log_index, schema.votes.c.idx)
            ).mappings():
                history.votes.append(_vote(v))
                history.vote_rounds.append((int(v["task_id"]), int(v["round"])))
            times = _block_times(conn)
            history.reputation = _with_deltas(
                conn.execute(
                    select(schema.reputation_changes)
                    .where(schema.reputation_changes.c.account == who)
                    .order_by(
                        schema.reputation_changes.c.block_number,
                        schema.reputation_changes.c.log_index,
                        schema.reputation_changes.c.id,
                    )
                ).mappings(),
                times,
            )
            history.rewards = [
                _reward(r)
                for r in conn.execute(
                    select(schema.rewards)
                    .where(schema.rewards.c.account == who)
                    .order_by(schema.rewards.c.block_number, schema.rewards.c.log_index, schema.rewards.c.id)
                ).mappings()
            ]
        return history

    def leaderboard(self, task_id: int | None = None) -> list[AccountSummary]:
        """Every account with a reputation, its latest reputations, rewards and counts; most rewarded first."""
        with self.db.connect() as conn:
            rep_q = select(schema.reputation_changes).order_by(
                schema.reputation_changes.c.block_number,
                schema.reputation_changes.c.log_index,
                schema.reputation_changes.c.id,
            )
            latest: dict[tuple[str, int], int] = {}
            for r in conn.execute(rep_q).mappings():
                latest[(str(r["account"]), int(r["role"]))] = int(r["reputation"])
            rewards: dict[str, int] = defaultdict(int)
            rq = select(schema.rewards.c.account, schema.rewards.c.amount)
            if task_id is not None:
                rq = rq.where(schema.rewards.c.task_id == task_id)
            for account, amount in conn.execute(rq):
                rewards[str(account)] += int(amount)
            sq: Select[Any] = select(schema.submissions.c.contributor, func.count()).group_by(
                schema.submissions.c.contributor
            )
            aq: Select[Any] = (
                select(schema.submissions.c.contributor, func.count())
                .join(
                    schema.accepted,
                    (schema.accepted.c.task_id == schema.submissions.c.task_id)
                    & (schema.accepted.c.round == schema.submissions.c.round)
                    & (schema.accepted.c.idx == schema.submissions.c.idx),
                )
                .group_by(schema.submissions.c.contributor)
            )
            vq: Select[Any] = select(schema.votes.c.validator, func.count()).group_by(
                schema.votes.c.validator
            )
            if task_id is not None:
                sq = sq.where(schema.submissions.c.task_id == task_id)
                aq = aq.where(schema.submissions.c.task_id == task_id)
                vq = vq.where(schema.votes.c.task_id == task_id)
            submitted = {str(a): int(n) for a, n in conn.execute(sq)}
            accepted_n = {str(a): int(n) for a, n in conn.execute(aq)}
            voted = {str(a): int(n) for a, n in conn.execute(vq)}
        accounts = {a for a, _ in latest} | set(rewards) | set(submitted) | set(voted)
        out = [
            AccountSummary(
                address=a,
                contributor_reputation=latest.get((a, 0)),
                validator_reputation=latest.get((a, 1)),
                total_rewards=rewards.get(a, 0),
                submissions=submitted.get(a, 0),
                accepted=accepted_n.get(a, 0),
                votes=voted.get(a, 0),
            )
            for a in accounts
        ]
        return sorted(out, key=lambda s: (-s.total_rewards, s.address))

    # ─── bulk loading ───────────────────────────────────────────────────────────────────────────────────────
    def _rounds(
        self, conn: Connection, task_id: int, first: int, last: int | None, *, settlement: bool
    ) -> dict[int, Round]:
        """Rounds first..last of a task (last None: all), each with updates, votes and outcome."""

        def within(table: Any) -> Any:
            cond = (table.c.task_id == task_id) & (table.c.round >= first)
            if last is not None:
                cond = cond & (table.c.round <= last)
            return cond

        out: dict[int, Round] = {}
        for r in conn.execute(select(schema.rounds).where(within(schema.rounds))).mappings():
            out[int(r["round"])] = Round(
                task_id=task_id,
                round=int(r["round"]),
                base_digest=str(r["base_digest"]),
                opened_by=str(r["opened_by"]),
                opened_at=int(r["opened_at"]),
                opened_block=int(r["block_number"]),
            )
        for r in conn.execute(select(schema.closures).where(within(schema.closures))).mappings():
            if int(r["round"]) in out:
                out[int(r["round"])].closed_at = int(r["closed_at"])
        for r in conn.execute(select(schema.finalizations).where(within(schema.finalizations))).mappings():
            rd = out.get(int(r["round"]))
            if rd is None:
                continue
            rd.aggregate_digest = str(r["aggregate_digest"])
            rd.aggregator = str(r["aggregator"])
            rd.accepted_indexes = bits(int(r["accepted_bitmap"], 16))
            rd.accepted_count = int(r["accepted_count"])
            rd.submission_count = int(r["submission_count"])
            rd.rule = int(r["rule"])
            rd.rule_param = int(r["rule_param"])
            rd.rewards_minted = int(r["rewards_minted"])
            rd.finalized_block = int(r["block_number"])
            rd.finalized_tx = str(r["tx_hash"])
        # The two big reads (a vote per validator and update, an update per contributor and round) take the
        # driver's tuples in one fetchall: building a Row per vote costs more than the query itself (a lineage
        # 100 rounds deep has 8,000 votes). The columns read need no result processing but bool().
        votes: dict[tuple[int, int], list[Vote]] = defaultdict(list)
        v = schema.votes.c
        vq = (
            select(v.round, v.idx, v.validator, v.accept, v.reason, v.block_number, v.tx_hash)
            .where(within(schema.votes))
            .order_by(v.block_number, v.log_index, v.idx)
        )
        for round_no, idx, validator, accept, reason, block, tx in _raw(conn, vq):
            votes[(round_no, idx)].append(Vote(validator, idx, bool(accept), reason, block, tx))
        s = schema.submissions.c
        sq = (
            select(
                s.round, s.idx, s.contributor, s.digest, s.num_samples, s.relayer, s.block_number, s.tx_hash
            )
            .where(within(schema.submissions))
            .order_by(s.round, s.idx)
        )
        accepted_sets = {n: set(rd.accepted_indexes) for n, rd in out.items() if rd.finalized}
        for round_no, idx, contributor, digest, samples, relayer, block, tx in _raw(conn, sq):
            rd = out.get(round_no)
            if rd is None:
                continue
            u = Update(task_id, round_no, idx, contributor, digest, samples, relayer, block, tx)
            u.votes = votes.get((round_no, idx), [])
            chosen = accepted_sets.get(round_no)
            if chosen is not None:
                u.accepted = idx in chosen
            rd.updates.append(u)
        if settlement:
            times = _block_times(conn)
            settled = (
                conn.execute(
                    select(schema.reputation_changes)
                    .where(within(schema.reputation_changes))
                    .order_by(
                        schema.reputation_changes.c.block_number,
                        schema.reputation_changes.c.log_index,
                        schema.reputation_changes.c.id,
                    )
                )
                .mappings()
                .all()
            )
            if settled:
                # A delta needs each account's value before the round: read the series of the accounts involved.
                accounts = sorted({str(r["account"]) for r in settled})
                last_block = max(int(r["block_number"]) for r in settled)
                series = _with_deltas(
                    conn.execute(
                        select(schema.reputation_changes)
                        .where(
                            schema.reputation_changes.c.account.in_(accounts),
                            schema.reputation_changes.c.block_number <= last_block,
                        )
                        .order_by(
                            schema.reputation_changes.c.block_number,
                            schema.reputation_changes.c.log_index,
                            schema.reputation_changes.c.id,
                        )
                    ).mappings(),
                    times,
                )
                for change in series:
                    if change.task_id == task_id and change.round in out:
                        out[change.round].reputation.append(change)
            for r in conn.execute(
                select(schema.rewards)
                .where(within(schema.rewards))
                .order_by(schema.rewards.c.block_number, schema.rewards.c.log_index, schema.rewards.c.id)
            ).mappings():
                if int(r["round"]) in out:
                    out[int(r["round"])].rewards.append(_reward(r))
        return out


def _raw(conn: Connection, stmt: Select[Any]) -> list[tuple[Any, ...]]:
    """All rows of a SELECT as the DB-API driver returns them (no SQLAlchemy Row objects)."""
    result = conn.execute(stmt)
    try:
        return list(result.cursor.fetchall())
    finally:
        result.close()


def _check_chain(task: TaskRecord, rounds_newest_first: list[Round], last_round: int) -> list[str]:
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


def _task(r: Any) -> TaskRecord:
    return TaskRecord(
        task_id=int(r["task_id"]),
        admin=str(r["admin"]),
        spec_digest=str(r["spec_digest"]),
        genesis_digest=str(r["genesis_digest"]),
        rule=int(r["rule"]),
        rule_param=int(r["rule_param"]),
        quorum=int(r["quorum"]),
        submission_window=int(r["submission_window"]),
        vote_window=int(r["vote_window"]),
        reward_per_round=int(r["reward_per_round"]),
        block_number=int(r["block_number"]),
        tx_hash=str(r["tx_hash"]),
    )


def _update(s: Any) -> Update:
    return Update(
        task_id=int(s["task_id"]),
        round=int(s["round"]),
        index=int(s["idx"]),
        contributor=str(s["contributor"]),
        digest=str(s["digest"]),
        num_samples=int(s["num_samples"]),
        relayer=str(s["relayer"]),
        block_number=int(s["block_number"]),
        tx_hash=str(s["tx_hash"]),
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


def _with_deltas(rows: Iterable[Any], times: dict[int, int]) -> list[ReputationChange]:
    """Reputation values in chain order, each with its change from the account's previous value in that role."""
    previous: dict[tuple[str, int], int] = {}
    out = []
    for r in rows:
        key = (str(r["account"]), int(r["role"]))
        value = int(r["reputation"])
        out.append(
            ReputationChange(
                account=key[0],
                role=key[1],
                reputation=value,
                delta=value - previous.get(key, 0),
                reward=int(r["reward"]),
                task_id=int(r["task_id"]),
                round=int(r["round"]),
                block_number=int(r["block_number"]),
                timestamp=times.get(int(r["block_number"])),
            )
        )
        previous[key] = value
    return out


def _reward(r: Any) -> Reward:
    return Reward(
        account=str(r["account"]),
        role=int(r["role"]),
        amount=int(r["amount"]),
        task_id=int(r["task_id"]),
        round=int(r["round"]),
        block_number=int(r["block_number"]),
    )


def _block_times(conn: Connection) -> dict[int, int]:
    return {
        int(n): int(t) for n, t in conn.execute(select(schema.blocks.c.number, schema.blocks.c.timestamp))
    }


def _votes_for(conn: Connection, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int, int], list[Vote]]:
    out: dict[tuple[int, int, int], list[Vote]] = defaultdict(list)
    for task_id, round_ in keys:
        for v in conn.execute(
            select(schema.votes)
            .where(schema.votes.c.task_id == task_id, schema.votes.c.round == round_)
            .order_by(schema.votes.c.block_number, schema.votes.c.log_index)
        ).mappings():
            out[(task_id, round_, int(v["idx"]))].append(_vote(v))
    return out


def _finals_for(conn: Connection, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], int]:
    out = {}
    for task_id, round_ in keys:
        bitmap = conn.execute(
            select(schema.finalizations.c.accepted_bitmap).where(
                schema.finalizations.c.task_id == task_id, schema.finalizations.c.round == round_
            )
        ).scalar()
        if bitmap is not None:
            out[(task_id, round_)] = int(bitmap, 16)
    return out

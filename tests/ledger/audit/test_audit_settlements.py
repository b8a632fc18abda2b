"""`audit settlements` on synthetic v2 histories (no chain): rounds whose RoundFinalized is what ledger.consensus
gives from their validator sets, weights and revealed scores pass; a settlement or accepted set that differs is
named with its round, account and field, once; reputations carry across tasks in chain order."""

from __future__ import annotations

from typing import Any

from ledger.audit.settlements import check_settlements
from ledger.audit.source import Source, SourceInfo
from ledger.chain.events import LedgerEvent
from ledger.chain.scores import REJECT, encode_reasons, encode_scores
from ledger.chain.types import checksum
from ledger.consensus import ConsensusBook
from ledger.exit_codes import ExitCode
from ledger.index.db import IndexDB
from ledger.index.follower import Header, write_events
from ledger.index.queries import Queries

C = [checksum("0x" + f"{0xC0 + i:02x}" * 20) for i in range(3)]
V = [checksum("0x" + f"{0xA0 + i:02x}" * 20) for i in range(3)]
BUDGET = 10**18
PARAMS = {
    "specDigest": b"\x01" * 32,
    "genesisDigest": b"\x02" * 32,
    "rule": 0,
    "ruleParam": 0,
    "quorum": 2,
    "submissionWindow": 60,
    "commitWindow": 30,
    "revealWindow": 30,
    "finalizeGrace": 60,
    "maxSamples": 1000,
    "rewardPerRound": BUDGET,
}


class History:
    """Events of rounds settled by ledger.consensus, one block per event."""

    def __init__(self) -> None:
        self.events: list[LedgerEvent] = []
        self.book = ConsensusBook()
        self.rounds: dict[int, int] = {}

    def add(self, name: str, **args: Any) -> LedgerEvent:
        block = len(self.events) + 1
        e = LedgerEvent(
            name, args, block, "0x" + f"{block:064x}", 0, "0x" + f"{block:064x}", 0, "0x" + "99" * 20
        )
        self.events.append(e)
        return e

    def task(self, task_id: int) -> None:
        self.add("TaskCreated", taskId=task_id, admin=V[0], params=PARAMS)

    def round(
        self, task_id: int, scores: list[list[int] | None], *, carried_over: bool = False
    ) -> list[dict[str, Any]]:
        """A round of len(C) updates scored by V (None: absent); returns the settlement dicts it records."""
        n = self.rounds[task_id] = self.rounds.get(task_id, 0) + 1
        weights = self.book.freeze(V)
        self.add(
            "RoundOpened",
            taskId=task_id,
            round=n,
            by=V[0],
            baseDigest=b"\x02" * 32,
            openedAt=n,
            validators=V,
            weights=weights,
        )
        for i, c in enumerate(C):
            self.add(
                "UpdateSubmitted",
                taskId=task_id,
                round=n,
                contributor=c,
                index=i,
                digest=bytes([task_id, n, i]) * 10 + b"\x00\x00",
                numSamples=10,
                relayer=c,
            )
        for v, row in zip(V, scores, strict=True):
            if row is not None:
                reasons = [1 if s == REJECT else 0 for s in row]
                self.add(
                    "ScoresRevealed",
                    taskId=task_id,
                    round=n,
                    validator=v,
                    scores=encode_scores(row),
                    reasons=encode_reasons(reasons),
                )
        settled = self.book.settle(C, V, weights, scores, quorum=2, budget=BUDGET, carried_over=carried_over)
        records = [s.to_event() for s in settled.settlements]
        self.add(
            "RoundFinalized",
            taskId=task_id,
            round=n,
            by=V[0],
            aggregateDigest=b"\x07" * 32,
            acceptedBitmap=settled.accepted_bitmap,
            rule=0,
            ruleParam=0,
            carriedOver=carried_over,
            settlements=records,
        )
        return records

    def source(self) -> Source:
        db = IndexDB.memory()
        headers = [
            Header(e.block_number, e.block_hash, "0x" + f"{e.block_number - 1:064x}", e.block_number)
            for e in self.events
        ]
        with db.begin() as conn:
            write_events(conn, self.events, headers)
        info = SourceInfo("index", 31337, "0x" + "99" * 20, len(self.events), None)
        return Source(Queries(db), info, None, db)


def honest_history() -> History:
    h = History()
    h.task(1)
    h.task(2)
    h.round(1, [[3000, 4000, REJECT], [3500, 4500, REJECT], None])  # validator 2 absent
    h.round(2, [[2000, REJECT, 6000], [2500, 1000, 6500], [9000, 9000, 9000]])  # validator 2 far off
    h.round(1, [[1000, 2000, 3000], [1500, 2500, 3500], [1200, 2200, 3200]], carried_over=True)
    return h


def test_rounds_settled_by_the_rules_match() -> None:
    report = check_settlements(honest_history().source())
    assert report.exit_code == ExitCode.OK
    assert [(c.task_id, c.round, c.matches) for c in report.checks] == [
        (1, 1, True),
        (2, 1, True),
        (1, 2, True),
    ]
    assert report.checks[2].carried_over
    assert report.constants_from == "defaults"
    only = check_settlements(honest_history().source(), 2)
    assert [(c.task_id, c.round) for c in only.checks] == [(2, 1)]


def test_a_reward_not_the_rules_outcome_is_named_once() -> None:
    h = History()
    h.task(1)
    records = h.round(1, [[3000, 4000, REJECT], [3500, 4500, REJECT], [3200, 4200, REJECT]])
    records[0]["reward"] += 1  # the contract paid contributor 0 one unit more than the rules give
    h.round(1, [[3000, 4000, 5000], [3500, 4500, 5500], [3200, 4200, 5200]])
    report = check_settlements(h.source())
    assert report.exit_code == ExitCode.MISMATCH
    first, second = report.checks
    assert first.differences == [
        f"contributor {C[0]}: reward {records[0]['reward']} recorded, the rules give {records[0]['reward'] - 1}"
    ]
    assert second.matches  # the next round starts from what the chain recorded


def test_an_accepted_set_and_a_reputation_not_the_rules_outcome_are_named() -> None:
    h = History()
    h.task(1)
    h.round(1, [[3000, 4000, REJECT], [3500, 4500, REJECT], [3200, 4200, REJECT]])
    final = h.events[-1]
    final.args["acceptedBitmap"] = 0b111  # update 2 accepted although every validator rejected it
    final.args["settlements"][4]["reputation"] = 9999  # validator 1 promoted beyond the rules
    (check,) = check_settlements(h.source()).checks
    assert check.differences[0] == "accepted updates [0, 1, 2], the rules give [0, 1]"
    assert f"validator {V[1]}: reputation 9999 recorded" in check.differences[1]

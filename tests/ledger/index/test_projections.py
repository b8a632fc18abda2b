"""The index's projections of v2 events, on synthetic events (no chain): a reveal's bytes decoded as big-endian
int16 scores and one-byte reasons, hostile reveal bytes bounded and refused, RoundOpened's validator set,
RoundFinalized's consensus and settlements, a carry-over, claims and scheduled role changes."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ledger.chain.events import LedgerEvent
from ledger.chain.scores import MAX_UPDATES_PER_ROUND, REJECT, encode_reasons, encode_scores
from ledger.chain.types import checksum
from ledger.index import schema
from ledger.index.db import IndexDB
from ledger.index.follower import Header, write_events
from ledger.index.projections import projection_rows
from ledger.index.queries import Queries

# Checksummed, as the event decoder gives every address.
A = checksum("0x" + "aa" * 20)
B = checksum("0x" + "bb" * 20)
V1 = checksum("0x" + "01" * 20)
V2 = checksum("0x" + "02" * 20)


def event(name: str, block: int, log_index: int = 0, **args: Any) -> LedgerEvent:
    return LedgerEvent(
        name=name,
        args=args,
        block_number=block,
        block_hash="0x" + f"{block:064x}",
        log_index=log_index,
        tx_hash="0x" + f"{block * 1000 + log_index:064x}",
        tx_index=0,
        address="0x" + "99" * 20,
    )


def rows(e: LedgerEvent, table: Any) -> list[dict[str, Any]]:
    return [row for t, row in projection_rows(e) if t is table]


def reveal(scores: bytes, reasons: bytes, validator: str = V1) -> LedgerEvent:
    return event("ScoresRevealed", 5, taskId=1, round=1, validator=validator, scores=scores, reasons=reasons)


def test_a_reveal_decodes_big_endian_int16_scores_and_byte_reasons() -> None:
    # 0x0bb8 = 3000; 0xd8f0 = -10000 as two's complement; 0x0000 = 0.
    raw = bytes.fromhex("0bb8d8f00000")
    assert raw == encode_scores([3000, REJECT, 0])
    got = rows(reveal(raw, bytes([0, 7, 0])), schema.scores)
    assert [(r["idx"], r["score"], r["reason"], r["positive"]) for r in got] == [
        (0, 3000, 0, True),
        (1, REJECT, 7, False),
        (2, 0, 0, False),
    ]
    assert {r["validator"] for r in got} == {V1}


@pytest.mark.parametrize(
    ("scores", "reasons", "why"),
    [
        (b"\x0b", b"\x00", "odd length"),
        (bytes(2 * (MAX_UPDATES_PER_ROUND + 1)), b"", "more than"),
        ((12_000).to_bytes(2, "big"), b"\x00", "outside"),
        (encode_scores([1]), bytes(MAX_UPDATES_PER_ROUND + 1), "more than"),
    ],
)
def test_a_reveal_that_does_not_decode_projects_no_score(
    scores: bytes, reasons: bytes, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ledger.index.projections")
    assert rows(reveal(scores, reasons), schema.scores) == []
    assert why in caplog.text
    assert "block 5 log 0" in caplog.text


def _history() -> list[LedgerEvent]:
    params = {
        "specDigest": b"\x01" * 32,
        "genesisDigest": b"\x02" * 32,
        "rule": 0,
        "ruleParam": 0,
        "quorum": 1,
        "submissionWindow": 60,
        "commitWindow": 30,
        "revealWindow": 40,
        "finalizeGrace": 50,
        "maxSamples": 1000,
        "rewardPerRound": 10**18,
    }
    settle = [
        {
            "account": A,
            "role": 0,
            "reputation": 5200,
            "reward": 9 * 10**17,
            "score": 4000,
            "distance": 0,
            "absent": False,
        },
        {
            "account": B,
            "role": 0,
            "reputation": 4000,
            "reward": 0,
            "score": REJECT,
            "distance": 0,
            "absent": False,
        },
        {
            "account": V1,
            "role": 1,
            "reputation": 5200,
            "reward": 10**17,
            "score": 0,
            "distance": 300,
            "absent": False,
        },
        {
            "account": V2,
            "role": 1,
            "reputation": 4500,
            "reward": 0,
            "score": 0,
            "distance": 0,
            "absent": True,
        },
    ]
    return [
        event("TaskCreated", 1, taskId=1, admin=A, params=params),
        event(
            "RoundOpened",
            1,
            1,
            taskId=1,
            round=1,
            by=A,
            baseDigest=b"\x02" * 32,
            openedAt=100,
            validators=[V1, V2],
            weights=[5000, 4800],
        ),
        event(
            "UpdateSubmitted",
            2,
            taskId=1,
            round=1,
            contributor=A,
            index=0,
            digest=b"\x03" * 32,
            numSamples=10,
            relayer=A,
        ),
        event(
            "UpdateSubmitted",
            2,
            1,
            taskId=1,
            round=1,
            contributor=B,
            index=1,
            digest=b"\x04" * 32,
            numSamples=2**32,
            relayer=B,
        ),
        event("ScoresCommitted", 3, taskId=1, round=1, validator=V1, commitment=b"\x05" * 32),
        event("ScoresCommitted", 3, 1, taskId=1, round=1, validator=V2, commitment=b"\x06" * 32),
        reveal(encode_scores([4000, REJECT]), encode_reasons([0, 16])),
        event(
            "RoundFinalized",
            6,
            taskId=1,
            round=1,
            by=A,
            aggregateDigest=b"\x07" * 32,
            acceptedBitmap=1,
            rule=0,
            ruleParam=0,
            carriedOver=False,
            settlements=settle,
        ),
        event(
            "RoundOpened",
            6,
            1,
            taskId=1,
            round=2,
            by=A,
            baseDigest=b"\x07" * 32,
            openedAt=200,
            validators=[V1, V2],
            weights=[5200, 4500],
        ),
        event("RewardsClaimed", 7, account=A, amount=9 * 10**17),
        event("RoleChangeScheduled", 8, role=b"\x08" * 32, account=B, grant=True, executeAfter=999),
        event("RoleChangeCancelled", 8, 1, role=b"\x08" * 32, account=B, grant=True),
    ]


def test_a_v2_round_in_the_index_and_its_queries() -> None:
    db = IndexDB.memory()
    events = _history()
    headers = [
        Header(n, "0x" + f"{n:064x}", "0x" + f"{n - 1:064x}", 1000 + n)
        for n in sorted({e.block_number for e in events})
    ]
    with db.begin() as conn:
        assert write_events(conn, events, headers) == len(events)
    q = Queries(db)
    r = q.round(1, 1)
    assert [(m.validator, m.weight, m.committed, m.revealed) for m in r.validators] == [
        (V1, 5000, True, True),
        (V2, 4800, True, False),
    ]
    assert [(m.distance, m.absent, m.reward) for m in r.validators] == [(300, False, 10**17), (0, True, 0)]
    assert [u.consensus for u in r.updates] == [4000, REJECT]
    assert [u.verdict for u in r.updates] == ["accepted", "rejected"]
    assert [[(s.score, s.reason) for s in u.scores] for u in r.updates] == [[(4000, 0)], [(REJECT, 16)]]
    assert (r.finalized_by, r.carried_over, r.rewards_accrued) == (A, False, 10**18)
    task = q.task(1)
    assert (task.commit_window, task.reveal_window, task.finalize_grace, task.max_samples) == (
        30,
        40,
        50,
        1000,
    )
    history = q.account(A)
    assert (history.total_rewards, history.total_claimed, history.unclaimed) == (9 * 10**17, 9 * 10**17, 0)
    assert [u.consensus for u in history.submissions] == [4000]
    assert q.account(B).unclaimed == 0
    assert db.count("scheduled_role_changes") == 2
    with db.connect() as conn:
        changes = (
            conn.execute(
                schema.scheduled_role_changes.select().order_by(schema.scheduled_role_changes.c.log_index)
            )
            .mappings()
            .all()
        )
    assert [(c["granted"], c["cancelled"], c["execute_after"]) for c in changes] == [
        (True, False, 999),
        (True, True, None),
    ]


def test_a_carry_over_records_no_accepted_update_and_no_reward() -> None:
    carried = event(
        "RoundFinalized",
        9,
        taskId=1,
        round=2,
        by=B,
        aggregateDigest=b"\x07" * 32,
        acceptedBitmap=0,
        rule=0,
        ruleParam=0,
        carriedOver=True,
        settlements=[
            {
                "account": A,
                "role": 0,
                "reputation": 5300,
                "reward": 0,
                "score": 2000,
                "distance": 0,
                "absent": False,
            },
        ],
    )
    (final,) = rows(carried, schema.finalizations)
    assert (
        final["carried_over"],
        final["finalized_by"],
        final["rewards_accrued"],
        final["accepted_count"],
    ) == (
        True,
        B,
        "0",
        0,
    )
    assert rows(carried, schema.accepted) == []
    assert [r["score"] for r in rows(carried, schema.consensus)] == [2000]

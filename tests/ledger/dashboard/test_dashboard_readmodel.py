"""The dashboard's incremental member figures on a real indexed run: folding the index block by block gives the
same figures as one fold of the whole index and as the index's own leaderboard query; a rewound index (a chain
reorganisation) is noticed and folded again from scratch."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
from sqlalchemy import select

from ledger.dashboard.readmodel import ReadModel
from ledger.index import schema
from ledger.index.db import IndexDB
from ledger.index.queries import Queries
from ledger.index.queries.members import MemberFold
from tests.support.dashboard import DemoRun

pytestmark = pytest.mark.anvil


def figures(fold: MemberFold) -> dict[str, dict[str, object]]:
    return {a: asdict(m) for a, m in fold.snapshot().items()}


@pytest.fixture
def db(demo_run: DemoRun, tmp_path: Path) -> IndexDB:
    """A private copy of the run's index (tests here rewrite it)."""
    source = Path(demo_run.index_url.removeprefix("sqlite:///"))
    copy = tmp_path / "index.sqlite"
    shutil.copy(source, copy)
    for suffix in ("-wal", "-shm"):
        if Path(str(source) + suffix).exists():
            shutil.copy(str(source) + suffix, str(copy) + suffix)
    return IndexDB(f"sqlite:///{copy}")


def blocks(db: IndexDB) -> list[tuple[int, str]]:
    with db.connect() as conn:
        return [
            (int(n), str(h))
            for n, h in conn.execute(
                select(schema.blocks.c.number, schema.blocks.c.hash).order_by(schema.blocks.c.number)
            )
        ]


@pytest.mark.parametrize("task_id", [None, 1])
def test_folding_block_by_block_equals_one_fold(db: IndexDB, task_id: int | None) -> None:
    stored = blocks(db)
    whole = MemberFold(task_id)
    stepwise = MemberFold(task_id)
    with db.connect() as conn:
        assert whole.advance(conn, stored[-1])
        for block in stored:
            assert stepwise.advance(conn, block)
            assert stepwise.upto == block[0]
    assert figures(stepwise) == figures(whole)
    assert sum(m.pending for m in stepwise.members.values()) == 3  # round 4 is still open


def test_one_fold_equals_the_index_leaderboard(db: IndexDB) -> None:
    fold = MemberFold(None)
    with db.connect() as conn:
        fold.advance(conn, blocks(db)[-1])
    expected = Queries(db).leaderboard()
    got = fold.snapshot()
    for s in expected:
        m = got[s.address]
        assert (m.rewards, m.contributor_reputation, m.validator_reputation) == (
            s.total_rewards,
            s.contributor_reputation,
            s.validator_reputation,
        )
        assert (m.submissions, m.accepted, m.scores) == (s.submissions, s.accepted, s.scores)


def test_a_rewound_index_is_folded_again(db: IndexDB, demo_run: DemoRun) -> None:
    model = ReadModel(db)
    before = model.members(None)[demo_run.malicious]
    assert (before.accepted, before.rejected) == (1, 2)
    # A reorganisation: everything after round 2's finalization disappears (round 3 and the open round 4).
    round2_final = demo_run.rounds[1].blocks[-1]
    with db.begin() as conn:
        kept = conn.execute(
            select(schema.blocks.c.hash).where(schema.blocks.c.number == round2_final)
        ).scalar_one()
        db.rewind(conn, round2_final, kept)
    after = model.members(None)[demo_run.malicious]
    assert (after.submissions, after.accepted, after.rejected, after.pending) == (2, 1, 1, 0)
    fresh = MemberFold(None)
    with db.connect() as conn:
        fresh.advance(conn, blocks(db)[-1])
    assert {a: asdict(m) for a, m in model.members(None).items()} == figures(fresh)

"""Fixtures for the index and audit tests: a ledger with a few rounds of history, and index databases on SQLite
and PostgreSQL (one schema per test, dropped afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.chain.client import LedgerClient, connect_web3
from ledger.chain.scores import REJECT
from ledger.dev.services import AnvilProcess
from ledger.index.db import IndexDB
from ledger.index.follower import ChainReader, Follower
from ledger.reasons import Reason
from tests.support.chain import Consortium, chain_snapshot, fake_digest

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

REJECT_SECOND = int(Reason.NORM_OUTLIER)
ABSENT_IN_ROUND_1 = 2
"""The consortium validator that commits in round 1 and never reveals (absent)."""


def history_score(v: int, i: int, r: int) -> int | tuple[int, int]:
    """Round 1: all accepted, scores differing by validator and update (validator 2 absent). Round 2: update 1
    rejected by everyone, update 2 by validator 0 only (still accepted: the median is positive). Round 3:
    everything rejected (the model carries over to round 4 unchanged). Round 4: all positive, then carried over
    by a contributor after the grace."""
    if r == 2 and i == 1:
        return (REJECT, REJECT_SECOND)
    if r == 2 and i == 2 and v == 0:
        return (REJECT, int(Reason.LOSS_REGRESSION))
    if r == 3:
        return (REJECT, int(Reason.NON_FINITE))
    return 2_000 + 1_000 * v + 250 * i


def build_history(c: Consortium) -> int:
    """Task 1 (the deployment's, quorum 2) with rounds 1-3 finalized, round 4 carried over, an open round 5
    holding two updates, a claim of the first contributor's accrued rewards and a role change scheduled then
    cancelled; returns the task id."""
    task_id = c.task_id
    c.run_round(task_id, scores=history_score, unrevealed=[ABSENT_IN_ROUND_1])
    c.run_round(task_id, scores=history_score, relayed=True)
    c.run_round(task_id, scores=history_score)
    carried = c.run_round(task_id, scores=history_score, finalize=False)
    c.carry_over(carried)
    c.client(c.contributors[0][1]).claim_rewards()
    admin = c.admin_client
    admin.schedule_role_change("validator", c.contributors[3][0], True)
    admin.cancel_role_change("validator", c.contributors[3][0], True)
    for i, (_, key) in enumerate(c.contributors[:2]):
        c.client(key).submit_update(task_id, 5, fake_digest("open", i), 50)
    return task_id


@pytest.fixture(scope="module")
def history(anvil: AnvilProcess, dev_keys: list[tuple[str, str]]) -> Iterator[Consortium]:
    """A deployed ledger with `build_history` run once for the module (undone at the end)."""
    w3 = connect_web3(anvil.rpc_url)
    with chain_snapshot(w3):
        c = Consortium.deploy(w3, dev_keys, validators=3, contributors=4, quorum=2)
        build_history(c)
        yield c


@pytest.fixture
def h(history: Consortium, w3: Any) -> Iterator[Consortium]:
    """The module's history; whatever a test adds to the chain is undone after it."""
    history.reset_nonces()
    yield history
    history.reset_nonces()


IndexFactory = Callable[[], IndexDB]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IndexFactory]:
    """Make empty indexes on the parametrized database; all are removed after the test."""
    made: list[IndexDB] = []

    def make() -> IndexDB:
        if request.param == "sqlite":
            db = IndexDB(f"sqlite:///{tmp_path / f'index-{len(made)}.sqlite'}")
        else:
            db = IndexDB(POSTGRES_URL, schema_name=f"meshprov_test_{uuid.uuid4().hex[:12]}")
        made.append(db)
        return db

    yield make
    for db in made:
        if db.dialect == "postgresql":
            db.drop()
        db.dispose()


def follower_for(db: IndexDB, c: Consortium, **kwargs: Any) -> Follower:
    client: LedgerClient = c.client()
    return Follower(
        db,
        ChainReader(client.w3, client.address),
        client.events_decoder,
        start_block=c.record.deploy_block,
        **kwargs,
    )

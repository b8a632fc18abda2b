"""The follower on a real ledger history, on SQLite and PostgreSQL: complete, idempotent, resumable,
confirmation depth, reorg-safe, and refusing an index of another chain or ledger."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from ledger.chain.scores import REJECT
from ledger.exit_codes import ExitCode
from ledger.index import schema
from ledger.index.db import IndexDB, IndexForAnotherLedger, IndexSchemaTooOld
from ledger.index.follower import ChainReader, Follower
from tests.support.chain import Consortium, fake_digest, rpc
from tests.support.index import ABSENT_IN_ROUND_1, REJECT_SECOND, IndexFactory, follower_for

pytestmark = pytest.mark.anvil


def _chain_events(c: Consortium) -> list[Any]:
    return c.client().events(c.record.deploy_block)


def test_sync_indexes_every_event_and_its_projections(h: Consortium, new_index: IndexFactory) -> None:
    db = new_index()
    result = follower_for(db, h).sync()
    events = _chain_events(h)
    assert result.events == len(events)
    assert db.count("events") == len(events)
    assert result.to_block == h.w3.eth.block_number
    assert db.count("tasks") == 1
    assert db.count("rounds") == 5  # rounds 1-3 finalized, 4 carried over, 5 open
    assert db.count("round_validators") == 5 * 3
    assert db.count("finalizations") == 4
    assert db.count("submissions") == 4 * 4 + 2
    assert db.count("commitments") == 4 * 3
    # Every validator reveals a score per update, but validator 2 in round 1 (absent).
    assert db.count("scores") == (4 * 3 - 1) * 4
    assert db.count("consensus") == 4 * 4
    # A carried-over round records no accepted update (no aggregate was made from any).
    accepted = sum(len(r.accepted) for r in h.rounds if not r.carried_over)
    assert db.count("accepted") == accepted
    assert db.count("claims") == 1
    assert db.count("scheduled_role_changes") == 2
    with db.connect() as conn:
        rejected = conn.execute(
            select(schema.scores.c.score, schema.scores.c.reason, schema.scores.c.positive).where(
                schema.scores.c.round == 2, schema.scores.c.idx == 1
            )
        ).all()
        consensus = (
            conn.execute(
                select(schema.consensus.c.score)
                .where(schema.consensus.c.round == 1)
                .order_by(schema.consensus.c.idx)
            )
            .scalars()
            .all()
        )
        absent = conn.execute(
            select(schema.reputation_changes.c.account, schema.reputation_changes.c.distance).where(
                schema.reputation_changes.c.round == 1,
                schema.reputation_changes.c.role == 1,
                schema.reputation_changes.c.absent.is_(True),
            )
        ).all()
        carried = conn.execute(
            select(schema.finalizations.c.carried_over, schema.finalizations.c.rewards_accrued).where(
                schema.finalizations.c.round == 4
            )
        ).one()
    assert [tuple(r) for r in rejected] == [(REJECT, REJECT_SECOND, False)] * 3
    assert consensus == h.rounds[0].consensus
    assert [tuple(r) for r in absent] == [(h.validators[ABSENT_IN_ROUND_1][0], 0)]
    assert tuple(carried) == (True, "0")
    cp = db.checkpoint()
    assert cp is not None
    assert cp.block_hash == h.w3.eth.get_block(cp.block_number)["hash"].to_0x_hex()


def test_an_index_of_an_older_schema_is_refused_with_a_rebuild_hint(
    h: Consortium, new_index: IndexFactory
) -> None:
    db = new_index()
    follower_for(db, h).sync()
    with db.begin() as conn:
        conn.execute(update(schema.checkpoint).values(schema_version=1))
    db.create()  # version 1 (protocol v1's votes) is not upgraded in place
    with pytest.raises(IndexSchemaTooOld) as info:
        follower_for(db, h).sync()
    assert info.value.exit_code == ExitCode.CONFIG
    assert "schema version 1" in str(info.value)
    assert "rebuild" in str(info.value.hint)


def test_a_version_2_index_is_upgraded_in_place(h: Consortium, new_index: IndexFactory) -> None:
    """v3 only adds the content tables: a v2 index (without them) keeps its rows, gains them empty, and goes on
    syncing."""
    db = new_index()
    follower_for(db, h).sync()
    before = db.dump()
    with db.begin() as conn:
        conn.execute(update(schema.checkpoint).values(schema_version=2))
        for table in schema.CONTENT:
            table.drop(conn)
    reopened = IndexDB(db.url, schema_name=db.schema_name)
    try:
        cp = reopened.checkpoint()
        assert cp is not None
        assert cp.schema_version == schema.SCHEMA_VERSION == 3
        assert reopened.dump() == before
        assert reopened.content() == {"task_specs": [], "update_meta": []}
        assert follower_for(reopened, h).sync().events == 0
    finally:
        reopened.dispose()


def test_sync_is_idempotent(h: Consortium, new_index: IndexFactory) -> None:
    db = new_index()
    follower = follower_for(db, h)
    follower.sync()
    before = db.dump()
    assert follower.sync().events == 0  # nothing new
    # Re-reading the whole range (checkpoint moved back, rows kept) inserts nothing twice.
    with db.begin() as conn:
        db.set_checkpoint(
            conn, h.record.deploy_block - 1, h.w3.eth.get_block(h.record.deploy_block - 1)["hash"].to_0x_hex()
        )
    again = follower.sync()
    assert again.events == 0
    assert db.dump() == before


def test_sync_resumes_from_its_checkpoint(h: Consortium, new_index: IndexFactory) -> None:
    whole, parts = new_index(), new_index()
    follower_for(whole, h).sync()
    middle = h.rounds[1].blocks[0]
    small_batches = follower_for(parts, h, batch_blocks=3)
    first = small_batches.sync(to_block=middle)
    assert first.to_block == middle
    assert first.batches > 1
    follower_for(parts, h).sync()  # a new follower process picks up where the last stopped
    assert parts.dump() == whole.dump()


def test_confirmations_hold_back_recent_blocks(h: Consortium, new_index: IndexFactory) -> None:
    db = new_index()
    result = follower_for(db, h, confirmations=4).sync()
    head = h.w3.eth.block_number
    assert result.to_block == head - 4
    assert result.behind == 4
    last_block_events = [e for e in _chain_events(h) if e.block_number > head - 4]
    assert db.count("events") == len(_chain_events(h)) - len(last_block_events)


def test_an_index_of_another_ledger_or_chain_is_refused(h: Consortium, new_index: IndexFactory) -> None:
    db = new_index()
    follower_for(db, h).sync()
    client = h.client()
    other = Follower(db, ChainReader(client.w3, "0x" + "ab" * 20), client.events_decoder)
    with pytest.raises(IndexForAnotherLedger) as info:
        other.sync()
    assert info.value.exit_code == ExitCode.CONFIG
    assert "ledger" in str(info.value)
    with pytest.raises(IndexForAnotherLedger, match="chain id 1,"):
        db.check_identity(1, client.address)


def _reorg_and_compare(h: Consortium, new_index: IndexFactory, reorganise: Any) -> IndexDB:
    db = new_index()
    follower = follower_for(db, h)
    follower.sync()
    reorganise()
    h.reset_nonces()
    result = follower.sync()
    assert result.reorgs == 1
    fresh = new_index()
    follower_for(fresh, h).sync()
    assert db.dump() == fresh.dump()
    return db


def test_a_reorg_by_revert_leaves_the_index_equal_to_the_canonical_chain(
    h: Consortium, new_index: IndexFactory
) -> None:
    task_id = h.task_id
    late = h.contributors[2:]

    def reorganise() -> None:
        rpc(h.w3, "evm_revert", snapshot)
        h.reset_nonces()
        # The new fork: the same contributors submit other updates, and it grows past the old fork's height.
        for i, (_, key) in enumerate(late, start=2):
            h.client(key).submit_update(task_id, 5, fake_digest("new-fork", i), 9)
        for _ in range(3):
            rpc(h.w3, "evm_mine")

    snapshot = rpc(h.w3, "evm_snapshot")
    for i, (_, key) in enumerate(late, start=2):
        h.client(key).submit_update(task_id, 5, fake_digest("old-fork", i), 7)
    db = _reorg_and_compare(h, new_index, reorganise)
    with db.connect() as conn:
        digests = set(conn.execute(select(schema.submissions.c.digest)).scalars())
    assert "0x" + fake_digest("old-fork", 2).hex() not in digests
    assert "0x" + fake_digest("new-fork", 2).hex() in digests


def test_a_reorg_by_anvil_reorg_rewinds_the_dropped_blocks(h: Consortium, new_index: IndexFactory) -> None:
    task_id = h.task_id
    h.run_round(task_id, submitters=[2, 3])  # finalizes round 5 in the last blocks

    # Replace the last 4 blocks (the round's last reveals and finalization) by empty ones at the same height.
    db = _reorg_and_compare(h, new_index, lambda: rpc(h.w3, "anvil_reorg", 4, []))
    assert db.count("finalizations") == 4
    assert h.client().current_round(task_id) == 5


def test_a_reorg_to_a_shorter_chain_is_handled(h: Consortium, new_index: IndexFactory) -> None:
    snapshot = rpc(h.w3, "evm_snapshot")
    h.run_round(h.task_id, submitters=[2, 3])
    db = _reorg_and_compare(h, new_index, lambda: rpc(h.w3, "evm_revert", snapshot))
    assert db.count("finalizations") == 4


def test_follow_polls_until_stopped(h: Consortium, new_index: IndexFactory) -> None:
    db = new_index()
    follower = follower_for(db, h)
    before = len(_chain_events(h))
    seen: list[int] = []

    def on_sync(result: Any) -> None:
        seen.append(result.events)
        if len(seen) == 2:  # between two polls a new submission lands on chain
            h.client(h.contributors[2][1]).submit_update(h.task_id, 5, fake_digest("while-following"), 5)

    follower.follow(poll=0.05, stop=lambda: len(seen) >= 3, on_sync=on_sync)
    assert seen[0] == before
    assert seen[1] == 0
    assert seen[2] == 1
    with db.connect() as conn:
        digests = set(conn.execute(select(schema.submissions.c.digest)).scalars())
    assert "0x" + fake_digest("while-following").hex() in digests

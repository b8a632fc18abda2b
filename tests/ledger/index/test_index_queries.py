"""The index's queries on a real v2 ledger history (SQLite and PostgreSQL): lineage back to genesis, a round's
detail (scores, consensus, the validators' distances and absence, accrued rewards), an account's history, anchors, the leaderboard, a member's record, a task's progress and overview, the
metrics' activity, and the same answers from a trustless index."""

from __future__ import annotations

from collections import Counter

import pytest

from ledger.chain.scores import REJECT
from ledger.chain.types import Role
from ledger.exit_codes import ExitCode
from ledger.index import service
from ledger.index.db import IndexDB
from ledger.index.queries import NotAnchored, Queries, UnknownRound, UnknownTask
from ledger.reasons import Reason
from tests.support.chain import Consortium, fake_digest
from tests.support.index import (
    ABSENT_IN_ROUND_1,
    REJECT_SECOND,
    IndexFactory,
    follower_for,
    history_score,
)

pytestmark = pytest.mark.anvil


@pytest.fixture
def q(h: Consortium, new_index: IndexFactory) -> Queries:
    db = new_index()
    follower_for(db, h).sync()
    return Queries(db)


def hx(digest: bytes) -> str:
    return "0x" + digest.hex()


def test_lineage_of_the_latest_model_goes_back_to_genesis(h: Consortium, q: Queries) -> None:
    r1, r2, r3, r4 = h.rounds[:4]
    # Round 3 accepted nothing and round 4 was carried over: both name round 2's aggregate, so the model's
    # history starts at round 2.
    assert r4.aggregate == r3.aggregate == r2.aggregate
    (lineage,) = q.lineage(hx(r2.aggregate))
    assert lineage.role == "aggregate"
    assert lineage.verified
    assert [r.round for r in lineage.rounds] == [2, 1]
    newest, oldest = lineage.rounds
    assert newest.aggregate_digest == hx(r2.aggregate)
    assert newest.base_digest == hx(r1.aggregate)
    assert oldest.base_digest == lineage.task.genesis_digest == hx(r1.base)
    assert newest.accepted_indexes == r2.accepted == [0, 2, 3]
    rejected = newest.updates[1]
    assert rejected.accepted is False
    assert rejected.verdict == "rejected"
    assert [(v.score, v.reason) for v in rejected.scores] == [(REJECT, REJECT_SECOND)] * 3
    assert rejected.scores[0].reason_name == Reason(REJECT_SECOND).slug
    assert rejected.consensus == REJECT
    split = newest.updates[2]
    assert split.accepted is True
    assert (split.positive_scores, split.other_scores) == (2, 1)
    assert [u.consensus for u in newest.updates] == r2.consensus
    assert split.consensus == history_score(1, 2, 2)  # the lower median of (-10000, v1, v2)
    assert [u.digest for u in newest.accepted_updates] == [hx(r2.digests[i]) for i in (0, 2, 3)]
    assert [u.contributor for u in oldest.updates] == r1.contributors
    assert lineage.task.rule == newest.rule == 0
    assert lineage.cid is not None
    assert lineage.cid.startswith("Qm")


def test_lineage_of_genesis_and_of_an_update(h: Consortium, q: Queries) -> None:
    r1, r2 = h.rounds[:2]
    (genesis,) = q.lineage(hx(r1.base))
    assert genesis.role == "genesis"
    assert genesis.rounds == []
    (update,) = q.lineage(hx(r2.digests[0]))
    assert update.role == "update"
    assert update.update is not None
    assert update.update.contributor == r2.contributors[0]
    assert update.update.relayer == h.aggregator[0]  # round 2 was batch-relayed
    assert update.used_in is not None
    assert update.used_in.round == 2
    assert [r.round for r in update.rounds] == [1]  # the model it was trained on
    (rejected,) = q.lineage(hx(r2.digests[1]))
    assert rejected.used_in is None
    assert rejected.update is not None
    assert rejected.update.verdict == "rejected"


def test_an_unknown_digest_is_not_anchored(q: Queries) -> None:
    with pytest.raises(NotAnchored) as info:
        q.lineage(hx(fake_digest("nobody")))
    assert info.value.exit_code == ExitCode.NOT_FOUND
    assert "not anchored" in str(info.value)
    assert q.anchors(hx(fake_digest("nobody"))) == []


def test_anchors_name_every_role_of_a_digest(h: Consortium, q: Queries) -> None:
    r1, r2 = h.rounds[:2]
    roles = [(a.role, a.round) for a in q.anchors(hx(r2.aggregate))]
    assert roles == [("aggregate", 2), ("aggregate", 3), ("aggregate", 4)]  # rounds 3 and 4 kept it
    (update,) = q.anchors(hx(r2.digests[1]))
    assert (update.role, update.round, update.index, update.verdict) == ("update", 2, 1, "rejected")
    assert (update.consensus, update.positive_scores, update.other_scores) == (REJECT, 0, 3)
    (pending,) = q.anchors(hx(fake_digest("open", 0)))
    assert pending.verdict == "pending"
    assert [a.role for a in q.anchors(hx(r1.base))] == ["genesis"]


def test_round_detail_has_scores_consensus_and_settlement(h: Consortium, q: Queries) -> None:
    task_id = h.task_id
    r2 = h.rounds[1]
    detail = q.round(task_id, 2)
    assert detail.finalized
    assert not detail.carried_over
    assert detail.aggregate_digest == hx(r2.aggregate)
    assert detail.finalized_by == h.aggregator[0]
    assert len(detail.updates) == 4
    assert all(len(u.scores) == 3 for u in detail.updates)
    assert [[v.score for v in u.scores] for u in detail.updates] == [
        [r2.sheets[v.validator].scores[u.index] for v in u.scores] for u in detail.updates
    ]
    assert [(m.validator, m.weight) for m in detail.validators] == list(
        zip(r2.validators, r2.weights, strict=True)
    )
    assert all(m.committed and m.revealed and m.absent is False for m in detail.validators)
    settled = [s for s in detail.reputation if s.role == Role.VALIDATOR]
    assert [m.distance for m in detail.validators] == [s.distance for s in settled]
    # Validator 0 rejected update 2, which the others accepted: it is the farthest from the consensus.
    assert detail.validators[0].distance == max(m.distance or 0 for m in detail.validators) > 0
    assert detail.closed_at is not None
    contributors = [c for c in detail.reputation if c.role == Role.CONTRIBUTOR]
    assert [c.account for c in contributors] == r2.contributors
    rejected = contributors[1]
    assert rejected.delta < 0
    assert rejected.reward == 0
    assert all(c.delta > 0 for i, c in enumerate(contributors) if i != 1)
    assert sum(r.amount for r in detail.rewards) == detail.rewards_accrued
    assert detail.rewards_accrued is not None
    assert detail.rewards_accrued > 0
    context = q.round_context(task_id, 2)
    assert context.round.to_dict() == detail.to_dict()
    assert (context.task.task_id, context.last_round) == (task_id, 5)
    assert context.finalized_at == q.rounds(task_id)[1].finalized_at
    assert context.finalized_at is not None
    live = q.round(task_id, 5)
    assert not live.finalized
    assert [u.verdict for u in live.updates] == ["pending", "pending"]
    assert [u.consensus for u in live.updates] == [None, None]
    assert all(not m.committed and m.distance is None for m in live.validators)
    with pytest.raises(UnknownRound) as info:
        q.round(task_id, 9)
    assert info.value.exit_code == ExitCode.NOT_FOUND
    assert "rounds 1..5" in str(info.value)
    with pytest.raises(UnknownTask):
        q.round(7, 1)


def test_an_absent_validator_and_a_carried_over_round(h: Consortium, q: Queries) -> None:
    r1 = q.round(h.task_id, 1)
    absent = h.validators[ABSENT_IN_ROUND_1][0]
    member = next(m for m in r1.validators if m.validator == absent)
    assert (member.committed, member.revealed, member.absent, member.distance, member.reward) == (
        True,
        False,
        True,
        0,
        0,
    )
    assert all(len(u.scores) == 2 for u in r1.updates)
    # With validator 2 absent (counted 0), each consensus is validator 0's score: its distance is 0, validator 1's
    # 1000; the tolerance is 3 x the UPPER median distance (1000) = 3000 (R5), so both are within it (+200) and paid.
    by_validator = {m.validator: m for m in r1.validators}
    first, second = (by_validator[h.validators[k][0]] for k in (0, 1))
    assert (first.absent, first.distance, second.absent, second.distance) == (False, 0, False, 1_000)
    assert first.reward
    assert second.reward > 0
    assert second.reputation == 5_200
    carried = q.round(h.task_id, 4)
    assert carried.carried_over
    assert carried.finalized_by == h.contributors[0][0]
    assert carried.aggregate_digest == carried.base_digest
    assert carried.accepted_indexes == []
    assert carried.rewards_accrued == 0
    assert [u.consensus for u in carried.updates] == h.rounds[3].consensus
    assert all(u.consensus and u.consensus > 0 and u.accepted is False for u in carried.updates)
    assert {u.verdict for u in carried.updates} == {"carried-over"}
    (anchor,) = q.anchors(carried.updates[0].digest)
    assert anchor.verdict == "carried-over"
    assert [r.carried_over for r in q.rounds(h.task_id)] == [False, False, False, True, False]


def test_account_history_and_leaderboard(h: Consortium, q: Queries) -> None:
    address = h.contributors[1][0]  # accepted in rounds 1, rejected in 2 and 3
    history = q.account(address.lower())
    assert history.address == address
    assert history.roles == ["contributor"]
    assert [(s.round, s.verdict) for s in history.submissions] == [
        (1, "accepted"),
        (2, "rejected"),
        (3, "rejected"),
        (4, "carried-over"),  # no aggregate: neither used nor rejected
        (5, "pending"),
    ]
    assert [s.consensus for s in history.submissions] == [r.consensus[1] for r in h.rounds[:4]] + [None]
    assert [r.round for r in history.reputation] == [0, 1, 2, 3, 4]
    assert history.reputation[0].delta == history.reputation[0].reputation  # the starting value
    assert [r.score for r in history.reputation[1:]] == [r.consensus[1] for r in h.rounds[:4]]
    assert history.contributor_reputation == h.client().reputation(address).contributor
    assert history.total_rewards == h.client().accrued(address)  # never claimed
    assert (history.total_claimed, history.unclaimed) == (0, history.total_rewards)
    assert (history.accepted_count, history.rejected_count, history.carried_over_count) == (1, 2, 1)
    claimer = q.account(h.contributors[0][0])
    (claim,) = claimer.claims
    assert claim.amount == claimer.total_claimed == h.client().token_client().balance_of(claimer.address)
    assert claimer.unclaimed == h.client().accrued(claimer.address) == 0
    validator = q.account(h.validators[0][0])
    assert validator.roles == ["validator"]
    assert len(validator.scores) == 16
    assert validator.score_rounds[0] == (h.task_id, 1)
    board = q.leaderboard()
    by_address = {s.address: s for s in board}
    assert by_address[address].submissions == 5
    assert (by_address[address].accepted, by_address[address].submissions) == (1, 5)
    fold = q.members(None)
    assert fold is not None
    member = fold.members[address]
    assert (member.rejected, member.carried_over, member.pending) == (2, 1, 1)
    assert by_address[h.validators[0][0]].scores == 16
    assert [s.total_rewards for s in board] == sorted((s.total_rewards for s in board), reverse=True)
    assert not q.account("0x" + "77" * 20).known
    # The admin scheduled granting contributor 3 the validator role, then cancelled it: both are on record.
    scheduled = q.account(h.contributors[3][0]).role_changes_scheduled
    assert [(s.role, s.grant, s.cancelled) for s in scheduled] == [
        ("validator", True, False),
        ("validator", True, True),
    ]
    assert scheduled[0].execute_after is not None
    assert scheduled[0].execute_after > 0
    assert scheduled[1].execute_after is None


def test_the_leaderboard_is_the_chains(h: Consortium, q: Queries) -> None:
    client = h.client()
    tokens = client.token_client()
    board = q.leaderboard()
    members = {a for a, _ in h.contributors + h.validators}
    assert {s.address for s in board} == members  # not the admin or the aggregator: they only hold a role
    for s in board:
        on_chain = client.reputation(s.address)
        # Accrued in the index = still accrued on chain + already claimed (minted).
        assert s.total_rewards == client.accrued(s.address) + tokens.balance_of(s.address)
        if s.contributor_reputation is not None:
            assert s.contributor_reputation == on_chain.contributor
        if s.validator_reputation is not None:
            assert s.validator_reputation == on_chain.validator
    within = q.leaderboard(h.task_id)
    assert [s.to_dict() for s in within] == [s.to_dict() for s in board]  # the history has one task


def test_a_members_record_counts_the_scores_it_revealed(h: Consortium, q: Queries) -> None:
    address = h.contributors[1][0]
    record = q.member(address.lower())
    history = q.account(address)
    assert (record.address, record.roles) == (history.address, history.roles)
    assert [u.to_dict() for u in record.submissions] == [u.to_dict() for u in history.submissions]
    assert [(u.round, u.verdict) for u in record.submissions][:3] == [
        (1, "accepted"),
        (2, "rejected"),
        (3, "rejected"),
    ]
    assert [u.consensus for u in record.submissions] == [u.consensus for u in history.submissions]
    assert record.reputation == history.reputation
    assert record.rewards == history.rewards
    assert all(u.block_number in record.block_times for u in record.submissions)
    assert all(r.block_number in record.block_times for r in record.rewards)
    assert record.scores_revealed is None
    assert record.total_claimed == 0
    claimer = q.member(h.contributors[0][0])
    assert claimer.total_claimed == claimer.total_rewards > 0
    assert all(c.block_number in claimer.block_times for c in claimer.claims)
    validator = h.validators[0][0]
    tally = q.member(validator).scores_revealed
    assert tally is not None
    expected = Counter(
        (score > 0, reason)
        for r in h.rounds[:4]
        for score, reason in zip(r.sheets[validator].scores, r.sheets[validator].reasons, strict=True)
    )
    assert {(c.positive, c.reason): c.count for c in tally.counts} == dict(expected)
    assert tally.rounds == 4
    assert not q.member("0x" + "77" * 20).known


def test_a_tasks_progress_overview_and_activity(h: Consortium, q: Queries) -> None:
    task_id = h.task_id
    (progress,) = q.task_progress()
    assert (progress.task.task_id, progress.rounds_opened, progress.rounds_finalized) == (task_id, 5, 4)
    assert progress.latest_aggregate == hx(h.rounds[3].aggregate)
    overview = q.task_overview(task_id)
    assert overview.rounds == q.rounds(task_id)
    assert overview.rounds_finalized == 4
    finalized = overview.rounds[:4]
    assert all(r.finalized_at is not None and r.finalized_at >= r.opened_at for r in finalized)
    assert overview.rounds[4].finalized_at is None
    # Rounds 1-4 closed when the fourth contributor submitted; round 5 waits for two more.
    assert [r.closed_at is not None for r in overview.rounds] == [True, True, True, True, False]
    assert (overview.contributors, overview.validators, overview.live_round_scores) == (4, 3, 0)
    assert (overview.role_holders["contributor"], overview.role_holders["validator"]) == (4, 3)
    reasons = Counter(
        (score > 0, reason)
        for r in h.rounds[:4]
        for v in r.revealed
        for score, reason in zip(r.sheets[v].scores, r.sheets[v].reasons, strict=True)
    )
    assert {(v.positive, v.reason): v.count for v in overview.scores} == dict(reasons)
    with pytest.raises(UnknownTask):
        q.task_overview(7)
    (activity,) = q.activity(recent_rounds=2).values()
    assert (activity.task_id, activity.current_round) == (task_id, 5)
    assert [(f.round, f.submissions) for f in activity.finalized] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [f.finalized_at for f in activity.finalized] == [r.finalized_at for r in finalized]
    assert activity.finalized[3].rewards_accrued == 0  # carried over
    assert len(activity.latencies) == 16
    assert all(seconds >= 0 for seconds in activity.latencies)
    assert activity.verdicts == {"accepted": 7, "rejected": 5, "carried-over": 4, "pending": 2}
    assert [n for n, _ in activity.recent] == [4, 5]
    assert activity.recent[1][1] == [hx(fake_digest("open", i)) for i in range(2)]
    assert sum(v.count for v in activity.scores) == (4 * 3 - 1) * 4


def test_tasks_and_rounds_lists(h: Consortium, q: Queries) -> None:
    (task,) = q.tasks()
    assert task.task_id == h.task_id
    assert task.genesis_cid is not None
    assert task.rule_description.startswith("fedavg")
    rounds = q.rounds(task.task_id)
    assert [(r.round, r.submissions, r.accepted) for r in rounds] == [
        (1, 4, 4),
        (2, 4, 3),
        (3, 4, 0),
        (4, 4, 0),
        (5, 2, None),
    ]
    full = q.task_rounds(task.task_id)
    assert [len(r.updates) for r in full] == [4, 4, 4, 4, 2]
    status = q.status(head=h.w3.eth.block_number)
    assert status is not None
    assert status.behind == 0
    assert status.tasks == 1


def test_a_trustless_index_gives_the_same_answers(h: Consortium, q: Queries) -> None:
    client = h.client()
    client.deployment = None
    memory, result = service.trustless(client, start_block=h.record.deploy_block)
    assert result.events == q.db.count("events")
    assert memory.dump() == q.db.dump()
    r2 = h.rounds[1]
    assert Queries(memory).lineage(hx(r2.aggregate))[0].to_dict() == q.lineage(hx(r2.aggregate))[0].to_dict()


def test_an_empty_index_has_no_status(tmp_path: object) -> None:
    assert Queries(IndexDB.memory()).status() is None

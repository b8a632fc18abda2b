"""Protocol v2 (docs/protocol.md, issue 13 "Why" 1–6) at the client level, against the real MeshLedger on anvil:
each rule refuses its attack with a named error, or settles as the design says."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ledger.chain import errors
from ledger.chain.client import connect_web3
from ledger.chain.scores import REJECT, SCORE_ONE, ScoreSheet
from ledger.chain.types import Phase, Role
from ledger.dev.services import AnvilProcess
from ledger.exit_codes import ExitCode
from tests.support.chain import Consortium, advance_time, chain_snapshot, fake_digest, rpc, warp_past

pytestmark = pytest.mark.anvil

MAX_SAMPLES = 1_000


@pytest.fixture(scope="module")
def consortium(anvil: AnvilProcess, dev_keys: list[tuple[str, str]]) -> Iterator[Consortium]:
    w3 = connect_web3(anvil.rpc_url)
    with chain_snapshot(w3):
        yield Consortium.deploy(
            w3, dev_keys, validators=3, contributors=4, quorum=2, max_samples=MAX_SAMPLES, role_delay=120
        )


@pytest.fixture
def c(consortium: Consortium, w3: Any) -> Iterator[Consortium]:
    """The module's consortium, every change undone after the test (the `w3` fixture snapshots)."""
    consortium.reset_nonces()
    yield consortium
    consortium.reset_nonces()


def test_a_sample_count_above_the_cap_is_refused(c: Consortium) -> None:
    """Why 1: a claim of 2^64-1 samples no longer takes the rewards; it is not even recorded."""
    key = c.contributors[0][1]
    with pytest.raises(errors.TooManySamples) as refused:
        c.client(key).submit_update(c.task_id, 1, fake_digest("inflated"), 2**64 - 1)
    assert (refused.value["numSamples"], refused.value["maxSamples"]) == (2**64 - 1, MAX_SAMPLES)
    assert "at most 1000" in (refused.value.hint or "")
    assert c.client(key).submit_update(c.task_id, 1, fake_digest("honest"), MAX_SAMPLES).value == 0


def test_the_same_digest_from_two_members_is_recorded_twice(c: Consortium) -> None:
    """Why 3: a copier's submission of the author's digest does not block the author (the file names its
    author, R1)."""
    digest = fake_digest("the author's update")
    copier = c.client(c.contributors[1][1]).submit_update(c.task_id, 1, digest, 10)
    author = c.client(c.contributors[0][1]).submit_update(c.task_id, 1, digest, 10)
    assert (copier.value, author.value) == (0, 1)
    subs = c.client().submissions(c.task_id, 1)
    assert [(s.contributor, s.digest) for s in subs] == [
        (c.contributors[1][0], digest),
        (c.contributors[0][0], digest),
    ]


def test_scores_are_committed_then_revealed_and_a_late_commit_is_refused(c: Consortium) -> None:
    """Why 4: no score is visible before every score is bound; a commitment after the window is refused."""
    task = c.task_id
    c.submit(task, 1)
    view = c.view(task, 1)
    assert view.phase is Phase.COMMIT  # every contributor submitted: submissions closed early
    (v0, k0), (v1, k1), (_, k2) = c.validators
    sheet = ScoreSheet.new([SCORE_ONE, 2_000, REJECT, 0], [0, 0, 5, 0])
    reader = c.client()
    assert reader.score_commitment(
        task, 1, v0, sheet.scores, sheet.reasons, salt=sheet.salt
    ) == reader.score_commitment_view(task, 1, v0, sheet.scores, sheet.reasons, salt=sheet.salt)
    committed = c.client(k0).commit_sheet(task, 1, sheet)
    (event,) = [e for e in committed.events if e.name == "ScoresCommitted"]
    assert event.args["commitment"] == committed.value
    with pytest.raises(errors.AlreadyCommitted):
        c.client(k0).commit_sheet(task, 1, sheet)
    with pytest.raises(errors.RevealNotOpen):
        c.client(k0).reveal_sheet(task, 1, sheet)
    assert reader.revealed_scores(task, 1, v0).scores == ()  # nothing readable before the reveal
    c.commit(task, 1, v1, [1, 2, 3, 4])
    warp_past(reader, view.commit_end)
    with pytest.raises(errors.CommitClosed) as late:
        c.client(k2).commit_sheet(task, 1, ScoreSheet.new([0, 0, 0, 0]))
    assert late.value["commitEnd"] == view.commit_end
    assert isinstance(late.value, errors.TooLateRevert)
    # A reveal must open the commitment exactly: another salt, another score, another length are refused.
    with pytest.raises(errors.RevealMismatch):
        c.client(k0).reveal_scores(task, 1, sheet.scores, sheet.reasons, bytes(32))
    with pytest.raises(errors.RevealMismatch):
        c.client(k0).reveal_scores(task, 1, [SCORE_ONE, 2_001, REJECT, 0], sheet.reasons, sheet.salt)
    with pytest.raises(errors.RevealLength) as length:
        c.client(k0).reveal_scores(task, 1, sheet.scores[:3], sheet.reasons[:3], sheet.salt)
    assert (length.value["expectedScoreBytes"], length.value["givenScoreBytes"]) == (8, 6)
    with pytest.raises(errors.NotCommitted):
        c.client(k2).reveal_sheet(task, 1, ScoreSheet.new([0, 0, 0, 0]))
    c.client(k0).reveal_sheet(task, 1, sheet)
    assert reader.revealed_scores(task, 1, v0).scores == sheet.scores
    with pytest.raises(errors.AlreadyRevealed):
        c.client(k0).reveal_sheet(task, 1, sheet)
    (reveal,) = reader.reveals(task, 1)
    assert (reveal.validator, reveal.scores, reveal.reasons) == (v0, sheet.scores, sheet.reasons)
    warp_past(reader, c.view(task, 1).reveal_end)
    with pytest.raises(errors.RevealClosed):
        c.client(k1).reveal_scores(task, 1, [1, 2, 3, 4], [0, 0, 0, 0], bytes(32))


def test_an_absent_validator_loses_500_and_earns_nothing(c: Consortium) -> None:
    """R3: a validator that does not commit, or commits and does not reveal, is absent."""
    reader = c.client()
    c.run_round(c.task_id, absent=[1])  # validator 1 does not commit
    (first,) = reader.finalizations(c.task_id, 1)
    v0, v1, v2 = first.validators
    assert (v0.absent, v1.absent, v2.absent) == (False, True, False)
    assert (v1.reputation, v1.reward, v1.distance) == (4_500, 0, 0)
    assert (v0.reputation, v2.reputation) == (5_200, 5_200)
    assert v0.reward > 0
    assert first.accepted == [0, 1, 2, 3]  # two reveals meet the quorum of 2
    c.run_round(c.task_id, unrevealed=[2])  # validator 2 commits and does not reveal
    (second,) = reader.finalizations(c.task_id, 2)
    assert [s.absent for s in second.validators] == [False, False, True]
    assert second.validators[2].reputation == 5_200 - 500
    assert reader.reputation(c.validators[2][0]).validator == 4_700
    # Below the quorum nothing is accepted and no contributor's reputation moves (the validators failed).
    before = [reader.reputation(a).contributor for a, _ in c.contributors]
    record = c.run_round(c.task_id, absent=[0], unrevealed=[1])
    (third,) = reader.finalizations(c.task_id, 3)
    assert record.accepted == third.accepted == []
    assert [s.reputation for s in third.contributors] == before
    assert all(s.reward == 0 for s in third.contributors)


def test_a_quorum_above_the_validators_is_refused(c: Consortium) -> None:
    """R6: a task no round of which could ever accept an update is not created."""
    with pytest.raises(errors.QuorumAboveValidators) as refused:
        c.create_task(quorum=4)
    assert (refused.value["quorum"], refused.value["validators"]) == (4, 3)
    with pytest.raises(errors.InvalidQuorum):
        c.create_task(quorum=0)


def test_anyone_carries_a_round_over_after_the_grace(c: Consortium) -> None:
    """R6 liveness: the aggregator cannot stall the consortium; until the grace ends only it finalizes."""
    task = c.task_id
    record = c.run_round(task, finalize=False)
    c.end_reveals(task, 1)
    contributor = c.client(c.contributors[3][1])
    view = c.view(task, 1)
    assert view.finalizable
    with pytest.raises(errors.GraceNotOver) as early:
        contributor.finalize_carry_over(task, 1)
    assert early.value["graceEnd"] == view.grace_end
    c.carry_over(record, by=c.contributors[3][1])
    (final,) = c.client().finalizations(task, 1)
    assert (final.by, final.carried_over, final.aggregate_digest) == (c.contributors[3][0], True, record.base)
    assert final.accepted == []
    assert all(s.reward == 0 for s in final.settlements)
    assert final.contributors[0].reputation == 5_000 + 500 * (SCORE_ONE // 2) // SCORE_ONE  # settled as usual
    reader = c.client()
    assert reader.current_round(task) == 2
    assert reader.base_digest(task, 2) == record.base
    with pytest.raises(errors.WrongRound):
        c.aggregator_client.finalize_round(task, 1, record.base)  # it happens exactly once


def test_a_role_change_after_the_first_task_waits_the_delay(
    c: Consortium, dev_keys: list[tuple[str, str]]
) -> None:
    """R6: admin powers are delayed and visible."""
    admin = c.admin_client
    newcomer = dev_keys[15][0]
    with pytest.raises(errors.RoleChangeDelayed) as delayed:
        admin.grant_role("validator", newcomer)
    assert delayed.value["account"] == newcomer
    scheduled = admin.schedule_role_change("validator", newcomer, True)
    (log,) = c.client().scheduled_role_changes(newcomer)
    assert (log.account, log.grant, log.execute_after) == (newcomer, True, scheduled.value)
    assert admin.pending_role_change("validator", newcomer, True) == scheduled.value
    with pytest.raises(errors.RoleChangePending):
        admin.schedule_role_change("validator", newcomer, True)
    anyone = c.client(c.contributors[0][1])
    with pytest.raises(errors.RoleChangeNotReady) as early:
        anyone.execute_role_change("validator", newcomer, True)
    assert early.value["executeAfter"] == scheduled.value
    advance_time(c.w3, 120)
    anyone.execute_role_change("validator", newcomer, True)
    assert c.client().has_role("validator", newcomer)
    assert c.client().account(newcomer).validator_reputation == 5_000
    assert admin.pending_role_change("validator", newcomer, True) == 0
    # The live round's set was frozen at its opening: the newcomer scores from the next round on.
    assert newcomer not in c.client().validator_set(c.task_id, 1)
    c.submit(c.task_id, 1)
    with pytest.raises(errors.NotInValidatorSet) as outsider:
        c.client(dev_keys[15][1]).commit_scores(c.task_id, 1, bytes(32))
    assert outsider.value.exit_code == ExitCode.NOT_MEMBER
    # A scheduled change the admin cancels never executes.
    admin.schedule_role_change("aggregator", newcomer, True)
    admin.cancel_role_change("aggregator", newcomer, True)
    advance_time(c.w3, 120)
    with pytest.raises(errors.RoleChangeNotScheduled):
        anyone.execute_role_change("aggregator", newcomer, True)
    # Renouncing one's own role stays immediate.
    c.client(dev_keys[15][1]).renounce_role("validator", newcomer)
    assert not c.client().has_role("validator", newcomer)


def test_validators_are_weighted_by_the_reputation_frozen_at_opening(c: Consortium) -> None:
    """R4: two validators that always reject lose against one honest validator only while their weight is the
    minority; here they are the majority, so their say wins, and the honest one is the one far from consensus."""
    record = c.run_round(c.task_id, scores=lambda v, i, r: SCORE_ONE if v == 0 else (REJECT, 1))
    assert record.consensus == [REJECT] * 4
    assert record.accepted == []
    (final,) = c.client().finalizations(c.task_id, 1)
    honest = final.validators[0]
    assert honest.distance == SCORE_ONE  # capped
    assert honest.reputation == 5_000 - 1_000
    assert final.validators[1].reputation == 5_200
    assert c.client().account(c.validators[1][0]).validator_reputation == 5_200
    assert c.client().reputation(c.contributors[0][0]).contributor == 5_000 - 1_500
    assert Role.VALIDATOR is final.validators[1].role


def test_a_window_ended_by_time_on_an_idle_chain_does_not_block_the_next_phase(
    c: Consortium, w3: Any
) -> None:
    """No block is mined after the commit window ends: the latest block still says "commit phase", but the
    transaction will be mined at the current time, so the reveal is estimated (and sent) at the pending block."""
    task = c.task_id
    c.submit(task, 1)
    sheet = c.commit(task, 1, c.validators[0][0], [1, 2, 3, 4])
    view = c.view(task, 1)
    now = c.client().clock(block="latest").ledger_now
    rpc(w3, "evm_increaseTime", view.commit_end - now + 5)  # time passes, nothing is mined
    assert c.client().round_view(task, 1, block="latest").phase is Phase.COMMIT
    c.client(c.validators[0][1]).reveal_sheet(task, 1, sheet)
    assert c.client().revealed_scores(task, 1, c.validators[0][0]).revealed

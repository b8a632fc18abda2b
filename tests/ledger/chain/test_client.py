"""LedgerClient against the real MeshLedger on anvil: typed reads and writes, EIP-712 relays, named reverts,
the event decoder, and construction from settings and a deployment record."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.chain import errors
from ledger.chain.artifacts import Artifact
from ledger.chain.client import (
    ChainIdMismatch,
    LedgerClient,
    LogsBehind,
    NoContract,
    ReadOnlyClient,
    TokenClient,
    connect_web3,
)
from ledger.chain.deploy import RecordMissing, RecordUnreadable
from ledger.chain.scores import REJECT, SCORE_ONE, InvalidScores
from ledger.chain.types import Phase, Role, Settlement, SubmissionInfo
from ledger.dev.services import AnvilProcess
from ledger.errors import ServiceUnavailable
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason
from ledger.settings import Settings
from tests.support.chain import Consortium, chain_snapshot, fake_digest, rpc, task_params

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def consortium(anvil: AnvilProcess, dev_keys: list[tuple[str, str]]) -> Iterator[Consortium]:
    """Token + ledger deployed once for the module, roles granted, one task with round 1 open."""
    w3 = connect_web3(anvil.rpc_url)
    with chain_snapshot(w3):
        c = Consortium.deploy(w3, dev_keys, validators=3, contributors=4, quorum=2)
        yield c


@pytest.fixture
def c(consortium: Consortium, w3: Any) -> Iterator[Consortium]:
    """The module's consortium, every change undone after the test (the `w3` fixture snapshots)."""
    consortium.reset_nonces()
    yield consortium
    consortium.reset_nonces()


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def test_every_contract_function_has_a_typed_method(contracts: dict[str, Artifact]) -> None:
    for item in contracts["MeshLedger"].abi:
        if item["type"] != "function":
            continue
        name = item["name"]
        if name.isupper() and not item["inputs"]:
            continue  # constants: LedgerClient.constant(name) / constants()
        assert hasattr(LedgerClient, _snake(name)), f"LedgerClient lacks {_snake(name)} for {name}"
    for item in contracts["MeshToken"].abi:
        if item["type"] == "function":
            assert hasattr(TokenClient, _snake(item["name"])), f"TokenClient lacks {_snake(item['name'])}"


def test_reads_return_typed_values(c: Consortium) -> None:
    client = c.client()
    task = client.task(c.task_id)
    assert task.current_round == 1
    assert task.params.quorum == 2
    assert client.task_count() == 1
    view = client.round_view(c.task_id, 1)
    assert view.phase is Phase.OPEN
    assert view.base_digest == task.params.genesis_digest
    assert client.base_digest(c.task_id, 1) == task.params.genesis_digest
    assert client.validators() == [a for a, _ in c.validators]
    assert client.contributor_count() == 4
    account = client.account(c.contributors[0][0])
    assert account.contributor
    assert not account.validator
    assert account.contributor_reputation == client.constant("REPUTATION_START")
    assert client.has_role("validator", c.validators[0][0])
    assert client.contributor_role() == bytes.fromhex(client.constants()["CONTRIBUTOR_ROLE"].hex())
    assert not client.paused()
    assert account.accrued == 0
    assert view.validator_count == 3
    assert (view.commit_count, view.reveal_count) == (0, 0)
    assert view.opened_at < view.submission_end < view.commit_end < view.reveal_end < view.grace_end
    assert client.clock().paused_at == 0
    assert client.clock().ledger_now >= view.opened_at
    assert client.role_delay() == 60
    token = client.token_client()
    assert token.minter() == client.address
    assert token.symbol() == "MESH"


def _reject_update_1(_v: int, i: int, _r: int) -> int | tuple[int, int]:
    return (REJECT, int(Reason.NON_FINITE)) if i == 1 else SCORE_ONE // 2 + 100 * i


def test_a_round_through_the_client(c: Consortium) -> None:
    task_id = c.task_id
    record = c.run_round(task_id, scores=_reject_update_1)
    reader = c.client()
    assert record.accepted == [0, 2, 3]
    assert record.consensus == [5_000, REJECT, 5_200, 5_300]
    assert reader.current_round(task_id) == 2
    assert reader.aggregate_digest(task_id, 1) == record.aggregate
    assert reader.round_view(task_id, 1).phase is Phase.FINALIZED
    assert reader.base_digest(task_id, 2) == record.aggregate
    # the rejected contributor lost reputation, an accepted one gained; rewards accrued, nothing minted yet
    start = reader.constant("REPUTATION_START")
    assert reader.reputation(c.contributors[1][0]).contributor < start
    assert reader.reputation(c.contributors[0][0]).contributor > start
    accrued = reader.account(c.contributors[0][0]).accrued
    assert accrued > 0
    token = reader.token_client()
    assert token.balance_of(c.contributors[0][0]) == 0
    claimed = c.client(c.contributors[0][1]).claim_rewards()
    assert claimed.value == accrued
    assert token.balance_of(c.contributors[0][0]) == accrued
    assert reader.account(c.contributors[0][0]).accrued == 0
    (claim,) = reader.reward_claims(c.contributors[0][0])
    assert (claim.account, claim.amount, claim.tx_hash) == (c.contributors[0][0], accrued, claimed.tx_hash)
    with pytest.raises(errors.NothingToClaim):
        c.client(c.contributors[0][1]).claim_rewards()


def test_submit_update_returns_the_index_and_its_event(c: Consortium) -> None:
    task_id = c.task_id
    first = c.client(c.contributors[0][1]).submit_update(task_id, 1, fake_digest("a"), 10)
    second = c.client(c.contributors[1][1]).submit_update(task_id, 1, fake_digest("b"), 20)
    assert (first.value, second.value) == (0, 1)
    assert first.tx_hash.startswith("0x")
    assert first.gas_used > 0
    (event,) = [e for e in second.events if e.name == "UpdateSubmitted"]
    assert event.args["digest"] == fake_digest("b")
    assert event.args["contributor"] == c.contributors[1][0]
    status = c.client().submission_of(task_id, 1, c.contributors[1][0])
    assert (status.submitted, status.index, status.num_samples) == (True, 1, 20)
    info = c.client().submission(task_id, 1, 0)
    assert (info.contributor, info.num_samples) == (c.contributors[0][0], 10)


def test_the_eip712_digest_matches_the_contract(c: Consortium) -> None:
    client = c.client()
    domain = client.eip712_domain()
    assert (domain.name, domain.version, domain.verifying_contract) == ("MeshLedger", "2", client.address)
    args = (1, 3, fake_digest("x"), 77)
    assert client.submission_hash(*args, nonce=5, deadline=2**40) == client.hash_submission(
        *args, nonce=5, deadline=2**40
    )


def test_relayed_and_batch_relayed_submissions(c: Consortium) -> None:
    task_id = c.task_id
    relayer = c.client(c.aggregator[1])
    one = relayer.sign_submission(c.contributors[0][1], task_id, 1, fake_digest("r0"), 5)
    assert relayer.submit_update_for(task_id, 1, one).value == 0
    batch = [
        relayer.sign_submission(key, task_id, 1, fake_digest("r", i), 5 + i)
        for i, (_, key) in enumerate(c.contributors[1:], start=1)
    ]
    result = relayer.submit_updates_for(task_id, 1, batch)
    assert result.value == 1
    submitted = [e for e in result.events if e.name == "UpdateSubmitted"]
    assert [e.args["relayer"] for e in submitted] == [c.aggregator[0]] * 3
    assert any(e.name == "SubmissionsClosed" for e in result.events)
    assert relayer.nonces(c.contributors[0][0]) == 1


def test_signature_problems_raise_named_errors(c: Consortium) -> None:
    task_id = c.task_id
    relayer = c.client(c.aggregator[1])
    contributor, key = c.contributors[0]
    good = relayer.sign_submission(key, task_id, 1, fake_digest("s"), 5)
    forged = type(good)(**{**good.__dict__, "num_samples": 6})
    with pytest.raises(errors.InvalidSignature) as bad_sig:
        relayer.submit_update_for(task_id, 1, forged)
    assert bad_sig.value["contributor"] == contributor
    stale = relayer.sign_submission(key, task_id, 1, fake_digest("s"), 5, nonce=3)
    with pytest.raises(errors.InvalidNonce) as bad_nonce:
        relayer.submit_update_for(task_id, 1, stale)
    assert (bad_nonce.value["expected"], bad_nonce.value["given"]) == (0, 3)
    assert "next nonce is 0" in (bad_nonce.value.hint or "")
    expired = relayer.sign_submission(key, task_id, 1, fake_digest("s"), 5, deadline=1)
    with pytest.raises(errors.SignatureExpired):
        relayer.submit_update_for(task_id, 1, expired)
    with pytest.raises(errors.EmptyBatch):
        relayer.submit_updates_for(task_id, 1, [])


def test_reverts_of_reads_and_writes_are_named(c: Consortium) -> None:
    task_id = c.task_id
    reader = c.client()
    with pytest.raises(errors.UnknownTask) as unknown:
        reader.task(99)
    assert unknown.value.exit_code == ExitCode.NOT_FOUND
    with pytest.raises(errors.UnknownRound):
        reader.round_view(task_id, 7)
    validator = c.client(c.validators[0][1])
    with pytest.raises(errors.NotContributor) as not_member:
        validator.submit_update(task_id, 1, fake_digest("v"), 1)
    assert not_member.value.exit_code == ExitCode.NOT_MEMBER
    contributor = c.client(c.contributors[0][1])
    with pytest.raises(errors.WrongRound) as wrong:
        contributor.submit_update(task_id, 2, fake_digest("w"), 1)
    assert wrong.value["currentRound"] == 1
    contributor.submit_update(task_id, 1, fake_digest("once"), 1)
    with pytest.raises(errors.AlreadySubmitted):
        contributor.submit_update(task_id, 1, fake_digest("twice"), 1)
    with pytest.raises(errors.CommitNotOpen) as early:
        validator.commit_scores(task_id, 1, bytes(32))
    assert early.value["submissionEnd"] == reader.round_view(task_id, 1).submission_end
    assert isinstance(early.value, errors.TooEarlyRevert)
    with pytest.raises(InvalidScores, match="hard reject"):  # refused before anything is sent
        validator.reveal_scores(task_id, 1, [0], [int(Reason.NON_FINITE)], bytes(32))
    with pytest.raises(errors.AccessControlUnauthorizedAccount):
        contributor.schedule_role_change("validator", c.contributors[1][0], True)
    with pytest.raises(errors.FinalizeTooEarly):
        c.aggregator_client.finalize_round(task_id, 1, fake_digest("agg"))
    with pytest.raises(errors.NotAggregator):
        contributor.finalize_round(task_id, 1, fake_digest("agg"))


def test_pause_stops_submissions(c: Consortium) -> None:
    admin = c.admin_client
    admin.pause()
    assert admin.paused()
    assert admin.clock().paused
    with pytest.raises(errors.LedgerPaused) as paused:
        c.client(c.contributors[0][1]).submit_update(c.task_id, 1, fake_digest("p"), 1)
    assert paused.value["lapsesAt"] == admin.clock().paused_at + 3 * 86_400
    admin.unpause()
    assert not admin.paused()
    with pytest.raises(errors.NotPaused):
        admin.unpause()
    with pytest.raises(errors.PauseCooldown):
        admin.pause()  # another pause only MAX_PAUSE after the last one ended


def test_tally_validator_set_and_revealed_scores(c: Consortium) -> None:
    task_id = c.task_id
    record = c.run_round(
        task_id,
        finalize=False,
        unrevealed=[2],
        scores=lambda v, i, r: SCORE_ONE if v == 0 or i == 0 else (REJECT, int(Reason.NON_FINITE)),
    )
    reader = c.client()
    vset = reader.validator_set(task_id, 1)
    assert vset.members == tuple(a for a, _ in c.validators)
    assert vset.weights == (5_000, 5_000, 5_000)
    assert vset.committers == list(vset.members)
    assert vset.revealers == list(vset.members[:2])
    assert vset.has_committed(c.validators[2][0])
    assert not vset.has_revealed(c.validators[2][0])
    assert c.contributors[0][0] not in vset
    tally = reader.tally(task_id, 1)
    # update 0: 10000, 10000, (absent) 0 -> 10000; others: 10000, -10000, 0 -> 0 (the lower median)
    assert tally.consensus == (SCORE_ONE, 0, 0, 0)
    assert tally.accepted == [0]
    mine = reader.revealed_scores(task_id, 1, c.validators[1][0])
    assert (mine.revealed, mine.scores) == (True, (SCORE_ONE, REJECT, REJECT, REJECT))
    assert reader.revealed_scores(task_id, 1, c.validators[2][0]).revealed is False
    commits = reader.commitments(task_id, 1)
    assert [x.validator for x in commits] == list(vset.members)
    sheet = record.sheets[c.validators[0][0]]
    assert commits[0].commitment == reader.score_commitment(
        task_id, 1, c.validators[0][0], sheet.scores, sheet.reasons, salt=sheet.salt
    )
    reveals = reader.reveals(task_id, 1)
    assert [x.validator for x in reveals] == list(vset.members[:2])
    assert reveals[1].reasons == (0, int(Reason.NON_FINITE), int(Reason.NON_FINITE), int(Reason.NON_FINITE))
    # A committer has not revealed: the reveal window runs to its end.
    assert reader.round_view(task_id, 1).phase is Phase.REVEAL
    c.end_reveals(task_id, 1)
    view = reader.round_view(task_id, 1)
    assert (view.phase, view.commit_count, view.reveal_count, view.finalizable) == (Phase.CLOSED, 3, 2, True)


def test_submissions_and_finalizations_come_from_the_logs_as_typed_records(c: Consortium) -> None:
    task_id = c.task_id  # type: ignore[attr-defined]
    reader = c.client()
    with pytest.raises(LogsBehind, match="round 2"):
        reader.submissions(task_id, 2)  # round 2 has not opened: no RoundOpened log
    record = c.run_round(
        task_id,
        relayed=True,
        scores=lambda v, i, r: 4_000 if i != 2 else (REJECT, int(Reason.TOO_LARGE)),
    )
    subs = reader.submissions(task_id, 1)
    assert [s.index for s in subs] == [0, 1, 2, 3]
    assert [s.digest for s in subs] == record.digests
    assert [s.contributor for s in subs] == record.contributors
    assert [s.num_samples for s in subs] == record.num_samples
    assert {s.relayer for s in subs} == {c.aggregator[0]}
    assert subs[0].info == SubmissionInfo(record.contributors[0], record.num_samples[0])
    assert reader.submissions(task_id, 2) == []  # opened by the finalization, nothing submitted yet

    (final,) = reader.finalizations(task_id, 1)
    assert (final.task_id, final.round, final.by, final.carried_over) == (task_id, 1, c.aggregator[0], False)
    assert final.aggregate_digest == record.aggregate
    assert final.accepted == record.accepted == [0, 1, 3]
    assert final.consensus == [4_000, 4_000, REJECT, 4_000]
    assert [s.role for s in final.settlements] == [Role.CONTRIBUTOR] * 4 + [Role.VALIDATOR] * 3
    assert final.settlements[0] == Settlement(
        c.contributors[0][0], Role.CONTRIBUTOR, reader.reputation(c.contributors[0][0]).contributor,
        reader.account(c.contributors[0][0]).accrued, 4_000, 0, False,
    )  # fmt: skip
    assert [(s.distance, s.absent) for s in final.validators] == [(0, False)] * 3
    (opened,) = reader.round_openings(task_id, 2)
    assert (opened.by, opened.base_digest) == (c.aggregator[0], record.aggregate)
    assert opened.validators == tuple(a for a, _ in c.validators)
    assert opened.weights == (5_200, 5_200, 5_200)  # frozen after round 1 raised them
    assert reader.finalizations(task_id) == [final]
    assert reader.finalizations(task_id, 2) == []
    assert reader.finalizations(task_id, 1, from_block=final.block_number + 1) == []


def test_views_can_be_read_at_a_past_or_the_pending_block(c: Consortium, w3: Any) -> None:
    task_id = c.task_id  # type: ignore[attr-defined]
    reader = c.client()
    before = reader.block_number()
    c.run_round(task_id)
    assert reader.current_round(task_id) == 2
    assert reader.current_round(task_id, block=before) == 1
    assert reader.round_view(task_id, 1, block=before).phase is Phase.OPEN
    assert reader.round_view(task_id, 1).phase is Phase.FINALIZED
    # A transaction the node holds but has not mined: only the pending block sees it.
    address, key = c.contributors[0]
    sender = c.client(key).sender
    assert sender is not None
    rpc(w3, "evm_setAutomine", False)
    try:
        sender.submit(
            c.client(key).contract.functions.submitUpdate(task_id, 2, fake_digest("p"), 3), gas=300_000
        )
        assert not reader.submission_of(task_id, 2, address).submitted
        assert reader.submission_of(task_id, 2, address, block="pending").submitted
        assert reader.round_view(task_id, 2, block="pending").submission_count == 1
    finally:
        rpc(w3, "evm_mine")
        rpc(w3, "evm_setAutomine", True)
    assert reader.submission_of(task_id, 2, address).submitted


def test_a_transaction_reverted_by_an_earlier_one_in_its_block_is_named(c: Consortium, w3: Any) -> None:
    """Both pass their estimate; mined in one block the second reverts. The receipt has no revert data: the
    sender replays the transaction on its block's state and raises the named error, not "out of gas?"."""
    task_id = c.task_id  # type: ignore[attr-defined]
    contributor = c.client(c.contributors[0][1])
    sender = contributor.sender
    assert sender is not None
    first = contributor.contract.functions.submitUpdate(task_id, 1, fake_digest("first"), 1)
    second = contributor.contract.functions.submitUpdate(task_id, 1, fake_digest("second"), 1)
    rpc(w3, "evm_setAutomine", False)
    try:
        hashes = [sender.submit(first, gas=300_000), sender.submit(second, gas=300_000)]
        rpc(w3, "evm_mine")
    finally:
        rpc(w3, "evm_setAutomine", True)
    assert sender.wait(hashes[0])["status"] == 1
    with pytest.raises(errors.AlreadySubmitted) as info:
        sender.wait(hashes[1])
    assert info.value["contributor"] == c.contributors[0][0]
    assert "out of gas" not in str(info.value)
    assert (
        w3.eth.get_transaction_receipt(hashes[1])["blockNumber"]
        == w3.eth.get_transaction_receipt(hashes[0])["blockNumber"]
    )


def test_events_decode_every_ledger_event_in_order(c: Consortium) -> None:
    task_id = c.task_id
    c.run_round(task_id, relayed=True)
    events = c.client().events(c.record.deploy_block)
    names = [e.name for e in events]
    assert names[:1] == ["RoleGranted"]  # the constructor's admin grant
    for expected in (
        "TaskCreated",
        "RoundOpened",
        "UpdateSubmitted",
        "SubmissionsClosed",
        "ScoresCommitted",
        "ScoresRevealed",
    ):
        assert expected in names
    assert {"RoundFinalized", "ReputationInitialized"} <= set(names)
    assert names.index("RoundFinalized") < len(names) - 1
    assert names[-1] == "RoundOpened"
    positions = [(e.block_number, e.log_index) for e in events]
    assert positions == sorted(positions)
    created = next(e for e in events if e.name == "TaskCreated")
    assert created.args["params"]["quorum"] == 2
    final = next(e for e in events if e.name == "RoundFinalized")
    settlements = final.args["settlements"]
    assert [s["role"] for s in settlements] == [int(Role.CONTRIBUTOR)] * 4 + [int(Role.VALIDATOR)] * 3
    assert [s["account"] for s in settlements[:4]] == [a for a, _ in c.contributors]
    assert sum(s["reward"] for s in settlements) > 0
    only = c.client().events(c.record.deploy_block, names=["ScoresRevealed"], max_range=3)
    assert [e.name for e in only] == ["ScoresRevealed"] * 3
    assert len(only[0].args["scores"]) == 2 * 4


def test_a_read_only_client_refuses_to_send(c: Consortium) -> None:
    with pytest.raises(ReadOnlyClient, match="no signing key"):
        c.client().create_task(task_params(quorum=1))
    with pytest.raises(ReadOnlyClient, match="claim rewards"):
        c.client().claim_rewards()


def test_create_task_returns_its_id(c: Consortium) -> None:
    params = task_params(
        rule=2, quorum=1, commit_window=11, reveal_window=12, finalize_grace=13, max_samples=99
    )
    result = c.admin_client.create_task(params)
    assert result.value == 2
    assert c.client().task(2).params == params
    (created,) = [e for e in result.events if e.name == "TaskCreated"]
    assert type(params).from_event(created.args["params"]) == params
    with pytest.raises(errors.InvalidRule):
        c.admin_client.create_task(task_params(rule=1, quorum=1))
    with pytest.raises(errors.InvalidWindows):
        c.admin_client.create_task(task_params(reveal_window=0))
    with pytest.raises(errors.InvalidMaxSamples) as cap:
        c.admin_client.create_task(task_params(max_samples=2**32 + 1))
    assert cap.value["cap"] == 2**32


def _settings(tmp_path: Path, url: str, **extra: Any) -> Settings:
    return Settings(data_dir=tmp_path, chain_rpc_url=url, **extra)


def test_from_settings_reads_the_deployment_record(
    c: Consortium, anvil: AnvilProcess, tmp_path: Path
) -> None:
    c.record.write(tmp_path / "deployment.json")
    key = c.contributors[0][1]
    client = LedgerClient.from_settings(_settings(tmp_path, anvil.rpc_url), key=key)
    assert client.address == c.record.ledger
    assert client.sender_address == c.contributors[0][0]
    assert client.task(1).current_round == 1
    assert client.deployment == c.record


def test_from_settings_refuses_bad_records_and_chains(
    c: Consortium, anvil: AnvilProcess, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, anvil.rpc_url)
    with pytest.raises(RecordMissing) as missing:
        LedgerClient.from_settings(settings)
    assert missing.value.exit_code == ExitCode.NOT_FOUND
    assert str(tmp_path / "deployment.json") in missing.value.message
    record = {**c.record.to_dict(), "chain_id": 1}
    (tmp_path / "deployment.json").write_text(json.dumps(record))
    with pytest.raises(ChainIdMismatch) as mismatch:
        LedgerClient.from_settings(settings)
    assert mismatch.value.exit_code == ExitCode.CONFIG
    record = {**c.record.to_dict(), "ledger": "0x" + "12" * 20}
    (tmp_path / "deployment.json").write_text(json.dumps(record))
    with pytest.raises(NoContract):
        LedgerClient.from_settings(settings)
    (tmp_path / "deployment.json").write_text("{not json")
    with pytest.raises(RecordUnreadable, match="unreadable") as broken:
        LedgerClient.from_settings(settings)
    assert broken.value.exit_code == ExitCode.CONFIG


def test_an_unreachable_rpc_is_service_unavailable(c: Consortium, tmp_path: Path) -> None:
    c.record.write(tmp_path / "deployment.json")
    with pytest.raises(ServiceUnavailable) as info:
        LedgerClient.from_settings(_settings(tmp_path, "http://127.0.0.1:9"))
    assert info.value.exit_code == ExitCode.UNAVAILABLE

"""Deploying token + ledger for a consortium on a real anvil, and the deployment record."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.chain.artifacts import load_artifact
from ledger.chain.consortium import Consortium, TaskConfig
from ledger.chain.deploy import DeployFailed, DeploymentRecord, RecordMissing, RecordUnreadable, deploy
from ledger.exit_codes import ExitCode

ADMIN_ROLE = b"\x00" * 32


def consortium(keys: list[tuple[str, str]], *, admin: int = 0) -> Consortium:
    return Consortium(
        admin=keys[admin][0],
        aggregators=(keys[1][0],),
        validators=tuple(a for a, _ in keys[2:5]),
        contributors=tuple(a for a, _ in keys[5:8]),
        task=TaskConfig(
            spec_digest=hashlib.sha256(b"spec").digest(),
            genesis_digest=hashlib.sha256(b"genesis").digest(),
            rule=1,
            rule_param=(2_500 << 16) | 1_000,
            quorum=2,
            submission_window_s=600,
            commit_window_s=300,
            reveal_window_s=200,
            finalize_grace_s=900,
            max_samples=10_000,
            reward_per_round=10**21,
        ),
        role_delay_s=3_600,
    )


def contracts(w3: Any, record: DeploymentRecord) -> tuple[Any, Any]:
    ledger = w3.eth.contract(address=record.ledger, abi=load_artifact("MeshLedger").abi)
    token = w3.eth.contract(address=record.token, abi=load_artifact("MeshToken").abi)
    return ledger, token


@pytest.mark.anvil
def test_deploy_grants_roles_creates_the_task_and_names_the_minter(
    w3: Any, dev_keys: list[tuple[str, str]]
) -> None:
    c = consortium(dev_keys)
    logged: list[str] = []
    record = deploy(w3, dev_keys[0][1], c, log=logged.append)
    ledger, token = contracts(w3, record)

    assert record.chain_id == w3.eth.chain_id
    assert record.task_id == 1
    assert record.deployer == dev_keys[0][0]
    assert w3.eth.get_code(record.ledger)
    assert w3.eth.get_code(record.token)
    assert token.functions.minter().call() == record.ledger
    assert ledger.functions.token().call() == record.token
    roles = ledger.functions
    assert roles.hasRole(ADMIN_ROLE, c.admin).call()
    assert roles.hasRole(roles.AGGREGATOR_ROLE().call(), c.aggregators[0]).call()
    assert all(roles.hasRole(roles.VALIDATOR_ROLE().call(), v).call() for v in c.validators)
    assert all(roles.hasRole(roles.CONTRIBUTOR_ROLE().call(), a).call() for a in c.contributors)
    assert roles.validators().call() == list(c.validators)
    params, current_round = ledger.functions.task(1).call()
    assert tuple(params) == c.task.to_abi()
    assert current_round == 1
    # The index starts at the ledger's deployment block: the constructor's RoleGranted is in it.
    assert w3.eth.get_block(record.deploy_block)["transactions"]
    assert ledger.events.RoleGranted().get_logs(from_block=record.deploy_block, to_block=record.deploy_block)
    assert set(record.transactions) >= {
        "deploy MeshToken",
        "deploy RoundSettlement",
        "deploy MeshLedger",
        "create the task",
    }
    assert ledger.functions.roleDelay().call() == 3_600
    # The ledger calls the library it was linked to: the one this deployment created.
    assert list(record.libraries) == ["RoundSettlement"]
    assert w3.eth.get_code(record.libraries["RoundSettlement"])
    assert record.libraries["RoundSettlement"][2:].lower() in w3.eth.get_code(record.ledger).hex()
    # The round's validator set was frozen when the task was created, after every grant.
    members, weights, _, _ = ledger.functions.validatorSet(1, 1).call()
    assert members == list(c.validators)
    assert weights == [5_000] * 3
    assert record.artifacts == {
        "MeshLedger": load_artifact("MeshLedger").sources_hash,
        "MeshToken": load_artifact("MeshToken").sources_hash,
        "Revocations": load_artifact("Revocations").sources_hash,
    }
    # R8: the Revocations contract reads this ledger, and the record names it (read back as written)
    revocations = w3.eth.contract(address=record.revocations, abi=load_artifact("Revocations").abi)
    assert revocations.functions.ledger().call() == record.ledger
    assert type(record).from_dict(record.to_dict()).revocations == record.revocations
    assert any(line.startswith("deploy MeshLedger: block") for line in logged)


@pytest.mark.anvil
def test_deployer_other_than_admin_hands_the_admin_role_over(
    w3: Any, dev_keys: list[tuple[str, str]]
) -> None:
    c = consortium(dev_keys, admin=9)
    record = deploy(w3, dev_keys[0][1], c)
    ledger, _ = contracts(w3, record)
    assert ledger.functions.hasRole(ADMIN_ROLE, dev_keys[9][0]).call()
    assert not ledger.functions.hasRole(ADMIN_ROLE, dev_keys[0][0]).call()
    assert "renounce the deployer's admin role" in record.transactions
    # The admin was granted before the task existed: no role change was left pending.
    assert ledger.functions.pendingRoleChange(ADMIN_ROLE, dev_keys[9][0], True).call() == 0


@pytest.mark.anvil
def test_deploy_without_funds_fails_at_the_first_step(w3: Any, dev_keys: list[tuple[str, str]]) -> None:
    poor_key = "0x" + hashlib.sha256(b"an account with no ether").hexdigest()
    with pytest.raises(DeployFailed) as info:
        deploy(w3, poor_key, consortium(dev_keys))
    assert info.value.step == "deploy MeshToken"


@pytest.mark.anvil
def test_record_round_trips_through_its_file(
    w3: Any, dev_keys: list[tuple[str, str]], tmp_path: Path
) -> None:
    record = deploy(w3, dev_keys[0][1], consortium(dev_keys))
    path = tmp_path / "data" / "deployment.json"
    record.write(path)
    assert DeploymentRecord.read(path) == record
    data = json.loads(path.read_text())
    # The keys the chain client, the index and the auditors read.
    assert {"chain_id", "ledger", "token", "deploy_block", "task_id", "consortium"} <= set(data)
    assert data["consortium"]["task"]["rule"] == "trimmed-mean"
    assert not list(path.parent.glob("*.tmp"))


def test_missing_or_broken_record_is_named(tmp_path: Path) -> None:
    with pytest.raises(RecordMissing) as missing:
        DeploymentRecord.read(tmp_path / "deployment.json")
    assert missing.value.exit_code == ExitCode.NOT_FOUND
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(RecordUnreadable, match="unreadable") as unreadable:
        DeploymentRecord.read(broken)
    assert unreadable.value.exit_code == ExitCode.CONFIG
    assert str(broken) in unreadable.value.message


WRITTEN: dict[str, Any] = {
    "format": 2,
    "chain_id": 31337,
    "ledger": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    "token": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "deploy_block": 2,
    "task_id": 1,
    "deployer": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "consortium": {},
    "transactions": {},
    "artifacts": {},
    "libraries": {"RoundSettlement": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"},
}


def test_a_record_is_read_exactly_as_it_is_written(tmp_path: Path) -> None:
    record = DeploymentRecord.from_dict(WRITTEN, tmp_path / "deployment.json")
    assert record.to_dict() == WRITTEN
    path = record.write(tmp_path / "deployment.json")
    assert DeploymentRecord.read(path) == record
    # Addresses written in lower case (by hand) come back checksummed, as the clients use them.
    lower = DeploymentRecord.from_dict({**WRITTEN, "ledger": WRITTEN["ledger"].lower()})
    assert lower.ledger == WRITTEN["ledger"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        # Spellings other tools used for the block: not the record `meshprov chain deploy` writes.
        ({"deploy_block": None, "block": 2}, "`deploy_block` is missing"),
        ({"deploy_block": None, "start_block": 2}, "`deploy_block` is missing"),
        ({"ledger": None, "ledger_address": WRITTEN["ledger"]}, "`ledger` is missing"),
        ({"task_id": None, "chain_id": None}, "`chain_id`, `task_id` is missing"),
        ({"format": None}, "`format` is None, not 2"),
        ({"format": 1}, "`format` is 1, not 2"),  # a protocol-v1 ledger
        ({"chain_id": "31337"}, "`chain_id` must be a non-negative integer"),
        ({"deploy_block": True}, "`deploy_block` must be a non-negative integer"),
        ({"token": "0x1234"}, "`token` must be an address"),
        ({"consortium": []}, "`consortium` must be a JSON object"),
        ({"revocations": "0x12"}, "`revocations` must be an address or null"),
    ],
)
def test_anything_but_the_written_format_is_refused_naming_the_file_and_field(
    tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    data = {k: v for k, v in {**WRITTEN, **change}.items() if v is not None}  # None: the field is left out
    path = tmp_path / "deployment.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordUnreadable) as caught:
        DeploymentRecord.read(path)
    assert named in caught.value.message
    assert str(path) in caught.value.message
    assert caught.value.exit_code == ExitCode.CONFIG

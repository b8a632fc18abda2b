"""`lab.consortium`: the one consortium setup (the dev layout, the [task] table, the real deployment and its record)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lab.consortium import DEV_ROLE_DELAY_S, RoleKeys, deploy_consortium, task_table
from ledger.aggregation import AggregationSpec
from ledger.chain.consortium import ConsortiumError, parse_consortium
from ledger.chain.deploy import DeploymentRecord
from ledger.chain.types import Phase
from ledger.errors import ConfigError
from tests.support.chain import fake_digest


def test_the_dev_layout_is_admin_aggregator_validators_contributors(dev_keys: list[tuple[str, str]]) -> None:
    keys = RoleKeys.laid_out(dev_keys, validators=2, contributors=3)
    assert keys.admin == dev_keys[0]
    assert keys.aggregator == dev_keys[1]
    assert keys.validators == tuple(dev_keys[2:4])
    assert keys.contributors == tuple(dev_keys[4:7])
    assert RoleKeys.dev(2, 3) == keys  # anvil's accounts of the settings' mnemonic
    with pytest.raises(ConfigError, match="need 22 accounts"):
        RoleKeys.laid_out(dev_keys, validators=4, contributors=16)


def test_the_task_table_is_what_a_consortium_file_holds() -> None:
    table = task_table(
        spec=fake_digest("spec"),
        genesis="QmaHo3t3e8tj52C7FwUgRDU8m9HJqEBgWUkgJUzqtM8rSn",
        quorum=1,
        aggregation=AggregationSpec.trimmed_mean("0.25"),
        reward_per_round=1,
    )
    assert table["spec"] == "0x" + fake_digest("spec").hex()
    assert table["reward_per_round"] == "0.000000000000000001"  # exact: one base unit
    assert (table["rule"], table["trim_bps"]) == ("trimmed-mean", 2500)
    keys = RoleKeys.dev(1, 1)
    task = parse_consortium(keys.document(table)).task
    # Through the consortium file's parser, the rule is packed exactly as the aggregators decode it.
    assert AggregationSpec.decode(task.rule, task.rule_param) == AggregationSpec.trimmed_mean("0.25")
    assert task.reward_per_round == 1
    krum = task_table(
        spec="0x" + "11" * 32, genesis="0x" + "22" * 32, quorum=1, aggregation=AggregationSpec.multi_krum(2)
    )
    assert (krum["rule"], krum["krum_f"]) == ("multi-krum", 2)
    with pytest.raises(ConfigError, match="no consortium-file form"):
        task_table(
            spec="0x" + "11" * 32,
            genesis="0x" + "22" * 32,
            quorum=1,
            aggregation=AggregationSpec.median(clip=2.5),
        )


def test_the_task_table_carries_the_v2_windows_and_refuses_a_vote_window() -> None:
    table = task_table(
        spec="0x" + "11" * 32,
        genesis="0x" + "22" * 32,
        quorum=1,
        commit_window_s=40,
        reveal_window_s=50,
        finalize_grace_s=60,
        max_samples=70,
    )
    keys = RoleKeys.dev(1, 1)
    consortium = parse_consortium(keys.document(table))
    task = consortium.task
    assert (task.commit_window_s, task.reveal_window_s, task.finalize_grace_s, task.max_samples) == (
        40,
        50,
        60,
        70,
    )
    assert consortium.role_delay_s == DEV_ROLE_DELAY_S > 0  # the lab goes through the delay a consortium has
    assert parse_consortium(keys.document(table, role_delay_s=5)).role_delay_s == 5
    with pytest.raises(ConfigError, match="no parameter 'vote_window_s'") as refused:
        task_table(spec="0x" + "11" * 32, genesis="0x" + "22" * 32, quorum=1, vote_window_s=300)
    assert "commit_window_s and reveal_window_s" in (refused.value.hint or "")


@pytest.mark.anvil
def test_deploy_consortium_deploys_through_the_real_deployment_and_writes_its_record(
    w3: Any, dev_keys: list[tuple[str, str]], tmp_path: Path
) -> None:
    keys = RoleKeys.laid_out(dev_keys, validators=2, contributors=2)
    table = task_table(
        spec=fake_digest("spec"), genesis=fake_digest("genesis"), quorum=2, reward_per_round=10**18
    )
    net = deploy_consortium(w3, keys, table, record_path=tmp_path / "deployment.json")

    assert DeploymentRecord.read(tmp_path / "deployment.json") == net.record
    assert net.record.consortium == parse_consortium(net.document).to_json()
    assert net.record.deployer == keys.admin[0]
    assert {
        "deploy MeshToken",
        "deploy RoundSettlement",
        "deploy MeshLedger",
        "set the ledger as minter",
        "create the task",
    } <= set(net.record.transactions)
    reader = net.client()
    assert reader is net.client()  # one client per key
    assert reader.deployment == net.record
    assert reader.has_role("aggregator", keys.aggregator[0])
    assert all(reader.has_role("validator", a) for a, _ in keys.validators)
    assert all(reader.has_role("contributor", a) for a, _ in keys.contributors)
    assert reader.token_client().minter() == net.ledger
    task = reader.task(net.task_id)
    assert (task.params.quorum, task.params.reward_per_round) == (2, 10**18)
    assert reader.round_view(net.task_id, 1).phase is Phase.OPEN
    assert reader.role_delay() == DEV_ROLE_DELAY_S
    assert reader.validator_set(net.task_id, 1).members == tuple(a for a, _ in keys.validators)
    # A member's client sends as that member.
    address, key = keys.contributors[0]
    assert net.client(key).submit_update(net.task_id, 1, fake_digest("u"), 10).value == 0
    assert reader.submission_of(net.task_id, 1, address).submitted


@pytest.mark.anvil
def test_a_consortium_the_deployment_would_refuse_sends_nothing(
    w3: Any, dev_keys: list[tuple[str, str]], tmp_path: Path
) -> None:
    keys = RoleKeys.laid_out(dev_keys, validators=1, contributors=1)
    before = w3.eth.block_number
    with pytest.raises(ConsortiumError, match="only 1 validators") as caught:
        deploy_consortium(
            w3,
            keys,
            task_table(spec=fake_digest("s"), genesis=fake_digest("g"), quorum=2),
            record_path=tmp_path / "deployment.json",
            source="the test's consortium",
        )
    assert "the test's consortium" in caught.value.message
    assert w3.eth.block_number == before
    assert not (tmp_path / "deployment.json").exists()

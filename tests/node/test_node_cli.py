"""`meshprov node run | status | genesis` as a member runs them: real processes, named exit codes, JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.content import digest_to_cid
from ledger.content.local_store import LocalStore
from ledger.exit_codes import ExitCode
from node.journal import Journal, RoundRecord
from tests.support import REPO
from tests.support.chain import fake_digest
from tests.support.node import NodeNet


def cli(net: NodeNet | None, *args: str, key: str | None = None, timeout: float = 90, **env: str) -> Any:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MESHPROV_")}
    if net is not None:
        environ.update(
            {
                "MESHPROV_DATA_DIR": str(net.root / "data"),
                "MESHPROV_CHAIN_RPC_URL": net.url,
                "MESHPROV_DEPLOYMENT_FILE": str(net.deployment_file),
                "MESHPROV_STORE_DIR": str(net.root / "blocks"),
                "MESHPROV_TASK_ID": str(net.task_id),
            }
        )
    if key is not None:
        environ["MESHPROV_PRIVATE_KEY"] = key
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "ledger.cli.app", *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def make_net(
    anvil: Any,
    tmp_path: Path,
    dev_keys: list[tuple[str, str]],
) -> Iterator[Any]:
    nets: list[NodeNet] = []

    def make(**kwargs: Any) -> NodeNet:
        net = NodeNet.create(anvil.url, tmp_path, dev_keys, **kwargs)
        nets.append(net)
        return net

    yield make
    for net in nets:
        net.close()


@pytest.mark.anvil
def test_a_key_that_is_not_a_member_exits_9_naming_the_address(
    make_net: Any, dev_keys: list[tuple[str, str]]
) -> None:
    net: NodeNet = make_net(contributors=1)
    address, key = dev_keys[16]
    done = cli(net, "node", "run", "--rounds", "1", key=key)
    assert done.returncode == ExitCode.NOT_MEMBER, done.stderr
    assert address in done.stderr
    assert "contributor role" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.anvil
def test_a_base_that_cannot_be_fetched_exits_6_after_retrying(make_net: Any) -> None:
    missing = digest_to_cid(fake_digest("a model nobody stored"))
    net: NodeNet = make_net(contributors=1, genesis_cid=missing)
    done = cli(net, "node", "run", "--rounds", "1", "--base-attempts", "2", key=net.contributor_keys[0][1])
    assert done.returncode == ExitCode.UNAVAILABLE, done.stderr
    assert missing in done.stderr
    assert "after 2 attempts" in done.stderr


def test_without_a_key_the_node_exits_5() -> None:
    done = cli(None, "node", "run", "--rounds", "1")
    assert done.returncode == ExitCode.CONFIG, done.stderr
    assert "MESHPROV_PRIVATE_KEY_FILE" in done.stderr


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--behaviour", "lazy"], "--behaviour"),
        (["--dp-clip", "1"], "--dp-noise"),
        (["--shard", "3", "--shards", "3"], "--shard"),
        (["--model", "resnet"], "--model"),
    ],
)
def test_bad_options_exit_2(args: list[str], problem: str) -> None:
    done = cli(None, "node", "run", *args, MESHPROV_PRIVATE_KEY="0x" + "11" * 32)
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert problem in done.stderr


@pytest.mark.anvil
@pytest.mark.slow
def test_a_member_runs_rounds_and_status_shows_verdicts_rewards_and_what_never_reached_the_chain(
    make_net: Any,
) -> None:
    net: NodeNet = make_net(contributors=1)
    address, key = net.contributor_keys[0]
    run = subprocess.Popen(
        [sys.executable, "-m", "ledger.cli.app", "node", "run", "--rounds", "1", "--poll", "0.05", "--json"],
        cwd=REPO,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("MESHPROV_")},
            "MESHPROV_DATA_DIR": str(net.root / "data"),
            "MESHPROV_CHAIN_RPC_URL": net.url,
            "MESHPROV_DEPLOYMENT_FILE": str(net.deployment_file),
            "MESHPROV_STORE_DIR": str(net.root / "blocks"),
            "MESHPROV_TASK_ID": str(net.task_id),
            "MESHPROV_PRIVATE_KEY": key,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        net.judge_round(1, reasons=lambda _i: 16)  # rejected: norm-outlier
        out, err = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err
    (record,) = json.loads(out)["rounds"]
    assert record["status"] == "rejected"
    assert record["reasons"] == ["norm-outlier"]
    assert Path(record["file"]).is_file()
    assert "round 1: rejected (norm-outlier)" in err

    # An update trained for a round that closed first is only in the member's journal.
    Journal.for_member(net.root / "data", address).save(
        RoundRecord(
            task=net.task_id,
            round=9,
            status="missed",
            file="f",
            cid="c",
            base="",
            num_samples=1,
            detail="closed",
        )
    )
    status = cli(net, "node", "status", "--json", key=key)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["address"] == address
    assert report["roles"] == ["contributor"]
    (sub,) = report["submissions"]
    assert sub["verdict"] == "rejected"
    assert sub["reasons"] == ["norm-outlier"]
    assert sub["cid"] == record["cid"]
    assert sub["reward"] == "0"
    assert [v["reason_slug"] for v in sub["scores"]] == ["norm-outlier"]
    assert sub["consensus"] == -10_000
    assert report["accrued"] == "0"  # a rejected update earns nothing
    assert report["reputation"] < 5000  # the ledger's starting reputation, lowered by the reject
    assert [r["round"] for r in report["local_only"]] == [9]
    human = cli(net, "node", "status", "--address", address)
    assert human.returncode == 0, human.stderr
    assert "rejected" in human.stdout
    assert "norm-outlier" in human.stdout


@pytest.mark.anvil
def test_an_accepted_member_sees_its_accrued_reward_and_claims_it(make_net: Any) -> None:
    from node.runner import NodeOptions

    net: NodeNet = make_net(contributors=1)
    address, key = net.contributor_keys[0]
    thread = net.start(net.runner(0, NodeOptions(rounds=1, poll_s=0.05, max_poll_s=0.2)))
    net.judge_round(1)
    (record,) = thread.join_result()
    assert record.status == "accepted"
    assert record.reward
    accrued = net.client().account(address).accrued
    assert accrued == record.reward

    status = cli(net, "node", "status", "--json", key=key)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["accrued"] == str(accrued)
    claimed = cli(net, "node", "claim", "--json", key=key)
    assert claimed.returncode == 0, claimed.stderr
    report = json.loads(claimed.stdout)
    assert report["claimed"] == str(accrued)
    assert report["balance"] == str(accrued)
    assert net.client().account(address).accrued == 0
    again = cli(net, "node", "claim", key=key)
    assert again.returncode == 0, again.stderr
    assert "nothing to claim" in again.stdout


def test_genesis_writes_the_model_and_stores_it(tmp_path: Path) -> None:
    from node.models import genesis_state

    done = cli(
        None, "node", "genesis", "--model", "mlp", "--seed", "3", "--json", MESHPROV_DATA_DIR=str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert LocalStore(tmp_path / "blocks").has(data["cid"])
    from ledger.updatefile import UpdateFile

    with UpdateFile.open(Path(data["file"])) as f:
        assert f.metadata.to_dict()["params"] == {"seed": 3}
        expected = genesis_state("mlp", 3)
        for key, value in expected.items():
            np.testing.assert_array_equal(f.tensor(key), value)


def test_the_heldout_check_tells_a_scaled_update_from_honest_non_iid_ones() -> None:
    from dataclasses import replace

    from node.behaviours import scale
    from node.data import make_federation
    from node.heldout import loss
    from node.models import genesis_state
    from node.training import apply_delta, default_config, local_train, round_seed

    base = genesis_state("mlp")
    federation = make_federation(5, 0.5, 0)
    before = loss(base)
    for i in range(5):
        config = replace(default_config("mlp"), seed=round_seed(0, 1, i))
        delta = local_train("mlp", base, federation.node_data(i), config).delta
        assert loss(apply_delta(base, delta)) - before < 5.0  # the demo's --loss-delta
        assert loss(apply_delta(base, scale(delta))) - before > 5.0


def test_the_cli_offers_every_behaviour_the_node_implements() -> None:
    from lab.demo import BEHAVIOURS as DEMO_BEHAVIOURS
    from node.behaviours import Behaviour
    from node.cli import BEHAVIOURS

    # The v2 attacks on sample counts and on published content are the experiment's (lab.experiment): a member
    # node claims its real sample count and cannot read others' content before submissions close (R1).
    experiment_only = {"sample-inflation", "noisy-copy", "front-run"}
    assert tuple(b.value for b in Behaviour if b.value not in experiment_only) == BEHAVIOURS
    assert BEHAVIOURS[1:] == DEMO_BEHAVIOURS  # the demo's malicious members: every behaviour but honest

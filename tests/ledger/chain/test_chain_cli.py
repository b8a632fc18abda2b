"""`meshprov chain deploy | status | claim | role` against the session's anvil."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ledger.cli.app import main
from ledger.exit_codes import ExitCode
from tests.support.chain import advance_time

pytestmark = pytest.mark.anvil


@pytest.fixture
def env(
    w3: Any, anvil: Any, dev_keys: list[tuple[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A data dir and a consortium file; the chain is the session anvil (reverted after the test)."""
    for name in list(os.environ):
        if name.startswith("MESHPROV_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MESHPROV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MESHPROV_CHAIN_RPC_URL", anvil.rpc_url)
    monkeypatch.setenv("MESHPROV_PRIVATE_KEY", dev_keys[0][1])
    a = [address for address, _ in dev_keys]
    (tmp_path / "consortium.toml").write_text(
        f'admin = "{a[0]}"\naggregator = "{a[1]}"\nvalidators = ["{a[2]}", "{a[3]}", "{a[4]}"]\n'
        f'contributors = ["{a[5]}", "{a[6]}"]\nrole_delay_s = 90\n\n[task]\nspec = "0x{"11" * 32}"\n'
        f'genesis = "0x{"22" * 32}"\nrule = "median"\nquorum = 2\nsubmission_window_s = 600\n'
        "commit_window_s = 300\nreveal_window_s = 300\nfinalize_grace_s = 600\nmax_samples = 1000\n"
        'reward_per_round = "100"\n'
    )
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any] | None, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    data = json.loads(captured.out) if captured.out.strip().startswith("{") else None
    return code, data, captured.err


def test_deploy_then_status(env: Path, w3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, deployed, err = run(
        capsys, "chain", "deploy", "--consortium", str(env / "consortium.toml"), "--json"
    )
    assert code == 0, err
    assert deployed is not None
    record = json.loads((env / "data" / "deployment.json").read_text())
    assert record["ledger"] == deployed["ledger"]
    assert record["chain_id"] == w3.eth.chain_id
    assert record["consortium"]["task"]["rule"] == "median"
    assert "deploy MeshLedger: block" in err  # progress goes to stderr, JSON alone to stdout

    code, status, err = run(capsys, "chain", "status", "--json")
    assert code == 0, err
    assert status is not None
    assert status["ledger"] == deployed["ledger"]
    assert (status["task_id"], status["round"], status["phase"]) == (1, 1, "open")
    assert status["submissions"] == 0
    assert (status["validators"], status["commits"], status["reveals"]) == (3, 0, 0)
    assert status["submission_end"] < status["commit_end"] < status["reveal_end"] < status["grace_end"]
    assert status["role_delay_s"] == 90
    assert status["paused"] is False

    code, _, err = run(capsys, "chain", "status")
    assert code == 0
    code, _, err = run(capsys, "chain", "deploy", "--consortium", str(env / "consortium.toml"))
    assert code == ExitCode.CONFIG
    assert "already exists" in err


def test_deploy_if_absent_keeps_a_live_deployment_and_replaces_a_gone_one(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    consortium = str(env / "consortium.toml")
    code, first, err = run(capsys, "chain", "deploy", "--consortium", consortium, "--if-absent", "--json")
    assert code == 0, err
    assert first is not None
    assert first["deployed_now"] is True
    code, again, err = run(capsys, "chain", "deploy", "--consortium", consortium, "--if-absent", "--json")
    assert code == 0, err
    assert again is not None
    assert again["deployed_now"] is False
    assert again["ledger"] == first["ledger"]
    record_path = env / "data" / "deployment.json"
    record = json.loads(record_path.read_text())
    record["ledger"] = "0x" + "42" * 20  # the chain was reset under the record
    record_path.write_text(json.dumps(record))
    code, fresh, err = run(capsys, "chain", "deploy", "--consortium", consortium, "--if-absent", "--json")
    assert code == 0, err
    assert fresh is not None
    assert fresh["deployed_now"] is True
    assert "deploying anew" in err
    code, _, err = run(capsys, "chain", "deploy", "--consortium", consortium, "--if-absent", "--force")
    assert code == ExitCode.USAGE


def test_status_without_a_record_is_not_found(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "chain", "status")
    assert code == ExitCode.NOT_FOUND
    assert "meshprov chain deploy" in err


def test_status_notices_a_reset_chain(env: Path, w3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, deployed, _ = run(capsys, "chain", "deploy", "--consortium", str(env / "consortium.toml"), "--json")
    assert code == 0
    assert deployed is not None
    record_path = env / "data" / "deployment.json"
    record = json.loads(record_path.read_text())
    record["ledger"] = "0x" + "42" * 20  # as if the chain had been reset: nothing there
    record_path.write_text(json.dumps(record))
    code, _, err = run(capsys, "chain", "status")
    assert code == ExitCode.NOT_FOUND
    assert "no MeshLedger contract" in err
    record["chain_id"] = 1
    record_path.write_text(json.dumps(record))
    code, _, err = run(capsys, "chain", "status")
    assert code == ExitCode.MISMATCH
    assert "chain id" in err


def test_deploy_refuses_a_bad_consortium_file(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = env / "bad.toml"
    bad.write_text((env / "consortium.toml").read_text().replace("quorum = 2", "quorum = 9"))
    code, _, err = run(capsys, "chain", "deploy", "--consortium", str(bad))
    assert code == ExitCode.CONFIG
    assert "no update could ever be accepted" in err
    assert not (env / "data" / "deployment.json").exists()
    v1 = env / "v1.toml"
    v1.write_text((env / "consortium.toml").read_text().replace("commit_window_s", "vote_window_s"))
    code, _, err = run(capsys, "chain", "deploy", "--consortium", str(v1))
    assert code == ExitCode.CONFIG
    assert "`task.vote_window_s` is a protocol-v1 key" in err


def test_claim_and_role_changes_from_the_command_line(
    env: Path,
    w3: Any,
    dev_keys: list[tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "chain", "deploy", "--consortium", str(env / "consortium.toml"))
    assert code == 0, err
    newcomer = dev_keys[12][0]
    code, scheduled, err = run(capsys, "chain", "role", "schedule", "validator", newcomer, "--json")
    assert code == 0, err
    assert scheduled is not None
    assert (scheduled["account"], scheduled["grant"]) == (newcomer, True)
    code, pending, _ = run(capsys, "chain", "role", "pending", "validator", newcomer, "--json")
    assert pending is not None
    assert pending["execute_after"] == scheduled["execute_after"]
    code, _, err = run(capsys, "chain", "role", "execute", "validator", newcomer)
    assert code != 0
    assert "can be executed from" in err  # the delay is not over
    advance_time(w3, 90)
    monkeypatch.setenv("MESHPROV_PRIVATE_KEY", dev_keys[6][1])  # anyone may execute
    code, executed, err = run(capsys, "chain", "role", "execute", "validator", newcomer, "--json")
    assert code == 0, err
    assert executed is not None
    assert (executed["action"], executed["account"]) == ("execute", newcomer)
    code, pending, _ = run(capsys, "chain", "role", "pending", "validator", newcomer, "--json")
    assert pending is not None
    assert pending["execute_after"] == 0  # done: nothing pending any more
    code, claimed, err = run(capsys, "chain", "claim", "--json")
    assert code == 0, err
    assert claimed == {"account": dev_keys[6][0], "claimed": "0", "tx_hash": None}  # nothing accrued yet
    monkeypatch.setenv("MESHPROV_PRIVATE_KEY", dev_keys[0][1])  # the admin cancels what it scheduled
    code, _, err = run(capsys, "chain", "role", "schedule", "validator", newcomer, "--revoke")
    assert code == 0, err
    code, cancelled, err = run(capsys, "chain", "role", "cancel", "validator", newcomer, "--revoke", "--json")
    assert code == 0, err
    assert cancelled is not None
    assert (cancelled["action"], cancelled["grant"]) == ("cancel", False)
    code, pending, _ = run(capsys, "chain", "role", "pending", "validator", newcomer, "--revoke", "--json")
    assert pending is not None
    assert pending["execute_after"] == 0  # cancelled: the revocation will never execute
    monkeypatch.setenv("MESHPROV_PRIVATE_KEY", dev_keys[6][1])
    code, _, err = run(capsys, "chain", "role", "schedule", "aggregator", newcomer)
    assert code == ExitCode.NOT_MEMBER  # only the admin schedules
    assert "lacks role" in err


def test_deploy_on_a_configured_chain_needs_a_key(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MESHPROV_PRIVATE_KEY")
    code, _, err = run(capsys, "chain", "deploy", "--consortium", str(env / "consortium.toml"))
    assert code == ExitCode.CONFIG
    assert "no key to deploy with" in err


def test_deploy_on_the_embedded_chain_uses_the_first_dev_account(
    env: Path, dev_keys: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # In subprocesses: the embedded anvil is started on demand and outlives the command, as for a user.
    monkeypatch.delenv("MESHPROV_PRIVATE_KEY")
    monkeypatch.delenv("MESHPROV_CHAIN_RPC_URL")

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ledger.cli.app", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    try:
        done = cli("chain", "deploy", "--consortium", str(env / "consortium.toml"), "--json")
        assert done.returncode == 0, done.stderr
        deployed = json.loads(done.stdout)
        assert deployed["deployer"] == dev_keys[0][0]
        done = cli("chain", "status", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["rpc_url"] == deployed["rpc_url"]
    finally:
        assert cli("dev", "down").returncode == 0

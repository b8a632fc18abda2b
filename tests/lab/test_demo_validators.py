"""`meshprov demo` with validators that misbehave: a lying validator is outvoted and named by `audit rejudge`, and
with one validator of three down every round still reaches its quorum."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lab.procs import recorded
from ledger.exit_codes import ExitCode
from tests.lab.test_demo import audit_json, clean_env, meshprov, processes_using
from tests.support import REPO


@pytest.mark.anvil
@pytest.mark.redis
@pytest.mark.slow
def test_rejudge_finds_the_demos_lying_validator_and_no_honest_one(tmp_path: Path) -> None:
    """A demo with validator-1 started with `--lie` (it accepts what the checks reject): the consensus of the
    honest two still rejects the scaled update, and `audit rejudge` on the demo's record names validator-1 alone,
    with the scaled update as evidence."""
    from eth_account import Account

    data_dir = tmp_path / "demo"
    done = subprocess.run(
        meshprov(
            "demo", "--nodes", "3", "--rounds", "1", "--malicious", "1", "--lying-validators", "1",
            "--json", "--data-dir", str(data_dir), "--members-per-process", "3",
        ),
        cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout)
    assert summary["demo"]["lying_validators"] == 1
    [round_] = summary["rounds"]
    scaled = next(u for u in round_["updates"] if u["behaviour"] != "honest")
    assert not scaled["accepted"]  # two honest validators of three decide
    liar = Account.from_key((data_dir / "keys" / "validator-1.key").read_text().strip()).address.lower()
    try:
        code, report = audit_json(data_dir, "rejudge", "1", "1")
        assert code == ExitCode.MISMATCH
        assert {(d["validator"].lower(), d["index"], d["kind"]) for d in report["disagreements"]} == {
            (liar, scaled["index"], "accepted-rejected")
        }
        tallies = {k.lower(): v for k, v in report["validators"].items()}
        assert tallies.pop(liar)["disagree"] == 1
        assert len(tallies) == 2
        assert all(t["disagree"] == 0 for t in tallies.values())
    finally:
        subprocess.run(meshprov("--data-dir", str(data_dir), "dev", "down"), cwd=REPO, env=clean_env(),
                       check=False, capture_output=True, timeout=60)  # fmt: skip


@pytest.mark.anvil
@pytest.mark.redis
@pytest.mark.slow
def test_with_one_validator_of_three_down_the_rounds_still_reach_the_quorum(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    done = subprocess.run(
        meshprov(
            "demo", "--nodes", "2", "--rounds", "1", "--malicious", "0", "--validators-down", "1",
            "--commit-window", "8", "--json", "--data-dir", str(data_dir),
        ),
        cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout)
    assert len(recorded(data_dir)) == 2 + 2 + 1  # validator-3 was never started
    (round_,) = summary["rounds"]
    assert [u["accepted"] for u in round_["updates"]] == [True, True]
    assert all(len(u["scores"]) == 2 for u in round_["updates"])
    assert [v["absent"] for v in round_["validators"]] == [False, False, True]
    assert [v["absent"] for v in summary["validators"]] == [0, 0, 1]
    assert "absent (did not reveal)" in done.stderr
    assert processes_using(data_dir.resolve()) == []

"""`meshprov demo` with validators that misbehave: a lying validator is outvoted and named by `audit rejudge`, and
with one validator of three down every round still reaches its quorum."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.procs import recorded
from ledger.exit_codes import ExitCode
from tests.lab.test_demo import audit_json, processes_using, run_meshprov, stop_demo_services


@pytest.mark.anvil
@pytest.mark.redis
@pytest.mark.slow
def test_rejudge_finds_the_demos_lying_validator_and_no_honest_one(tmp_path: Path) -> None:
    """A demo with validator-1 started with `--lie` (it accepts what the checks reject): the consensus of the
    honest two still rejects the scaled update, and `audit rejudge` on the demo's record names validator-1 alone,
    with the scaled update as evidence."""
    from eth_account import Account

    data_dir = tmp_path / "demo"
    done = run_meshprov(
        "demo", "--nodes", "3", "--rounds", "1", "--malicious", "1", "--lying-validators", "1",
        "--json", "--data-dir", str(data_dir), "--members-per-process", "3", timeout=240,
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
        stop_demo_services(data_dir)


@pytest.mark.anvil
@pytest.mark.redis
@pytest.mark.slow
def test_with_one_validator_of_three_down_the_rounds_still_reach_the_quorum(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    done = run_meshprov(
        "demo", "--nodes", "2", "--rounds", "1", "--malicious", "0", "--validators-down", "1",
        "--commit-window", "8", "--json", "--data-dir", str(data_dir), timeout=240,
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

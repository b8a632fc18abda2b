"""`python -m lab.members PLAN.json`, the process that hosts several demo members: its plan is checked before
anything starts (bad input: a clear error and the configuration exit code, nothing run). That the hosted members
do not interfere (own keys, journals, updates equal to training alone) is checked on a real demo run in
tests/lab/test_demo.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lab.members import MAX_PLAN_BYTES, HostedMember, HostPlan, main
from ledger.errors import ConfigError
from ledger.exit_codes import ExitCode


def plan_dict(tmp_path: Path, **change: Any) -> dict[str, Any]:
    plan = HostPlan(
        members=(
            HostedMember("node-1", tmp_path / "keys" / "node-1.key", 0),
            HostedMember("node-2", tmp_path / "keys" / "node-2.key", 1, "scale"),
        ),
        shards=2,
        log_dir=tmp_path / "logs",
        recipe="digits",
        alpha=0.5,
        rounds=2,
    )
    data: dict[str, Any] = json.loads(plan.to_json())
    data.update(change)
    return data


def test_a_plan_reads_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_dict(tmp_path)))
    plan = HostPlan.read(path)
    assert [(m.name, m.shard, m.behaviour) for m in plan.members] == [
        ("node-1", 0, "honest"),
        ("node-2", 1, "scale"),
    ]
    assert (plan.shards, plan.recipe, plan.alpha, plan.rounds, plan.relay) == (2, "digits", 0.5, 2, False)
    assert HostPlan.read(path) == plan


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"members": []}, "distinct names"),
        ({"shards": 1}, "shard outside"),
        ({"shards": "two"}, "not valid"),
        ({"members": [{"name": "node-1"}]}, "not valid"),
    ],
)
def test_a_bad_plan_is_refused_with_what_is_wrong(
    tmp_path: Path, change: dict[str, Any], problem: str
) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_dict(tmp_path, **change)))
    with pytest.raises(ConfigError, match=problem):
        HostPlan.read(path)


def test_duplicate_members_are_refused(tmp_path: Path) -> None:
    data = plan_dict(tmp_path)
    data["members"][1]["name"] = "node-1"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="distinct names"):
        HostPlan.read(path)


def test_the_process_exits_with_the_config_code_on_a_bad_plan_without_starting_members(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * (MAX_PLAN_BYTES + 1))
    assert main([str(huge)]) == ExitCode.CONFIG
    assert "larger than" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.json")]) == ExitCode.CONFIG
    assert "cannot read the member plan" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{")
    assert main([str(tmp_path / "broken.json")]) == ExitCode.CONFIG
    assert main([]) == 2
    assert not (tmp_path / "logs").exists()  # no member was started

"""`meshprov audit rejudge`: the round's deterministic checks recomputed with the settings the task's
specification anchors, on a real chain and real update files; a validator planted to vote against the checks is
found, with the evidence, and the honest ones are not (a hard reject the auditor cannot recompute is listed as
unverifiable, not held against anyone)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from ledger.chain.client import connect_web3
from ledger.chain.scores import REJECT
from ledger.checks import CheckLimits
from ledger.checks.anchored import anchored_limits
from ledger.content import cid_to_digest
from ledger.content.local_store import LocalStore
from ledger.dev.services import AnvilProcess
from ledger.errors import ConfigError
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason
from ledger.recipe import RecipeRef, TaskSpec
from ledger.updatefile import GenesisMeta, UpdateMeta, write_aggregate, write_update
from tests.support.audit_cli import meshprov_cli
from tests.support.chain import Consortium, chain_snapshot

pytestmark = pytest.mark.anvil

ZERO = 2  # update 2 is all zeros: NORM_TOO_SMALL by the checks
PLANTED = 2  # validator 2 votes against the checks


def _honest(v: int, i: int, _r: int) -> int | tuple[int, int]:
    if i == ZERO:
        return (REJECT, int(Reason.NORM_TOO_SMALL))
    if v == 1 and i == 3:
        return (REJECT, int(Reason.LOSS_REGRESSION))  # its own held-out data: not recomputable
    return 4000 + 100 * i


def _planted(v: int, i: int, r: int) -> int | tuple[int, int]:
    if v == PLANTED and i == ZERO:
        return 8000  # accepts what the checks reject
    if v == PLANTED and i == 0:
        return (REJECT, int(Reason.NORM_OUTLIER))  # rejects what the checks pass
    if v == PLANTED and i == 1:
        return (REJECT, int(Reason.SCALE_OUT_OF_PROPORTION))
    return _honest(v, i, r)


@pytest.fixture(scope="module")
def rounds(
    anvil: AnvilProcess, dev_keys: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """Task 1 anchoring a real specification (checks: zscore 3.5, max_scale_ratio 5); round 1 with the planted
    validator, round 2 all honest."""
    data_dir = tmp_path_factory.mktemp("rejudge")
    work = data_dir / "work"
    work.mkdir()
    store = LocalStore(data_dir / "blocks")
    rng = np.random.default_rng(5)
    base = work / "base.safetensors"
    write_aggregate(
        base,
        {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)},
        GenesisMeta(model="tiny-linear"),
    )
    base_cid = store.put_file(base)
    spec = TaskSpec(
        recipe=RecipeRef("tiny", "1", base_cid),
        checks={"zscore": 3.5, "max_scale_ratio": 5.0},
    )
    spec_path = work / "spec.json"
    spec_path.write_text(spec.to_json())
    spec_cid = store.put_file(spec_path)
    w3 = connect_web3(anvil.rpc_url)
    with chain_snapshot(w3):
        c = Consortium.deploy(
            w3,
            dev_keys,
            validators=3,
            contributors=4,
            genesis=cid_to_digest(base_cid),
            spec=cid_to_digest(spec_cid),
        )
        strict = TaskSpec(recipe=RecipeRef("tiny", "1", base_cid), checks={"max_scale_ratio": 0.05})
        strict_path = work / "strict.json"
        strict_path.write_text(strict.to_json())
        task2 = c.create_task(
            genesis=cid_to_digest(base_cid), spec=cid_to_digest(store.put_file(strict_path))
        )
        for task, round_, scores in ((1, 1, _planted), (1, 2, _honest), (task2, 1, _honest)):
            cids = []
            for i, (address, _) in enumerate(c.contributors):
                path = work / f"update-{task}-{round_}-{i}.safetensors"
                scale = 0.0 if i == ZERO else 0.1
                tensors = {
                    "w": (rng.normal(size=(4, 3)) * scale).astype(np.float32),
                    "b": (rng.normal(size=3) * scale).astype(np.float32),
                }
                meta = UpdateMeta(task=task, round=round_, base=base_cid, contributor=address, num_samples=10)
                write_update(path, tensors, meta)
                cids.append(store.put_file(path))
            record = c.run_round(
                task,
                scores=scores,
                digests=[cid_to_digest(x) for x in cids],
                num_samples=[10] * 4,
                aggregate=cid_to_digest(base_cid),  # round 2 starts from the same base: its files are valid
            )
            assert record.round == round_
        c.record.write(data_dir / "deployment.json")
        store.close()
        yield c, data_dir, spec_cid


@pytest.fixture
def cli(
    rounds: Any, anvil: AnvilProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    c, data_dir, _ = rounds
    return meshprov_cli(c, data_dir, anvil.rpc_url, monkeypatch, capsys)


def test_the_planted_validator_is_found_with_evidence(cli: Any, rounds: Any) -> None:
    c, _, spec_cid = rounds
    validators = [address for address, _ in c.validators]
    code, out, _ = cli("audit", "rejudge", "1", "1", "--json")
    assert code == ExitCode.MISMATCH
    report = json.loads(out)
    assert report["limits_from"] == f"the specification {spec_cid}"
    assert report["limits"]["zscore_threshold"] == 3.5
    assert report["limits"]["loss_delta"] is None  # nobody's held-out data
    assert [u["reason"] for u in report["updates"]] == ["ACCEPTED", "ACCEPTED", "NORM_TOO_SMALL", "ACCEPTED"]
    found = {(d["validator"].lower(), d["index"], d["kind"]) for d in report["disagreements"]}
    planted = validators[PLANTED].lower()
    assert found == {
        (planted, ZERO, "accepted-rejected"),
        (planted, 0, "rejected-accepted"),
        (planted, 1, "rejected-accepted"),
    }
    evidence = next(d for d in report["disagreements"] if d["index"] == ZERO)
    assert evidence["score"] == 8000
    assert evidence["checks_reason"] == "NORM_TOO_SMALL"
    assert evidence["tx_hash"].startswith("0x")
    # the honest validator's loss rejection cannot be recomputed: listed, not held against it
    assert [(u["validator"].lower(), u["index"]) for u in report["unverifiable"]] == [
        (validators[1].lower(), 3)
    ]
    tallies = {k.lower(): v for k, v in report["validators"].items()}
    assert tallies[validators[0].lower()]["disagree"] == 0
    assert tallies[validators[1].lower()]["disagree"] == 0
    assert tallies[planted]["disagree"] == 3
    human = cli("audit", "rejudge", "1", "1")
    assert human[0] == ExitCode.MISMATCH
    assert "DISAGREE" in human[1]


def test_an_honest_round_passes(cli: Any) -> None:
    code, out, _ = cli("audit", "rejudge", "1", "2", "--json")
    report = json.loads(out)
    assert code == ExitCode.OK, report["disagreements"]
    assert report["disagreements"] == []
    assert len(report["unverifiable"]) == 1


def test_validators_judging_with_other_settings_than_anchored_are_found(cli: Any) -> None:
    """Task 2 anchors max_scale_ratio 0.05; the validators judged with 5 (the default) and accepted updates the
    task's own settings reject: every one of their positive ballots is a disagreement."""
    code, out, _ = cli("audit", "rejudge", "2", "1", "--json", "--trustless")
    assert code == ExitCode.MISMATCH
    report = json.loads(out)
    assert report["limits"]["max_scale_ratio"] == 0.05
    assert [u["reason"] for u in report["updates"]] == [
        "SCALE_OUT_OF_PROPORTION",
        "SCALE_OUT_OF_PROPORTION",
        "NORM_TOO_SMALL",
        "SCALE_OUT_OF_PROPORTION",
    ]
    kinds = {(d["index"], d["kind"]) for d in report["disagreements"]}
    # validator 1 rejected update 3 for its loss: a reason the checks (which run first) would not have reached
    assert kinds == {
        (0, "accepted-rejected"),
        (1, "accepted-rejected"),
        (3, "accepted-rejected"),
        (3, "other-reason"),
    }
    assert len(report["disagreements"]) == 3 * 3
    assert cli("audit", "rejudge", "1", "9")[0] == ExitCode.NOT_FOUND


def test_anchored_limits_parse_strictly() -> None:
    limits = anchored_limits({"zscore": None, "max_scale_ratio": 2, "zscore_min_peers": 4.0})
    assert limits.zscore_threshold is None
    assert limits.max_scale_ratio == 2.0
    assert limits.zscore_min_peers == 4
    assert anchored_limits({}) == CheckLimits()
    with pytest.raises(ConfigError, match=r"checks\.zscor is not a check setting"):
        anchored_limits({"zscor": 3})
    with pytest.raises(ConfigError, match=r"checks\.min_norm = '1' is not a number"):
        anchored_limits({"min_norm": "1"})
    with pytest.raises(ConfigError, match=r"checks\.min_norm cannot be null"):
        anchored_limits({"min_norm": None})
    with pytest.raises(ConfigError, match="must be a whole number"):
        anchored_limits({"zscore_min_peers": 2.5})
    with pytest.raises(ConfigError, match="checks: "):
        anchored_limits({"max_scale_ratio": -1})

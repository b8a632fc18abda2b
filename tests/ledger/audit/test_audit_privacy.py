"""`meshprov audit privacy` and ``ledger.privacy``: the accountant against Opacus's, and each member's cumulative
ε over a task read from real update files' privacy records (through the index), against the budget the task's
specification anchors."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from ledger.chain.client import connect_web3
from ledger.checks.anchored import anchored_limits
from ledger.content import cid_to_digest
from ledger.content.local_store import LocalStore
from ledger.dev.services import AnvilProcess
from ledger.errors import ConfigError
from ledger.exit_codes import ExitCode
from ledger.privacy import Release, UnaccountableRecord, epsilon
from ledger.recipe import RecipeRef, TaskSpec
from ledger.updatefile import GenesisMeta, UpdateMeta, write_aggregate, write_update
from tests.support.audit_cli import meshprov_cli
from tests.support.chain import Consortium, chain_snapshot

BUDGET = 6.0
RECORDS: list[dict[str, Any] | None] = [
    {"mechanism": "gaussian", "clip": 1.0, "noise_multiplier": 1.0, "epsilon": 3.9, "delta": 1e-5},
    {"mechanism": "gaussian", "clip": 1.0, "noise_multiplier": 2.0, "sample_rate": 0.5, "delta": 1e-5},
    None,  # no differential privacy: no bound
    {"mechanism": "gaussian", "clip": 1.0, "noise_multiplier": 0.6, "delta": 1e-5},  # spends fast
]


@pytest.mark.parametrize(
    ("sigma", "q", "steps"), [(1.0, 1.0, 1), (1.0, 1.0, 5), (2.0, 1.0, 3), (1.1, 0.5, 4), (0.8, 0.1, 20)]
)
def test_the_accountant_matches_opacus(sigma: float, q: float, steps: int) -> None:
    accountants = pytest.importorskip("opacus.accountants")
    ref = accountants.RDPAccountant()
    ref.history = [(sigma, q, steps)]
    expected = ref.get_epsilon(delta=1e-5)
    ours, _ = epsilon([Release(sigma, q)] * steps, 1e-5)
    if q == 1.0:
        assert ours == pytest.approx(expected, rel=1e-9)  # the same orders, the closed form
    else:  # integer orders only: an upper bound, close
        assert expected <= ours <= expected * 1.15


def test_composition_adds_up_and_records_are_checked() -> None:
    one, _ = epsilon([Release(1.0)], 1e-5)
    two, _ = epsilon([Release(1.0), Release(1.0)], 1e-5)
    assert two == epsilon([Release(1.0, steps=2)], 1e-5)[0]
    assert one < two < 2 * one  # RDP composes better than adding ε
    assert epsilon([], 1e-5) == (0.0, 0.0)
    with pytest.raises(UnaccountableRecord, match="mechanism 'laplace'"):
        Release.from_record({"mechanism": "laplace", "noise_multiplier": 1.0})
    with pytest.raises(UnaccountableRecord, match="noise_multiplier"):
        Release.from_record({"mechanism": "gaussian"})
    with pytest.raises(UnaccountableRecord, match="sample_rate"):
        Release(1.0, sample_rate=0.0)
    # the budget keys are anchored beside the checks, not refused as unknown, and must be positive
    anchored_limits({"privacy_epsilon": 3, "privacy_delta": 1e-5})
    with pytest.raises(ConfigError, match="privacy_epsilon"):
        anchored_limits({"privacy_epsilon": -1})


@pytest.fixture(scope="module")
def task(
    anvil: AnvilProcess, dev_keys: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    data_dir = tmp_path_factory.mktemp("privacy")
    work = data_dir / "work"
    work.mkdir()
    store = LocalStore(data_dir / "blocks")
    rng = np.random.default_rng(3)
    base = work / "base.safetensors"
    write_aggregate(base, {"w": rng.normal(size=(4, 3)).astype(np.float32)}, GenesisMeta(model="tiny"))
    base_cid = store.put_file(base)
    spec = TaskSpec(
        recipe=RecipeRef("tiny", "1", base_cid), checks={"privacy_epsilon": BUDGET, "privacy_delta": 1e-5}
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
        for round_ in (1, 2):
            cids = []
            for i, (address, _) in enumerate(c.contributors):
                path = work / f"update-{round_}-{i}.safetensors"
                meta = UpdateMeta(
                    task=1,
                    round=round_,
                    base=base_cid,
                    contributor=address,
                    num_samples=10,
                    privacy=RECORDS[i],
                )
                write_update(path, {"w": (rng.normal(size=(4, 3)) * 0.1).astype(np.float32)}, meta)
                cids.append(store.put_file(path))
            c.run_round(
                1,
                digests=[cid_to_digest(x) for x in cids],
                num_samples=[10] * 4,
                aggregate=cid_to_digest(base_cid),
            )
        c.record.write(data_dir / "deployment.json")
        store.close()
        yield c, data_dir


@pytest.fixture
def cli(
    task: Any, anvil: AnvilProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    c, data_dir = task
    return meshprov_cli(c, data_dir, anvil.rpc_url, monkeypatch, capsys)


@pytest.mark.anvil
def test_each_members_cumulative_epsilon_against_the_budget(task: Any, cli: Any) -> None:
    c, _ = task
    code, out, _ = cli("audit", "privacy", "1", "--json")
    report = json.loads(out)
    assert code == ExitCode.MISMATCH  # members over the budget
    assert report["budget"] == BUDGET
    rows = {m["member"].lower(): m for m in report["members"]}
    addr = [a.lower() for a, _ in c.contributors]
    for i in (0, 1, 3):
        record = RECORDS[i]
        assert record is not None
        expected, _ = epsilon([Release.from_record(record)] * 2, 1e-5)
        assert rows[addr[i]]["epsilon"] == pytest.approx(expected)
        assert rows[addr[i]]["accounted"] == 2
    assert rows[addr[0]]["claimed_epsilon"] == [3.9, 3.9]  # shown, not trusted
    assert rows[addr[0]]["over_budget"] is (rows[addr[0]]["epsilon"] > BUDGET)
    assert rows[addr[1]]["over_budget"] is False  # σ = 2 with sampling spends little
    assert rows[addr[3]]["over_budget"] is True  # σ = 0.6 twice
    assert rows[addr[2]]["unbounded"] is True
    assert rows[addr[2]]["epsilon"] is None
    assert rows[addr[2]]["over_budget"] is True
    code, out, _ = cli("audit", "privacy", "1", "--json", "--member", c.contributors[1][0])
    assert code == ExitCode.OK
    assert [m["member"].lower() for m in json.loads(out)["members"]] == [addr[1]]
    code, human, _ = cli("audit", "privacy", "1")
    assert "OVER BUDGET" in human
    assert "unbounded" in human


@pytest.mark.anvil
def test_audit_contributor_shows_the_members_cumulative_epsilon_per_task(task: Any, cli: Any) -> None:
    c, _ = task
    _, out, _ = cli("audit", "privacy", "1", "--json")
    rows = {m["member"].lower(): m for m in json.loads(out)["members"]}
    for i in (1, 2, 3):
        address = c.contributors[i][0]
        code, out, _ = cli("audit", "contributor", address, "--json")
        assert code == ExitCode.OK
        [spent] = json.loads(out)["privacy"]
        assert spent["task_id"] == 1
        assert spent["budget"] == BUDGET
        expected = rows[address.lower()]
        for key in ("epsilon", "unbounded", "over_budget", "accounted", "updates"):
            assert spent[key] == expected[key]
    code, human, _ = cli("audit", "contributor", c.contributors[3][0])
    assert "privacy, task 1: ε = " in human
    assert "OVER BUDGET" in human

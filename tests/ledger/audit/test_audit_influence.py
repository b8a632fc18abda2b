"""`meshprov audit influence`: leave-one-out replay of a finalized round on a real chain and a real store.

Every leave-one-out CID is checked against an aggregate the test computes itself (the other updates, their
consensus weights, the recorded rule), every distance against NumPy, and a second run reproduces the CIDs. Under
Multi-Krum the rows follow the rule's own re-selection among the updates left."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.aggregation import AggregationSpec, Contribution, prepare
from ledger.aggregation.output import write_aggregation
from ledger.aggregation.source import describe_source
from ledger.chain.client import connect_web3
from ledger.content import cid_to_digest
from ledger.content.local_store import LocalStore
from ledger.content.unixfs import import_file
from ledger.dev.services import AnvilProcess
from ledger.exit_codes import ExitCode
from ledger.updatefile import GenesisMeta, UpdateFile, UpdateMeta, write_aggregate, write_update
from tests.support.audit_cli import meshprov_cli
from tests.support.chain import Consortium, chain_snapshot

pytestmark = pytest.mark.anvil

FEDAVG = AggregationSpec.fedavg()
KRUM = AggregationSpec.multi_krum(f=1)
TARGET = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(4, 3)


def metrics(weights: dict[str, Any]) -> dict[str, float]:
    """The auditor's evaluator (``--evaluator``): squared distance of ``w`` to a target, and its first entry."""
    w = np.asarray(weights["w"], dtype=np.float64)
    return {"loss": float(((w - TARGET) ** 2).sum()), "w00": float(w[0, 0])}


def _scores(v: int, i: int, _r: int) -> int:
    return 1000 * (i + 1) + 10 * v  # all accepted, weights far enough apart to matter


def _aggregate(
    work: Path,
    base: Path,
    files: dict[str, Path],
    weights: dict[str, int],
    spec: AggregationSpec,
    *,
    task: int,
    base_cid: str,
    name: str,
) -> tuple[Path, str]:
    with UpdateFile.open(base) as b:
        opened = {cid: UpdateFile.open(p) for cid, p in files.items()}
        try:
            agg = prepare(b, [Contribution(cid_to_digest(c), f, weights[c]) for c, f in opened.items()], spec)
            written = write_aggregation(work / name, agg, task=task, round=1, parent=base_cid)
        finally:
            for f in opened.values():
                f.close()
    return written.path, written.cid


@pytest.fixture(scope="module")
def rounds(
    anvil: AnvilProcess, dev_keys: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """Task 1 (FedAvg) and task 2 (Multi-Krum f=1), one finalized round each over the same 4 real updates."""
    data_dir = tmp_path_factory.mktemp("influence")
    work = data_dir / "work"
    work.mkdir()
    store = LocalStore(data_dir / "blocks")
    base = work / "base.safetensors"
    write_aggregate(
        base,
        {"w": np.zeros((4, 3), np.float32), "b": np.zeros(3, np.float32)},
        GenesisMeta(model="tiny-linear"),
    )
    base_cid = store.put_file(base)
    rng = np.random.default_rng(11)
    w3 = connect_web3(anvil.rpc_url)
    out: dict[int, Any] = {}
    with chain_snapshot(w3):
        c = Consortium.deploy(
            w3,
            dev_keys,
            validators=3,
            contributors=4,
            rule=int(FEDAVG.rule_id),
            rule_param=FEDAVG.encode(),
            genesis=cid_to_digest(base_cid),
        )
        tasks = {c.task_id: FEDAVG}
        tasks[
            c.create_task(rule=int(KRUM.rule_id), rule_param=KRUM.encode(), genesis=cid_to_digest(base_cid))
        ] = KRUM
        for task, spec in tasks.items():
            files: dict[str, Path] = {}
            contributors: dict[str, str] = {}
            for i, (address, _) in enumerate(c.contributors):
                path = work / f"update-{task}-{i}.safetensors"
                tensors = {
                    "w": (TARGET * 0.3 + rng.normal(scale=0.2, size=(4, 3))).astype(np.float32),
                    "b": rng.normal(size=3).astype(np.float32),
                }
                write_update(
                    path,
                    tensors,
                    UpdateMeta(task=task, round=1, base=base_cid, contributor=address, num_samples=10),
                )
                cid = store.put_file(path)
                files[cid] = path
                contributors[cid] = address
            record = c.run_round(
                task,
                scores=_scores,
                digests=[cid_to_digest(cid) for cid in files],
                num_samples=[10] * 4,
                finalize=False,
            )
            tally = c.client().tally(task, record.round, block="latest")
            weights = dict(zip(files, tally.consensus, strict=True))
            model, model_cid = _aggregate(
                work,
                base,
                files,
                weights,
                spec,
                task=task,
                base_cid=base_cid,
                name=f"model-{task}.safetensors",
            )
            assert store.put_file(model) == model_cid
            c.finalize(record, cid_to_digest(model_cid))
            out[task] = {
                "files": files,
                "weights": weights,
                "model": model,
                "model_cid": model_cid,
                "contributors": contributors,
            }
        c.record.write(data_dir / "deployment.json")
        store.close()
        yield c, data_dir, base, base_cid, out


@pytest.fixture
def cli(
    rounds: Any, anvil: AnvilProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    c, data_dir, *_ = rounds
    return meshprov_cli(c, data_dir, anvil.rpc_url, monkeypatch, capsys)


def _arrays(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    with UpdateFile.open(path) as f:
        return {k: np.array(f.tensor(k), dtype=np.float64) for k in (i.key for i in describe_source(f))}


def _l2(a: Path, b: Path) -> float:
    x, y = _arrays(a), _arrays(b)
    return math.sqrt(sum(float(((x[k] - y[k]) ** 2).sum()) for k in x))


def test_every_row_is_the_round_without_that_update(rounds: Any, cli: Any, tmp_path: Path) -> None:
    _, _, base, base_cid, out = rounds
    fed = out[1]
    code, text, _ = cli(
        "audit",
        "influence",
        "1",
        "1",
        "--json",
        "--evaluator",
        f"{__name__}:metrics",
        "--keep",
        str(tmp_path / "kept"),
    )
    assert code == ExitCode.OK, text
    report = json.loads(text)
    assert report["model_cid"] == fed["model_cid"]
    assert report["step"] == pytest.approx(_l2(fed["model"], base), rel=1e-12)
    assert report["metrics"] == pytest.approx(metrics(_arrays(fed["model"])))
    assert sorted(r["cid"] for r in report["updates"]) == sorted(fed["files"])
    for row in report["updates"]:
        others = {c: p for c, p in fed["files"].items() if c != row["cid"]}
        expected, expected_cid = _aggregate(
            tmp_path,
            base,
            others,
            fed["weights"],
            FEDAVG,
            task=1,
            base_cid=base_cid,
            name=f"loo-{row['cid']}.safetensors",
        )
        assert row["loo_cid"] == expected_cid
        assert row["weight"] == fed["weights"][row["cid"]]
        assert row["contributor"] == fed["contributors"][row["cid"]]
        assert row["distance"] == pytest.approx(_l2(fed["model"], expected), rel=1e-12)
        assert row["relative"] == pytest.approx(row["distance"] / report["step"])
        loo_metrics = metrics(_arrays(expected))
        assert row["metrics"] == pytest.approx(loo_metrics)
        assert row["change"]["loss"] == pytest.approx(loo_metrics["loss"] - report["metrics"]["loss"])
        kept = tmp_path / "kept" / f"{row['loo_cid']}.safetensors"
        assert import_file(kept).cid == row["loo_cid"]  # the kept file is the model the CID names
        # the heaviest update moves the model most when left out
    heaviest = max(fed["weights"], key=fed["weights"].__getitem__)
    assert max(report["updates"], key=lambda r: r["distance"])["cid"] == heaviest
    # anyone re-running it gets the same CIDs
    again = json.loads(cli("audit", "influence", "1", "1", "--json", "--trustless")[1])
    assert {r["cid"]: r["loo_cid"] for r in again["updates"]} == {
        r["cid"]: r["loo_cid"] for r in report["updates"]
    }
    assert again["updates"][0]["metrics"] is None  # no evaluator: no metrics


def test_one_update_and_human_output(rounds: Any, cli: Any) -> None:
    _, _, _, _, out = rounds
    cid = sorted(out[1]["files"])[0]
    code, text, _ = cli("audit", "influence", "1", "1", "--json", "--update", cid)
    assert code == ExitCode.OK
    rows = json.loads(text)["updates"]
    assert [r["cid"] for r in rows] == [cid]
    full = {r["cid"]: r for r in json.loads(cli("audit", "influence", "1", "1", "--json")[1])["updates"]}
    assert rows[0]["loo_cid"] == full[cid]["loo_cid"]
    code, human, _ = cli("audit", "influence", "1", "1", "--update", cid)
    assert code == ExitCode.OK
    assert cid in human
    assert full[cid]["loo_cid"] in human


def test_refusals(rounds: Any, cli: Any) -> None:
    _, _, _, _, out = rounds
    stranger = sorted(out[2]["files"])[0]  # an update of task 2, not of task 1
    code, _, err = cli("audit", "influence", "1", "1", "--update", stranger)
    assert code == ExitCode.NOT_FOUND
    assert "not an accepted update of task 1 round 1" in err
    code, _, err = cli("audit", "influence", "1", "2")
    assert code == ExitCode.NOT_FOUND
    code, _, err = cli("audit", "influence", "1", "1", "--evaluator", "no_such_module:metrics")
    assert code == ExitCode.CONFIG  # a clear refusal before any work
    assert "no_such_module" in err


def test_multi_krum_rows_follow_the_recorded_rule(rounds: Any, cli: Any, tmp_path: Path) -> None:
    """Krum re-selects among the n - 1 left: each row is the test's own Multi-Krum of the other three."""
    _, _, base, base_cid, out = rounds
    krum = out[2]
    code, text, _ = cli("audit", "influence", "2", "1", "--json")
    assert code == ExitCode.OK
    report = json.loads(text)
    assert report["rule"].startswith("multi-krum")
    for row in report["updates"]:
        others = {c: p for c, p in krum["files"].items() if c != row["cid"]}
        _, expected_cid = _aggregate(
            tmp_path,
            base,
            others,
            krum["weights"],
            KRUM,
            task=2,
            base_cid=base_cid,
            name=f"krum-{row['cid']}.safetensors",
        )
        assert row["loo_cid"] == expected_cid

"""Provenance of code and data, end to end on anvil and a real local store: `audit export --format in-toto`,
`audit lineage` and `audit export --format json/html` name the recipe, hyperparameters and every contributor's
dataset commitment exactly as the anchored specification and update files record them; a legacy spec still reads
sensibly; missing content and models no round built are refused cleanly, with nothing written."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from ledger.chain.client import connect_web3
from ledger.chain.scores import REJECT
from ledger.cli import output
from ledger.content import cid_to_digest, digest_to_cid
from ledger.content.local_store import LocalStore
from ledger.dev.services import AnvilProcess
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason
from ledger.recipe import RecipeRef, TaskSpec, recipe_archive, recipe_cid
from ledger.updatefile import GenesisMeta, UpdateMeta, write_aggregate, write_update
from tests.ledger.audit.test_audit_intoto import SCHEMA
from tests.ledger.audit.test_audit_replay import _aggregate_like_the_worker
from tests.support.audit_cli import meshprov_cli
from tests.support.chain import Consortium, chain_snapshot, fake_digest

pytestmark = pytest.mark.anvil

FRAMEWORKS = {"python": "3.11.9", "torch": "2.5.1"}
HYPER = {"batch_size": 16, "epochs": 2, "lr": 0.05}
PRIVACY = {"mechanism": "gaussian", "noise_multiplier": 1.1, "steps": 1, "sample_rate": 1.0}
PRIVACY_BUDGET = 10.0


def _dataset(i: int) -> str | None:
    """Member 1 commits to no dataset; the others to the sha-256 of a manifest of their own."""
    return None if i == 1 else "0x" + hashlib.sha256(f"manifest of member {i}".encode()).hexdigest()


def _reject_second(v: int, i: int, _r: int) -> int | tuple[int, int]:
    if i == 1:
        return (REJECT, int(Reason.NORM_OUTLIER))
    return 500 * (i + 1) + 100 * v


def _round(
    c: Consortium, store: LocalStore, work: Path, task_id: int, base_cid: str, *, datasets: bool
) -> tuple[list[str], str, list[int]]:
    """One finalized round of real updates on ``task_id`` (update 1 rejected); (update CIDs, aggregate, accepted)."""
    rng = np.random.default_rng(task_id)
    cids = []
    for i, (address, _) in enumerate(c.contributors):
        path = work / f"t{task_id}-update-{i}.safetensors"
        meta = UpdateMeta(
            task=task_id,
            round=1,
            base=base_cid,
            contributor=address,
            num_samples=10 + i,
            dataset=_dataset(i) if datasets else None,
            frameworks=FRAMEWORKS if datasets else None,
            privacy=PRIVACY if datasets and i != 3 else None,  # member 3 publishes without a record
        )
        write_update(path, {"w": rng.normal(size=(4, 3)).astype(np.float32)}, meta)
        cids.append(store.put_file(path))
    record = c.run_round(
        task_id,
        scores=_reject_second,
        digests=[cid_to_digest(x) for x in cids],
        num_samples=[10 + i for i in range(len(cids))],
        finalize=False,
    )
    accepted = [0, 2, 3]
    tally = c.client().tally(task_id, record.round, block="latest")
    chosen = [(cids[i], 10 + i) for i in accepted]
    aggregate = _aggregate_like_the_worker(
        store, work, base_cid, chosen, task_id, [tally.consensus[i] for i in accepted]
    )
    c.finalize(record, cid_to_digest(aggregate))
    return cids, aggregate, accepted


def _genesis(store: LocalStore, work: Path, name: str) -> str:
    path = work / f"{name}.safetensors"
    write_aggregate(path, {"w": np.zeros((4, 3), np.float32)}, GenesisMeta(model=name))
    return store.put_file(path)


@pytest.fixture(scope="module")
def history(
    anvil: AnvilProcess, dev_keys: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """Task 1: a schema-2 spec naming a recipe file, one round of updates with dataset commitments. Task 2: a
    legacy spec (no schema, no recipe), one round of updates without commitments. Task 3: a spec the store does
    not hold, one round with a stand-in aggregate."""
    data_dir = tmp_path_factory.mktemp("provenance")
    work = data_dir / "work"
    work.mkdir()
    recipe = work / "tabular_recipe.py"
    recipe.write_text('"""A recipe members install themselves."""\n\nEPOCHS = 2\n')
    spec = TaskSpec(
        recipe=RecipeRef("tabular_recipe", "1.2", recipe_cid(recipe)),
        hyperparameters=HYPER,
        seed=3,
        checks={"privacy_epsilon": PRIVACY_BUDGET, "privacy_delta": 1e-5},
    )
    store = LocalStore(data_dir / "blocks")
    spec_cid = store.put_bytes(spec.to_json().encode())
    legacy_cid = store.put_bytes(json.dumps({"model": "mlp", "dataset": "digits"}).encode())
    g1 = _genesis(store, work, "genesis-1")
    g2 = _genesis(store, work, "genesis-2")
    w3 = connect_web3(anvil.rpc_url)
    with chain_snapshot(w3):
        c = Consortium.deploy(
            w3,
            dev_keys,
            validators=3,
            contributors=4,
            genesis=cid_to_digest(g1),
            spec=cid_to_digest(spec_cid),
        )
        t1 = _round(c, store, work, 1, g1, datasets=True)
        c.create_task(genesis=cid_to_digest(g2), spec=cid_to_digest(legacy_cid))
        t2 = _round(c, store, work, 2, g2, datasets=False)
        c.create_task(genesis=fake_digest("genesis", 3), spec=fake_digest("spec not stored"))
        r3 = c.run_round(3, aggregate=fake_digest("aggregate", 3))
        finalized = {
            (int(e.args["taskId"]), int(e.args["round"])): e.tx_hash
            for e in c.client().events(c.record.deploy_block)
            if e.name == "RoundFinalized"
        }
        c.record.write(data_dir / "deployment.json")
        store.close()
        yield {
            "c": c,
            "data_dir": data_dir,
            "recipe": recipe,
            "spec": spec,
            "spec_cid": spec_cid,
            "genesis": (g1, g2),
            "t1": t1,
            "t2": t2,
            "t3_aggregate": digest_to_cid(r3.aggregate),
            "finalized": finalized,
        }


@pytest.fixture
def cli(
    history: Any, anvil: AnvilProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    run = meshprov_cli(history["c"], history["data_dir"], anvil.rpc_url, monkeypatch, capsys)
    # The lineage tree unwrapped, so lines can be matched whole. Rich reads COLUMNS once, when the console is made
    # (at import, maybe before this test), so the width is set on the console itself.
    monkeypatch.setattr(output.stdout, "_width", 240)
    return run


def _file_sha256(history: Any, cid: str) -> str:
    store = LocalStore(history["data_dir"] / "blocks")
    try:
        return hashlib.sha256(b"".join(bytes(b) for b in store.get(cid))).hexdigest()
    finally:
        store.close()


def test_in_toto_statement_of_a_model_is_what_was_anchored(history: Any, cli: Any, tmp_path: Path) -> None:
    c = history["c"]
    cids, aggregate, accepted = history["t1"]
    out = tmp_path / "model.intoto.json"
    code, _, err = cli("audit", "export", "--format", "in-toto", aggregate, "-o", str(out))
    assert code == ExitCode.OK, err
    assert "task 1 round 1" in err
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain write would make it, not mkstemp's 0600
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["subject"] == [
        {"name": f"{aggregate}.safetensors", "digest": {"sha256": _file_sha256(history, aggregate)}}
    ]
    definition = doc["predicate"]["buildDefinition"]
    assert definition["externalParameters"] == {
        "task": 1,
        "recipe": history["spec"].recipe.to_dict(),
        "hyperparameters": HYPER,
        "spec": f"ipfs://{history['spec_cid']}",
    }
    assert definition["internalParameters"] == {"aggregationRule": "fedavg", "round": 1}
    deps = definition["resolvedDependencies"]
    assert deps[0]["name"] == "recipe:tabular_recipe@1.2"
    assert deps[0]["digest"] == {"cid": history["spec"].recipe.cid}  # no --recipe: the hash the spec names
    g1, _ = history["genesis"]
    assert deps[1] == {
        "name": "base-model",
        "uri": f"ipfs://{g1}",
        "digest": {"sha256": _file_sha256(history, g1), "cid": g1},
    }
    updates = deps[2:]
    assert [u["uri"] for u in updates] == [f"ipfs://{cids[i]}" for i in accepted]
    assert [u["digest"]["sha256"] for u in updates] == [_file_sha256(history, cids[i]) for i in accepted]
    assert [u["annotations"]["contributor"] for u in updates] == [c.contributors[i][0] for i in accepted]
    assert [u["annotations"]["datasetCommitment"] for u in updates] == [_dataset(i) for i in accepted]
    assert all(u["annotations"]["frameworks"] == FRAMEWORKS for u in updates)
    assert [u["annotations"]["numSamples"] for u in updates] == [10 + i for i in accepted]
    run = doc["predicate"]["runDetails"]
    assert run["builder"]["id"] == f"eip155:{c.w3.eth.chain_id}:{c.record.ledger}"
    assert run["builder"]["version"] == {"aggregator": c.aggregator[0]}
    assert run["byproducts"] == [
        {
            "name": "finalize-transaction",
            "uri": f"eip155:{c.w3.eth.chain_id}:tx/{history['finalized'][(1, 1)]}",
        }
    ]
    assert run["metadata"] == {"invocationId": "task/1/round/1"}


def test_in_toto_with_the_recipe_files_adds_their_sha256(history: Any, cli: Any, tmp_path: Path) -> None:
    _, aggregate, _ = history["t1"]
    code, out, _ = cli(
        "audit", "export", "--format", "in-toto", aggregate, "--recipe", str(history["recipe"])
    )
    assert code == ExitCode.OK
    recipe_dep = json.loads(out)["predicate"]["buildDefinition"]["resolvedDependencies"][0]
    assert recipe_dep["digest"] == {
        "sha256": hashlib.sha256(recipe_archive(history["recipe"])).hexdigest(),
        "cid": history["spec"].recipe.cid,
    }
    other = tmp_path / "other_recipe.py"
    other.write_text("EPOCHS = 3\n")
    target = tmp_path / "statement.json"
    code, _, err = cli(
        "audit", "export", "--format", "in-toto", aggregate, "--recipe", str(other), "-o", str(target)
    )
    assert code == ExitCode.RECIPE_MISMATCH
    assert history["spec"].recipe.cid in err
    assert not target.exists()


def test_in_toto_of_a_legacy_task_says_no_recipe(history: Any, cli: Any) -> None:
    c = history["c"]
    _, aggregate, accepted = history["t2"]
    code, out, _ = cli("audit", "export", "--format", "in-toto", aggregate, "--trustless")
    assert code == ExitCode.OK
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA)
    definition = doc["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["recipe"] == "no recipe recorded"
    assert definition["externalParameters"]["hyperparameters"] == {}
    updates = definition["resolvedDependencies"][1:]
    assert [u["annotations"] for u in updates] == [
        {
            "contributor": c.contributors[i][0],
            "numSamples": 10 + i,
            "consensus": u["annotations"]["consensus"],
        }
        for i, u in zip(accepted, updates, strict=True)
    ]


def test_in_toto_refusals_leave_nothing_written(history: Any, cli: Any, tmp_path: Path) -> None:
    target = tmp_path / "statement.json"
    target.write_text("an earlier statement\n")
    code, _, err = cli("audit", "export", "--format", "in-toto", history["t3_aggregate"], "-o", str(target))
    assert code == ExitCode.NOT_FOUND
    assert "does not hold the specification of task 3" in err
    assert target.read_text() == "an earlier statement\n"
    assert [p.name for p in tmp_path.iterdir()] == ["statement.json"]  # no temporary file left
    g1, _ = history["genesis"]
    code, _, err = cli("audit", "export", "--format", "in-toto", g1, "-o", str(target))
    assert code == ExitCode.NOT_FOUND
    assert "genesis model" in err
    cids, _, _ = history["t1"]
    code, _, err = cli("audit", "export", "--format", "in-toto", cids[0])
    assert code == ExitCode.NOT_FOUND
    assert "member's update" in err
    code, _, err = cli("audit", "export", "--format", "in-toto", digest_to_cid(fake_digest("never anchored")))
    assert code == ExitCode.NOT_FOUND
    assert cli("audit", "export", "--format", "in-toto")[0] == ExitCode.USAGE  # no MODEL
    assert cli("audit", "export", "--format", "json", g1)[0] == ExitCode.USAGE  # MODEL is for in-toto
    assert target.read_text() == "an earlier statement\n"


def test_lineage_shows_recipe_hyperparameters_and_dataset_commitments(history: Any, cli: Any) -> None:
    c = history["c"]
    cids, aggregate, _ = history["t1"]
    code, out, _ = cli("audit", "lineage", aggregate, "--json")
    assert code == ExitCode.OK
    (lineage,) = json.loads(out)["lineages"]
    spec = lineage["task"]["spec"]
    assert spec["status"] == "ok"
    assert spec["recipe"] == history["spec"].recipe.to_dict()
    assert spec["hyperparameters"] == HYPER
    assert spec["seed"] == 3
    assert lineage["task"]["spec_cid"] == history["spec_cid"]
    (round1,) = lineage["rounds"]
    assert [u["cid"] for u in round1["updates"]] == cids
    assert [u["dataset"] for u in round1["updates"]] == [_dataset(i) for i in range(4)]
    assert [u["contributor"] for u in round1["updates"]] == [a for a, _ in c.contributors]
    assert all(u["frameworks"] == FRAMEWORKS and u["metadata"] == "ok" for u in round1["updates"])
    code, human, _ = cli("audit", "lineage", aggregate)
    assert code == ExitCode.OK
    assert f"recipe: tabular_recipe 1.2 ({history['spec'].recipe.cid})" in human
    assert 'hyperparameters: {"batch_size": 16, "epochs": 2, "lr": 0.05}' in human
    for i in (0, 2, 3):
        assert f"dataset {_dataset(i)}" in human
    assert "dataset: none committed" in human  # member 1
    trustless = json.loads(cli("audit", "lineage", aggregate, "--json", "--trustless")[1])
    assert trustless["lineages"][0]["task"] == lineage["task"]
    assert trustless["lineages"][0]["rounds"] == lineage["rounds"]


def test_a_legacy_spec_and_a_missing_spec_read_sensibly(history: Any, cli: Any) -> None:
    _, aggregate, _ = history["t2"]
    code, human, _ = cli("audit", "lineage", aggregate)
    assert code == ExitCode.OK
    assert "recipe: none (legacy spec" in human
    assert "hyperparameters" not in human
    assert "dataset: none committed" in human
    code, human, _ = cli("audit", "lineage", history["t3_aggregate"])
    assert code == ExitCode.OK
    assert "recipe: unknown (the specification was not read from the content store)" in human
    assert "dataset: unknown (the update is not in the content store)" in human


def test_task_export_names_recipe_and_datasets(history: Any, cli: Any, tmp_path: Path) -> None:
    code, out, _ = cli("audit", "export", "--task", "1", "--format", "json")
    assert code == ExitCode.OK
    data = json.loads(out)
    assert data["task"]["spec"]["recipe"] == history["spec"].recipe.to_dict()
    assert [u["dataset"] for u in data["rounds"][0]["updates"]] == [_dataset(i) for i in range(4)]
    code, out, _ = cli("audit", "export", "--task", "1", "--format", "csv")
    rows = out.strip().splitlines()
    assert rows[0].endswith(",dataset")
    assert [r.rsplit(",", 1)[1] for r in rows[1:]] == [_dataset(i) or "" for i in range(4)]
    page = tmp_path / "report.html"
    assert cli("audit", "export", "--task", "1", "-o", str(page))[0] == ExitCode.OK
    html = page.read_text()
    assert "tabular_recipe 1.2" in html
    assert str(_dataset(0)) in html


def test_index_follow_records_specs_and_update_metadata(history: Any, cli: Any, tmp_path: Path) -> None:
    index = f"sqlite:///{tmp_path / 'index.sqlite'}"
    code, out, _ = cli("index", "follow", "--once", "--json", index=index)
    assert code == ExitCode.OK
    # Tasks 1 and 2's specs and their 8 updates; task 3's spec and updates are not in the store.
    assert json.loads(out)["content_read"] == 2 + 8
    again = json.loads(cli("index", "follow", "--once", "--json", index=index)[1])
    assert again["content_read"] == 0  # read once, kept
    _, aggregate, _ = history["t1"]
    code, out, _ = cli("audit", "lineage", aggregate, "--json", "--no-sync", index=index)
    assert code == ExitCode.OK
    (lineage,) = json.loads(out)["lineages"]
    assert lineage["task"]["spec"]["recipe"] == history["spec"].recipe.to_dict()
    assert [u["dataset"] for u in lineage["rounds"][0]["updates"]] == [_dataset(i) for i in range(4)]

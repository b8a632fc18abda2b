"""`meshprov audit replay`: real update files in a local store, a round aggregated as the aggregator does it
(FedAvg weighted by the consensus scores), and the replay reproducing (or refuting) the CID the chain records;
carried-over rounds replay to their base."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.aggregation import AggregationSpec, Contribution, prepare
from ledger.aggregation.output import write_aggregation
from ledger.chain.client import connect_web3
from ledger.chain.scores import REJECT
from ledger.content import cid_to_digest, digest_to_cid
from ledger.content.local_store import LocalStore
from ledger.dev.services import AnvilProcess
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason
from ledger.updatefile import GenesisMeta, UpdateFile, UpdateMeta, write_aggregate, write_update
from tests.support.audit_cli import meshprov_cli
from tests.support.chain import Consortium, chain_snapshot, fake_digest

pytestmark = pytest.mark.anvil

SPEC = AggregationSpec.fedavg()


def _updates(
    store: LocalStore, work: Path, c: Consortium, task_id: int, base_cid: str
) -> list[tuple[str, int]]:
    """One update file per contributor, put in the store; (cid, num_samples) by contributor."""
    rng = np.random.default_rng(7)
    out = []
    for i, (address, _) in enumerate(c.contributors):
        path = work / f"update-{i}.safetensors"
        tensors = {
            "w": rng.normal(size=(4, 3)).astype(np.float32),
            "b": rng.normal(size=3).astype(np.float32),
        }
        meta = UpdateMeta(task=task_id, round=1, base=base_cid, contributor=address, num_samples=10 + i)
        write_update(path, tensors, meta)
        out.append((store.put_file(path), 10 + i))
    return out


def _aggregate_like_the_worker(
    store: LocalStore,
    work: Path,
    base_cid: str,
    chosen: list[tuple[str, int]],
    task_id: int,
    weights: list[int],
) -> str:
    """The aggregate of ``chosen`` (cid, samples) weighted by ``weights``, written and stored as the worker
    does it."""
    paths = {}
    for cid, _ in chosen:
        paths[cid] = work / f"in-{cid}.safetensors"
        paths[cid].write_bytes(b"".join(bytes(b) for b in store.get(cid)))
    base_path = work / "base-copy.safetensors"
    base_path.write_bytes(b"".join(bytes(b) for b in store.get(base_cid)))
    with UpdateFile.open(base_path) as base:
        files = [UpdateFile.open(paths[cid]) for cid, _ in chosen]
        try:
            contributions = [
                Contribution(cid_to_digest(cid), source=f, weight=w, num_samples=n)
                for (cid, n), f, w in zip(chosen, files, weights, strict=True)
            ]
            agg = prepare(base, contributions, SPEC)
            written = write_aggregation(
                work / "aggregate.safetensors", agg, task=task_id, round=1, parent=base_cid
            )
        finally:
            for f in files:
                f.close()
    return store.put_file(written.path)


def _reject_second(v: int, i: int, _r: int) -> int | tuple[int, int]:
    """Update 1 hard-rejected by everyone; the others scored apart enough that weighing by consensus and
    weighing by samples (10, 12, 13) give different aggregates."""
    if i == 1:
        return (REJECT, int(Reason.NORM_OUTLIER))
    return 500 * (i + 1) ** 2 + 100 * v


@pytest.fixture(scope="module")
def round_with_files(
    anvil: AnvilProcess,
    dev_keys: list[tuple[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Any:
    """Task 1 (FedAvg) with a genesis file; round 1 of real updates, update 1 rejected, finalized with the
    honestly recomputed aggregate (weighted by consensus). Yields (consortium, data_dir, updates, aggregate)."""
    data_dir = tmp_path_factory.mktemp("replay")
    work = data_dir / "work"
    work.mkdir()
    store = LocalStore(data_dir / "blocks")
    genesis = work / "genesis.safetensors"
    write_aggregate(
        genesis,
        {"w": np.zeros((4, 3), np.float32), "b": np.zeros(3, np.float32)},
        GenesisMeta(model="tiny-linear"),
    )
    base_cid = store.put_file(genesis)
    w3 = connect_web3(anvil.rpc_url)
    with chain_snapshot(w3):
        c = Consortium.deploy(
            w3,
            dev_keys,
            validators=3,
            contributors=4,
            rule=int(SPEC.rule_id),
            rule_param=SPEC.encode(),
            genesis=cid_to_digest(base_cid),
        )
        task_id = c.task_id
        updates = _updates(store, work, c, task_id, base_cid)
        record = c.run_round(
            task_id,
            scores=_reject_second,
            digests=[cid_to_digest(cid) for cid, _ in updates],
            num_samples=[n for _, n in updates],
            finalize=False,
        )
        chosen = [updates[i] for i in (0, 2, 3)]
        tally = c.client().tally(task_id, record.round, block="latest")
        weights = [tally.consensus[i] for i in (0, 2, 3)]
        assert weights == [_reject_second(1, i, 1) for i in (0, 2, 3)]  # the median validator's scores
        aggregate_cid = _aggregate_like_the_worker(store, work, base_cid, chosen, task_id, weights)
        # The v1 way (weights = claimed samples) writes another file: the replay can tell them apart.
        by_samples = _aggregate_like_the_worker(
            store, work, base_cid, chosen, task_id, [n for _, n in chosen]
        )
        assert by_samples != aggregate_cid
        c.finalize(record, cid_to_digest(aggregate_cid))
        c.record.write(data_dir / "deployment.json")
        store.close()
        yield c, data_dir, updates, aggregate_cid


@pytest.fixture
def cli(
    round_with_files: Any,
    w3: Any,
    anvil: AnvilProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    c, data_dir, _, _ = round_with_files
    return meshprov_cli(c, data_dir, anvil.rpc_url, monkeypatch, capsys)


def test_replay_reproduces_the_aggregate(round_with_files: Any, cli: Any, tmp_path: Path) -> None:
    _, _, updates, aggregate_cid = round_with_files
    kept = tmp_path / "again.safetensors"
    code, out, _ = cli("audit", "replay", "1", "1", "--json", "--keep", str(kept))
    assert code == ExitCode.OK
    report = json.loads(out)
    assert report["status"] == "match"
    assert report["recomputed_cid"] == report["onchain_cid"] == aggregate_cid
    assert [i["cid"] for i in report["inputs"]] == [updates[i][0] for i in (0, 2, 3)]
    assert [i["weight"] for i in report["inputs"]] == [_reject_second(1, i, 1) for i in (0, 2, 3)]
    assert [i["num_samples"] for i in report["inputs"]] == [updates[i][1] for i in (0, 2, 3)]
    assert report["carried_over"] is False
    assert report["rule"].startswith("fedavg")
    with UpdateFile.open(kept) as f:
        assert sorted(f.metadata.to_dict()["inputs"]) == sorted(updates[i][0] for i in (0, 2, 3))
    human = cli("audit", "replay", "1", "1", "--trustless")
    assert human[0] == ExitCode.OK
    assert "MATCH" in human[1]


def test_replay_refutes_a_dishonest_aggregate(round_with_files: Any, cli: Any, w3: Any) -> None:
    c, _, updates, _ = round_with_files
    # Round 2: everyone accepted, but the aggregator records a digest that is not the aggregate of the inputs.
    c.run_round(1, digests=[cid_to_digest(cid) for cid, _ in updates], aggregate=fake_digest("forged"))
    code, out, _ = cli("audit", "replay", "1", "2", "--json")
    assert code == ExitCode.MISMATCH
    report = json.loads(out)
    assert report["status"] == "mismatch"
    assert report["onchain_cid"] == digest_to_cid(fake_digest("forged"))
    assert report["recomputed_cid"] != report["onchain_cid"]


def test_replay_of_a_round_that_accepted_nothing_and_bad_rounds(round_with_files: Any, cli: Any) -> None:
    c = round_with_files[0]
    c.run_round(1, scores=lambda v, i, r: (REJECT, int(Reason.NON_FINITE)))  # nothing accepted
    code, out, _ = cli("audit", "replay", "1", "2", "--json")
    assert code == ExitCode.OK
    assert json.loads(out)["status"] == "carried-over"
    open_round = cli("audit", "replay", "1", "3")
    assert open_round[0] == ExitCode.NOT_FOUND
    assert "not finalized" in open_round[2]
    assert cli("audit", "replay", "1", "9")[0] == ExitCode.NOT_FOUND


def test_a_round_carried_over_after_the_grace_replays_to_its_base(round_with_files: Any, cli: Any) -> None:
    c, _, updates, _ = round_with_files
    # Every update is accepted by the scores, but no aggregator finalizes: a member carries the round over.
    record = c.run_round(1, digests=[cid_to_digest(cid) for cid, _ in updates], finalize=False)
    c.carry_over(record)
    code, out, _ = cli("audit", "replay", "1", "2", "--json")
    assert code == ExitCode.OK
    report = json.loads(out)
    assert (report["status"], report["carried_over"]) == ("carried-over", True)
    assert report["onchain_cid"] == report["base_cid"]
    assert report["inputs"] == []
    assert report["recomputed_cid"] is None
    human = cli("audit", "replay", "1", "2")
    assert "carried over by" in human[1]


def test_replay_reports_content_missing_from_the_store(round_with_files: Any, cli: Any) -> None:
    c, _, _, _ = round_with_files
    missing = [fake_digest("never-stored", i) for i in range(4)]
    c.run_round(1, digests=missing, aggregate=fake_digest("agg"))
    code, _, err = cli("audit", "replay", "1", "2")
    assert code == ExitCode.NOT_FOUND
    assert digest_to_cid(missing[0]) in err or "not found" in err.lower()

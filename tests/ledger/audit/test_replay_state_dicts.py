"""`meshprov audit replay` on any state dict: a BatchNorm CNN's state (running statistics, int64
``num_batches_tracked``) with float16 and bfloat16 tensors and bool/uint8/int32 buffers, one task per rule
(fedavg, fedavg clipped, trimmed mean, median, multi-krum), real update files, finalized on chain with the aggregate
the worker writes; the replay reproduces every CID bit for bit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.aggregation import AggregationSpec, Contribution, prepare
from ledger.aggregation.output import write_aggregation
from ledger.chain.client import connect_web3
from ledger.content import cid_to_digest
from ledger.content.local_store import LocalStore
from ledger.dev.services import AnvilProcess
from ledger.exit_codes import ExitCode
from ledger.updatefile import GenesisMeta, UpdateFile, UpdateMeta, file_tensors, write_aggregate, write_update
from tests.ledger.aggregation.state_dicts import mixed_base, mixed_deltas
from tests.support.audit_cli import meshprov_cli
from tests.support.chain import Consortium, chain_snapshot

pytestmark = pytest.mark.anvil

RULES = [
    AggregationSpec.fedavg(),  # task 1, created by the deployment (a consortium file names no clip)
    AggregationSpec.fedavg(clip="0.3"),
    AggregationSpec.trimmed_mean("0.25"),
    AggregationSpec.median(),
    AggregationSpec.multi_krum(f=1),
]


def _scores(v: int, i: int, _r: int) -> int:
    """Everyone accepted, with consensus scores far enough apart that FedAvg's weights matter."""
    return 1000 * (i + 1) + 10 * v


def _aggregate(
    store: LocalStore,
    work: Path,
    base_cid: str,
    cids: list[str],
    weights: list[int],
    spec: AggregationSpec,
    task: int,
) -> str:
    with UpdateFile.open(work / "base.safetensors") as base:
        files = [UpdateFile.open(work / f"task-{task}-{cid}.safetensors") for cid in cids]
        try:
            agg = prepare(
                base,
                [Contribution(cid_to_digest(c), f, w) for c, f, w in zip(cids, files, weights, strict=True)],
                spec,
            )
            out = work / f"aggregate-{task}.safetensors"
            written = write_aggregation(out, agg, task=task, round=1, parent=base_cid)
        finally:
            for f in files:
                f.close()
    return store.put_file(written.path)


@pytest.fixture(scope="module")
def rounds(
    anvil: AnvilProcess, dev_keys: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    data_dir = tmp_path_factory.mktemp("replay-state-dicts")
    work = data_dir / "work"
    work.mkdir()
    store = LocalStore(data_dir / "blocks")
    base = mixed_base()
    genesis = work / "base.safetensors"
    write_aggregate(genesis, file_tensors(base), GenesisMeta(model="mixed-bn-cnn"))
    base_cid = store.put_file(genesis)
    deltas = mixed_deltas(base, 4)
    w3 = connect_web3(anvil.rpc_url)
    aggregates = {}
    with chain_snapshot(w3):
        first = RULES[0]
        c = Consortium.deploy(
            w3,
            dev_keys,
            validators=3,
            contributors=4,
            rule=int(first.rule_id),
            rule_param=first.encode(),
            genesis=cid_to_digest(base_cid),
        )
        tasks = [c.task_id] + [
            c.create_task(rule=int(s.rule_id), rule_param=s.encode(), genesis=cid_to_digest(base_cid))
            for s in RULES[1:]
        ]
        for task, spec in zip(tasks, RULES, strict=True):
            cids = []
            for i, (address, _) in enumerate(c.contributors):
                path = work / f"update-{task}-{i}.safetensors"
                meta = UpdateMeta(task=task, round=1, base=base_cid, contributor=address, num_samples=20 + i)
                written = write_update(path, file_tensors(deltas[i]), meta)
                cids.append(store.put_file(path))
                path.rename(work / f"task-{task}-{written.cid}.safetensors")
            record = c.run_round(
                task,
                scores=_scores,
                digests=[cid_to_digest(cid) for cid in cids],
                num_samples=[20 + i for i in range(4)],
                finalize=False,
            )
            tally = c.client().tally(task, record.round, block="latest")
            aggregates[task] = _aggregate(store, work, base_cid, cids, list(tally.consensus), spec, task)
            c.finalize(record, cid_to_digest(aggregates[task]))
        c.record.write(data_dir / "deployment.json")
        store.close()
        yield c, data_dir, dict(zip(tasks, RULES, strict=True)), aggregates


@pytest.fixture
def cli(
    rounds: Any, anvil: AnvilProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    c, data_dir, _, _ = rounds
    return meshprov_cli(c, data_dir, anvil.rpc_url, monkeypatch, capsys)


def test_every_rule_replays_a_batchnorm_float16_bfloat16_round_bit_for_bit(
    rounds: Any, cli: Any, tmp_path: Path
) -> None:
    _, _, specs, aggregates = rounds
    for task, spec in specs.items():
        kept = tmp_path / f"replayed-{task}.safetensors"
        code, out, _ = cli("audit", "replay", str(task), "1", "--json", "--keep", str(kept))
        report = json.loads(out)
        assert code == ExitCode.OK, report
        assert report["status"] == "match", (spec, report)
        assert report["recomputed_cid"] == report["onchain_cid"] == aggregates[task]
        assert report["rule"].startswith(spec.rule.slug)
        with UpdateFile.open(kept, kind="aggregate") as f:
            assert f.dtype("bn.num_batches_tracked") == "I64"
            assert f.dtype("head.weight") == "F16"
            assert f.dtype("proj.weight") == "BF16"
            assert f.dtype("mask") == "BOOL"
            assert f.dtype("conv.weight") == "F32"
            counter = int(np.asarray(f.tensor("bn.num_batches_tracked")))
            running_var = np.array(f.tensor("bn.running_var"))
        # every member tracked 3..6 batches: any rule's rounded increment is in that range
        assert 10 + 3 <= counter <= 10 + 6
        assert (running_var > 0).all()  # a convex combination of positive variances
    assert len(set(aggregates.values())) == len(specs)  # the rules did differ

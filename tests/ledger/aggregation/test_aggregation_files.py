"""Aggregation end to end on real update files: same inputs in any order -> the same aggregate file and CID."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

from ledger.aggregation import AggregationSpec, Contribution, aggregate, prepare, write_aggregation
from ledger.content.unixfs import import_file
from ledger.updatefile import (
    BF16,
    AggregateMeta,
    GenesisMeta,
    UpdateFile,
    UpdateMeta,
    write_aggregate,
    write_update,
)

ADDRESSES = [
    "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4",
    "0xAb8483F64d9C6d1EcF9b849Ae677dD3315835cb2",
    "0x4B20993Bc481177ec7E8f571ceCaE8A9e22C02db",
    "0x78731D3Ca6b7E34aC0F824c42a7cC18A495cabaB",
    "0x617F2E2fD72FD9D5503197092aC168c91465E7f2",
]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, list[Path]]:
    rng = np.random.default_rng(0)
    base = {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "fc.weight": BF16(
            (rng.standard_normal((6, 9)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        ),
        "bn.num_batches_tracked": np.array(3, np.int64),
    }
    base_path = tmp_path / "base.safetensors"
    base_cid = write_aggregate(base_path, base, GenesisMeta(model="cnn")).cid
    updates = []
    for i, address in enumerate(ADDRESSES):
        delta = {
            "conv.weight": (0.01 * rng.standard_normal((4, 3, 3, 3))).astype(np.float32),
            "fc.weight": BF16(
                ((0.01 * rng.standard_normal((6, 9))).astype(np.float32).view(np.uint32) >> 16).astype(
                    np.uint16
                )
            ),
            "bn.num_batches_tracked": np.array(10 + i, np.int64),
        }
        path = tmp_path / f"u{i}.safetensors"
        meta = UpdateMeta(task=1, round=2, base=base_cid, contributor=address, num_samples=10 * (i + 1))
        write_update(path, delta, meta)
        updates.append(path)
    return base_path, updates


@pytest.mark.parametrize(
    "spec",
    [
        AggregationSpec.fedavg(),
        AggregationSpec.median(clip="0.5"),
        AggregationSpec.trimmed_mean(0.2),
        AggregationSpec.multi_krum(1, 3),
    ],
    ids=str,
)
def test_aggregate_file_and_cid_do_not_depend_on_input_order(
    tmp_path: Path, files: tuple[Path, list[Path]], spec: AggregationSpec
) -> None:
    base_path, paths = files
    cids = []
    for n, order in enumerate([paths, paths[::-1], paths[2:] + paths[:2]]):
        with contextlib.ExitStack() as stack:
            base = stack.enter_context(UpdateFile.open(base_path))
            contribs = []
            for p in order:
                f = stack.enter_context(UpdateFile.open(p, kind="update"))
                assert isinstance(f.metadata, UpdateMeta)
                contribs.append(Contribution(import_file(p).digest, f, f.metadata.num_samples))
            agg = prepare(base, contribs, spec)
            out = tmp_path / f"agg{n}.safetensors"
            written = write_aggregation(out, agg, task=1, round=2, parent=import_file(base_path).cid)
            cids.append(written.cid)
            in_memory = aggregate(base, contribs, spec)
        with UpdateFile.open(out, kind="aggregate") as result:
            meta = result.metadata
            assert isinstance(meta, AggregateMeta)
            assert meta.rule == spec.rule.slug
            assert meta.rule_id == spec.rule_id
            assert meta.params["param"] == spec.encode()
            assert list(meta.input_digests) == sorted(import_file(p).digest for p in paths)
            keys = ["bn.num_batches_tracked", "conv.weight", "fc.weight"]
            assert [result.dtype(k) for k in keys] == ["I64", "F32", "BF16"]
            for key, value in in_memory.items():
                assert np.asarray(result.tensor(key)).tobytes() == value.tobytes()
    assert len(set(cids)) == 1

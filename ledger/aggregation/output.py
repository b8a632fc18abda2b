"""Writing an aggregation to an aggregate file, one tensor at a time (the file's header is fixed up front).

    agg = prepare(base, contributions, spec)
    written = write_aggregation(path, agg, task=1, round=3, parent=base_cid)   # -> WrittenFile(path, size, cid)

The metadata names the rule, its packed parameter, the input CIDs in digest order and, for FedAvg, their weights
(the consensus scores): everything an auditor needs to replay the aggregation (the Krum selection and the clipping factors follow from the inputs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ledger.aggregation.spec import Rule
from ledger.aggregation.stream import Aggregation
from ledger.content.multiformats import digest_to_cid
from ledger.content.unixfs import import_file
from ledger.updatefile import BF16, AggregateMeta, TensorSpec, WrittenFile, open_writer
from ledger.updatefile.dtypes import dtype_name


def aggregate_meta(agg: Aggregation, *, task: int, round: int, parent: str) -> AggregateMeta:
    """The aggregate file's metadata for this aggregation (``parent``: the base model's CID)."""
    params = {k: v for k, v in agg.spec.describe().items() if k not in ("rule", "rule_id")}
    if agg.spec.rule is Rule.FEDAVG:
        params["weights"] = [c.weight for c in agg.inputs]  # the consensus scores, in the inputs' order
    return AggregateMeta(
        task=task,
        round=round,
        rule_id=agg.spec.rule_id,
        rule=agg.spec.rule.slug,
        inputs=tuple(digest_to_cid(d) for d in agg.digests),
        parent=parent,
        params=params,
    )


def write_aggregation(
    path: str | os.PathLike[str], agg: Aggregation, *, task: int, round: int, parent: str
) -> WrittenFile:
    """Stream the aggregate to ``path`` atomically and return its size and CID.

    Memory: one output tensor at a time plus the driver's scratch budget.
    """
    specs = {
        info.key: TensorSpec("BF16" if info.bfloat16 else _name(info.dtype), info.shape)
        for info in agg.layout
    }
    bf16 = {info.key for info in agg.layout if info.bfloat16}
    meta = aggregate_meta(agg, task=task, round=round, parent=parent)
    with open_writer(path, specs, meta) as writer:
        for key, weights in agg.tensors():
            writer.write(key, BF16(weights) if key in bf16 else weights)
            del weights
    target = Path(path)
    result = import_file(target)
    return WrittenFile(target, result.size, result.cid)


def _name(dtype: np.dtype[Any]) -> str:
    name = dtype_name(dtype)
    if name is None:
        raise TypeError(f"dtype {dtype} cannot be stored in an aggregate file")
    return name

"""`audit influence`: what each accepted update did to its round's model, by leave-one-out replay.

For a finalized round, the aggregate is recomputed without one accepted update at a time, with the round's
recorded rule and the other updates' recorded weights (their consensus scores, protocol R5), by the same
streaming driver and aggregate-file writer as `audit replay`: the same inputs give the same bytes, so every
leave-one-out model has a CID that anyone re-running the command gets again. Each row reports

* ``loo_cid``: the CID of the round's model without the update (the base when it was the only one accepted:
  a round with nothing accepted carries its base over);
* ``distance``: the L2 distance between the round's model and that leave-one-out model over every tensor
  (integer buffers included, as float64), and ``relative``: that distance over the round's own step
  ``‖model − base‖`` (1.0: the round moved as far because of this update as it moved at all);
* ``metrics`` and ``change`` when an evaluator is given: the evaluator's metrics of the leave-one-out model and
  their difference from the round's model (``change["loss"] < 0``: the model would be better without it).

The round's model itself is **fetched**, not recomputed: its CID is the one anchored on chain and the fetch
verifies every block against it, so one update's influence costs one aggregation of n − 1 inputs plus one
streaming pass to measure the distance. Cost grows linearly with updates × model size (docs/audit.md).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ledger.errors import NotFound

if TYPE_CHECKING:
    from ledger.aggregation import TensorSource
    from ledger.audit.source import Source, SourceInfo
    from ledger.settings import Settings

Evaluator = Callable[[Mapping[str, NDArray[Any]]], Mapping[str, float]]
"""Metrics of full model weights (by state-dict key; bfloat16 given as float32), e.g. a recipe's ``evaluate``
on the auditor's data: the same shape of hook the validators' loss gate takes."""


class UpdateNotInRound(NotFound):
    def __init__(self, cid: str, task_id: int, round_: int, accepted: list[str]) -> None:
        listed = ", ".join(accepted) if accepted else "none"
        super().__init__(
            f"{cid} is not an accepted update of task {task_id} round {round_} (accepted: {listed})",
            hint="run `meshprov audit round TASK ROUND` to list the round's updates",
        )


@dataclass
class InfluenceRow:
    cid: str
    contributor: str
    weight: int
    loo_cid: str | None = None
    distance: float | None = None
    relative: float | None = None
    metrics: dict[str, float] | None = None
    change: dict[str, float] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "cid": self.cid,
            "contributor": self.contributor,
            "weight": self.weight,
            "loo_cid": self.loo_cid,
            "distance": self.distance,
            "relative": self.relative,
            "metrics": self.metrics,
            "change": self.change,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class InfluenceReport:
    task_id: int
    round: int
    rule: str
    base_cid: str
    model_cid: str
    source: SourceInfo
    rows: list[InfluenceRow] = field(default_factory=list)
    step: float | None = None  # ‖model − base‖
    metrics: dict[str, float] | None = None  # the evaluator's metrics of the round's model
    fetch_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "round": self.round,
            "rule": self.rule,
            "base_cid": self.base_cid,
            "model_cid": self.model_cid,
            "step": self.step,
            "metrics": self.metrics,
            "updates": [r.to_dict() for r in self.rows],
            "fetch_seconds": round(self.fetch_seconds, 3),
            "notes": self.notes,
            "source": self.source.to_dict(),
        }


def influence(
    source: Source,
    settings: Settings,
    task_id: int,
    round_: int,
    *,
    update: str | None = None,
    evaluator: Evaluator | None = None,
    keep: Path | None = None,
) -> InfluenceReport:
    """Leave-one-out influence of every accepted update of a finalized round (or of ``update`` only).

    ``keep`` is a directory the leave-one-out models are copied into, as ``<loo_cid>.safetensors``."""
    from ledger.audit.replay import finalized_round
    from ledger.content import fetch_to_file, open_store

    finalized = finalized_round(source, task_id, round_)
    spec, base_cid = finalized.spec, finalized.base_cid
    accepted, weights = finalized.accepted, finalized.weights
    report = InfluenceReport(task_id, round_, str(spec), base_cid, finalized.aggregate_cid, source.info)
    if update is not None and update not in {u.cid for u in accepted}:
        raise UpdateNotInRound(update, task_id, round_, [u.cid or "" for u in accepted])
    if not accepted:
        report.notes.append("no update was aggregated in this round (carried over): nothing has influence")
        return report
    chosen = [u for u in accepted if update is None or u.cid == update]
    store = open_store(settings)
    try:
        with tempfile.TemporaryDirectory(prefix="meshprov-influence-") as tmp:
            work = Path(tmp)
            started = time.perf_counter()
            base_path, model_path = work / "base.safetensors", work / "model.safetensors"
            fetch_to_file(store, base_cid, base_path, max_bytes=settings.max_update_bytes)
            fetch_to_file(store, finalized.aggregate_cid, model_path, max_bytes=settings.max_update_bytes)
            paths = {}
            for u in accepted:
                paths[u.index] = work / f"{u.cid}.safetensors"
                fetch_to_file(store, u.cid or "", paths[u.index], max_bytes=settings.max_update_bytes)
            report.fetch_seconds = time.perf_counter() - started
            report.step = _distance_files(model_path, base_path)
            if evaluator is not None:
                report.metrics = _evaluate(evaluator, model_path)
            for u in chosen:
                row = InfluenceRow(u.cid or "", u.contributor, weights[u.index])
                t0 = time.perf_counter()
                others = [o for o in accepted if o.index != u.index]
                loo_path, row.loo_cid = _leave_out(
                    others,
                    paths=paths,
                    weights=weights,
                    base_path=base_path,
                    base_cid=base_cid,
                    spec=spec,
                    work=work,
                    task_id=task_id,
                    round_=round_,
                )
                row.distance = _distance_files(model_path, loo_path)
                row.relative = row.distance / report.step if report.step else None
                if evaluator is not None and report.metrics is not None:
                    row.metrics = _evaluate(evaluator, loo_path)
                    row.change = {
                        k: row.metrics[k] - report.metrics[k] for k in row.metrics if k in report.metrics
                    }
                if keep is not None:
                    keep.mkdir(parents=True, exist_ok=True)
                    target = keep / f"{row.loo_cid}.safetensors"
                    if not target.exists():
                        _copy_atomic(loo_path, target)
                if loo_path != base_path:
                    loo_path.unlink()
                row.seconds = time.perf_counter() - t0
                report.rows.append(row)
    finally:
        store.close()
    return report


def _leave_out(
    others: list[Any],
    *,
    paths: Mapping[int, Path],
    weights: Mapping[int, int],
    base_path: Path,
    base_cid: str,
    spec: Any,
    work: Path,
    task_id: int,
    round_: int,
) -> tuple[Path, str]:
    """The round's aggregate of ``others`` (written under ``work``) and its CID; the base when none is left."""
    from ledger.aggregation import prepare, write_aggregation
    from ledger.audit.replay import contribution
    from ledger.content import cid_to_digest
    from ledger.updatefile import UpdateFile

    if not others:
        return base_path, base_cid
    out = work / "loo.safetensors"
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(UpdateFile.open(base_path))
        contributions = [
            contribution(
                cid_to_digest(o.cid or ""),
                stack.enter_context(UpdateFile.open(paths[o.index])),
                weight=weights[o.index],
                num_samples=o.num_samples,
            )
            for o in others
        ]
        written = write_aggregation(
            out, prepare(base, contributions, spec), task=task_id, round=round_, parent=base_cid
        )
    return out, written.cid


def _float64(info: Any, source: TensorSource) -> NDArray[np.float64]:
    from ledger.updatefile.dtypes import bf16_to_float32

    values = np.asarray(source.tensor(info.key))
    if info.bfloat16:
        values = bf16_to_float32(values)
    return np.asarray(values, dtype=np.float64).reshape(-1)


def distance(a: TensorSource, b: TensorSource) -> float:
    """L2 distance between two models of the same layout, over every tensor, one tensor at a time."""
    from ledger.aggregation.source import describe_source

    layout_a, layout_b = describe_source(a), describe_source(b)
    if [(i.key, i.shape) for i in layout_a] != [(i.key, i.shape) for i in layout_b]:
        raise ValueError("the two models have different tensors or shapes")
    total = 0.0
    for info in layout_a:
        diff = _float64(info, a) - _float64(info, b)
        total += float(np.dot(diff, diff))
    return math.sqrt(total)


def full_weights(source: TensorSource) -> dict[str, NDArray[Any]]:
    """A model file's weights as an evaluator takes them: each tensor in its dtype, bfloat16 as float32."""
    from ledger.aggregation.source import describe_source
    from ledger.updatefile.dtypes import bf16_to_float32

    out: dict[str, NDArray[Any]] = {}
    for info in describe_source(source):
        values = np.array(source.tensor(info.key))
        out[info.key] = bf16_to_float32(values).reshape(info.shape) if info.bfloat16 else values
    return out


def _distance_files(a: Path, b: Path) -> float:
    from ledger.updatefile import UpdateFile

    with UpdateFile.open(a) as fa, UpdateFile.open(b) as fb:
        return distance(fa, fb)


def _evaluate(evaluator: Evaluator, path: Path) -> dict[str, float]:
    from ledger.updatefile import UpdateFile

    with UpdateFile.open(path) as model:
        metrics = evaluator(full_weights(model))
    return {str(k): float(v) for k, v in metrics.items()}


def _copy_atomic(src: Path, dest: Path) -> None:
    import os
    import shutil

    tmp = dest.with_name(f".{dest.name}.part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)

"""`audit replay`: recompute a round's aggregate exactly as the aggregator did, and compare CIDs.

The accepted updates and the base are fetched from the content store (every block checked against its CID),
opened with the same reader, weighted by their consensus scores from the round's ``RoundFinalized`` settlements
(protocol R5: never by the claimed sample counts), aggregated by the same streaming driver with the rule recorded
in that event, and written by the same aggregate-file writer: the same inputs give the same bytes, so an honest
aggregator's CID is reproduced bit for bit, whatever the state dict holds: BatchNorm buffers, float16 and bfloat16
tensors, integer and bool buffers go through the same per-dtype rules (docs/aggregation.md, "Buffers and dtypes";
``tests/ledger/audit/test_replay_state_dicts.py`` replays such a round under every rule). A carried-over round has no aggregate of its own: it replays to its
base. Memory grows with the model, not with the number of
updates; the files live in a temporary directory removed afterwards (``keep`` copies the aggregate out first).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.errors import NotFound
from ledger.exit_codes import ExitCode

if TYPE_CHECKING:
    from ledger.aggregation import AggregationSpec, Contribution, TensorSource
    from ledger.audit.source import Source, SourceInfo
    from ledger.index.models import Round, Update
    from ledger.settings import Settings


class RoundNotFinalized(NotFound):
    def __init__(self, task_id: int, round_: int) -> None:
        super().__init__(
            f"round {round_} of task {task_id} is not finalized: there is no aggregate to replay yet",
            hint="replay an earlier round, or wait for the aggregator",
        )


@dataclass
class ReplayReport:
    task_id: int
    round: int
    rule: str
    base_cid: str
    onchain_cid: str
    inputs: list[dict[str, Any]]
    source: SourceInfo
    recomputed_cid: str | None = None
    seconds: float = 0.0
    kept: str | None = None
    notes: list[str] = field(default_factory=list)
    carried_over: bool = False  # finalizeCarryOver: the base is the round's model, nothing was aggregated

    @property
    def status(self) -> str:
        if self.carried_over or not self.inputs:
            return "carried-over" if self.onchain_cid == self.base_cid else "mismatch"
        return "match" if self.recomputed_cid == self.onchain_cid else "mismatch"

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.MISMATCH if self.status == "mismatch" else ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "round": self.round,
            "rule": self.rule,
            "base_cid": self.base_cid,
            "onchain_cid": self.onchain_cid,
            "recomputed_cid": self.recomputed_cid,
            "status": self.status,
            "carried_over": self.carried_over,
            "inputs": self.inputs,
            "seconds": round(self.seconds, 3),
            "kept": self.kept,
            "notes": self.notes,
            "source": self.source.to_dict(),
        }


def replay(
    source: Source, settings: Settings, task_id: int, round_: int, *, keep: Path | None = None
) -> ReplayReport:
    from ledger.aggregation import prepare
    from ledger.aggregation.output import write_aggregation
    from ledger.content import cid_to_digest, fetch_to_file, open_store
    from ledger.updatefile import UpdateFile

    finalized = finalized_round(source, task_id, round_)
    detail, spec, base_cid = finalized.detail, finalized.spec, finalized.base_cid
    accepted, weights = finalized.accepted, finalized.weights
    report = ReplayReport(
        task_id,
        round_,
        str(spec),
        base_cid,
        finalized.aggregate_cid,
        [
            {
                "cid": u.cid,
                "contributor": u.contributor,
                "weight": weights[u.index],
                "num_samples": u.num_samples,
            }
            for u in accepted
        ],
        source.info,
        carried_over=detail.carried_over,
    )
    if detail.carried_over:
        report.notes.append(
            f"carried over by {detail.finalized_by} after the grace: no aggregate was made, the model is the base"
        )
        return report
    if not accepted:
        report.notes.append("no update was accepted: the model carried over, the aggregate is the base")
        return report
    started = time.perf_counter()
    store = open_store(settings)
    try:
        with tempfile.TemporaryDirectory(prefix="meshprov-replay-") as tmp:
            work = Path(tmp)
            base_path = work / "base.safetensors"
            fetch_to_file(store, base_cid, base_path, max_bytes=settings.max_update_bytes)
            paths = []
            for u in accepted:
                path = work / f"{u.cid}.safetensors"
                fetch_to_file(store, u.cid or "", path, max_bytes=settings.max_update_bytes)
                paths.append(path)
            out = work / "aggregate.safetensors"
            with contextlib.ExitStack() as stack:
                base = stack.enter_context(UpdateFile.open(base_path))
                contributions = [
                    contribution(
                        cid_to_digest(u.cid or ""),
                        stack.enter_context(UpdateFile.open(p)),
                        weight=weights[u.index],
                        num_samples=u.num_samples,
                    )
                    for u, p in zip(accepted, paths, strict=True)
                ]
                agg = prepare(base, contributions, spec)
                written = write_aggregation(out, agg, task=task_id, round=round_, parent=base_cid)
            report.recomputed_cid = written.cid
            if keep is not None:
                keep.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out, keep)
                report.kept = str(keep)
    finally:
        store.close()
    report.seconds = time.perf_counter() - started
    return report


@dataclass(frozen=True)
class FinalizedRound:
    """What a replay of a finalized round starts from, as the index recorded it."""

    detail: Round
    spec: AggregationSpec
    aggregate_cid: str
    base_cid: str
    accepted: list[Update]
    """The updates aggregated: none when the round was carried over."""
    weights: dict[int, int]
    """``{update index: FedAvg weight}`` of the accepted updates (:func:`round_weights`)."""


def finalized_round(source: Source, task_id: int, round_: int) -> FinalizedRound:
    """The index's record of a finalized round; :class:`RoundNotFinalized` when it has no aggregate yet."""
    from ledger.aggregation import AggregationSpec

    detail = source.queries.round(task_id, round_)
    if (
        not detail.finalized
        or detail.aggregate_cid is None
        or detail.rule is None
        or detail.rule_param is None
    ):
        raise RoundNotFinalized(task_id, round_)
    carried = detail.carried_over
    return FinalizedRound(
        detail,
        AggregationSpec.decode(detail.rule, detail.rule_param),
        detail.aggregate_cid,
        detail.base_cid or "",
        [] if carried else list(detail.accepted_updates),
        {} if carried else round_weights(detail),
    )


def round_weights(detail: Round) -> dict[int, int]:
    """``{update index: FedAvg weight}`` of a finalized round: the consensus of each accepted update, read from
    the settlements, through the one weight source the aggregator uses too (``consensus_weights``)."""
    from ledger.aggregation import consensus_weights
    from ledger.chain.types import bitmap

    consensus = [u.consensus if u.consensus is not None else 0 for u in detail.updates]
    return consensus_weights(consensus, bitmap(detail.accepted_indexes))


def contribution(digest: bytes, source: TensorSource, *, weight: int, num_samples: int) -> Contribution:
    """One accepted update as the aggregation driver takes it: weighted by its consensus; the sample count rides
    along for the record only (protocol R2)."""
    from ledger.aggregation import Contribution

    return Contribution(digest, source=source, weight=weight, num_samples=num_samples)

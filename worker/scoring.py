"""A validator's scores for a round (protocol R3): the hard checks' verdicts, then each survivor's score.

    reference = reference_update(trainer, base, seed=reference_seed(task, round, me))    # worker.reference
    history = VectorHistory(cache_dir / "vectors")                                       # the last rounds' accepted
    vectors = [vector_of(path, layout) if judged ok else None for ...]                   # one pass per update file
    verdicts = judge_round(judged, limits, vectors=vectors, authors=authors, history=history.recent(task, round))
    scores = [rejected(v.reason, v.detail) if not v.accepted else
              score_update(path, base=base, reference=reference, evaluate=evaluate, margin=margin,
                           base_loss=base_loss, vector=vectors[i]) for i, v in enumerate(verdicts)]
    values, reasons = reveal_arrays(scores)                                             # -> ScoreSheet.new(...)
    ... after finalization: history.put(task, round, contributor, vectors[i]) for every accepted update i

The arithmetic is ``ledger.checks.score`` (pure); this module evaluates the held-out losses, reads update files
and keeps the vectors the copy checks compare new updates with. docs/scoring.md explains the score.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ledger.aggregation.source import TensorInfo, TensorSource
from ledger.checks import (
    NEAR_COPY_ROUNDS,
    CheckLimits,
    LossFn,
    Score,
    ScoringError,
    Vector,
    Verdict,
    check_loss,
    flatten,
    rejected,
    score_vector,
)

__all__ = ["Score", "VectorHistory", "round_scores", "score_update", "vector_of"]


def vector_of(path: Path, layout: Sequence[TensorInfo] | None = None) -> Vector:
    """An update file's delta as one float64 vector (``ledger.checks.flatten``)."""
    from ledger.updatefile import UpdateFile

    with UpdateFile.open(path) as update:
        return flatten(update, layout)


def score_update(
    path: Path,
    *,
    base: TensorSource,
    reference: Vector,
    evaluate: LossFn | None = None,
    margin: float | None = None,
    base_loss: float | None = None,
    vector: Vector | None = None,
    layout: Sequence[TensorInfo] | None = None,
    reference_norm: float | None = None,
) -> Score:
    """Score an update file that passed the hard checks against this validator's ``reference``.

    With ``evaluate`` (the held-out loss of full weights) and ``margin`` the loss gate applies: LOSS_REGRESSION
    when loss(base + update) > loss(base) + margin. ``base_loss`` is loss(base), computed here when not given
    (pass it: the base is evaluated once per round, ``Score.base_loss`` holds it). ``vector``: the update's
    vector if the caller already has it (the copy checks needed it). ``reference_norm``: ``norm(reference)``, which
    a caller scoring a round's updates against one reference measures once (the worker does), not per update."""
    from ledger.updatefile import UpdateFile

    if (evaluate is None) != (margin is None):
        raise ScoringError("the loss gate needs both the evaluator and the margin (or neither)")
    loss = None
    with UpdateFile.open(path) as update:
        if vector is None:
            vector = flatten(update, layout)
        if evaluate is not None and margin is not None:
            checked = check_loss(update, base, evaluate, CheckLimits(loss_delta=margin), base_loss=base_loss)
            loss, base_loss = checked.loss, checked.base_loss
    return score_vector(
        vector, reference, loss=loss, base_loss=base_loss, margin=margin, reference_norm=reference_norm
    )


def round_scores(verdicts: Sequence[Verdict], scores: Mapping[int, Score]) -> list[Score]:
    """One score per update (index order): REJECT and the reason for every rejected verdict, ``scores[i]`` (from
    :func:`score_update`) for every update ``i`` that passed the hard checks."""
    out = []
    for i, v in enumerate(verdicts):
        if not v.accepted:
            out.append(rejected(v.reason, v.detail))
        elif i in scores:
            out.append(scores[i])
        else:
            raise ScoringError(f"update {i} passed the hard checks but has no score")
    return out


_NAME = re.compile(r"^(?P<round>\d+)-(?P<index>\d+)-(?P<who>0x[0-9a-f]{40})\.npy$")


class VectorHistory:
    """The vectors of the last rounds' accepted updates, on disk (float32 ``.npy``, memory-mapped on reading).

    Layout: ``<directory>/<task>/<round>-<index>-<contributor>.npy``. :meth:`recent` gives what
    ``judge_round(history=...)`` compares a round's updates with; :meth:`put` adds an accepted update once its
    round is finalized; :meth:`prune` drops what no later round compares with. Keep only *accepted* updates
    (``ledger.checks.copies`` says why)."""

    def __init__(self, directory: Path, *, rounds: int = NEAR_COPY_ROUNDS) -> None:
        if rounds < 1:
            raise ValueError(f"a history of {rounds} rounds compares with nothing")
        self.directory = directory
        self.rounds = rounds

    def _task_dir(self, task_id: int) -> Path:
        return self.directory / str(int(task_id))

    def put(self, task_id: int, round_: int, index: int, contributor: str, vector: Vector) -> Path:
        """Keep an accepted update's vector (atomically: a crash leaves no half-written file)."""
        who = contributor.lower()
        if not re.fullmatch(r"0x[0-9a-f]{40}", who):
            raise ValueError(f"{contributor!r} is not an address")
        if not np.isfinite(vector).all():
            raise ValueError("an accepted update's vector holds NaN or Inf")
        folder = self._task_dir(task_id)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{int(round_)}-{int(index)}-{who}.npy"
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(vector, dtype=np.float32))
        tmp.replace(target)
        return target

    def recent(self, task_id: int, round_: int) -> list[tuple[str, Vector]]:
        """``(contributor, vector)`` of the accepted updates of rounds ``round_ - rounds`` .. ``round_ - 1``."""
        folder = self._task_dir(task_id)
        if not folder.is_dir():
            return []
        out = []
        for path in sorted(folder.iterdir()):
            m = _NAME.match(path.name)
            if m and round_ - self.rounds <= int(m["round"]) < round_:
                out.append((m["who"], np.load(path, mmap_mode="r")))
        return out

    def prune(self, task_id: int, round_: int) -> int:
        """Delete vectors no round from ``round_`` on compares with; returns how many were deleted."""
        folder = self._task_dir(task_id)
        removed = 0
        if folder.is_dir():
            for path in folder.iterdir():
                m = _NAME.match(path.name)
                if m and int(m["round"]) < round_ - self.rounds:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

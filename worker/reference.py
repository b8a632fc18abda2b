"""A validator's reference update: what an honest member would have sent, trained on the validator's own data.

Each validator trains, from the round's base, a small fixed number of steps of the task's training recipe on its
private held-out slice, with a seed derived from (task, round, validator): the same validator always gets the
same reference for a round (a retried job scores alike), two validators get different ones. The update it then
scores is compared with this reference (``worker.scoring``, docs/scoring.md): the FLTrust idea, with each
validator's own root data instead of one server's.

The training itself is the task's code, which the worker does not hold (``worker`` imports only ``ledger``): it
is a plug-in named ``MODULE:FUNCTION`` like the held-out evaluator (``--evaluator node.heldout:loss``), called as

    trainer(weights: Mapping[str, ndarray], *, seed: int, steps: int) -> Mapping[str, ndarray]

with the base's full weights (bfloat16 given as float32), returning the *delta* (trained minus base) of at least
every floating-point tensor, as a member's update holds it. It must be deterministic given ``seed``. With
``meshprov worker run --recipe`` the trainer is the task's recipe (its ``train`` or the default loop on the
validator's slice), reached through :mod:`worker.recipe`'s host.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ledger.aggregation.source import ArraySource, TensorInfo, TensorSource, describe_source, load_values
from ledger.checks import ScoringError, Vector, flatten
from ledger.checks.anchored import DEFAULT_REFERENCE_STEPS
from ledger.errors import ConfigError

REFERENCE_STEPS = DEFAULT_REFERENCE_STEPS
"""Optimiser steps of the reference training when the task anchors no ``reference_steps``: enough for a direction,
cheap next to fetching a round."""


class ReferenceTrainer(Protocol):
    def __call__(
        self, weights: Mapping[str, NDArray[Any]], *, seed: int, steps: int
    ) -> Mapping[str, NDArray[Any]]: ...


def reference_seed(task_id: int, round_: int, validator: str) -> int:
    """The seed of a validator's reference training for a round (63 bits, from SHA-256: no machine dependence)."""
    text = f"meshprov/reference/v1:{task_id}:{round_}:{validator.lower()}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def load_trainer(spec: str) -> ReferenceTrainer:
    """The trainer named ``MODULE:FUNCTION`` (``ConfigError`` naming what is wrong otherwise)."""
    from worker.plugins import load_plugin

    trainer: ReferenceTrainer = load_plugin(spec, "the reference trainer", example="node.heldout:reference")
    return trainer


def reference_update(
    trainer: ReferenceTrainer,
    base: TensorSource,
    *,
    seed: int,
    steps: int = REFERENCE_STEPS,
    layout: Sequence[TensorInfo] | None = None,
) -> Vector:
    """Train the reference from ``base`` and return its delta as one float64 vector (``ledger.checks.flatten``
    order, so it lines up with every update's vector).

    The global random generators (Python's, NumPy's legacy one, torch's when torch is loaded) are seeded too, so
    a trainer that forgets to use ``seed`` somewhere is still reproducible. A delta that lacks a tensor, has
    another shape, or holds NaN/Inf, or is all zero, is the trainer's failure: ``ScoringError``."""
    if steps < 1:
        raise ConfigError(f"the reference needs at least one training step, got {steps}")
    layout = list(layout) if layout is not None else describe_source(base)
    _seed_globals(seed)
    delta = trainer(_full_weights(base, layout), seed=seed, steps=steps)
    params = [info for info in layout if info.parameter]
    arrays: dict[str, NDArray[Any]] = {}
    for info in params:
        if info.key not in delta:
            raise ScoringError(
                f"the reference trainer returned no {info.key!r} (it must return every parameter)"
            )
        value = np.asarray(_to_numpy(delta[info.key]), dtype=np.float64)
        if value.size != info.size:
            raise ScoringError(
                f"the reference trainer's {info.key!r} has {value.size} values, the base's tensor {info.size}"
            )
        arrays[info.key] = value.reshape(info.shape)
    vector = flatten(ArraySource(arrays))
    if not np.isfinite(vector).all():
        raise ScoringError("the reference update holds NaN or Inf: the reference training diverged")
    if not math.sqrt(float(np.square(vector).sum())) > 0:
        raise ScoringError("the reference update is zero: the reference trainer did not train")
    return vector


def _full_weights(base: TensorSource, layout: Sequence[TensorInfo]) -> dict[str, NDArray[Any]]:
    out: dict[str, NDArray[Any]] = {}
    for info in layout:
        flat = np.asarray(base.tensor(info.key)).reshape(-1)
        if info.bfloat16:
            out[info.key] = (
                load_values(info, flat, np.empty(info.size)).astype(np.float32).reshape(info.shape)
            )
        else:
            out[info.key] = np.array(flat, dtype=info.dtype).reshape(info.shape)
    return out


def _to_numpy(value: Any) -> Any:
    """A torch tensor (detached, on the CPU) or anything array-like, as NumPy."""
    detach = getattr(value, "detach", None)
    if callable(detach):
        return detach().cpu().numpy()
    return value


def _seed_globals(seed: int) -> None:
    import sys

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)

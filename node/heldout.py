"""A validator's held-out data for the digits task: the evaluator (``--evaluator node.heldout:loss``) and the
reference trainer (``--reference-trainer node.heldout:reference``) of ``meshprov worker run``.

Each validator may hold its own slice of the held-out set: ``HELDOUT_SLICE=v/V`` gives validator ``v``
(0-based) of ``V`` the samples ``v, v + V, v + 2V, …`` (the demo sets it; unset: the whole held-out set). The
reference trainer trains, from the round's base, the members' recipe (``node.training``) on that slice for at
least ``steps`` SGD steps and returns the delta: the update an honest member with this data would send
(docs/scoring.md).

The worker calls :func:`loss` with the full weights of base + update and compares the result with the base's
loss (``LOSS_REGRESSION`` when it rises by more than ``--loss-delta``). The architecture is recognised from the
weights' keys and shapes. The held-out data is the even-numbered half of the digits test split (225 images): the
validators' own data in the demo, never used for training; the demo reports accuracy on the whole test split.

Honest non-IID updates raise this loss by up to ≈ 2.2 nats (a member whose shard is mostly one class moves the
model towards it), an update scaled by 10 by ≥ 15 (measured over 7 rounds of the default federation), hence the
demo's ``--loss-delta 5``: it rejects scaled updates and never an honest one. A sign-flipped update is not
reliably caught by this check late in training (its loss increase falls into the honest range); robust
aggregation rules are the defence there (docs/demo.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from node.slices import validator_slice

if TYPE_CHECKING:
    from node.data import Dataset

SEED = 0


@cache
def heldout_data(seed: int = SEED) -> Dataset:
    """The validators' held-out set: every other sample of the fixed digits test split."""
    from node.data import train_test_split

    _, test = train_test_split(seed=seed)
    return test.subset(np.arange(0, len(test), 2))


def slice_data(seed: int = SEED) -> Dataset:
    """This validator's slice of the held-out set (``HELDOUT_SLICE``)."""
    v, n = validator_slice()
    data = heldout_data(seed)
    return data if n == 1 else data.subset(np.arange(v, len(data), n))


def reference(weights: Mapping[str, Any], *, seed: int, steps: int) -> dict[str, np.ndarray]:
    """A reference update (``worker.reference`` plug-in): the members' training recipe from ``weights`` on this
    validator's slice, seeded, for at least ``steps`` SGD steps; returns the delta."""
    import math
    from dataclasses import replace

    from ledger.errors import ConfigError
    from node.basemodel import infer_model
    from node.training import default_config, local_train

    state = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    model = infer_model(state)
    if model is None:
        raise ConfigError("node.heldout:reference got weights of no registered architecture")
    data = slice_data()
    config = default_config(model)
    per_epoch = max(1, math.ceil(len(data) / config.batch_size))
    recipe = replace(config, seed=seed, epochs=max(1, math.ceil(steps / per_epoch)))
    return dict(local_train(model, state, data, recipe).delta)


def slice_loss(weights: Mapping[str, Any]) -> float:
    """Mean cross-entropy on this validator's slice (an evaluator like :func:`loss`)."""
    from ledger.errors import ConfigError
    from node.basemodel import infer_model
    from node.training import evaluate

    state = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    model = infer_model(state)
    if model is None:
        raise ConfigError("node.heldout:slice_loss got weights of no registered architecture")
    return evaluate(model, state, slice_data()).loss


def loss(weights: Mapping[str, Any]) -> float:
    """Mean cross-entropy of the full weights on the held-out set (a worker evaluator: weights in, float out)."""
    from ledger.errors import ConfigError
    from node.basemodel import infer_model
    from node.training import evaluate

    state = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    model = infer_model(state)
    if model is None:
        raise ConfigError("node.heldout:loss got weights of no registered architecture")
    return evaluate(model, state, heldout_data()).loss


def warm_up() -> None:
    """Import torch, load the held-out data and run one evaluation, so that the validator pays this (≈ 2 s)
    while it starts, not on its first scoring, on the round's critical path."""
    from node.models import genesis_state

    loss(genesis_state("mlp"))


# The worker imports its evaluator when it starts (`--evaluator node.heldout:loss`): warm up then.
warm_up()

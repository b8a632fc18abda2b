"""A validator's held-out evaluation for the digits task: ``meshprov worker run --evaluator node.heldout:loss``.

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

if TYPE_CHECKING:
    from node.data import Dataset

SEED = 0


@cache
def heldout_data(seed: int = SEED) -> Dataset:
    """The validators' held-out set: every other sample of the fixed digits test split."""
    from node.data import train_test_split

    _, test = train_test_split(seed=seed)
    return test.subset(np.arange(0, len(test), 2))


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
    while it starts, not on its first ballot, on the round's critical path."""
    from node.models import genesis_state

    loss(genesis_state("mlp"))


# The worker imports its evaluator when it starts (`--evaluator node.heldout:loss`): warm up then.
warm_up()

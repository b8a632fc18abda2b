"""The centrally trained baseline: the same model, hyperparameters and budget as the federation, on the pooled
training set. The demo reports it next to the federated model so a reader sees what federation costs.

Budget: a federated round shows every training sample to its node ``epochs`` times, so ``rounds`` rounds are
``rounds × epochs`` passes over the union of the shards, which is the whole training set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from node.data import DEFAULT_TEST_FRACTION, train_test_split
from node.errors import InvalidParameter
from node.models import DEFAULT_MODEL, genesis_state
from node.training import TrainConfig, default_config, evaluate, local_train


@dataclass(frozen=True)
class CentralResult:
    model: str
    epochs: int
    accuracy: float
    loss: float
    num_train: int
    num_test: int
    seconds: float


def train_central(
    model: str = DEFAULT_MODEL,
    *,
    rounds: int = 10,
    config: TrainConfig | None = None,
    seed: int = 0,
    test_fraction: float = DEFAULT_TEST_FRACTION,
) -> CentralResult:
    """Train from the genesis model of ``seed`` on the full training split for ``rounds × config.epochs`` epochs
    and evaluate on the same test split the federation uses."""
    if rounds < 1:
        raise InvalidParameter("rounds", rounds, "must be at least 1")
    config = config if config is not None else default_config(model)
    train, test = train_test_split(seed=seed, test_fraction=test_fraction)
    budget = replace(config, epochs=rounds * config.epochs, seed=seed)
    result = local_train(model, genesis_state(model, seed), train, budget)
    evaluation = evaluate(model, result.state, test, threads=config.threads)
    return CentralResult(
        model=model,
        epochs=budget.epochs,
        accuracy=evaluation.accuracy,
        loss=evaluation.loss,
        num_train=len(train),
        num_test=len(test),
        seconds=result.seconds,
    )

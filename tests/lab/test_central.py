"""The centrally trained baseline the demo reports next to the federated model."""

from __future__ import annotations

import pytest

from lab.central import train_central
from node.errors import InvalidParameter
from node.training import default_config


def test_central_baseline_reaches_97_percent_with_the_federation_budget() -> None:
    result = train_central("mlp", rounds=10, seed=0)
    assert result.epochs == 10 * default_config("mlp").epochs
    assert (result.num_train, result.num_test) == (1347, 450)
    assert result.accuracy >= 0.97, result


def test_central_rounds_must_be_positive() -> None:
    with pytest.raises(InvalidParameter):
        train_central(rounds=0)

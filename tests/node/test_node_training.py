"""Local training: it learns, the delta is exact, runs are reproducible, torch settings are scoped."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from node.data import Dataset, make_federation
from node.errors import InvalidParameter, StateMismatch
from node.models import genesis_state
from node.training import (
    TrainConfig,
    apply_delta,
    default_config,
    evaluate,
    local_train,
    update_norm,
)


@pytest.fixture(scope="module")
def shard() -> Dataset:
    return make_federation(5, 0.5, seed=0).node_data(0)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_training_reduces_loss_on_the_shard(model: str, shard: Dataset) -> None:
    base = genesis_state(model)
    result = local_train(model, base, shard, default_config(model))
    before = evaluate(model, base, shard)
    after = evaluate(model, result.state, shard)
    assert after.loss < 0.75 * before.loss
    assert after.accuracy > before.accuracy + 0.3
    assert math.isfinite(result.train_loss)
    assert result.train_loss < before.loss


def test_delta_is_exactly_local_minus_base(shard: Dataset) -> None:
    base = genesis_state("mlp")
    result = local_train("mlp", base, shard, TrainConfig(epochs=1))
    assert list(result.delta) == list(base) == list(result.state)
    for key, value in base.items():
        assert result.delta[key].dtype == np.float32
        assert np.array_equal(result.delta[key], result.state[key] - value)
    assert update_norm(result.delta) > 0
    rebuilt = apply_delta(base, result.delta)
    assert all(np.allclose(rebuilt[k], result.state[k], rtol=0, atol=1e-6) for k in base)


def test_training_does_not_touch_the_base(shard: Dataset) -> None:
    base = genesis_state("mlp")
    snapshot = {k: v.copy() for k, v in base.items()}
    local_train("mlp", base, shard, TrainConfig(epochs=1))
    assert all(np.array_equal(base[k], snapshot[k]) for k in base)


def test_same_seed_same_bytes_other_seed_other_bytes(shard: Dataset) -> None:
    base = genesis_state("cnn")
    config = TrainConfig(epochs=1, seed=11, lr=0.05)
    a = local_train("cnn", base, shard, config)
    b = local_train("cnn", base, shard, config)
    c = local_train("cnn", base, shard, replace(config, seed=12))
    assert all(a.delta[k].tobytes() == b.delta[k].tobytes() for k in base)
    assert a.train_loss == b.train_loss
    assert any(a.delta[k].tobytes() != c.delta[k].tobytes() for k in base)


def test_counts_steps_samples_and_reports_progress(shard: Dataset) -> None:
    calls: list[tuple[int, int]] = []
    seen: list[tuple[int, bool]] = []

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        seen.append((torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()))

    config = TrainConfig(epochs=2, batch_size=50)
    result = local_train("mlp", genesis_state("mlp"), shard, config, progress=progress)
    total = 2 * math.ceil(len(shard) / 50)
    assert result.num_samples == len(shard)
    assert result.steps == total
    assert calls == [(i, total) for i in range(1, total + 1)]
    assert set(seen) == {(1, True)}  # one thread, deterministic algorithms, while training


def test_torch_settings_are_restored_afterwards(shard: Dataset) -> None:
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    local_train("mlp", genesis_state("mlp"), shard, TrainConfig(epochs=1))
    evaluate("mlp", genesis_state("mlp"), shard)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, deterministic)


def test_evaluate_an_untrained_model_is_near_chance(shard: Dataset) -> None:
    evaluation = evaluate("mlp", genesis_state("mlp"), shard)
    assert evaluation.num_samples == len(shard)
    assert 0.0 <= evaluation.accuracy < 0.35
    assert evaluation.loss == pytest.approx(math.log(10), rel=0.2)


def test_evaluate_is_batch_size_independent(shard: Dataset) -> None:
    state = genesis_state("cnn", 2)
    a, b = evaluate("cnn", state, shard, batch_size=7), evaluate("cnn", state, shard)
    assert a.accuracy == b.accuracy
    assert a.loss == pytest.approx(b.loss, rel=1e-5)


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(epochs=0),
        TrainConfig(batch_size=0),
        TrainConfig(lr=0.0),
        TrainConfig(momentum=1.0),
        TrainConfig(weight_decay=-1.0),
        TrainConfig(threads=0),
    ],
)
def test_bad_hyperparameters_are_rejected(config: TrainConfig, shard: Dataset) -> None:
    with pytest.raises(InvalidParameter):
        local_train("mlp", genesis_state("mlp"), shard, config)


def test_empty_shard_is_rejected() -> None:
    empty = Dataset(x=np.zeros((0, 1, 8, 8), np.float32), y=np.zeros(0, np.int64))
    with pytest.raises(InvalidParameter):
        local_train("mlp", genesis_state("mlp"), empty)
    with pytest.raises(InvalidParameter):
        evaluate("mlp", genesis_state("mlp"), empty)


def test_base_of_another_model_is_rejected(shard: Dataset) -> None:
    with pytest.raises(StateMismatch):
        local_train("mlp", genesis_state("cnn"), shard)


def test_default_configs_are_tuned_per_model() -> None:
    assert default_config("mlp") == TrainConfig()
    assert default_config("cnn").lr < default_config("mlp").lr
    assert default_config("not-tuned") == TrainConfig()

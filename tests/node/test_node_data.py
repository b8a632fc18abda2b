"""Digits loading, normalisation, the fixed split, and non-IID Dirichlet shards."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.data import (
    PIXEL_MAX,
    PIXEL_MEAN,
    PIXEL_STD,
    dirichlet_shards,
    label_entropy,
    load_digits_dataset,
    make_federation,
    node_dataset,
    train_test_split,
)
from node.errors import InvalidParameter, ShardingFailed


def test_digits_are_normalised_images() -> None:
    full = load_digits_dataset()
    assert full.x.shape == (1797, 1, 8, 8)
    assert full.x.dtype == np.float32
    assert full.y.dtype == np.int64
    assert abs(float(full.x.mean())) < 1e-3
    assert abs(float(full.x.std()) - 1.0) < 1e-3


def test_normalisation_constants_match_the_data() -> None:
    from sklearn.datasets import load_digits

    pixels = load_digits().data / PIXEL_MAX
    assert float(pixels.mean()) == pytest.approx(PIXEL_MEAN, abs=1e-4)
    assert float(pixels.std()) == pytest.approx(PIXEL_STD, abs=1e-4)


def test_cached_dataset_is_read_only() -> None:
    with pytest.raises(ValueError, match="read-only"):
        load_digits_dataset().x[0, 0, 0, 0] = 1.0


def test_split_is_fixed_by_seed_and_stratified() -> None:
    train, test = train_test_split(seed=0)
    train2, test2 = train_test_split(seed=0)
    _, test3 = train_test_split(seed=1)
    assert (len(train), len(test)) == (1347, 450)
    assert np.array_equal(train.x, train2.x)
    assert np.array_equal(test.y, test2.y)
    assert not np.array_equal(test.x, test3.x)
    full_counts = load_digits_dataset().label_counts()
    assert np.array_equal(train.label_counts() + test.label_counts(), full_counts)
    assert np.all(np.abs(test.label_counts() - 0.25 * full_counts) <= 1)


def test_split_rejects_a_bad_fraction() -> None:
    with pytest.raises(InvalidParameter):
        train_test_split(test_fraction=1.0)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=400),
    num_nodes=st.integers(min_value=1, max_value=12),
    alpha=st.floats(min_value=0.01, max_value=100.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_shards_are_disjoint_covering_and_sorted(n: int, num_nodes: int, alpha: float, seed: int) -> None:
    labels = np.random.default_rng(seed).integers(0, 10, size=n)
    shards = dirichlet_shards(labels, num_nodes, alpha, seed=seed, min_samples=0)
    assert len(shards) == num_nodes
    assert np.array_equal(np.sort(np.concatenate(shards)), np.arange(n))
    assert all(np.array_equal(s, np.sort(s)) for s in shards)


def test_every_node_gets_the_minimum() -> None:
    labels = train_test_split()[0].y
    shards = dirichlet_shards(labels, 10, 0.3, seed=4, min_samples=40)
    assert min(len(s) for s in shards) >= 40


def test_shards_are_deterministic_given_the_seed() -> None:
    labels = train_test_split()[0].y
    a = dirichlet_shards(labels, 5, 0.5, seed=3)
    b = dirichlet_shards(labels, 5, 0.5, seed=3)
    c = dirichlet_shards(labels, 5, 0.5, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def _mean_shard_entropy(alpha: float) -> float:
    labels = train_test_split()[0].y
    entropies = [
        label_entropy(labels[shard])
        for seed in range(5)
        for shard in dirichlet_shards(labels, 5, alpha, seed=seed)
    ]
    return float(np.mean(entropies))


def test_shards_become_less_iid_as_alpha_shrinks() -> None:
    h = {alpha: _mean_shard_entropy(alpha) for alpha in (100.0, 1.0, 0.5, 0.1)}
    assert h[100.0] > h[1.0] > h[0.5] > h[0.1]
    assert h[100.0] == pytest.approx(math.log2(10), abs=0.05)  # near-IID: every node sees every class evenly
    assert h[0.1] < 2.0  # a handful of classes per node


def test_label_entropy_bounds() -> None:
    assert label_entropy(np.full(20, 3)) == 0.0
    assert label_entropy(np.arange(100) % 10) == pytest.approx(math.log2(10))
    assert label_entropy(np.array([], dtype=np.int64)) == 0.0


def test_impossible_minimum_fails_fast_with_a_hint() -> None:
    with pytest.raises(ShardingFailed) as caught:
        dirichlet_shards(np.zeros(50, dtype=np.int64), 6, 1.0, min_samples=10)
    assert caught.value.attempts == 0
    assert "raise α" in str(caught.value)


def test_unreachable_minimum_gives_up_after_bounded_attempts() -> None:
    # One class, α tiny: almost all samples go to one node every draw, so 10 nodes × 20 samples never happens.
    with pytest.raises(ShardingFailed) as caught:
        dirichlet_shards(np.zeros(300, dtype=np.int64), 10, 0.001, min_samples=20)
    assert caught.value.attempts > 0


@pytest.mark.parametrize(("num_nodes", "alpha", "min_samples"), [(0, 1.0, 1), (3, 0.0, 1), (3, 1.0, -1)])
def test_shard_parameters_are_validated(num_nodes: int, alpha: float, min_samples: int) -> None:
    with pytest.raises(InvalidParameter):
        dirichlet_shards(np.arange(30) % 10, num_nodes, alpha, min_samples=min_samples)


def test_federation_hands_each_node_its_shard() -> None:
    federation = make_federation(5, 0.5, seed=0)
    assert federation.num_nodes == 5
    assert sum(len(federation.node_data(i)) for i in range(5)) == len(federation.train) == 1347
    assert len(federation.test) == 450
    mine = node_dataset(2, 5, 0.5, seed=0)
    assert np.array_equal(mine.x, federation.node_data(2).x)
    assert np.array_equal(mine.y, federation.train.y[federation.shards[2]])
    with pytest.raises(InvalidParameter):
        federation.node_data(5)

"""Scikit-learn's digits (shipped with scikit-learn, no download): normalisation, the fixed train/test split and
non-IID shards per node drawn from a Dirichlet(α) over labels.

Every member computes the same split and the same partition from the same (seed, α, node count), then keeps its
own shard: no data moves between members, yet the experiment is reproducible end to end.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from node.errors import InvalidParameter, ShardingFailed
from node.models import IMAGE_SHAPE, NUM_CLASSES

# Mean and standard deviation of all digits pixels after scaling to [0, 1]. Fixed constants (like MNIST's
# 0.1307/0.3081) rather than statistics of a node's shard, so that every member normalises identically.
PIXEL_MEAN = 0.3053
PIXEL_STD = 0.3760
PIXEL_MAX = 16.0

DEFAULT_TEST_FRACTION = 0.25
DEFAULT_MIN_SAMPLES = 10
DEFAULT_ALPHA = 0.5
_MAX_ATTEMPTS = 1000


@dataclass(frozen=True)
class Dataset:
    """Normalised images ``x`` (float32, ``(n, 1, 8, 8)``) and labels ``y`` (int64, ``(n,)``)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, indices: np.ndarray) -> Dataset:
        return Dataset(x=self.x[indices], y=self.y[indices])

    def label_counts(self) -> np.ndarray:
        return np.bincount(self.y, minlength=NUM_CLASSES)


def normalise(pixels: np.ndarray) -> np.ndarray:
    """Raw digits pixels (0..16, any shape ``(n, 64)``) to float32 images ``(n, 1, 8, 8)``, zero mean, unit std."""
    scaled = (np.asarray(pixels, dtype=np.float64) / PIXEL_MAX - PIXEL_MEAN) / PIXEL_STD
    return scaled.astype(np.float32).reshape(-1, *IMAGE_SHAPE)


@functools.cache
def _load() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = normalise(bunch.data)
    y = np.asarray(bunch.target, dtype=np.int64)
    # Cached and shared: make accidental in-place edits fail loudly instead of corrupting later calls.
    x.flags.writeable = False
    y.flags.writeable = False
    return Dataset(x=x, y=y)


def load_digits_dataset() -> Dataset:
    """All 1797 digits, normalised."""
    return _load()


def train_test_split(seed: int = 0, test_fraction: float = DEFAULT_TEST_FRACTION) -> tuple[Dataset, Dataset]:
    """The fixed stratified split of digits into (train, test); the same ``seed`` gives the same split."""
    if not 0.0 < test_fraction < 1.0:
        raise InvalidParameter("test_fraction", test_fraction, "must be strictly between 0 and 1")
    from sklearn.model_selection import train_test_split as sk_split

    full = _load()
    indices = np.arange(len(full))
    train_idx, test_idx = sk_split(indices, test_size=test_fraction, random_state=seed, stratify=full.y)
    return full.subset(np.sort(train_idx)), full.subset(np.sort(test_idx))


def dirichlet_shards(
    labels: np.ndarray,
    num_nodes: int,
    alpha: float,
    seed: int = 0,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> list[np.ndarray]:
    """Partition the indices of ``labels`` over ``num_nodes`` nodes, non-IID by Dirichlet(α) per class.

    For every class, the class's samples are shuffled and cut in proportions drawn from Dirichlet(α, …, α):
    small α gives each node few classes, large α approaches an IID split. The whole draw is repeated until every
    node holds at least ``min_samples`` samples (the usual rejection scheme, e.g. in NIID-Bench). The shards are
    disjoint, cover every index, are sorted, and depend only on the arguments.
    """
    labels = np.asarray(labels)
    n = int(labels.shape[0])
    if num_nodes < 1:
        raise InvalidParameter("num_nodes", num_nodes, "must be at least 1")
    if not alpha > 0.0:
        raise InvalidParameter("alpha", alpha, "must be positive")
    if min_samples < 0:
        raise InvalidParameter("min_samples", min_samples, "must be non-negative")
    if num_nodes * min_samples > n:
        raise ShardingFailed(
            num_samples=n, num_nodes=num_nodes, alpha=alpha, min_samples=min_samples, attempts=0
        )

    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(_MAX_ATTEMPTS):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_nodes)]
        for class_indices in by_class:
            shuffled = rng.permutation(class_indices)
            proportions = rng.dirichlet(np.full(num_nodes, alpha))
            cuts = (np.cumsum(proportions)[:-1] * len(shuffled)).astype(np.int64)
            for node, piece in enumerate(np.split(shuffled, cuts)):
                parts[node].append(piece)
        shards = [np.sort(np.concatenate(pieces)) for pieces in parts]
        if min(len(shard) for shard in shards) >= min_samples:
            return shards
    raise ShardingFailed(
        num_samples=n, num_nodes=num_nodes, alpha=alpha, min_samples=min_samples, attempts=_MAX_ATTEMPTS
    )


def label_entropy(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> float:
    """Shannon entropy (bits) of the label distribution: log2(10) ≈ 3.32 for balanced digits, 0 for one class."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


@dataclass(frozen=True)
class Federation:
    """The split every member agrees on: the training set, the shared test set, and each node's shard."""

    train: Dataset
    test: Dataset
    shards: list[np.ndarray]

    @property
    def num_nodes(self) -> int:
        return len(self.shards)

    def node_data(self, node_index: int) -> Dataset:
        if not 0 <= node_index < len(self.shards):
            raise InvalidParameter("node_index", node_index, f"must be in [0, {len(self.shards)})")
        return self.train.subset(self.shards[node_index])


def make_federation(
    num_nodes: int = 5,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    *,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    test_fraction: float = DEFAULT_TEST_FRACTION,
) -> Federation:
    """Split digits into train/test with ``seed``, then shard the training set over ``num_nodes`` nodes."""
    train, test = train_test_split(seed=seed, test_fraction=test_fraction)
    shards = dirichlet_shards(train.y, num_nodes, alpha, seed=seed, min_samples=min_samples)
    return Federation(train=train, test=test, shards=shards)


def node_dataset(node_index: int, num_nodes: int, alpha: float = DEFAULT_ALPHA, seed: int = 0) -> Dataset:
    """The shard of node ``node_index`` (0-based) in the federation ``make_federation(num_nodes, alpha, seed)``."""
    return make_federation(num_nodes, alpha, seed).node_data(node_index)

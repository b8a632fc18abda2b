"""The builtin recipe: a 9,610-parameter MLP on scikit-learn's 8×8 digits (meshprov's default task).

It is exactly what the node trained before recipes: the same model (so the same genesis for a seed), the same
stratified split and Dirichlet(α) shards (``node.data``), SGD with momentum for 5 epochs of batches of 32 at
lr 0.1 (the default loop), and cross-entropy plus accuracy as its evaluation.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.data import Dataset

NAME = "digits"
VERSION = "1"
SETTINGS = {
    "epochs": 5,
    "batch_size": 32,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "optimizer": "sgd",
}


def model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def data(member: int, members: int, seed: int, alpha: float = 0.5) -> tuple[Dataset[Any], Dataset[Any]]:
    """Member ``member``'s Dirichlet(α) shard of the training split, and the shared test split."""
    from node.data import make_federation
    from node.recipe import as_torch_dataset

    federation = make_federation(members, alpha, seed)
    return as_torch_dataset(federation.node_data(member)), as_torch_dataset(federation.test)


def evaluate(model: nn.Module, data: Dataset[Any]) -> dict[str, float]:
    from node.recipe import classification_metrics

    return classification_metrics(model, data)

"""The digits task with the small CNN (38,282 parameters): conv 1→16, conv 16→32, max-pool, 512→64→10.

Same data as ``digits``; 3 epochs at lr 0.05 (the MLP's lr makes it diverge; docs/node-training.md).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.data import Dataset

NAME = "digits_cnn"
VERSION = "1"
SETTINGS = {
    "epochs": 3,
    "batch_size": 32,
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "optimizer": "sgd",
}


def model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def data(member: int, members: int, seed: int, alpha: float = 0.5) -> tuple[Dataset[Any], Dataset[Any]]:
    from node.data import make_federation
    from node.recipe import as_torch_dataset

    federation = make_federation(members, alpha, seed)
    return as_torch_dataset(federation.node_data(member)), as_torch_dataset(federation.test)


def evaluate(model: nn.Module, data: Dataset[Any]) -> dict[str, float]:
    from node.recipe import classification_metrics

    return classification_metrics(model, data)

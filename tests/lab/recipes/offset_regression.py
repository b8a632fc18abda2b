"""A recipe whose honest updates dwarf its initial weights: a regression on targets near 1,000 (MSE, in the
targets' squared units), trained with Adam. Round 1 has to move small initial weights by many times their norm,
and its loss is nowhere near digits' nats: the demo's digits-sized defaults (``max_scale_ratio`` 5, a 5-unit loss
gate) rejected every honest update of it. Imports only torch."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

NAME = "offset-regression-test"
VERSION = "0.1"
SETTINGS = {"epochs": 6, "lr": 0.1, "optimizer": "adam", "batch_size": 32}

WEIGHTS = torch.linspace(-3, 3, 8)


def model():
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))


def loss(output, target):
    return nn.functional.mse_loss(output.squeeze(-1), target)


def _targets(x, g):
    return 1000.0 + 300.0 * (x @ WEIGHTS) / 8 + 20.0 * torch.randn(len(x), generator=g)


def data(member, members, seed):
    g = torch.Generator().manual_seed(seed * 1000 + member)
    x = torch.randn(400, 8, generator=g) + member * 1.5  # each member's features shifted: skewed shards
    test = torch.Generator().manual_seed(seed + 5)
    xt = torch.randn(300, 8, generator=test)
    return TensorDataset(x, _targets(x, g)), TensorDataset(xt, _targets(xt, test))


def evaluate(model, data):
    x, y = data.tensors
    return {"loss": float(nn.functional.mse_loss(model(x).squeeze(-1), y))}

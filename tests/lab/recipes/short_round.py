"""A recipe whose members take two optimiser steps a round: 64 samples each, batch 32, one epoch."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

NAME = "short-round"
VERSION = "0.1"
SETTINGS = {"epochs": 1, "lr": 0.05, "optimizer": "sgd", "batch_size": 32}
W = torch.linspace(-1, 1, 10)


def model():
    return nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 2))


def loss(output, target):
    return nn.functional.cross_entropy(output, target)


def _make(n, g):
    x = torch.randn(n, 10, generator=g)
    y = ((x @ W) + 0.3 * torch.randn(n, generator=g) > 0).long()
    return TensorDataset(x, y)


def data(member, members, seed):
    g = torch.Generator().manual_seed(seed * 1000 + member)
    return _make(64, g), _make(400, torch.Generator().manual_seed(seed + 7))


def evaluate(model, data):
    x, y = data.tensors
    out = model(x)
    return {
        "loss": float(nn.functional.cross_entropy(out, y)),
        "accuracy": float((out.argmax(1) == y).float().mean()),
    }

"""A recipe package written outside meshprov (imports only torch): a regression MLP with BatchNorm1d in its own
module (a relative import), a custom Dataset class, its own train() and loss(), and an evaluate without accuracy."""

import torch
from torch import nn
from torch.utils.data import Dataset

from .net import Net

NAME = "regress"
VERSION = "2.0"
SETTINGS = {"epochs": 2, "batch_size": 16, "lr": 0.01, "optimizer": "adam"}


class Points(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def model():
    return Net()


def data(member, members, seed, alpha=1.0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 1, generator=g)
    x = torch.randn(300, 6, generator=g)
    y = x @ w + 0.1 * torch.randn(300, 1, generator=g)
    xt = torch.randn(90, 6, generator=g)
    yt = xt @ w
    return Points(x[member::members], y[member::members]), Points(xt, yt)


def loss(output, target):
    return nn.functional.mse_loss(output, target)


print("regress recipe loaded")  # recipes print: the demo's --json output must stay JSON


def train(model, data, settings):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(int(settings.get("seed", 0)))
    n = len(data)
    for _ in range(int(settings.get("epochs", 1))):
        order = torch.randperm(n, generator=g)
        for s in range(0, n, 16):
            idx = order[s : s + 16]
            x = torch.stack([data[int(i)][0] for i in idx])
            y = torch.stack([data[int(i)][1] for i in idx])
            opt.zero_grad()
            loss(model(x), y).backward()
            opt.step()
    print(f"regress: trained on {n} samples")
    return n


def evaluate(model, data):
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.stack([data[i][1] for i in range(len(data))])
    return {"loss": float(loss(model(x), y)), "mae": float((model(x) - y).abs().mean())}

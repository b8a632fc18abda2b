"""A recipe written outside meshprov, from the documented interface only (it imports torch, never meshprov).

A small CNN with BatchNorm (running mean and variance, the int64 ``num_batches_tracked``) on generated 1×8×8
images of four classes: each class is a fixed random pattern, each sample that pattern with noise. Members take
class-skewed shards of the training pool; everyone gets the same test set.
"""

import torch
from torch import nn
from torch.utils.data import TensorDataset

NAME = "bn-cnn-test"
VERSION = "0.1"

CLASSES = 4
TRAIN = 480
TEST = 160


def model():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, CLASSES),
    )


def _samples(count, generator, patterns):
    y = torch.randint(0, CLASSES, (count,), generator=generator)
    x = patterns[y] + 0.8 * torch.randn(count, 1, 8, 8, generator=generator)
    return TensorDataset(x, y)


def data(member, members, seed):
    generator = torch.Generator().manual_seed(1000 + seed)
    patterns = torch.randn(CLASSES, 1, 8, 8, generator=generator)
    train = _samples(TRAIN, generator, patterns)
    test = _samples(TEST, generator, patterns)
    x, y = train.tensors
    # Non-IID shards, as members' data is: each member holds the classes ``member (mod members)`` and a few others.
    index = torch.arange(len(y))
    mine = (y % members == member) | (index % (2 * members) == member)
    return TensorDataset(x[mine], y[mine]), test


def evaluate(model, data):
    x, y = data.tensors  # the recipe's own data is a TensorDataset, and so is what meshprov hands back
    logits = model(x)
    return {
        "loss": float(nn.functional.cross_entropy(logits, y)),
        "accuracy": float((logits.argmax(dim=1) == y).float().mean()),
    }

"""Counting and capping a training's optimiser steps from outside its loop (node.optimizer_steps)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from node.optimizer_steps import counted_steps, stop_after_steps


def _setup(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, list[torch.Tensor]]:
    torch.manual_seed(seed)
    model = nn.Linear(3, 1)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [torch.randn(4, 3, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    return model, optimiser, batches


def _train(
    model: nn.Module, optimiser: torch.optim.Optimizer, batches: list[torch.Tensor], epochs: int
) -> int:
    taken = 0
    for _ in range(epochs):
        for x in batches:
            optimiser.zero_grad()
            model(x).pow(2).mean().backward()
            optimiser.step()
            taken += 1
    return taken


def test_every_step_of_every_optimiser_is_counted_and_only_inside_the_block() -> None:
    model, optimiser, batches = _setup()
    with counted_steps() as counted:
        assert _train(model, optimiser, batches, epochs=2) == 10
        torch.optim.Adam(nn.Linear(2, 1).parameters()).step()
    assert counted.steps == 11
    _train(model, optimiser, batches, epochs=1)
    assert counted.steps == 11  # the hook is gone


def test_a_training_stops_after_exactly_the_steps_asked_mid_epoch() -> None:
    model, optimiser, batches = _setup()
    assert stop_after_steps(lambda: _train(model, optimiser, batches, epochs=3), 7) == 7

    same, same_optimiser, _ = _setup()
    for x in batches + batches[:2]:  # the same seven steps, by hand
        same_optimiser.zero_grad()
        same(x).pow(2).mean().backward()
        same_optimiser.step()
    for ours, theirs in zip(model.parameters(), same.parameters(), strict=True):
        assert torch.equal(ours, theirs)  # the seventh step's update is in, no eighth


def test_a_recipe_that_catches_every_exception_is_stopped_too() -> None:
    model, optimiser, batches = _setup()
    seen: list[int] = []

    def swallowing() -> None:
        for x in batches:
            try:
                optimiser.zero_grad()
                model(x).sum().backward()
                optimiser.step()
            except Exception:  # a careless recipe: the stop is a BaseException, so it is not swallowed
                continue
            seen.append(1)

    assert stop_after_steps(swallowing, 2) == 2
    assert len(seen) == 1  # the second step stopped the loop before its bookkeeping


def test_a_shorter_training_ends_by_itself_and_a_hand_written_one_counts_zero() -> None:
    model, optimiser, batches = _setup()
    assert stop_after_steps(lambda: _train(model, optimiser, batches, epochs=1), 50) == 5

    def by_hand() -> None:
        with torch.no_grad():
            for p in model.parameters():
                p.sub_(0.1)

    assert stop_after_steps(by_hand, 3) == 0
    with pytest.raises(ValueError, match="at least one step"):
        stop_after_steps(by_hand, 0)

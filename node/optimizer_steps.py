"""Counting, and capping, the optimiser steps of a recipe's training from outside its loop.

A recipe may train with its own ``train`` (any loop, with its own step limit: ``max_steps`` in
examples/transformer_lm), so the number of optimiser steps a member's round takes is known only by running it.
torch calls a global post-hook after every ``Optimizer.step`` of every optimiser; :func:`counted_steps` counts
through it (``node.task_bounds`` sizes the validators' reference with the count) and :func:`stop_after_steps`
stops a training after a given number of steps (the validator's reference, docs/scoring.md "How many steps").
A training that steps no ``torch.optim`` optimiser is not seen: it counts 0 and is never stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any


@dataclass
class StepCount:
    steps: int = 0


class _Enough(BaseException):
    """Raised by the hook after the last step wanted. A BaseException, so that a recipe's ``except Exception``
    around its loop does not swallow it."""


@contextmanager
def counted_steps(on_step: Callable[[int], None] | None = None) -> Iterator[StepCount]:
    """Count every optimiser step taken inside the block; ``on_step(count)`` after each."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    count = StepCount()

    def hook(_optimizer: Any, _args: Any, _kwargs: Any) -> None:
        count.steps += 1
        if on_step is not None:
            on_step(count.steps)

    handle = register_optimizer_step_post_hook(hook)
    try:
        yield count
    finally:
        handle.remove()


def stop_after_steps(train: Callable[[], object], limit: int) -> int:
    """Run ``train()`` until it returns or has taken ``limit`` optimiser steps, whichever comes first; the steps
    taken. The parameters then hold the ``limit``-th step's update: the hook runs after the optimiser wrote it."""
    if limit < 1:
        raise ValueError(f"a training needs at least one step, got {limit}")

    def enough(steps: int) -> None:
        if steps >= limit:
            raise _Enough

    with counted_steps(enough) as count, suppress(_Enough):
        train()
    return count.steps

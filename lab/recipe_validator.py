"""The validator's side of a recipe: the host ``meshprov worker run --recipe`` loads (``worker.recipe``).

    hooks = validator_hooks("path/to/recipe.py", spec)     # spec: the task's TaskSpec (None: a legacy task)
    hooks.ref                                              # RecipeRef(name, version, cid of the files)
    hooks.metrics(weights)                                 # recipe.evaluate on the held-out set: {"loss": …, …}
    hooks.reference(weights, seed=s, steps=20)             # the reference update: recipe.fit on this validator's
                                                           # slice, from ``weights``; returns the float delta

The validators' data is the recipe's own test set, ``data(0, 1, spec.seed)[1]`` (member 0 of 1: the whole
pool), never what members train on: its even-numbered samples are the **held-out set** the loss gate evaluates on
(as ``node.heldout`` does for the digits task), and validator ``v`` of ``V`` (``HELDOUT_SLICE=v/V``) trains its
reference update on the samples ``v, v + V, …`` of that held-out set. Weights arrive as the checks hand them to
a loss hook (every tensor in its dtype, bfloat16 as float32) and are loaded bit for bit
(``node.statedict.state_from_weights``), BatchNorm buffers and all. The reference trains with the task's
hyperparameters (the spec's, over the recipe's ``SETTINGS``), the seed the worker derives per (task, round,
validator), on the slice repeated until one epoch holds ``steps`` batches (a slice smaller than a batch gives a
loop with ``drop_last`` nothing to step on), stopped after exactly ``steps`` optimiser steps; the recipe's own
``train`` is used when it has one, the default loop otherwise. Its delta covers every floating-point tensor
(bfloat16 widened).

``worker`` cannot import this module's dependencies (``node``), which is why it lives here and is named by
``worker.recipe.DEFAULT_HOST``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from node.optimizer_steps import stop_after_steps
from node.slices import validator_slice

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import Dataset

    from ledger.recipe import RecipeRef, TaskSpec
    from node.recipe import Recipe

_POSITIONAL = ("member", "members", "seed")


def subset(data: Dataset[Any], indices: Sequence[int]) -> Dataset[Any]:
    """``data`` restricted to ``indices``, of the same type when it is a ``TensorDataset`` (a recipe's
    ``evaluate`` or ``train`` may read ``data.tensors``, as they would of the data their own ``data()`` made),
    else a ``torch.utils.data.Subset``."""
    from torch.utils.data import Subset, TensorDataset

    if isinstance(data, TensorDataset):
        import torch

        index = torch.as_tensor(list(indices), dtype=torch.long)
        return TensorDataset(*(t[index] for t in data.tensors))
    return Subset(data, indices)


def check_shareable(name: str, test_size: int, validators: int) -> None:
    """Refuse (``RecipeError``) a recipe test set of ``test_size`` samples whose held-out half (the even-numbered
    samples) cannot give each of ``validators`` a sample of its own: the validators would have no data to train
    their reference on. The demo asks before anything starts, a validator as it loads its data."""
    from ledger.recipe import RecipeError

    held = (test_size + 1) // 2
    if held < max(1, validators):
        raise RecipeError(
            f"the test set of the recipe {name!r} has {test_size} sample(s): its held-out half ({held}) cannot "
            f"give each of the {validators} validators a sample of its own",
            hint="make data()'s test set larger (validators train and judge on it, never on the members' data)",
        )


def data_options(spec: TaskSpec | None) -> dict[str, Any]:
    """The spec's ``shards`` settings a recipe's ``data`` may declare (never its positional parameters)."""
    shards = dict(spec.shards) if spec is not None else {}
    return {k: v for k, v in shards.items() if k not in _POSITIONAL}


class RecipeValidator:
    """The hooks of :func:`validator_hooks` (``worker.recipe.RecipeHooks``)."""

    def __init__(self, recipe: Recipe, spec: TaskSpec | None, *, slice_: tuple[int, int] = (0, 1)) -> None:
        self.recipe = recipe
        self.spec = spec
        self.seed = spec.seed if spec is not None else 0
        self.hyperparameters = dict(spec.hyperparameters) if spec is not None else {}
        self.slice = slice_

    @property
    def ref(self) -> RecipeRef:
        return self.recipe.ref

    # ─── data ──────────────────────────────────────────────────────────────────────────────────────────────
    @cached_property
    def heldout(self) -> Dataset[Any]:
        """The even-numbered samples of the recipe's test set (never trained on by members)."""

        _train, test = self.recipe.data(0, 1, self.seed, **data_options(self.spec))
        n = len(test)  # type: ignore[arg-type]
        check_shareable(self.recipe.name, n, self.slice[1])
        return subset(test, range(0, n, 2))

    @cached_property
    def own_slice(self) -> Dataset[Any]:
        """This validator's slice of the held-out set (``HELDOUT_SLICE=v/V``; :func:`check_shareable` made sure
        it holds a sample)."""
        v, count = self.slice
        if count == 1:
            return self.heldout
        return subset(self.heldout, range(v, len(self.heldout), count))  # type: ignore[arg-type]

    def training_slice(self, steps: int, batch: int) -> Dataset[Any]:
        """This validator's slice, repeated as many times as it takes for one epoch to hold ``steps`` full batches
        of ``batch`` (the slice itself when it already does). A slice smaller than a batch gave a recipe's loop that
        drops its last partial batch (``DataLoader(drop_last=True)``) nothing to step on, and the validator failed
        every round; a loop that accumulates gradients over several batches a step needs several."""
        v, count = self.slice
        n = len(self.own_slice)  # type: ignore[arg-type]  # checked: at least one sample
        copies = math.ceil(steps * batch / n)
        if copies <= 1:
            return self.own_slice
        held = len(self.heldout)  # type: ignore[arg-type]
        indices = list(range(v, held, count)) if count > 1 else list(range(held))
        return subset(self.heldout, indices * copies)

    # ─── the hooks ─────────────────────────────────────────────────────────────────────────────────────────
    def _model(self, weights: Mapping[str, NDArray[Any]]) -> nn.Module:
        from node.statedict import load_numpy_state, state_from_weights

        model = self.recipe.build_model(self.seed)
        load_numpy_state(model, state_from_weights(model, weights))
        return model

    def metrics(self, weights: Mapping[str, NDArray[Any]]) -> dict[str, float]:
        """The recipe's ``evaluate`` of these full weights on the held-out set."""
        return self.recipe.evaluate(self._model(weights), self.heldout)

    def reference(
        self, weights: Mapping[str, NDArray[Any]], *, seed: int, steps: int
    ) -> dict[str, NDArray[Any]]:
        """The recipe's training from ``weights`` on this validator's slice, stopped after ``steps`` optimiser steps
        (fewer if the recipe's own loop stops first); the delta of every floating-point tensor, as float64."""
        model = self._model(weights)
        before = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
        settings = self.recipe.merged_settings(self.hyperparameters)
        batch = settings.get("batch_size")
        if not (isinstance(batch, int) and not isinstance(batch, bool) and batch > 0):
            batch = 1  # fit() names an invalid batch size
        data = self.training_slice(steps, batch)
        per_epoch = max(1, len(data) // batch)  # type: ignore[arg-type]  # full batches: a loop may drop the last
        settings.update(seed=int(seed), epochs=max(1, math.ceil(steps / per_epoch)))
        # Exactly ``steps``, not the whole epochs it takes: the score compares an update's norm with this one's,
        # and the task anchors ``steps`` at a member's round (docs/scoring.md, "How many steps").
        stop_after_steps(lambda: self.recipe.fit(model, data, settings), steps)
        after = model.state_dict()
        return {
            k: (after[k].detach().double() - v.double()).cpu().numpy().astype(np.float64)
            for k, v in before.items()
        }

    def warm_up(self) -> None:
        """Prepare the validator's process, once, as it starts: torch on one intra-op thread, then load the data
        and evaluate the initial model, so the validator pays for its imports and the recipe's data while it
        starts, not on its first round's critical path.

        One thread because the worker trains the reference in a forked child (``worker.verify._in_child``): a
        thread that has run a parallel torch op owns a GNU OpenMP pool that does not survive ``fork``, and the
        child's first parallel op (loading the weights) then waits for ever — the second round of a 25M-parameter
        recipe's demo did, after the first round's evaluation had loaded weights in the job's thread. Evaluation
        already ran on one thread; the child still trains with the task's ``threads`` (its own fresh pool)."""
        import torch

        from node.statedict import state_to_numpy

        torch.set_num_threads(1)
        self.metrics(state_to_numpy(self.recipe.build_model(self.seed)))
        _ = self.own_slice


def validator_hooks(recipe: str, spec: TaskSpec | None) -> RecipeValidator:
    """The host of ``worker.recipe``: ``recipe`` loaded by ``node.recipe.load_recipe``, this validator's slice
    from ``HELDOUT_SLICE`` (unset: the whole held-out set)."""
    from node.recipe import load_recipe

    return RecipeValidator(load_recipe(recipe), spec, slice_=validator_slice())

"""The pluggable training step of a member's round (:class:`NodeRunner` does everything else).

    trainer.train(round_, base_cid, base, seed=…, progress=…) -> Trained(delta, num_samples, train_loss, …)

:class:`RecipeTrainer` runs the task's recipe on the member's data (``meshprov node run``); the member SDK
(:mod:`node.sdk`) plugs in a trainer that hands the base to the member's own training loop and waits for its
weights. Either way the runner fetches and verifies the base, applies behaviours and DP, writes the update file
with its metadata, submits the digest, publishes after the close and reads the verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from node.faults import BaseMismatch

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from ledger.recipe import RecipeRef
    from node.recipe import Recipe

StateDict = dict[str, np.ndarray]
Advance = Callable[[int], None]


@dataclass(frozen=True)
class Trained:
    """What a training step produced: the delta against the base (per dtype), the samples it used, the mean
    training loss (NaN when unknown), the time it took and the member's dataset commitment (None: none)."""

    delta: StateDict
    num_samples: int
    train_loss: float
    seconds: float
    dataset: str | None = None


class Trainer(Protocol):
    """One round's local training from the base weights."""

    @property
    def recipe_ref(self) -> RecipeRef | None:
        """The recipe this trainer runs (checked against the task's), or None when it runs no recipe."""
        ...

    def steps(self) -> int | None:
        """Optimiser steps of a round, for a progress bar (None: unknown)."""
        ...

    def train(
        self, round_: int, base_cid: str, base: Mapping[str, np.ndarray], *, seed: int, progress: Advance
    ) -> Trained: ...


class RecipeTrainer:
    """Trains the recipe's model from the base on the member's data with the task's hyperparameters."""

    def __init__(
        self,
        recipe: Recipe,
        data: Dataset[Any],
        settings: Mapping[str, Any] | None = None,
        *,
        dataset: str | None = None,
    ) -> None:
        self.recipe = recipe
        self.data = data
        self.settings = dict(settings or {})
        self.dataset = dataset

    @property
    def recipe_ref(self) -> RecipeRef | None:
        return self.recipe.ref

    def steps(self) -> int | None:
        if self.recipe.trains_itself:
            return None
        merged = self.recipe.merged_settings(self.settings)
        try:
            return int(merged["epochs"]) * -(-len(self.data) // int(merged["batch_size"]))  # type: ignore[arg-type]
        except (TypeError, ValueError, ZeroDivisionError):
            return None

    def check_base(self, base: Mapping[str, np.ndarray], base_cid: str) -> None:
        """:class:`BaseMismatch` unless the base has exactly the recipe model's names, shapes and dtypes."""
        from ledger.errors import MeshprovError
        from node.statedict import check_numpy_state

        try:
            check_numpy_state(self.recipe.build_model(0), base, name=self.recipe.name)
        except MeshprovError as exc:
            raise BaseMismatch(base_cid, self.recipe.name, exc.message) from None

    def train(
        self, round_: int, base_cid: str, base: Mapping[str, np.ndarray], *, seed: int, progress: Advance
    ) -> Trained:
        from node.training import recipe_round

        self.check_base(base, base_cid)
        result = recipe_round(
            self.recipe, base, self.data, {**self.settings, "seed": seed}, progress=lambda _d, _t: progress(1)
        )
        return Trained(
            delta=result.delta,
            num_samples=result.num_samples,
            train_loss=result.train_loss,
            seconds=result.seconds,
            dataset=self.dataset,
        )

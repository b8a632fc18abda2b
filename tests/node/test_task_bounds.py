"""The bounds a specification anchors for a recipe that is not a builtin (node.task_bounds, the demo's
``_size_bounds``): measured from the recipe, where the digits-sized defaults rejected every honest update."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ledger.checks.limits import DEFAULT_MAX_SCALE_RATIO
from node.recipe import load_recipe
from node.statedict import state_to_numpy
from node.task_bounds import SCALE_MARGIN, anchored_scale_ratio, honest_scale_ratio
from tests.support import REPO

OFFSET = REPO / "tests" / "lab" / "recipes" / "offset_regression.py"


@pytest.mark.parametrize(
    ("measured", "anchored"),
    [
        (1.61, None),  # digits' largest honest ratio: 3x is within the default, nothing anchored
        (5 / 3, None),  # exactly the default
        (1.7, 5.1),
        (17.23, 52.0),  # rounded up to two significant digits, never down
        (400.0, 1200.0),
        (math.nan, None),
        (0.0, None),
        (math.inf, None),
    ],
)
def test_the_anchored_bound_is_the_margin_over_an_honest_ratio_rounded_up(
    measured: float, anchored: float | None
) -> None:
    assert anchored_scale_ratio(measured, DEFAULT_MAX_SCALE_RATIO) == anchored
    if anchored is not None:
        assert anchored >= SCALE_MARGIN * measured


def test_an_honest_update_of_a_recipe_with_large_targets_is_far_above_the_default() -> None:
    recipe = load_recipe(str(OFFSET))
    base = state_to_numpy(recipe.build_model(0))
    train = recipe.data(0, 4, 0)[0]
    settings = {**recipe.merged_settings(), "seed": 0}
    ratio = honest_scale_ratio(recipe, base, train, settings)
    assert ratio > DEFAULT_MAX_SCALE_RATIO  # the default rejected this honest update: SCALE_OUT_OF_PROPORTION
    bound = anchored_scale_ratio(ratio, DEFAULT_MAX_SCALE_RATIO)
    assert bound is not None
    assert bound >= SCALE_MARGIN * ratio
    assert honest_scale_ratio(recipe, base, train, settings) == ratio  # the same training, the same bound


def test_the_builtin_digits_update_stays_within_the_default() -> None:
    recipe = load_recipe("digits")
    base = state_to_numpy(recipe.build_model(0))
    ratio = honest_scale_ratio(recipe, base, recipe.data(0, 3, 0)[0], {**recipe.merged_settings(), "seed": 0})
    assert 0 < ratio < DEFAULT_MAX_SCALE_RATIO / SCALE_MARGIN
    assert anchored_scale_ratio(ratio, DEFAULT_MAX_SCALE_RATIO) is None


DROPOUT = """
import torch
from torch import nn
from torch.utils.data import TensorDataset


def model():
    return nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 2))


def data(member, members, seed):
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(member))
    return TensorDataset(x, (x[:, 0] > 0).long()), TensorDataset(x, (x[:, 0] > 0).long())


def evaluate(model, data):
    x, y = data.tensors
    return {"loss": float(nn.functional.cross_entropy(model(x), y))}
"""


def test_the_measurement_leaves_the_callers_torch_rng_alone(tmp_path: Path) -> None:
    """Training with dropout draws its masks from torch's global RNG: the demo's later draws must not move."""
    import torch

    from node.task_bounds import sized_checks

    (tmp_path / "dropout_recipe.py").write_text(DROPOUT)
    recipe = load_recipe(str(tmp_path / "dropout_recipe.py"))
    train, test = recipe.data(0, 2, 0)
    torch.manual_seed(7)
    state = torch.random.get_rng_state()
    sized_checks(recipe, seed=0, shards=[train, recipe.data(1, 2, 0)[0]], test=test)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_sized_checks_widen_only_what_the_recipe_needs() -> None:
    from node.task_bounds import DEFAULT_LOSS_DELTA, LOSS_GATE_MULTIPLE, sized_checks

    offset = load_recipe(str(OFFSET))
    train, test = offset.data(0, 4, 0)
    checks, said = sized_checks(offset, seed=0, shards=[train], test=test)
    genesis_loss = offset.evaluate(offset.build_model(0), test)["loss"]
    assert checks["loss_delta"] == pytest.approx(LOSS_GATE_MULTIPLE * genesis_loss, rel=1e-2)
    assert checks["max_scale_ratio"] > DEFAULT_MAX_SCALE_RATIO
    assert [line.split()[0] for line in said] == ["loss", "max_scale_ratio"]
    kept, _ = sized_checks(offset, seed=0, shards=[train], test=test, loss_gate=False)
    assert "loss_delta" not in kept  # the caller's own gate stands
    assert kept["max_scale_ratio"] == checks["max_scale_ratio"]

    # A recipe whose loss is on digits' scale (cross-entropy, 1.6 nats at genesis) and whose updates stay within
    # 5x its weights keeps those defaults: 2x its loss would be tighter than the builtins' 5. Its rounds take 10
    # optimiser steps, so the validators' reference is sized to them.
    bn_cnn = load_recipe(str(REPO / "tests" / "lab" / "recipes" / "bn_cnn.py"))
    train, test = bn_cnn.data(0, 3, 0)
    assert sized_checks(bn_cnn, seed=0, shards=[train], test=test)[0] == {"reference_steps": 10}
    assert LOSS_GATE_MULTIPLE * bn_cnn.evaluate(bn_cnn.build_model(0), test)["loss"] < DEFAULT_LOSS_DELTA

    digits = load_recipe("digits")
    assert sized_checks(digits, seed=0, shards=[train], test=test) == ({}, [])  # builtin: nothing run


SHORT = REPO / "tests" / "lab" / "recipes" / "short_round.py"


def test_a_recipe_whose_rounds_are_short_anchors_the_reference_at_a_rounds_steps() -> None:
    """docs/scoring.md, "How many steps": members of this recipe take 2 optimiser steps a round (64 samples,
    batch 32, one epoch); a 20-step reference scored every honest update 1-3 of 10,000."""
    from ledger.checks.anchored import DEFAULT_REFERENCE_STEPS, reference_steps_of
    from node.task_bounds import sized_checks

    short = load_recipe(str(SHORT))
    shards = [short.data(i, 3, 0)[0] for i in range(3)]
    checks, said = sized_checks(short, seed=0, shards=shards, test=short.data(0, 3, 0)[1])
    assert checks == {"reference_steps": 2}
    assert said == [
        f"reference_steps 2: an honest round on the smallest shard takes 2 optimiser step(s), fewer than the "
        f"default {DEFAULT_REFERENCE_STEPS}"
    ]
    assert reference_steps_of(checks) == 2  # what the validators read back from the specification

    # Uneven shards: the smallest one's round (32 samples: one step), so no member is discounted for its steps.
    half = recipe_subset(shards[0], 32)
    assert sized_checks(short, seed=0, shards=[shards[1], half], test=shards[2])[0] == {"reference_steps": 1}

    # Rounds of 20 steps or more keep the default (the offset recipe's: 13 batches x 6 epochs).
    offset = load_recipe(str(OFFSET))
    train, test = offset.data(0, 4, 0)
    assert "reference_steps" not in sized_checks(offset, seed=0, shards=[train], test=test)[0]


def recipe_subset(data: object, n: int) -> object:
    from torch.utils.data import TensorDataset

    assert isinstance(data, TensorDataset)
    return TensorDataset(*(t[:n] for t in data.tensors))


def test_sizing_reports_what_an_evaluation_and_a_round_took_and_always_evaluates(tmp_path: Path) -> None:
    """The demo sizes its windows with these; and an evaluate() that fails is refused even when the caller gives
    its own loss gate (before, only the gate's sizing evaluated the genesis)."""
    from ledger.recipe import RecipeError
    from node.task_bounds import sized_checks

    short = load_recipe(str(SHORT))
    timings: dict[str, float] = {}
    train, test = short.data(0, 3, 0)
    sized_checks(short, seed=0, shards=[train], test=test, loss_gate=False, timings=timings)
    assert set(timings) == {"evaluate", "round"}
    assert all(0 < s < 60 for s in timings.values())

    (tmp_path / "bad_metric.py").write_text(
        "import torch\nfrom torch import nn\nfrom torch.utils.data import TensorDataset\n"
        "def model():\n    return nn.Linear(3, 2)\n"
        "def data(member, members, seed):\n    x = torch.randn(20, 3)\n"
        "    return TensorDataset(x, (x[:, 0] > 0).long()), TensorDataset(x, (x[:, 0] > 0).long())\n"
        "def evaluate(model, data):\n    return {'loss': 'n/a'}\n"
    )
    bad = load_recipe(str(tmp_path / "bad_metric.py"))
    train, test = bad.data(0, 1, 0)
    with pytest.raises(RecipeError, match="loss"):
        sized_checks(bad, seed=0, shards=[train], test=test, loss_gate=False)

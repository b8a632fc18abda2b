"""The bounds a specification anchors for a recipe that is not a builtin (node.task_bounds, the demo's
``_size_bounds``): measured from the recipe, where the digits-sized defaults rejected every honest update."""

from __future__ import annotations

import math

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


def test_sized_checks_widen_only_what_the_recipe_needs_and_leave_the_rng_alone() -> None:
    import torch

    from node.task_bounds import DEFAULT_LOSS_DELTA, LOSS_GATE_MULTIPLE, sized_checks

    offset = load_recipe(str(OFFSET))
    train, test = offset.data(0, 4, 0)
    state = torch.random.get_rng_state()
    checks, said = sized_checks(offset, seed=0, largest_shard=train, test=test)
    assert torch.equal(torch.random.get_rng_state(), state)  # the measurement drew in a forked RNG
    genesis_loss = offset.evaluate(offset.build_model(0), test)["loss"]
    assert checks["loss_delta"] == pytest.approx(LOSS_GATE_MULTIPLE * genesis_loss, rel=1e-2)
    assert checks["max_scale_ratio"] > DEFAULT_MAX_SCALE_RATIO
    assert [line.split()[0] for line in said] == ["loss", "max_scale_ratio"]
    given, _ = sized_checks(offset, seed=0, largest_shard=train, test=test, loss_delta=9.0)
    assert given["loss_delta"] == 9.0  # a gate the caller chose is kept

    # A recipe whose loss is on digits' scale (cross-entropy, 1.6 nats at genesis) and whose updates stay within
    # 5x its weights keeps the defaults: 2x its loss would be tighter than the builtins' 5.
    bn_cnn = load_recipe(str(REPO / "tests" / "lab" / "recipes" / "bn_cnn.py"))
    train, test = bn_cnn.data(0, 3, 0)
    assert sized_checks(bn_cnn, seed=0, largest_shard=train, test=test) == ({}, [])
    assert LOSS_GATE_MULTIPLE * bn_cnn.evaluate(bn_cnn.build_model(0), test)["loss"] < DEFAULT_LOSS_DELTA

    digits = load_recipe("digits")
    assert sized_checks(digits, seed=0, largest_shard=train, test=test) == ({}, [])  # builtin: nothing run

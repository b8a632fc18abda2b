"""The ``max_scale_ratio`` a task anchors for its recipe: measured from an honest update, not assumed from digits.

``SCALE_OUT_OF_PROPORTION`` rejects an update whose L2 norm exceeds ``max_scale_ratio`` times its base's (both over
the floating-point tensors). The library default, 5, was measured on the builtin digits recipes: their honest
updates reach at most 1.61x their base's norm, so 5 leaves a margin of about 3 (``ledger.checks.limits``). Another
recipe can need far more: a regression on targets near 1,000 trained with Adam moved its small initial weights by
17 times their norm in round 1, every honest update was rejected, and the base never moved (docs/recipes.md).

So a specification written for a recipe (``meshprov demo --recipe``) anchors the bound measured the same way:
one honest update from the genesis on the largest shard (more samples, more steps, the largest update), its ratio
times :data:`SCALE_MARGIN`, the same margin as the default's. Round 1 is where the ratio is largest (the
initial weights are the smallest base a task has). When that stays within the default, nothing is anchored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from node.recipe import Recipe

SCALE_MARGIN = 3.0
"""The anchored bound is this many times the measured honest ratio (the default's margin on digits)."""


def _norm(tensors: Mapping[str, np.ndarray]) -> float:
    """The norm the check computes (``ledger.checks.profile.scan``), over the floating-point tensors."""
    from ledger.aggregation.source import ArraySource, describe_source
    from ledger.checks.profile import scan

    source = ArraySource(tensors)
    return float(scan(source, describe_source(source)).norm)


def honest_scale_ratio(
    recipe: Recipe, base: Mapping[str, np.ndarray], data: Dataset[Any], settings: Mapping[str, Any]
) -> float:
    """``|update| / |base|`` of one update trained by ``recipe`` from ``base`` on ``data`` with ``settings``, as a
    member's round trains it (``node.training.recipe_round``); NaN when the base's norm is 0 or not finite."""
    from node.training import recipe_round

    base_norm = _norm(base)
    if not (math.isfinite(base_norm) and base_norm > 0):
        return math.nan
    delta = recipe_round(recipe, base, data, settings).delta
    return _norm(delta) / base_norm


def anchored_scale_ratio(measured: float, default: float) -> float | None:
    """The bound to anchor for a measured honest ratio: ``SCALE_MARGIN`` times it, rounded up to two significant
    digits, when that exceeds ``default``; None (anchor nothing: the default holds) otherwise, or when the ratio
    could not be measured."""
    if not (math.isfinite(measured) and measured > 0):
        return None
    bound = SCALE_MARGIN * measured
    if bound <= default:
        return None
    step = 10.0 ** (math.floor(math.log10(bound)) - 1)
    return float(f"{math.ceil(bound / step) * step:.2g}")  # 5.3, not 5.300000000000001

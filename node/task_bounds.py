"""The absolute bounds a task anchors for its recipe, measured from the recipe instead of assumed from digits.

Two of the validators' bounds were measured on the builtin digits recipes. ``SCALE_OUT_OF_PROPORTION`` rejects an
update whose L2 norm exceeds ``max_scale_ratio`` times its base's (both over the floating-point tensors); the
default, 5, leaves a margin of about 3 over the 1.61x that honest digits updates reach (``ledger.checks.limits``).
The loss gate (``loss_delta``, ``LOSS_REGRESSION``) of 5 is in nats of cross-entropy. Another recipe can be far
from both: a regression on targets near 1,000 trained with Adam moved its small initial weights by 17 times their
norm in round 1, so every honest update was rejected and the base never moved; and its loss, an MSE in the
hundreds, made a 5-unit gate reject honest updates of skewed members (docs/recipes.md).

So a specification written for a recipe that is not a builtin (``meshprov demo --recipe``, ``meshprov lab hosts
--recipe``) anchors them sized from the recipe (:func:`sized_checks`): ``max_scale_ratio`` at :data:`SCALE_MARGIN`
times the ratio of one honest update from the genesis on the largest shard (more samples, more steps, the
largest update; round 1 is where the ratio is largest, the initial weights being the smallest base a task has),
when that exceeds the default; the loss gate at :data:`LOSS_GATE_MULTIPLE` times the genesis's held-out loss when
that exceeds the builtins' 5, unless the caller gives one.

A third is the validators' reference: it trained 20 optimiser steps whatever the recipe, and the score discounts
an update by its norm relative to the reference's, to the 4th power. A recipe whose members take 2 steps a round
had every honest update scored 1-3 of 10,000. So ``reference_steps`` is anchored at the optimiser steps of an
honest round on the smallest shard (:func:`node.optimizer_steps.counted_steps`) when that is under the default
(docs/scoring.md, "How many steps").
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from node.recipe import Recipe

SCALE_MARGIN = 3.0
"""The anchored bound is this many times the measured honest ratio (the default's margin on digits)."""
DEFAULT_LOSS_DELTA = 5.0
"""The loss gate's margin for the builtins (nats of cross-entropy; node/heldout.py measured it), and the least any
recipe gets: a recipe that starts near its optimum (fine-tuning a trained model) would get a gate its honest
non-IID updates cross."""
LOSS_GATE_MULTIPLE = 2.0
"""The loss gate of a recipe that is not a builtin, whose loss may be in any unit (an MSE in the thousands, nats of
a language model): this many times the genesis's held-out loss, about what 5 nats is to digits' ln 10 at genesis,
and never below :data:`DEFAULT_LOSS_DELTA`."""


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


def is_builtin(recipe: Recipe) -> bool:
    """The builtin recipes (``node.recipes``), on which the defaults were measured (node/heldout.py,
    benchmarks/scale_ratio.py)."""
    return recipe.module.__name__.startswith("node.recipes.")


def sized_checks(
    recipe: Recipe,
    *,
    seed: int,
    shards: Sequence[Dataset[Any]],
    test: Dataset[Any],
    loss_gate: bool = True,
    timings: dict[str, float] | None = None,
) -> tuple[dict[str, float | int], list[str]]:
    """The checks to anchor for ``recipe`` beside the caller's, and a line saying why for each: ``loss_delta`` at
    :data:`LOSS_GATE_MULTIPLE` times the genesis's loss on ``test`` where that is wider than
    :data:`DEFAULT_LOSS_DELTA` (not with ``loss_gate`` False: the caller's own gate stands),
    ``max_scale_ratio`` (:func:`anchored_scale_ratio`) from one update trained with the recipe's settings on the
    largest of the members' training ``shards``, and ``reference_steps`` at the optimiser steps of a round on the
    smallest where they are fewer than the default (a second round is trained when the smallest is smaller).
    Nothing for a builtin. The torch RNG is left as it was. ``timings``, when given, gets the seconds the genesis's
    evaluation (``evaluate``) and the honest round on the largest shard (``round``) took: what the demo sizes its
    windows with."""
    import torch

    from ledger.checks.anchored import DEFAULT_REFERENCE_STEPS, REFERENCE_STEPS_KEY
    from ledger.checks.limits import DEFAULT_MAX_SCALE_RATIO
    from node.optimizer_steps import counted_steps
    from node.statedict import state_to_numpy
    from node.training import recipe_round

    checks: dict[str, float | int] = {}
    said: list[str] = []
    if is_builtin(recipe):
        return checks, said
    largest = max(shards, key=len)  # type: ignore[arg-type]  # the recipe's Datasets have a length (checked)
    smallest = min(shards, key=len)  # type: ignore[arg-type]
    model = recipe.build_model(seed)
    with torch.random.fork_rng():  # nothing drawn here moves what the caller draws later
        started = time.monotonic()
        loss = recipe.evaluate(model, test)[
            "loss"
        ]  # a recipe whose evaluate fails is refused here, gate or not
        evaluated = time.monotonic()
        if loss_gate and math.isfinite(loss) and LOSS_GATE_MULTIPLE * loss > DEFAULT_LOSS_DELTA:
            checks["loss_delta"] = float(f"{LOSS_GATE_MULTIPLE * loss:.3g}")
            said.append(
                f"loss gate {checks['loss_delta']:g}: {LOSS_GATE_MULTIPLE:g}x the genesis's held-out loss "
                f"({loss:.4g}), over the default {DEFAULT_LOSS_DELTA:g}"
            )
        settings = {**recipe.merged_settings(), "seed": seed}
        genesis = state_to_numpy(model)
        with counted_steps() as counted:
            measured = honest_scale_ratio(recipe, genesis, largest, settings)
        if timings is not None:
            timings.update(evaluate=evaluated - started, round=time.monotonic() - evaluated)
        if len(smallest) < len(largest):  # type: ignore[arg-type]
            with counted_steps() as counted:
                recipe_round(recipe, genesis, smallest, settings)
    bound = anchored_scale_ratio(measured, DEFAULT_MAX_SCALE_RATIO)
    if bound is not None:
        checks["max_scale_ratio"] = bound
        said.append(
            f"max_scale_ratio {bound:g}: an honest update of the largest shard measures {measured:.3g}x the "
            f"genesis's norm, over the default {DEFAULT_MAX_SCALE_RATIO:g}"
        )
    if 0 < counted.steps < DEFAULT_REFERENCE_STEPS:  # 0: the recipe steps no torch.optim optimiser
        checks[REFERENCE_STEPS_KEY] = counted.steps
        said.append(
            f"{REFERENCE_STEPS_KEY} {counted.steps}: an honest round on the smallest shard takes "
            f"{counted.steps} optimiser step(s), fewer than the default {DEFAULT_REFERENCE_STEPS}"
        )
    return checks, said

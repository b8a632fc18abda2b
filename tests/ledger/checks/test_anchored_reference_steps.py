"""``checks.reference_steps``: the optimiser steps of the validators' reference update a task anchors
(docs/scoring.md, "How many steps"), read beside the hard checks' limits and refused by name when malformed."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.checks.anchored import (
    DEFAULT_REFERENCE_STEPS,
    MAX_REFERENCE_STEPS,
    anchored_limits,
    reference_steps_of,
)
from ledger.checks.limits import CheckLimits
from ledger.errors import ConfigError


def test_the_default_holds_when_the_specification_anchors_none() -> None:
    assert reference_steps_of({}) == DEFAULT_REFERENCE_STEPS == 20
    assert reference_steps_of({"zscore": 3.5}) == DEFAULT_REFERENCE_STEPS


@pytest.mark.parametrize("value", [1, 2, 10, 2.0, MAX_REFERENCE_STEPS])
def test_a_whole_number_of_steps_is_read_and_is_no_limit_of_the_hard_checks(value: Any) -> None:
    checks = {"reference_steps": value, "zscore": 3.0}
    assert reference_steps_of(checks) == int(value)
    assert isinstance(reference_steps_of(checks), int)
    # Not a hard check's limit: the limits are the defaults but for the zscore (an unknown key would be refused).
    assert anchored_limits(checks) == anchored_limits({"zscore": 3.0}) != CheckLimits()


@pytest.mark.parametrize(
    "value", [0, -3, 2.5, True, "4", float("inf"), float("nan"), MAX_REFERENCE_STEPS + 1]
)
def test_anything_else_is_refused_naming_the_key(value: Any) -> None:
    for read in (reference_steps_of, anchored_limits):
        with pytest.raises(ConfigError, match=r"checks\.reference_steps = .* must be a whole number"):
            read({"reference_steps": value})

"""The hard-check settings a task anchors: its specification's ``checks`` object over the defaults.

A task's specification (``ledger.recipe.TaskSpec``, anchored on chain by its digest) carries ``checks``, e.g.
``{"zscore": 3.5, "loss_delta": 5.0, "max_scale_ratio": 5.0}``. Every key names a :class:`CheckLimits` field
(``zscore`` is the short name of ``zscore_threshold``); ``null`` turns a check off. Validators judge with these
values and `meshprov audit rejudge` re-judges with them, so a validator that used other settings is found.
Unknown keys and values of the wrong type are refused with the key named: a typo must not silently leave a
check at its default.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from ledger.checks.limits import CheckLimits
from ledger.errors import ConfigError

ALIASES = {"zscore": "zscore_threshold"}
"""Short names the specifications use."""
BUDGET_KEYS = frozenset({"privacy_epsilon", "privacy_delta"})
"""Anchored beside the checks but not limits of one update: the task's privacy budget (``audit privacy``)."""
REFERENCE_STEPS_KEY = "reference_steps"
"""Anchored beside the checks, read by validators only: the optimiser steps of their reference update
(docs/scoring.md, "How many steps")."""
DEFAULT_REFERENCE_STEPS = 20
"""The reference's steps when the specification anchors none: enough for a direction, cheap next to a round."""
MAX_REFERENCE_STEPS = 100_000
"""A bound on the anchored count, so that a typo cannot make every validator train for days."""

_FIELDS = {f.name: f for f in dataclasses.fields(CheckLimits)}
_INTEGER = {"max_update_bytes", "max_header_bytes", "zscore_min_peers"}
_NULLABLE = {name for name, f in _FIELDS.items() if "None" in str(f.type)}


def anchored_limits(checks: Mapping[str, Any], base: CheckLimits | None = None) -> CheckLimits:
    """``base`` (default: ``CheckLimits()``) with the specification's ``checks`` applied; ``ConfigError`` naming
    the key for an unknown key or a value of the wrong type or range."""
    values: dict[str, Any] = {}
    for key, value in checks.items():
        if key in BUDGET_KEYS:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 < float(value) < math.inf
            ):
                raise ConfigError(f"checks.{key} = {value!r} must be a positive number")
            continue
        if key == REFERENCE_STEPS_KEY:
            reference_steps_of(checks)
            continue
        name = ALIASES.get(key, key)
        if name not in _FIELDS:
            known = ", ".join(sorted([*_FIELDS, *ALIASES, *BUDGET_KEYS, REFERENCE_STEPS_KEY]))
            raise ConfigError(f"checks.{key} is not a check setting", hint=f"known settings: {known}")
        values[name] = _value(key, name, value)
    try:
        return dataclasses.replace(base or CheckLimits(), **values)
    except ConfigError as exc:
        raise ConfigError(f"checks: {exc}", hint="fix the task's specification") from None


def reference_steps_of(checks: Mapping[str, Any]) -> int:
    """The optimiser steps of a validator's reference update the specification's ``checks`` anchor
    (:data:`DEFAULT_REFERENCE_STEPS` when none); ``ConfigError`` naming the key for anything but a whole number in
    1..:data:`MAX_REFERENCE_STEPS`."""
    value = checks.get(REFERENCE_STEPS_KEY)
    if value is None:
        return DEFAULT_REFERENCE_STEPS
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(float(value))
        or not float(value).is_integer()
        or not 1 <= value <= MAX_REFERENCE_STEPS
    ):
        raise ConfigError(
            f"checks.{REFERENCE_STEPS_KEY} = {value!r} must be a whole number of optimiser steps in "
            f"1..{MAX_REFERENCE_STEPS}",
            hint="fix the task's specification",
        )
    return int(value)


def _value(key: str, name: str, value: Any) -> Any:
    if value is None:
        if name not in _NULLABLE:
            raise ConfigError(f"checks.{key} cannot be null", hint="give a number")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"checks.{key} = {value!r} is not a number")
    if name in _INTEGER:
        if not isinstance(value, int) and not float(value).is_integer():
            raise ConfigError(f"checks.{key} = {value!r} must be a whole number")
        return int(value)
    if not math.isfinite(float(value)):
        raise ConfigError(f"checks.{key} = {value!r} must be finite")
    return float(value)


def describe(limits: CheckLimits) -> dict[str, Any]:
    """Every setting by name, as a report shows what was applied."""
    return dataclasses.asdict(limits)

"""The held-out loss gate's margins: the absolute ``loss_delta`` and the relative ``loss_ratio`` (issue 14: an
absolute 5-nat margin let a x10-scaled language-model update through)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.checks import CheckLimits, check_loss, check_update, kubo_digest
from ledger.checks.anchored import anchored_limits
from ledger.checks.update_checks import ChainRecord
from ledger.errors import ConfigError
from ledger.reasons import Reason
from ledger.updatefile import UpdateFile
from tests.ledger.aggregation.state_dicts import mixed_base
from tests.ledger.checks.test_update_checks_state_dicts import Files, _honest

BASE_LOSS = 3.2  # a small LM's held-out cross-entropy, in nats
SCALED_LOSS = 7.9  # the same LM after a x10-scaled update (benchmarks: within 5 nats of the base)


def _lm_like(scaled: bool) -> Any:
    """A loss hook that tells the base from base + update by a weight the update moves."""

    def evaluate(weights: Any) -> float:
        moved = not np.array_equal(np.asarray(weights["conv.bias"]), mixed_base()["conv.bias"])
        return SCALED_LOSS if moved and scaled else (BASE_LOSS - 0.1 if moved else BASE_LOSS)

    return evaluate


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path, mixed_base())


def _check(files: Files, limits: CheckLimits, scaled: bool = True) -> Any:
    path = files.update("u", _honest())
    with UpdateFile.open(files.base_path) as base, UpdateFile.open(path) as update:
        return check_loss(update, base, _lm_like(scaled), limits)


def test_the_absolute_margin_lets_the_scaled_update_through_the_relative_one_rejects_it(files: Files) -> None:
    assert _check(files, CheckLimits(loss_delta=5.0)).reason is Reason.ACCEPTED
    verdict = _check(files, CheckLimits(loss_ratio=1.5))
    assert verdict.reason is Reason.LOSS_REGRESSION
    assert verdict.detail == "held-out loss 7.9 > base 3.2 + 1.6 (ratio 1.5)"
    assert (verdict.loss, verdict.base_loss) == (SCALED_LOSS, BASE_LOSS)


def test_with_both_margins_the_tighter_decides(files: Files) -> None:
    both = CheckLimits(loss_delta=5.0, loss_ratio=1.5)
    verdict = _check(files, both)
    assert verdict.reason is Reason.LOSS_REGRESSION
    assert verdict.detail == "held-out loss 7.9 > base 3.2 + min(5, 1.6 (ratio 1.5))"
    assert _check(files, CheckLimits(loss_delta=1.0, loss_ratio=3.0)).reason is Reason.LOSS_REGRESSION
    assert _check(files, both, scaled=False).reason is Reason.ACCEPTED  # an improving update passes both


def test_the_absolute_margin_alone_reads_as_before(files: Files) -> None:
    verdict = _check(files, CheckLimits(loss_delta=1.0))
    assert verdict.detail == "held-out loss 7.9 > base 3.2 + 1"


def test_a_negative_base_loss_gets_its_magnitude_as_the_scale() -> None:
    limits = CheckLimits(loss_ratio=1.5)
    assert limits.loss_bound(-2.0) == -1.0
    assert limits.loss_bound(4.0) == 6.0
    assert CheckLimits(loss_delta=1.0, loss_ratio=2.0).loss_bound(0.5) == 1.0
    assert not CheckLimits().loss_gate
    assert CheckLimits(loss_ratio=1.0).loss_gate


@pytest.mark.parametrize("bad", [0.5, -1.0, float("inf"), float("nan")])
def test_a_ratio_below_one_or_not_finite_is_refused(bad: float) -> None:
    with pytest.raises(ConfigError, match="loss_ratio"):
        CheckLimits(loss_ratio=bad)


def test_a_task_specification_anchors_the_ratio(files: Files) -> None:
    limits = anchored_limits({"loss_ratio": 1.5, "loss_delta": None})
    assert limits.loss_ratio == 1.5
    assert limits.loss_delta is None
    with pytest.raises(ConfigError, match="loss_ratio"):
        anchored_limits({"loss_ratio": 0.9})
    # check_update (the offline check and an auditor's replay) applies the ratio alone too.
    path = files.update("u", _honest())
    record = ChainRecord(digest=kubo_digest(path), task=1, round=1, base=kubo_digest(files.base_path))
    verdict = check_update(path, files.base_path, record=record, limits=limits, evaluate=_lm_like(True))
    assert verdict.reason is Reason.LOSS_REGRESSION

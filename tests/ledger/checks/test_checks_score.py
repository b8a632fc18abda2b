"""A validator's score of one update against its reference update (``ledger.checks.score``, protocol R3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ledger.chain.scores import REJECT, SCORE_ONE, check_scores
from ledger.checks import Score, ScoringError, rejected, reveal_arrays, score_vector
from ledger.checks.vectors import dot, norm
from ledger.reasons import Reason

RNG = np.random.default_rng(0)
REFERENCE = RNG.standard_normal(5_000)
ALONG = REFERENCE + 0.5 * RNG.standard_normal(5_000)  # a useful update: cosine ~ 0.9 to the reference


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_an_update_of_the_references_size_scores_its_cosine() -> None:
    update = ALONG * (np.linalg.norm(REFERENCE) / np.linalg.norm(ALONG))
    s = score_vector(update, REFERENCE)
    assert s.reason is Reason.ACCEPTED
    assert not s.hard_reject
    assert s.value == round(_cos(update, REFERENCE) * SCORE_ONE)
    assert s.magnitude == pytest.approx(1.0)


def test_a_longer_update_scores_no_more_than_its_cosine() -> None:
    """No reward for boosting: min(1, |g|/|g0|) caps the factor at 1."""
    same = score_vector(ALONG / np.linalg.norm(ALONG) * np.linalg.norm(REFERENCE), REFERENCE)
    assert score_vector(10 * ALONG, REFERENCE).value == same.value


def test_a_tiny_update_scores_little() -> None:
    """The magnitude discount is the 4th power: a tenth of the reference's norm keeps 10⁻⁴ of the cosine,
    floored at UNSURE (1)."""
    full = score_vector(ALONG / np.linalg.norm(ALONG) * np.linalg.norm(REFERENCE), REFERENCE)
    tiny = score_vector(ALONG / np.linalg.norm(ALONG) * np.linalg.norm(REFERENCE) / 10, REFERENCE)
    assert tiny.magnitude == pytest.approx(0.1)
    assert tiny.value == max(1, round(full.value / 10_000))
    assert 0 < tiny.value < full.value // 50


def test_an_opposed_update_scores_its_negative_cosine_undiscounted() -> None:
    flipped = score_vector(-0.01 * ALONG, REFERENCE)  # small, but its direction is wrong: no discount
    assert flipped.value == round(-_cos(ALONG, REFERENCE) * SCORE_ONE)
    assert flipped.reason is Reason.ACCEPTED  # a low score, not a hard reject: the consensus decides
    noise = score_vector(RNG.standard_normal(5_000), REFERENCE)
    assert abs(noise.value) < 600  # random directions are nearly orthogonal: no credit


def test_the_loss_gate_is_a_hard_reject() -> None:
    s = score_vector(ALONG, REFERENCE, loss=2.6, base_loss=2.0, margin=0.5)
    assert (s.value, s.reason) == (REJECT, Reason.LOSS_REGRESSION)
    assert "2.6" in s.detail
    assert s.loss == 2.6
    assert s.base_loss == 2.0
    assert score_vector(ALONG, REFERENCE, loss=float("nan"), base_loss=2.0, margin=0.5).reason is (
        Reason.LOSS_REGRESSION
    )
    within = score_vector(ALONG, REFERENCE, loss=2.5, base_loss=2.0, margin=0.5)
    assert within.reason is Reason.ACCEPTED
    assert within.value > 0
    assert within.loss == 2.5
    with pytest.raises(ScoringError, match="loss"):
        score_vector(ALONG, REFERENCE, margin=0.5)


def test_a_zero_reference_is_the_validators_fault_not_the_updates() -> None:
    with pytest.raises(ScoringError, match="reference"):
        score_vector(ALONG, np.zeros_like(REFERENCE))
    assert score_vector(np.zeros_like(REFERENCE), REFERENCE).value == 0


def test_scores_are_fixed_point_and_what_the_contract_takes() -> None:
    scores = [
        score_vector(REFERENCE, REFERENCE),
        score_vector(-REFERENCE, REFERENCE),
        rejected(Reason.NEAR_COPY, "a copy"),
        score_vector(ALONG, REFERENCE, loss=9.0, base_loss=1.0, margin=0.0),
    ]
    values, reasons = reveal_arrays(scores)
    assert values == [SCORE_ONE, -SCORE_ONE, REJECT, REJECT]
    assert reasons == [0, 0, int(Reason.NEAR_COPY), int(Reason.LOSS_REGRESSION)]
    check_scores(values, reasons)  # what revealScores would refuse is refused here
    with pytest.raises(ValueError, match="must score"):
        Score(-5, Reason.DUPLICATE)
    with pytest.raises(ValueError, match="outside"):
        Score(SCORE_ONE + 1)
    with pytest.raises(ValueError, match="scored"):
        rejected(Reason.ACCEPTED)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_norm_is_the_protocols_dot_of_the_vector_with_a_copy_of_itself(dtype: type) -> None:
    """norm(a) squares one widened copy; the bits are those of <a, b> for b an equal, separate vector."""
    a = np.random.default_rng(7).standard_normal(3 * (1 << 18) + 11).astype(dtype)
    assert norm(a) == math.sqrt(dot(a, a.copy()))


def test_a_reference_norm_given_once_scores_as_computed_per_update() -> None:
    reference_norm = norm(REFERENCE)
    for update in (ALONG, -ALONG, 0.01 * ALONG, 10 * ALONG, RNG.standard_normal(5_000)):
        assert score_vector(update, REFERENCE, reference_norm=reference_norm) == score_vector(
            update, REFERENCE
        )
    with pytest.raises(ScoringError, match="reference update's norm"):
        score_vector(ALONG, REFERENCE, reference_norm=0.0)

"""The scorer's sign band and magnitude power (``ledger.checks.score``, docs/robustness.md "The scorer, session 5").

Each test fails on the session-4 scorer (score = cosine when <= 0, cosine * min(1, m) ** 2 otherwise)."""

from __future__ import annotations

import numpy as np
import pytest

from ledger.chain.scores import SCORE_ONE
from ledger.checks import score_vector
from ledger.checks.score import MAGNITUDE_POWER, SIGN_BAND, UNSURE
from ledger.consensus import lower_weighted_median

RNG = np.random.default_rng(7)
REFERENCE = RNG.standard_normal(4_000)


def _at_cosine(c: float, norm_ratio: float = 1.0, reference: np.ndarray = REFERENCE) -> np.ndarray:
    """A vector with cosine exactly ``c`` to ``reference`` and ``norm_ratio`` times its norm."""
    unit = reference / np.linalg.norm(reference)
    other = RNG.standard_normal(reference.size)
    other -= other.dot(unit) * unit
    other /= np.linalg.norm(other)
    return (c * unit + np.sqrt(1 - c * c) * other) * np.linalg.norm(reference) * norm_ratio


@pytest.mark.parametrize("c", [-0.14, -0.05, -0.001, 0.0])
def test_a_cosine_inside_the_band_scores_unsure_not_its_sign(c: float) -> None:
    """Old: the cosine itself (-1,400 .. 0: rejected). Now UNSURE > 0: accepted with a negligible weight."""
    s = score_vector(_at_cosine(c), REFERENCE)
    assert s.cosine == pytest.approx(c, abs=1e-9)
    assert s.value == UNSURE > 0


@pytest.mark.parametrize("c", [-SIGN_BAND - 1e-3, -0.5, -1.0])
def test_a_cosine_at_or_below_minus_the_band_still_scores_its_cosine(c: float) -> None:
    """A sign-flipped update points away from the reference by more than the band: rejected as before."""
    s = score_vector(_at_cosine(c), REFERENCE)
    assert s.value == round(c * SCORE_ONE) < 0


def test_honest_validators_that_straddle_zero_no_longer_let_a_colluder_decide() -> None:
    """Two honest references give one small honest update cosines +0.06 and -0.09 (as measured late in training,
    docs/robustness.md); a colluding third validator scores it -10,000. Old scorer: the lower weighted median is
    the negative honest score, the update is rejected on the colluder's say. Now both honest scores are > 0 and
    so is the consensus."""
    other_reference = RNG.standard_normal(REFERENCE.size)
    unit_a = REFERENCE / np.linalg.norm(REFERENCE)
    unit_b = other_reference - other_reference.dot(unit_a) * unit_a
    unit_b /= np.linalg.norm(unit_b)
    # a reference for validator B with a known angle to A's, and an update between them
    update = 0.06 * unit_a + 0.02 * unit_b + 0.5 * _at_cosine(0.0) / np.linalg.norm(REFERENCE)
    update *= 0.4 * np.linalg.norm(REFERENCE) / np.linalg.norm(update)
    ref_b = -0.7 * unit_a + 0.71 * unit_b
    ref_b *= np.linalg.norm(REFERENCE)
    a, b = score_vector(update, REFERENCE), score_vector(update, ref_b)
    assert a.cosine is not None
    assert b.cosine is not None
    assert a.cosine > 0 > b.cosine > -SIGN_BAND  # the honest validators disagree in sign on the cosine
    assert a.value > 0
    assert b.value > 0
    assert lower_weighted_median([a.value, b.value, -SCORE_ONE], [5_000, 5_000, 5_000]) > 0


def test_a_short_update_is_discounted_by_the_fourth_power_of_its_norm() -> None:
    """Little-is-enough is rescaled to the smallest honest norm, ~0.7 of the reference's: old factor 0.49, now
    0.24, so its pay (the square of the consensus) falls from 0.24 to 0.058 of a full-norm update's."""
    assert MAGNITUDE_POWER == 4
    full = score_vector(_at_cosine(0.5), REFERENCE)
    short = score_vector(_at_cosine(0.5, 0.7), REFERENCE)
    assert short.magnitude == pytest.approx(0.7)
    assert short.value == round(full.value * 0.7**4)


def test_a_positive_cosine_never_rounds_to_a_rejection() -> None:
    """Old: cosine 0.02 at a tenth of the reference's norm scored round(2e-6 * 10,000) = 0, i.e. rejected."""
    s = score_vector(_at_cosine(0.02, 0.1), REFERENCE)
    assert s.value == UNSURE


def test_the_score_is_deterministic_and_bounded() -> None:
    for c in np.linspace(-1, 1, 41):
        for m in (0.05, 0.5, 1.0, 3.0):
            v = _at_cosine(float(np.clip(c, -1, 1)), m)
            one, two = score_vector(v, REFERENCE), score_vector(v.copy(), REFERENCE.copy())
            assert one.value == two.value
            assert -SCORE_ONE <= one.value <= SCORE_ONE
            assert (one.value > 0) == (one.cosine is not None and one.cosine > -SIGN_BAND)

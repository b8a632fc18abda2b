"""A validator's score of one update (protocol R3), the pure arithmetic: docs/scoring.md says why.

For an update ``g`` (its delta against the round's base, as one vector) that passed the hard checks, with the
validator's reference update ``g0`` (trained by the validator from the same base on its own held-out slice) and
the held-out loss of the base and of base + g::

    loss(base + g) > loss(base) + margin            -> -1, LOSS_REGRESSION (a hard reject)
    c = cos(g, g0) <= -SIGN_BAND (0.15)             -> c
    otherwise                                       -> max(UNSURE, c+ * min(1, |g| / |g0|) ** 4)

clamped to [-1, 1] and taken to fixed point (:func:`ledger.chain.scores.to_fixed`, SCORE_ONE = 10,000; UNSURE is
1, the smallest positive score, and c+ = max(0, c)). The band (session 5, docs/robustness.md "The scorer"): two
honest validators' references, trained on different 75-image slices, give the same small honest update cosines
that differ by up to ~0.2, so a cosine just below 0 is not evidence of harm; scoring it by its sign let the honest
validators split and a Byzantine third decide. Inside the band every honest validator scores > 0 (accepted with a
weight of 1/10,000 and no pay to speak of), so they agree. The fourth power (was the square) discounts short
updates harder: little-is-enough rescaled to the smallest honest norm. A
reject scores ``REJECT`` (-10,000) with its reason code; every other score has reason 0 (the contract refuses
anything else). This module takes numbers and vectors: the worker (``worker.scoring``) evaluates the losses and
trains the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.chain.scores import REJECT, SCORE_ONE, to_fixed
from ledger.checks.vectors import Vector, dot, norm
from ledger.errors import ConfigError
from ledger.reasons import Reason

__all__ = ["REJECT", "SCORE_ONE", "Score", "ScoringError", "rejected", "reveal_arrays", "score_vector"]


SIGN_BAND = 0.15
"""Cosines in (-SIGN_BAND, 0] are within the reference's error: such an update scores UNSURE, not its cosine."""
UNSURE = 1
"""The score of an update whose sign the validator cannot tell: accepted, with 1/10,000 of a full weight."""
MAGNITUDE_POWER = 4
"""A positive score is c * min(1, |g| / |g0|) ** MAGNITUDE_POWER."""


class ScoringError(ConfigError):
    """The validator cannot score: its reference update or its losses are unusable (never the update's fault)."""


@dataclass(frozen=True)
class Score:
    """One update's score: ``value`` in [-SCORE_ONE, SCORE_ONE] and ``reason`` (ACCEPTED = 0 unless a hard reject)."""

    value: int
    reason: Reason = Reason.ACCEPTED
    detail: str = ""
    cosine: float | None = None
    magnitude: float | None = None
    """|g| / |g0|: the update's norm relative to the reference's."""
    loss: float | None = None
    base_loss: float | None = None

    def __post_init__(self) -> None:
        if not -SCORE_ONE <= self.value <= SCORE_ONE:
            raise ValueError(f"score {self.value} is outside [{-SCORE_ONE}, {SCORE_ONE}]")
        if self.reason is not Reason.ACCEPTED and self.value != REJECT:
            raise ValueError(f"a hard reject ({self.reason.slug}) must score {REJECT}, not {self.value}")

    @property
    def hard_reject(self) -> bool:
        return self.reason is not Reason.ACCEPTED


def rejected(reason: Reason, detail: str = "") -> Score:
    """The score of an update that failed a hard check: REJECT with the check's reason code."""
    if reason is Reason.ACCEPTED:
        raise ValueError("an accepted update is scored, not rejected")
    return Score(REJECT, reason, detail)


def score_vector(
    update: Vector,
    reference: Vector,
    *,
    loss: float | None = None,
    base_loss: float | None = None,
    margin: float | None = None,
    reference_norm: float | None = None,
) -> Score:
    """Score ``update`` against the validator's ``reference`` update (both deltas against the same base).

    The loss gate applies when ``margin`` is given: then ``loss`` (of base + update) and ``base_loss`` are
    required, and a non-finite ``loss`` counts as a regression. A zero update has no direction and scores 0 (the
    hard checks reject it before: NORM_TOO_SMALL). ``reference_norm``, when given, must be ``norm(reference)``:
    a validator scoring a round's updates against one reference computes it once, not once per update."""
    if margin is not None:
        if loss is None or base_loss is None:
            raise ScoringError("the loss gate needs the held-out loss of the base and of base + update")
        if not (math.isfinite(margin) and margin >= 0) or not math.isfinite(base_loss):
            raise ScoringError(f"unusable loss gate: margin {margin!r}, base loss {base_loss!r}")
        if not math.isfinite(loss) or loss > base_loss + margin:
            return Score(
                REJECT,
                Reason.LOSS_REGRESSION,
                f"held-out loss {loss:.6g} > base {base_loss:.6g} + {margin:g}",
                loss=loss,
                base_loss=base_loss,
            )
    ref_norm = norm(reference) if reference_norm is None else reference_norm
    if not (math.isfinite(ref_norm) and ref_norm > 0):
        raise ScoringError(
            f"the reference update's norm is {ref_norm!r}: the reference trainer did not train "
            "(check its data and steps)"
        )
    update_norm = norm(update)
    magnitude = update_norm / ref_norm
    if not (math.isfinite(update_norm) and update_norm > 0):
        return Score(0, detail="the update is zero", magnitude=magnitude, loss=loss, base_loss=base_loss)
    c = max(-1.0, min(1.0, dot(update, reference) / (update_norm * ref_norm)))
    if c <= -SIGN_BAND:
        value = to_fixed(c)
    else:
        # Inside the band the validator cannot tell the sign (honest validators' cosines for one update differ by
        # this much): it scores > 0, never less than UNSURE, so honest validators agree and no minority decides.
        value = max(UNSURE, to_fixed(max(0.0, c) * min(1.0, magnitude) ** MAGNITUDE_POWER))
    return Score(
        value,
        detail=f"cosine {c:+.4f} to the reference, norm {magnitude:.3g}x the reference's",
        cosine=c,
        magnitude=magnitude,
        loss=loss,
        base_loss=base_loss,
    )


def reveal_arrays(scores: Sequence[Score]) -> tuple[list[int], list[int]]:
    """``revealScores``' (scores, reasons), one per update in index order."""
    return [s.value for s in scores], [int(s.reason) for s in scores]

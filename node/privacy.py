"""Optional update-level differential privacy: clip the whole update to L2 norm C, add Gaussian noise N(0, (σC)²)
to every coordinate, and account (ε, δ) with Opacus's RDP accountant.

The protected unit is a member's whole update in a round (as in DP-FedAvg, McMahan et al. 2018), so one
accountant step is one published update: ``steps`` is the number of updates this member has published with
these parameters (1 for the privacy of this update alone), and ``sample_rate`` the probability that a member
takes part in a round (1.0 when every member publishes every round, which gives no amplification).
The returned parameters go into the update's metadata so auditors see each update's privacy level.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from node.errors import InvalidParameter
from node.models import StateDict
from node.training import float_values, update_norm, with_float_values

MECHANISM = "gaussian"
DEFAULT_DELTA = 1e-5


@dataclass(frozen=True)
class DPConfig:
    clip: float = 1.0
    """C: the L2 norm every update is clipped to, over all its tensors together."""
    noise_multiplier: float = 1.0
    """σ: the noise standard deviation per coordinate is σ·C."""
    delta: float = DEFAULT_DELTA
    sample_rate: float = 1.0

    def validate(self) -> None:
        if not (self.clip > 0.0 and math.isfinite(self.clip)):
            raise InvalidParameter("clip", self.clip, "must be a positive finite number")
        if not (self.noise_multiplier > 0.0 and math.isfinite(self.noise_multiplier)):
            raise InvalidParameter(
                "noise_multiplier",
                self.noise_multiplier,
                "must be positive (without noise ε is infinite: disable DP)",
            )
        if not 0.0 < self.delta < 1.0:
            raise InvalidParameter("delta", self.delta, "must be strictly between 0 and 1")
        if not 0.0 < self.sample_rate <= 1.0:
            raise InvalidParameter("sample_rate", self.sample_rate, "must be in (0, 1]")


@dataclass(frozen=True)
class PrivateUpdate:
    delta: StateDict
    """The clipped, noised update, in the input's dtypes."""
    norm_before_clip: float
    params: dict[str, Any]
    """{"mechanism", "clip", "noise_multiplier", "epsilon", "delta"}: what the update's metadata records."""


def clip_update(delta: Mapping[str, np.ndarray], clip: float) -> tuple[StateDict, float]:
    """Scale ``delta`` by min(1, C/‖Δ‖) (global L2 norm); return it and the norm before clipping."""
    if not clip > 0.0:
        raise InvalidParameter("clip", clip, "must be positive")
    norm = update_norm(delta)
    if norm <= clip:
        return {k: np.array(v, copy=True) for k, v in delta.items()}, norm
    factor = clip / norm
    while True:
        clipped = with_float_values(delta, {k: v * factor for k, v in float_values(delta).items()})
        # Rounding to the tensors' dtype can leave the norm a few ulps above C; the guarantee is ‖clipped‖ ≤ C,
        # so shrink by the excess (at least one float32 ulp): a step or two in practice, for float16 and
        # bfloat16 too.
        after = update_norm(clipped)
        if after <= clip:
            return clipped, norm
        factor *= min(1.0 - 2.0**-23, clip / after)


def add_gaussian_noise(delta: Mapping[str, np.ndarray], std: float, seed: int) -> StateDict:
    """``delta`` plus i.i.d. N(0, std²) per coordinate of its float tensors (added in float64, rounded once to each
    tensor's dtype); keys are visited sorted, so the seed alone fixes the noise. Integer, uint8 and bool buffers are
    released as they are (they are not in the clipped norm either)."""
    if std < 0.0:
        raise InvalidParameter("std", std, "must be non-negative")
    rng = np.random.default_rng(seed)
    floats = float_values(delta)
    noised = {key: floats[key] + rng.normal(0.0, std, size=floats[key].shape) for key in sorted(floats)}
    return with_float_values(delta, noised)


def compute_epsilon(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float = DEFAULT_DELTA
) -> float:
    """ε of ``steps`` compositions of the subsampled Gaussian mechanism, from Opacus's RDP accountant."""
    DPConfig(noise_multiplier=noise_multiplier, sample_rate=sample_rate, delta=delta).validate()
    if steps < 1:
        raise InvalidParameter("steps", steps, "must be at least 1")
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    # One history entry (σ, q, steps) is exactly what `steps` calls to accountant.step(...) would record.
    accountant.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():
        # At the edges of Opacus's default orders (tiny or huge σ) it warns that a wider range would give a
        # tighter bound; the ε it returns is still a valid upper bound, and keeping the defaults keeps ε
        # identical to what anyone gets from Opacus with these parameters.
        warnings.filterwarnings("ignore", message="Optimal order is the (smallest|largest) alpha")
        return float(accountant.get_epsilon(delta=delta))


def privatize(
    delta: Mapping[str, np.ndarray], config: DPConfig, *, seed: int, steps: int = 1
) -> PrivateUpdate:
    """Clip ``delta`` to ``config.clip``, add N(0, (σC)²) noise drawn from ``seed``, and account (ε, δ)."""
    config.validate()
    clipped, norm = clip_update(delta, config.clip)
    noised = add_gaussian_noise(clipped, config.noise_multiplier * config.clip, seed)
    epsilon = compute_epsilon(config.noise_multiplier, config.sample_rate, steps, config.delta)
    return PrivateUpdate(
        delta=noised,
        norm_before_clip=norm,
        params={
            "mechanism": MECHANISM,
            "clip": float(config.clip),
            "noise_multiplier": float(config.noise_multiplier),
            "epsilon": epsilon,
            "delta": float(config.delta),
        },
    )

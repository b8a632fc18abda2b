"""What a member publishes instead of (or as) its honest delta: the behaviours of the robustness experiments.

Each behaviour is a pure function of deltas (``dict[str, numpy.ndarray]``) and a seed, so an experiment is
reproducible and the validators' checks can be tested against every attack without training anything.

- honest            the delta unchanged
- scale             the delta × 10 (model replacement / boosting)
- sign-flip         the negated delta
- noise             Gaussian noise whose expected norm equals the honest delta's norm
- free-rider        a zero delta, or tiny Gaussian noise, with a claimed num_samples (takes the reward, does no work)
- copycat           another member's published delta, copied
- little-is-enough  Baruch et al. 2019, "A Little Is Enough": the benign mean shifted by z·σ per coordinate,
                    rescaled into the benign norm range so norm checks do not see it
- sample-inflation  the honest delta, with a claimed sample count as large as the task allows (``maxSamples``)
- noisy-copy        another member's published delta (of the previous round: this round's content is private
                    until submissions close) slightly scaled, plus small Gaussian noise, to dodge an exact-copy
                    check
- front-run         another member's digest submitted as its own before the author's submission: the content
                    is the author's file, unchanged (the claim, not the bytes, is the attack)

The sample claim and the submission order are the experiment's business (``lab.experiment``); here each
behaviour only decides the bytes.

Any state dict: the arithmetic acts on the floating-point tensors, as exact float64 values (bfloat16 decoded from
its bits) rounded once back to each tensor's dtype; integer, uint8 and bool tensors (BatchNorm's
``num_batches_tracked``, masks) keep the honest delta (free-rider: zero), since scaling a counter or negating a
XOR mask would not be the attack.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from enum import StrEnum
from statistics import NormalDist

import numpy as np

from node.errors import InvalidParameter, StateMismatch
from node.models import StateDict
from node.training import float_values, update_norm, with_float_values

DEFAULT_SCALE = 10.0


class Behaviour(StrEnum):
    HONEST = "honest"
    SCALE = "scale"
    SIGN_FLIP = "sign-flip"
    NOISE = "noise"
    FREE_RIDER = "free-rider"
    COPYCAT = "copycat"
    LITTLE_IS_ENOUGH = "little-is-enough"
    SAMPLE_INFLATION = "sample-inflation"
    NOISY_COPY = "noisy-copy"
    FRONT_RUN = "front-run"

    @property
    def copies(self) -> bool:
        """Whether the published bytes come from another member's update (``copy_from`` is needed)."""
        return self in (Behaviour.COPYCAT, Behaviour.NOISY_COPY, Behaviour.FRONT_RUN)


def scale(delta: Mapping[str, np.ndarray], factor: float = DEFAULT_SCALE) -> StateDict:
    floats = float_values(delta)
    return with_float_values(delta, {k: v * factor for k, v in floats.items()})


def sign_flip(delta: Mapping[str, np.ndarray]) -> StateDict:
    floats = float_values(delta)
    return with_float_values(delta, {k: np.negative(v) for k, v in floats.items()})


def gaussian_noise(delta: Mapping[str, np.ndarray], seed: int, multiplier: float = 1.0) -> StateDict:
    """Pure noise at the update's scale: i.i.d. N(0, s²) with s = multiplier·‖Δ‖/√d, so E‖noise‖ ≈ multiplier·‖Δ‖.

    Matching the honest norm is what makes this attack interesting: an absolute norm bound cannot catch it.
    """
    floats = float_values(delta)
    size = sum(int(v.size) for v in floats.values())
    std = multiplier * update_norm(delta) / math.sqrt(size) if size else 0.0
    rng = np.random.default_rng(seed)
    return with_float_values(
        delta, {k: rng.normal(0.0, std, size=v.shape) for k, v in sorted(floats.items())}
    )


def free_rider(delta: Mapping[str, np.ndarray], seed: int = 0, tiny_std: float = 0.0) -> StateDict:
    """A zero update (``tiny_std == 0``) or tiny noise N(0, tiny_std²) to look less obviously empty."""
    if tiny_std < 0:
        raise InvalidParameter("tiny_std", tiny_std, "must be non-negative")
    zeros = {
        k: np.zeros_like(v) for k, v in delta.items()
    }  # a zero delta in every dtype (bfloat16 0 is 0 bits)
    if tiny_std == 0:
        return zeros
    rng = np.random.default_rng(seed)
    floats = float_values(delta)
    return with_float_values(
        zeros, {k: rng.normal(0.0, tiny_std, size=v.shape) for k, v in sorted(floats.items())}
    )


def copycat(own: Mapping[str, np.ndarray], copied: Mapping[str, np.ndarray]) -> StateDict:
    """A copy of another member's published delta, checked against the keys and shapes of our own."""
    problems = [f"missing {k}" for k in sorted(set(own) - set(copied))]
    problems += [f"unexpected {k}" for k in sorted(set(copied) - set(own))]
    problems += [
        f"{k} has shape {np.shape(copied[k])}, expected {own[k].shape}"
        for k in sorted(set(own) & set(copied))
        if np.shape(copied[k]) != own[k].shape
    ]
    if problems:
        raise StateMismatch("copied delta", problems)
    return {k: np.array(copied[k], dtype=v.dtype, copy=True) for k, v in own.items()}


NOISY_COPY_NOISE = 0.05
"""The noise's expected norm relative to the copied delta's: cosine to the original ≈ 1/√(1 + 0.05²) ≈ 0.999,
far above any near-copy threshold a validator could set without rejecting honest look-alikes, yet no byte equal."""
NOISY_COPY_SCALE = 0.03
"""The copy is scaled by a factor in [1 − 0.03, 1 + 0.03] (seeded), so its norm is not the original's either."""


def noisy_copy(
    own: Mapping[str, np.ndarray],
    copied: Mapping[str, np.ndarray],
    seed: int,
    *,
    noise: float = NOISY_COPY_NOISE,
    max_scale: float = NOISY_COPY_SCALE,
) -> StateDict:
    """``copied`` × (1 + u), u uniform in [−max_scale, max_scale], plus Gaussian noise of expected norm
    ``noise``·‖copied‖; keys, shapes and dtypes checked against our own delta (as :func:`copycat`)."""
    if noise < 0 or not 0 <= max_scale < 1:
        raise InvalidParameter("noise/max_scale", (noise, max_scale), "need noise ≥ 0 and 0 ≤ max_scale < 1")
    base = copycat(own, copied)
    rng = np.random.default_rng(seed)
    factor = 1.0 + float(rng.uniform(-max_scale, max_scale))
    jitter = float_values(gaussian_noise(base, int(rng.integers(2**63)), multiplier=noise))
    return with_float_values(base, {k: v * factor + jitter[k] for k, v in float_values(base).items()})


def lie_z(num_nodes: int, num_malicious: int) -> float:
    """Baruch et al.'s z_max: the largest shift (in σ) that keeps the attacker inside the majority.

    s = ⌊n/2 + 1⌋ − m benign members must be "further" from the mean than the attacker; z_max = Φ⁻¹((n − s)/n).
    When the attackers need no benign supporters (s ≤ 0), the probability is capped just below 1 (z ≈ 4.75).
    """
    if num_nodes < 1 or not 0 <= num_malicious <= num_nodes:
        raise InvalidParameter(
            "num_malicious", num_malicious, f"must be in [0, {num_nodes}] with num_nodes ≥ 1"
        )
    supporters = math.floor(num_nodes / 2 + 1) - num_malicious
    p = min((num_nodes - supporters) / num_nodes, 1.0 - 1e-6)
    return NormalDist().inv_cdf(p)


def little_is_enough(
    benign: Sequence[Mapping[str, np.ndarray]],
    *,
    z: float | None = None,
    num_nodes: int | None = None,
    num_malicious: int = 1,
    norm_range: tuple[float, float] | None = None,
) -> StateDict:
    """The "A Little Is Enough" update: per coordinate, mean − z·std of the benign deltas.

    ``z`` defaults to ``lie_z(num_nodes, num_malicious)`` with ``num_nodes = len(benign) + num_malicious``.
    The result is then rescaled into ``norm_range`` (default: the smallest and largest benign norms), so a
    norm check calibrated on benign updates accepts it. The statistics use float64; the result has the benign
    deltas' dtype.
    """
    if not benign:
        raise InvalidParameter(
            "benign", [], "little-is-enough needs at least one benign delta (or an estimate)"
        )
    if z is None:
        z = lie_z(num_nodes if num_nodes is not None else len(benign) + num_malicious, num_malicious)
    norms = [update_norm(d) for d in benign]
    low, high = norm_range if norm_range is not None else (min(norms), max(norms))
    if not 0.0 <= low <= high:
        raise InvalidParameter("norm_range", (low, high), "must satisfy 0 ≤ low ≤ high")
    shifted: dict[str, np.ndarray] = {}
    values = [float_values(d) for d in benign]
    for key in values[0]:
        stacked = np.stack([v[key] for v in values])
        shifted[key] = stacked.mean(axis=0) - z * stacked.std(axis=0)
    norm = math.sqrt(sum(float(np.sum(np.square(v))) for v in shifted.values()))
    factor = 1.0
    if norm > high:
        factor = high / norm
    elif 0.0 < norm < low:
        factor = low / norm
    # Integer/bool buffers: the first benign delta's (a plausible counter increment), floats: the shifted mean.
    return with_float_values(benign[0], {key: v * factor for key, v in shifted.items()})


def apply_behaviour(
    behaviour: Behaviour | str,
    delta: Mapping[str, np.ndarray],
    *,
    seed: int = 0,
    copy_from: Mapping[str, np.ndarray] | None = None,
    benign: Sequence[Mapping[str, np.ndarray]] = (),
    scale_factor: float = DEFAULT_SCALE,
    lie_num_nodes: int | None = None,
    lie_num_malicious: int = 1,
) -> StateDict:
    """The delta a member with ``behaviour`` publishes, given its honest ``delta``.

    ``copy_from`` is the published delta a copycat, noisy copier or front-runner copies; ``benign`` are the deltas
    (or an estimate of them) that little-is-enough shifts. Other behaviours ignore both.
    """
    try:
        kind = Behaviour(behaviour)
    except ValueError:
        raise InvalidParameter(
            "behaviour", behaviour, f"must be one of {', '.join(b.value for b in Behaviour)}"
        ) from None
    if kind in (Behaviour.HONEST, Behaviour.SAMPLE_INFLATION):
        return {k: np.array(v, copy=True) for k, v in delta.items()}
    if kind is Behaviour.SCALE:
        return scale(delta, scale_factor)
    if kind is Behaviour.SIGN_FLIP:
        return sign_flip(delta)
    if kind is Behaviour.NOISE:
        return gaussian_noise(delta, seed)
    if kind is Behaviour.FREE_RIDER:
        return free_rider(delta, seed)
    if kind.copies:
        if copy_from is None:
            raise InvalidParameter("copy_from", None, f"{kind} needs another member's published delta")
        if kind is Behaviour.NOISY_COPY:
            return noisy_copy(delta, copy_from, seed)
        return copycat(delta, copy_from)
    return little_is_enough(benign, num_nodes=lie_num_nodes, num_malicious=lie_num_malicious)

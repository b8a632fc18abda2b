"""Update-level DP: clipping, calibrated noise, reproducibility, and ε from Opacus's RDP accountant."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as opacus_rdp

from node.errors import InvalidParameter
from node.privacy import DPConfig, add_gaussian_noise, clip_update, compute_epsilon, privatize
from node.training import update_norm


def _delta(scale: float = 1.0, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w": (rng.normal(size=(64, 32)) * scale).astype(np.float32),
        "b": (rng.normal(size=(32,)) * scale).astype(np.float32),
    }


@pytest.mark.parametrize("clip", [0.1, 1.0, 7.3])
def test_clipping_bounds_the_norm(clip: float) -> None:
    delta = _delta(scale=1.0)
    clipped, norm = clip_update(delta, clip)
    assert norm == pytest.approx(update_norm(delta))
    assert norm > clip
    assert update_norm(clipped) <= clip
    assert update_norm(clipped) == pytest.approx(clip, rel=1e-6)
    # clipping only rescales: the direction is kept
    assert np.allclose(clipped["w"] * (norm / clip), delta["w"], atol=1e-5)


def test_clipping_leaves_a_small_update_unchanged() -> None:
    delta = _delta(scale=1e-3)
    clipped, _ = clip_update(delta, 10.0)
    assert all(np.array_equal(clipped[k], delta[k]) for k in delta)
    zero = {k: np.zeros_like(v) for k, v in delta.items()}
    assert update_norm(clip_update(zero, 1.0)[0]) == 0.0


def test_noise_has_the_calibrated_scale_and_keeps_layout() -> None:
    zero = {"w": np.zeros((200, 200), np.float32), "b": np.zeros(5, np.float32)}
    noised = add_gaussian_noise(zero, 0.25, seed=1)
    assert list(noised) == ["w", "b"]
    assert noised["w"].dtype == np.float32
    assert noised["w"].shape == (200, 200)
    assert float(noised["w"].std()) == pytest.approx(0.25, rel=0.02)
    assert abs(float(noised["w"].mean())) < 0.01


def test_privatize_clips_before_noise_with_sigma_times_clip() -> None:
    delta = _delta(scale=5.0)
    config = DPConfig(clip=2.0, noise_multiplier=0.5)
    out = privatize(delta, config, seed=3)
    clipped, _ = clip_update(delta, 2.0)
    noise = np.concatenate([(out.delta[k].astype(np.float64) - clipped[k]).ravel() for k in delta])
    assert float(noise.std()) == pytest.approx(0.5 * 2.0, rel=0.05)
    assert out.norm_before_clip == pytest.approx(update_norm(delta))


def test_privatize_is_reproducible_with_a_seed() -> None:
    delta = _delta()
    config = DPConfig(clip=1.0, noise_multiplier=1.0)
    a, b, c = (
        privatize(delta, config, seed=9),
        privatize(delta, config, seed=9),
        privatize(delta, config, seed=10),
    )
    assert all(a.delta[k].tobytes() == b.delta[k].tobytes() for k in delta)
    assert any(a.delta[k].tobytes() != c.delta[k].tobytes() for k in delta)
    # the noise depends on the seed and the keys, not on the dict's insertion order
    reordered = privatize({"b": delta["b"], "w": delta["w"]}, config, seed=9)
    assert all(np.array_equal(a.delta[k], reordered.delta[k]) for k in delta)


def test_privatize_records_exactly_the_metadata_params() -> None:
    out = privatize(
        _delta(), DPConfig(clip=1.5, noise_multiplier=1.1, delta=1e-6, sample_rate=0.5), seed=0, steps=4
    )
    assert out.params == {
        "mechanism": "gaussian",
        "clip": 1.5,
        "noise_multiplier": 1.1,
        "epsilon": compute_epsilon(1.1, 0.5, 4, 1e-6),
        "delta": 1e-6,
    }


def test_epsilon_decreases_as_noise_grows() -> None:
    eps = [compute_epsilon(sigma, 1.0, 1) for sigma in (0.5, 1.0, 2.0, 4.0, 8.0)]
    assert all(a > b > 0 for a, b in itertools.pairwise(eps))


def test_epsilon_grows_with_steps_and_shrinks_with_subsampling() -> None:
    assert compute_epsilon(1.0, 1.0, 10) > compute_epsilon(1.0, 1.0, 1)
    assert compute_epsilon(1.0, 0.1, 10) < compute_epsilon(1.0, 1.0, 10)


@pytest.mark.parametrize(
    ("sigma", "q", "steps", "delta"), [(1.0, 1.0, 1, 1e-5), (0.8, 0.2, 25, 1e-6), (3.0, 1.0, 5, 1e-5)]
)
def test_epsilon_matches_opacus(sigma: float, q: float, steps: int, delta: float) -> None:
    accountant = RDPAccountant()
    for _ in range(steps):
        accountant.step(noise_multiplier=sigma, sample_rate=q)
    rdp = opacus_rdp.compute_rdp(
        q=q, noise_multiplier=sigma, steps=steps, orders=RDPAccountant.DEFAULT_ALPHAS
    )
    analytic, _ = opacus_rdp.get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=delta)
    ours = compute_epsilon(sigma, q, steps, delta)
    assert ours == pytest.approx(accountant.get_epsilon(delta=delta), rel=1e-12)
    assert ours == pytest.approx(float(analytic), rel=1e-12)


@pytest.mark.parametrize(
    "config",
    [
        DPConfig(noise_multiplier=0.0),
        DPConfig(clip=0.0),
        DPConfig(clip=float("inf")),
        DPConfig(delta=1.0),
        DPConfig(sample_rate=0.0),
    ],
)
def test_bad_dp_parameters_are_rejected(config: DPConfig) -> None:
    with pytest.raises(InvalidParameter):
        privatize(_delta(), config, seed=0)


def test_steps_must_be_positive() -> None:
    with pytest.raises(InvalidParameter):
        compute_epsilon(1.0, 1.0, 0)


@pytest.mark.parametrize("sigma", [0.01, 200.0])
def test_epsilon_at_the_edges_of_the_default_orders_is_still_a_finite_bound(sigma: float) -> None:
    # Opacus warns here (pytest turns warnings into errors); the bound stays valid and must not raise.
    eps = compute_epsilon(sigma, 1.0, 1)
    assert 0.0 < eps < float("inf")

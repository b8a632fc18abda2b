"""Byzantine behaviours do exactly what they claim, on synthetic deltas (no training needed)."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from node.behaviours import (
    Behaviour,
    apply_behaviour,
    copycat,
    free_rider,
    gaussian_noise,
    lie_z,
    little_is_enough,
    noisy_copy,
    scale,
    sign_flip,
)
from node.errors import InvalidParameter, StateMismatch
from node.training import update_norm


def _delta(seed: int = 0, shift: float = 0.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w": (rng.normal(size=(40, 30)) * 0.1 + shift).astype(np.float32),
        "b": (rng.normal(size=(30,)) * 0.1 + shift).astype(np.float32),
    }


def _flat(delta: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in delta.values()])


def test_scale_multiplies_the_norm_by_ten() -> None:
    delta = _delta()
    out = scale(delta)
    assert update_norm(out) == pytest.approx(10 * update_norm(delta), rel=1e-6)
    assert all(np.array_equal(out[k], delta[k] * np.float32(10)) for k in delta)
    assert all(out[k].dtype == np.float32 for k in delta)


def test_sign_flip_negates() -> None:
    delta = _delta()
    out = sign_flip(delta)
    assert all(np.array_equal(out[k], -delta[k]) for k in delta)


def test_noise_matches_the_update_norm_but_not_its_direction() -> None:
    delta = _delta()
    out = gaussian_noise(delta, seed=4)
    assert update_norm(out) == pytest.approx(update_norm(delta), rel=0.1)
    cosine = float(_flat(out) @ _flat(delta)) / (update_norm(out) * update_norm(delta))
    assert abs(cosine) < 0.1
    assert all(np.array_equal(out[k], gaussian_noise(delta, seed=4)[k]) for k in delta)
    assert any(not np.array_equal(out[k], gaussian_noise(delta, seed=5)[k]) for k in delta)


def test_free_rider_sends_nothing_or_almost_nothing() -> None:
    delta = _delta()
    assert update_norm(free_rider(delta)) == 0.0
    tiny = free_rider(delta, seed=1, tiny_std=1e-6)
    assert 0.0 < update_norm(tiny) < 1e-3 * update_norm(delta)
    assert all(tiny[k].shape == delta[k].shape and tiny[k].dtype == np.float32 for k in delta)


def test_copycat_equals_the_copied_delta_and_owns_its_copy() -> None:
    own, theirs = _delta(0), _delta(1)
    out = copycat(own, theirs)
    assert all(np.array_equal(out[k], theirs[k]) for k in own)
    out["w"][0, 0] += 1.0
    assert not np.array_equal(out["w"], theirs["w"])


def test_copycat_refuses_a_delta_of_another_layout() -> None:
    own = _delta()
    with pytest.raises(StateMismatch):
        copycat(own, {"w": own["w"]})
    with pytest.raises(StateMismatch):
        copycat(own, {"w": own["w"][:5], "b": own["b"]})


def test_noisy_copy_points_where_the_original_does_but_equals_it_nowhere() -> None:
    own, theirs = _delta(0), _delta(1)
    out = noisy_copy(own, theirs, seed=3)
    cosine = float(_flat(out) @ _flat(theirs)) / (update_norm(out) * update_norm(theirs))
    assert 0.99 < cosine < 1.0
    assert 0.95 < update_norm(out) / update_norm(theirs) < 1.05
    assert all(out[k].dtype == np.float32 and not np.any(out[k] == theirs[k]) for k in own)
    assert all(np.array_equal(out[k], noisy_copy(own, theirs, seed=3)[k]) for k in own)
    assert any(not np.array_equal(out[k], noisy_copy(own, theirs, seed=4)[k]) for k in own)
    with pytest.raises(StateMismatch):
        noisy_copy(own, {"w": theirs["w"]}, seed=3)


def test_only_the_copying_behaviours_need_another_members_delta() -> None:
    assert {b for b in Behaviour if b.copies} == {
        Behaviour.COPYCAT,
        Behaviour.NOISY_COPY,
        Behaviour.FRONT_RUN,
    }
    for behaviour in (Behaviour.NOISY_COPY, Behaviour.FRONT_RUN):
        with pytest.raises(InvalidParameter, match=behaviour.value):
            apply_behaviour(behaviour, _delta())


def test_lie_z_follows_baruch_et_al() -> None:
    # n = 50, m = 12: s = ⌊26⌋ − 12 = 14 supporters, z = Φ⁻¹(36/50)
    assert lie_z(50, 12) == pytest.approx(NormalDist().inv_cdf(36 / 50))
    assert lie_z(5, 1) == pytest.approx(NormalDist().inv_cdf(3 / 5))
    assert lie_z(10, 1) < lie_z(10, 3) < lie_z(10, 5)
    with pytest.raises(InvalidParameter):
        lie_z(5, 6)


def _benign(count: int = 8) -> list[dict[str, np.ndarray]]:
    return [_delta(seed=i, shift=0.05) for i in range(count)]


def test_little_is_enough_is_mean_minus_z_sigma_when_unbounded() -> None:
    benign = _benign()
    out = little_is_enough(benign, z=1.5, norm_range=(0.0, float("inf")))
    for key in benign[0]:
        stacked = np.stack([d[key].astype(np.float64) for d in benign])
        expected = (stacked.mean(axis=0) - 1.5 * stacked.std(axis=0)).astype(np.float32)
        assert np.array_equal(out[key], expected)


def test_little_is_enough_stays_in_the_benign_norm_range_while_shifting_the_mean() -> None:
    benign = _benign()
    norms = [update_norm(d) for d in benign]
    for z in (0.3, 1.0, 3.0, 10.0):
        out = little_is_enough(benign, z=z)
        assert min(norms) * (1 - 1e-6) <= update_norm(out) <= max(norms) * (1 + 1e-6)
        mean = np.mean([_flat(d) for d in benign], axis=0)
        std = np.std([_flat(d) for d in benign], axis=0)
        # only the length changes: the direction is still mean − z·σ
        direction = mean - z * std
        cosine = float(_flat(out) @ direction) / (np.linalg.norm(_flat(out)) * np.linalg.norm(direction))
        assert cosine == pytest.approx(1.0, abs=1e-6)
        poisoned_mean = np.mean([_flat(d) for d in benign] + [_flat(out)] * 2, axis=0)
        assert np.linalg.norm(poisoned_mean - mean) > 0.01 * np.linalg.norm(mean)


def test_little_is_enough_needs_benign_updates() -> None:
    with pytest.raises(InvalidParameter):
        little_is_enough([])
    with pytest.raises(InvalidParameter):
        little_is_enough(_benign(), norm_range=(2.0, 1.0))


def test_apply_behaviour_dispatches_every_behaviour() -> None:
    delta, other, benign = _delta(0), _delta(1), _benign()
    expected = {
        Behaviour.HONEST: delta,
        Behaviour.SCALE: scale(delta),
        Behaviour.SIGN_FLIP: sign_flip(delta),
        Behaviour.NOISE: gaussian_noise(delta, seed=7),
        Behaviour.FREE_RIDER: free_rider(delta),
        Behaviour.COPYCAT: other,
        Behaviour.LITTLE_IS_ENOUGH: little_is_enough(benign, num_nodes=9, num_malicious=1),
        Behaviour.SAMPLE_INFLATION: delta,
        Behaviour.NOISY_COPY: noisy_copy(delta, other, seed=7),
        Behaviour.FRONT_RUN: other,
    }
    assert set(expected) == set(Behaviour)
    for behaviour, want in expected.items():
        got = apply_behaviour(behaviour.value, delta, seed=7, copy_from=other, benign=benign)
        assert all(np.array_equal(got[k], want[k]) for k in delta), behaviour


def test_apply_behaviour_honest_returns_a_copy() -> None:
    delta = _delta()
    out = apply_behaviour(Behaviour.HONEST, delta)
    out["b"][0] = 99.0
    assert delta["b"][0] != 99.0


def test_apply_behaviour_rejects_unknown_and_incomplete_requests() -> None:
    with pytest.raises(InvalidParameter):
        apply_behaviour("byzantine-general", _delta())
    with pytest.raises(InvalidParameter):
        apply_behaviour(Behaviour.COPYCAT, _delta())
    with pytest.raises(InvalidParameter):
        apply_behaviour(Behaviour.LITTLE_IS_ENOUGH, _delta())

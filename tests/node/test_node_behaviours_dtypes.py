"""Behaviours and DP on any state dict: arithmetic on float tensors by value (bfloat16 decoded from its bits,
rounded once back), integer/uint8/bool buffers left as the honest delta; norms over floats only."""

from __future__ import annotations

import numpy as np
import pytest

from ledger.updatefile.dtypes import bf16_to_float32, float32_to_bf16, float64_to_bf16
from node.behaviours import Behaviour, apply_behaviour, little_is_enough
from node.privacy import DPConfig, clip_update, privatize
from node.training import update_norm


def _delta(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w": rng.normal(0, 0.1, (4, 3)).astype(np.float32),
        "h": rng.normal(0, 0.1, 5).astype(np.float16),
        "b": float32_to_bf16(rng.normal(0, 0.1, 6).astype(np.float32)),  # bfloat16 bits
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "q": np.array([1, 255, 3], dtype=np.uint8),
    }


BUFFERS = ("bn.num_batches_tracked", "mask", "q")


def _bf16(x: np.ndarray) -> np.ndarray:
    return bf16_to_float32(x).astype(np.float64)


@pytest.mark.parametrize("kind", [Behaviour.SCALE, Behaviour.SIGN_FLIP, Behaviour.NOISE])
def test_attacks_act_on_float_values_and_keep_buffers(kind: Behaviour) -> None:
    delta = _delta()
    out = apply_behaviour(kind, delta, seed=3)
    for key in delta:
        assert out[key].dtype == delta[key].dtype
        assert out[key].shape == delta[key].shape
    for key in BUFFERS:
        assert np.array_equal(out[key], delta[key])
    if kind is Behaviour.SCALE:
        assert np.array_equal(out["b"], float64_to_bf16(_bf16(delta["b"]) * 10))  # rounded once
        assert np.array_equal(out["h"], (delta["h"].astype(np.float64) * 10).astype(np.float16))
        assert update_norm(out) == pytest.approx(10 * update_norm(delta), rel=1e-2)
    if kind is Behaviour.SIGN_FLIP:
        assert np.array_equal(_bf16(out["b"]), -_bf16(delta["b"]))  # exact: negation is representable
        assert np.array_equal(out["h"], -delta["h"])
    if kind is Behaviour.NOISE:
        assert update_norm(out) == pytest.approx(update_norm(delta), rel=0.6)


def test_the_norm_is_over_float_values_only() -> None:
    delta = _delta()
    expected = np.sqrt(
        np.sum(delta["w"].astype(np.float64) ** 2)
        + np.sum(delta["h"].astype(np.float64) ** 2)
        + np.sum(_bf16(delta["b"]) ** 2)
    )
    assert update_norm(delta) == pytest.approx(float(expected), rel=1e-12)


def test_free_rider_is_a_zero_delta_in_every_dtype() -> None:
    out = apply_behaviour(Behaviour.FREE_RIDER, _delta())
    assert all(not np.any(v) for v in out.values())


def test_little_is_enough_shifts_floats_and_keeps_a_benign_buffer() -> None:
    benign = [_delta(i) for i in range(4)]
    out = little_is_enough(benign, num_malicious=1)
    assert out["b"].dtype == np.uint16
    norms = [update_norm(d) for d in benign]
    assert min(norms) * (1 - 1e-2) <= update_norm(out) <= max(norms) * (1 + 1e-2)
    assert np.array_equal(out["bn.num_batches_tracked"], benign[0]["bn.num_batches_tracked"])


def test_dp_clips_and_noises_half_precision_floats_and_keeps_buffers() -> None:
    delta = apply_behaviour(Behaviour.SCALE, _delta(), scale_factor=50.0)
    clipped, before = clip_update(delta, 1.0)
    assert before > 1.0
    assert update_norm(clipped) <= 1.0
    private = privatize(delta, DPConfig(clip=1.0, noise_multiplier=0.5), seed=1)
    for key in BUFFERS:
        assert np.array_equal(private.delta[key], delta[key])
    assert private.delta["b"].dtype == np.uint16
    assert np.all(np.isfinite(_bf16(private.delta["b"])))

"""ledger.updatefile.deltas: what an update holds per dtype, and float64_to_bf16's single rounding."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from ledger.updatefile import InvalidTensors, apply_state_delta, file_tensors, state_delta
from ledger.updatefile.deltas import apply_float64_delta, saturating_add
from ledger.updatefile.dtypes import BF16, bf16_to_float32, float32_to_bf16, float64_to_bf16

BF16_MAX = Fraction(float(bf16_to_float32(np.array([0x7F7F], np.uint16))[0]))
HALF_ULP_AT_MAX = Fraction(2) ** (127 - 8)


def _exact_bf16(value: float) -> int:
    """The correctly rounded bfloat16 of ``value``, from exact rational arithmetic over candidate neighbours."""
    if value != value:
        raise ValueError("NaN")
    if abs(Fraction(value)) >= BF16_MAX + HALF_ULP_AT_MAX:
        return 0x7F80 if value > 0 else 0xFF80
    f32 = np.array([value], np.float64).astype(np.float32)
    centre = int(f32.view(np.uint32)[0] >> 16)
    candidates = [c for c in (centre - 1, centre, centre + 1) if 0 <= c < 0x10000 and (c & 0x7F80) != 0x7F80]
    target = Fraction(value)

    def distance(c: int) -> tuple[Fraction, int]:
        v = Fraction(float(bf16_to_float32(np.array([c], np.uint16))[0]))
        return abs(v - target), c & 1  # ties to the even bit pattern

    return min(candidates, key=distance)


def test_float64_to_bf16_rounds_once_like_exact_arithmetic() -> None:
    rng = np.random.default_rng(0)
    random = rng.standard_normal(20000) * np.exp2(rng.integers(-135, 128, 20000).astype(np.float64))
    # values beside bfloat16 midpoints: where rounding through float32 goes wrong
    grid = (rng.integers(0x0001, 0x7F7F, 3000).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    midpoints = grid * (1 + 2.0**-8)
    beside = np.concatenate(
        [midpoints, midpoints * (1 + 2.0**-40), midpoints * (1 - 2.0**-40), -midpoints * (1 + 2.0**-35)]
    )
    values = np.concatenate([random, beside, [0.0, -0.0, 1e-45, -3e-39, 3.3961e38, 3.4e38, 1e39]])
    got = float64_to_bf16(values)
    expected = np.array([_exact_bf16(float(v)) for v in values], np.uint16)
    mismatched = np.flatnonzero(got != expected)
    assert mismatched.size == 0, [(float(values[i]), hex(got[i]), hex(expected[i])) for i in mismatched[:5]]
    # and through float32 some of them do go wrong: the test can tell the two apart
    with np.errstate(over="ignore"):
        assert (float32_to_bf16(values.astype(np.float32)) != expected).any()


def test_float64_to_bf16_specials_and_shape() -> None:
    out = float64_to_bf16(np.array([[np.inf, -np.inf], [np.nan, 0.0]]))
    assert out.shape == (2, 2)
    assert out[0].tolist() == [0x7F80, 0xFF80]
    assert np.isnan(bf16_to_float32(out[1, :1]))[0]
    assert out[1, 1] == 0


def test_state_delta_and_apply_per_dtype() -> None:
    base = {
        "w": np.array([1.0, 2.0], np.float32),
        "h": np.array([1000.0], np.float16),
        "b": float32_to_bf16(np.array([1.0, -1.0], np.float32)),
        "n": np.array(10, np.int64),
        "u": np.array([250, 3], np.uint8),
        "m": np.array([True, False]),
    }
    local = {
        "w": np.array([1.5, 2.0], np.float32),
        "h": np.array([1001.0], np.float16),
        "b": float32_to_bf16(np.array([1.5, -1.0], np.float32)),
        "n": np.array(17, np.int64),
        "u": np.array([255, 0], np.uint8),
        "m": np.array([False, False]),
    }
    delta = state_delta(local, base)
    assert delta["w"].tolist() == [0.5, 0.0]
    assert delta["h"].dtype == np.float16
    assert bf16_to_float32(delta["b"]).tolist() == [0.5, 0.0]
    assert int(delta["n"]) == 7
    assert delta["u"].view(np.int8).tolist() == [5, -3]
    assert delta["m"].tolist() == [True, False]
    back = apply_state_delta(base, delta)
    for key, value in base.items():
        assert back[key].dtype == value.dtype, key
        assert back[key].tobytes() == local[key].tobytes(), key
    assert isinstance(file_tensors(delta)["b"], BF16)


def test_deltas_refuse_what_they_cannot_hold() -> None:
    with pytest.raises(InvalidTensors, match="shape"):
        state_delta({"w": np.zeros(3, np.float32)}, {"w": np.zeros(2, np.float32)})
    with pytest.raises(InvalidTensors, match="stored as F32"):
        state_delta({"w": np.zeros(2, np.float64)}, {"w": np.zeros(2, np.float32)})
    with pytest.raises(InvalidTensors, match="missing"):
        state_delta({}, {"w": np.zeros(2, np.float32)})
    with pytest.raises(InvalidTensors, match="I8 delta"):
        state_delta({"s": np.array([127], np.int8)}, {"s": np.array([-128], np.int8)})
    with pytest.raises(InvalidTensors, match="not stored"):
        state_delta({"z": np.zeros(1, np.complex64)}, {"z": np.zeros(1, np.complex64)})


def test_aggregated_integer_deltas_round_half_even_and_saturate() -> None:
    base = np.array([0, 0, 0, 250, -(2**63) + 1], np.int64)
    out = apply_float64_delta("I64", base, np.array([0.5, 1.5, -2.5, 1e300, -1e300]))
    assert out.tolist() == [0, 2, -2, 2**63 - 1, -(2**63)]
    assert apply_float64_delta("U8", np.array([250, 3], np.uint8), np.array([9.0, -7.0])).tolist() == [255, 0]
    assert apply_float64_delta(
        "BOOL", np.array([True, True, False]), np.array([0.5, 0.75, 0.6])
    ).tolist() == [True, False, True]
    assert saturating_add(np.array([2**63 - 2], np.int64), np.array([5], np.int64)).tolist() == [2**63 - 1]


def _hard_floats(dtype: type[np.floating], count: int, seed: int) -> np.ndarray:
    """Random bit patterns of ``dtype`` (subnormals, huge values, infinities and NaNs included) and near pairs."""
    rng = np.random.default_rng(seed)
    bits = np.dtype(dtype).itemsize * 8
    unsigned = {16: np.uint16, 32: np.uint32, 64: np.uint64}[bits]
    raw = rng.integers(0, 2**bits, size=count, dtype=np.uint64).astype(unsigned).view(dtype)
    finfo = np.finfo(dtype)
    specials = np.array(
        [0.0, -0.0, finfo.max, -finfo.max, finfo.tiny, finfo.smallest_subnormal, np.inf, -np.inf]
    )
    return np.concatenate([raw, specials.astype(dtype)])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_deltas_in_the_dtype_equal_the_float64_definition_bit_for_bit(dtype: type) -> None:
    # The fast path computes local - base in the storage dtype; the definition is the float64 difference
    # rounded once to the dtype. Any bit of difference would change a member's CID and break replay.
    local = _hard_floats(dtype, 200_000, 1)
    with np.errstate(over="ignore", invalid="ignore"):
        base = np.concatenate([_hard_floats(dtype, 100_000, 2), local[100_008:] * dtype(0.999)])
        definition = (local.astype(np.float64) - base.astype(np.float64)).astype(dtype)
        applied_definition = (base.astype(np.float64) + definition.astype(np.float64)).astype(dtype)
    delta = state_delta({"w": local}, {"w": base})["w"]
    applied = apply_state_delta({"w": base}, {"w": delta})["w"]
    for got, want in ((delta, definition), (applied, applied_definition)):
        assert got.dtype == want.dtype
        nan = np.isnan(want)
        assert np.array_equal(np.isnan(got), nan)
        assert np.array_equal(got[~nan].view(f"u{got.itemsize}"), want[~nan].view(f"u{want.itemsize}"))

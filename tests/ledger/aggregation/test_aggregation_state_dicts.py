"""Any state dict through every rule: BatchNorm buffers (running statistics, int64 ``num_batches_tracked``),
float16 and bfloat16 tensors, bool/uint8/int32 buffers, thousands of tensors. Real update files in, the
aggregate file out; what each rule does with each kind is pinned (docs/aggregation.md, "Buffers and dtypes")."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.aggregation import AggregationSpec, ArraySource, Contribution, aggregate, prepare
from ledger.aggregation.output import write_aggregation
from ledger.aggregation.source import describe_source
from ledger.updatefile import GenesisMeta, UpdateFile, UpdateMeta, file_tensors, write_aggregate, write_update
from ledger.updatefile.dtypes import bf16_to_float32, float32_to_bf16
from tests.ledger.aggregation.state_dicts import (
    apply_reference,
    delta_f64,
    mixed_base,
    mixed_deltas,
    reference_rule,
)

ADDRESS = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"
DIGESTS = [bytes([0x10 * (i + 1)]) * 32 for i in range(5)]
WEIGHTS = [7000, 1, 2500, 10000, 4321]

SPECS = {
    "fedavg": AggregationSpec.fedavg(),
    "fedavg-clipped": AggregationSpec.fedavg(clip="0.3"),
    "trimmed-mean": AggregationSpec.trimmed_mean("0.2", clip="0.3"),
    "median": AggregationSpec.median(),
    "multi-krum": AggregationSpec.multi_krum(f=1, m=3),
}


def _files(
    tmp_path: Path, base: dict[str, np.ndarray], deltas: list[dict[str, np.ndarray]]
) -> tuple[Path, list[Path]]:
    base_path = tmp_path / "base.safetensors"
    written = write_aggregate(base_path, file_tensors(base), GenesisMeta(model="mixed"))
    paths = []
    for i, delta in enumerate(deltas):
        path = tmp_path / f"u{i}.safetensors"
        meta = UpdateMeta(task=1, round=1, base=written.cid, contributor=ADDRESS, num_samples=5 + i)
        write_update(path, file_tensors(delta), meta)
        paths.append(path)
    return base_path, paths


def _aggregate_files(
    base_path: Path, paths: list[Path], spec: AggregationSpec, out: Path, order: list[int]
) -> tuple[str, dict[str, np.ndarray], Any]:
    with UpdateFile.open(base_path) as base:
        files = [UpdateFile.open(paths[i]) for i in order]
        try:
            agg = prepare(
                base,
                [Contribution(DIGESTS[i], f, WEIGHTS[i]) for i, f in zip(order, files, strict=True)],
                spec,
                memory_budget=1 << 16,  # several blocks per tensor where the tensors allow it
            )
            written = write_aggregation(
                out, agg, task=1, round=1, parent="QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
            )
        finally:
            for f in files:
                f.close()
    with UpdateFile.open(out, kind="aggregate") as f:
        tensors = {k: np.array(f.tensor(k)) for k in f}
        dtypes = {k: f.dtype(k) for k in f}
    assert dtypes == {info.key: info.name for info in agg.layout}  # every tensor keeps the base's dtype
    return written.cid, tensors, agg


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_rule_on_a_mixed_state_dict_matches_the_plain_reference_in_any_order(
    name: str, tmp_path: Path
) -> None:
    spec = SPECS[name]
    base = mixed_base()
    deltas = mixed_deltas(base, 5)
    base_path, paths = _files(tmp_path, base, deltas)
    cid, out, agg = _aggregate_files(base_path, paths, spec, tmp_path / "a.safetensors", [0, 1, 2, 3, 4])
    cid2, out2, _ = _aggregate_files(base_path, paths, spec, tmp_path / "b.safetensors", [3, 0, 4, 2, 1])
    assert cid2 == cid
    if spec.clip is not None:
        assert min(agg.scales) < 1.0  # the bound bites: buffers must still come through unscaled
    if name == "multi-krum":
        assert len(agg.selected) == 3
    n = 5
    trim = spec.trim_count(n)
    for info in describe_source(ArraySource(base)):
        scales = list(agg.scales) if info.parameter else [1.0] * n
        values = [delta_f64(info, d[info.key]) for d in deltas]
        if name.startswith("fedavg"):
            delta = reference_rule("fedavg", values, weights=WEIGHTS, scales=scales)
        elif name == "multi-krum":
            delta = reference_rule("mean", values, weights=WEIGHTS, scales=scales, selected=agg.selected)
        else:
            delta = reference_rule("order", values, weights=WEIGHTS, scales=scales, trim=trim)
        expected = apply_reference(info, base[info.key], delta)
        assert out[info.key].dtype == expected.dtype, info.key
        assert out[info.key].tobytes() == expected.tobytes(), (name, info.key)
        assert out2[info.key].tobytes() == expected.tobytes(), (name, info.key)


def test_clipping_and_norms_ignore_integer_bool_and_running_statistic_buffers() -> None:
    base = {
        "w": np.zeros(2, np.float32),
        "bn.running_mean": np.zeros(2, np.float32),
        "n": np.array(0, np.int64),
        "m": np.zeros(2, bool),
    }
    small = {
        "w": np.array([3.0, 4.0], np.float32),
        "bn.running_mean": np.array([300.0, -40.0], np.float32),
        "n": np.array(10**6, np.int64),
        "m": np.ones(2, bool),
    }
    agg = prepare(
        ArraySource(base), [Contribution(DIGESTS[0], ArraySource(small), 1)], AggregationSpec.fedavg(clip="1")
    )
    assert agg.norms == (5.0,)  # neither the counter's 10**6 nor the running mean is in the norm
    out = dict(agg.tensors())
    np.testing.assert_allclose(out["w"], [0.6, 0.8], rtol=1e-6)  # the weights are clipped ...
    assert out["bn.running_mean"].tolist() == [300.0, -40.0]  # ... the statistics are not scaled
    assert int(out["n"]) == 10**6  # ... nor the counter
    assert out["m"].tolist() == [True, True]
    info = {i.key: i for i in agg.layout}
    assert info["bn.running_mean"].statistic
    assert not info["bn.running_mean"].parameter
    assert info["w"].parameter


# --- what each rule does with integer and bool buffers: pinned values -----------------------------------


def _counter_round(spec: AggregationSpec, increments: list[int], weights: list[int] | None = None) -> int:
    base = {"w": np.zeros(3, np.float32), "bn.num_batches_tracked": np.array(10, np.int64)}
    rng = np.random.default_rng(1)
    contributions = [
        Contribution(
            DIGESTS[i],
            ArraySource(
                {
                    "w": rng.standard_normal(3).astype(np.float32),
                    "bn.num_batches_tracked": np.array(k, np.int64),
                }
            ),
            (weights or [1] * len(increments))[i],
        )
        for i, k in enumerate(increments)
    ]
    return int(aggregate(ArraySource(base), contributions, spec)["bn.num_batches_tracked"])


def test_num_batches_tracked_is_the_base_plus_the_rules_rounded_increment() -> None:
    increments = [3, 4, 4, 100]
    assert _counter_round(AggregationSpec.fedavg(), increments) == 10 + 28  # mean 27.75, rounded
    assert _counter_round(AggregationSpec.fedavg(), increments, [2, 1, 1, 1]) == 10 + 23  # 114 / 5 = 22.8
    assert _counter_round(AggregationSpec.fedavg(), [1, 2]) == 10 + 2  # 1.5: half to even
    assert _counter_round(AggregationSpec.fedavg(), [2, 3]) == 10 + 2  # 2.5: half to even
    assert _counter_round(AggregationSpec.median(), increments) == 10 + 4
    assert _counter_round(AggregationSpec.trimmed_mean("0.25"), increments) == 10 + 4
    # multi-krum picks by the float tensors only, then averages the picked members' increments
    kept = _counter_round(AggregationSpec.multi_krum(f=0, m=4), increments)
    assert kept == 10 + 28


def test_integers_stay_exact_beyond_float64_and_saturate() -> None:
    big = 2**62 + 1  # not a float64
    base = {"w": np.zeros(1, np.float32), "n": np.array(big, np.int64), "s": np.array([120, -120], np.int8)}
    update = {"w": np.ones(1, np.float32), "n": np.array(2, np.int64), "s": np.array([100, -100], np.int8)}
    out = aggregate(
        ArraySource(base), [Contribution(DIGESTS[0], ArraySource(update), 1)], AggregationSpec.fedavg()
    )
    assert int(out["n"]) == big + 2
    assert out["s"].tolist() == [127, -128]


def test_uint8_deltas_are_signed_bytes_and_bools_flip_by_weighted_majority() -> None:
    base = {
        "w": np.zeros(1, np.float32),
        "codes": np.array([0, 200, 255], np.uint8),
        "mask": np.array([False, True, True]),
    }

    def member(codes: list[int], flips: list[bool]) -> ArraySource:
        return ArraySource(
            {
                "w": np.ones(1, np.float32),
                "codes": np.array(codes, np.int8).view(np.uint8),
                "mask": np.array(flips),
            }
        )

    inputs = [
        Contribution(DIGESTS[0], member([-1, -10, 3], [True, True, False]), 3),
        Contribution(DIGESTS[1], member([-3, -20, 5], [False, True, True]), 1),
        Contribution(DIGESTS[2], member([-2, -30, 1], [True, False, True]), 1),
    ]
    out = aggregate(ArraySource(base), inputs, AggregationSpec.fedavg())
    # weighted means of the increments (-8/5, -80/5, 15/5) rounded, added and clamped to 0..255
    assert out["codes"].tolist() == [0, 184, 255]
    # flip shares 4/5, 4/5, 2/5: the first two entries flip, the third keeps the base's value
    assert out["mask"].tolist() == [True, False, True]
    median = aggregate(ArraySource(base), inputs, AggregationSpec.median())
    assert median["codes"].tolist() == [0, 180, 255]  # median increments -2, -20, 3
    assert median["mask"].tolist() == [True, False, False]


# --- float16 and bfloat16: float64 accumulation, one rounding -------------------------------------------


def test_bfloat16_aggregate_is_rounded_once() -> None:
    one = float32_to_bf16(np.array([1.0], np.float32))
    deltas = [
        float32_to_bf16(np.array([2.0**-7], np.float32)),
        float32_to_bf16(np.array([2.0**-30], np.float32)),
    ]
    inputs = [Contribution(DIGESTS[i], ArraySource({"w": d}), 1) for i, d in enumerate(deltas)]
    out = aggregate(ArraySource({"w": one}), inputs, AggregationSpec.fedavg())["w"]
    # 1 + (2**-7 + 2**-30) / 2 lies just above the midpoint between 1 and 1 + 2**-7: it rounds up. Rounding
    # through float32 first would land on the midpoint itself and tie to even (down to 1.0).
    assert out.dtype == np.uint16
    assert bf16_to_float32(out).tolist() == [1.0 + 2.0**-7]


def test_float16_fedavg_accumulates_in_float64() -> None:
    base = {"w": np.full(4, 1000.0, np.float16)}
    # each delta alone is below half a float16 ulp at 1000 (0.5); sixteen of them weighted are not
    inputs = [
        Contribution(bytes([i + 1]) * 32, ArraySource({"w": np.full(4, 0.3, np.float16)}), 1 + i % 3)
        for i in range(16)
    ]
    out = aggregate(ArraySource(base), inputs, AggregationSpec.fedavg())["w"]
    assert out.dtype == np.float16
    expected = np.float16(1000.0 + float(np.float16(0.3)))
    assert out.tolist() == [float(expected)] * 4


def test_non_finite_float16_aggregate_is_refused() -> None:
    from ledger.aggregation import NonFiniteAggregate

    base = {"w": np.array([60000.0], np.float16)}
    inputs = [Contribution(DIGESTS[0], ArraySource({"w": np.array([8000.0], np.float16)}), 1)]
    with pytest.raises(NonFiniteAggregate, match=r"F16|float16"):
        aggregate(ArraySource(base), inputs, AggregationSpec.fedavg())


# --- many tensors -----------------------------------------------------------------------------------------


def test_three_thousand_tensors_aggregate_through_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    base: dict[str, np.ndarray] = {}
    for i in range(1000):
        prefix = f"encoder.layers.{i:04d}.block"
        base[f"{prefix}.weight"] = rng.standard_normal(8).astype(np.float32)
        base[f"{prefix}.norm.running_var"] = np.ones(2, np.float16)
        base[f"{prefix}.norm.num_batches_tracked"] = np.array(i, np.int64)
    deltas = []
    for m in range(3):
        deltas.append(
            {
                k: (
                    np.array(m + 1, np.int64)
                    if v.dtype == np.int64
                    else (0.01 * (m + 1) * np.ones_like(v)).astype(v.dtype)
                )
                for k, v in base.items()
            }
        )
    base_path, paths = _files(tmp_path, base, deltas)
    order = list(range(3))
    cid, out, _ = _aggregate_files(
        base_path, paths, AggregationSpec.median(), tmp_path / "a.safetensors", order
    )
    random.Random(0).shuffle(order)
    cid2, _, _ = _aggregate_files(
        base_path, paths, AggregationSpec.median(), tmp_path / "b.safetensors", order
    )
    assert cid2 == cid
    assert len(out) == 3000
    assert int(out["encoder.layers.0999.block.norm.num_batches_tracked"]) == 999 + 2


def _peak_mixed(n: int) -> int:
    import tracemalloc

    size = 1 << 20
    rng = np.random.default_rng(0)
    base = ArraySource(
        {
            "w": float32_to_bf16(np.zeros(size, np.float32)),
            "h": np.zeros(size, np.float16),
            "bn.num_batches_tracked": np.array(0, np.int64),
            "mask": np.zeros(1 << 16, bool),
        }
    )
    one = {
        "w": float32_to_bf16(rng.standard_normal(size).astype(np.float32)),
        "h": rng.standard_normal(size).astype(np.float16),
        "bn.num_batches_tracked": np.array(5, np.int64),
        "mask": np.ones(1 << 16, bool),
    }
    # every input shares the same arrays: only the driver's own allocations are traced
    contribs = [Contribution(bytes([i + 1]) * 32, ArraySource(one), 1) for i in range(n)]
    peak = 0
    for spec in (AggregationSpec.fedavg(clip="1"), AggregationSpec.median(), AggregationSpec.multi_krum(1)):
        tracemalloc.start()
        try:
            for _key, value in prepare(base, contribs, spec, memory_budget=8 << 20).tensors():
                del value
            peak = max(peak, tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return peak


def test_memory_of_a_bfloat16_float16_state_grows_with_the_model_not_with_the_number_of_updates() -> None:
    small, large = _peak_mixed(4), _peak_mixed(32)
    # one output tensor (2 MiB), the 8 MiB scratch budget, and the final rounding's temporaries (one block)
    assert large < (2 << 20) + (10 << 20)
    assert large < small + (7 << 20)  # 8x the inputs: bfloat16 blocks are never widened side by side


_KIND_DTYPES = ["F32", "F16", "BF16", "I64", "I8", "U8", "BOOL"]


def _random_tensor(rng: np.random.Generator, name: str, size: int) -> np.ndarray:
    if name in ("F32", "F16"):
        return (rng.standard_normal(size) * 4).astype(np.float32 if name == "F32" else np.float16)
    if name == "BF16":
        return float32_to_bf16((rng.standard_normal(size) * 4).astype(np.float32))
    if name == "I64":
        return rng.integers(-(2**40), 2**40, size).astype(np.int64)
    if name == "I8":
        return rng.integers(-60, 60, size).astype(np.int8)
    if name == "U8":
        return rng.integers(-128, 128, size).astype(np.int8).view(np.uint8)
    return rng.integers(0, 2, size).astype(bool)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    rule=st.sampled_from(["fedavg", "trimmed", "median", "krum"]),
    permutation_seed=st.integers(0, 1000),
)
def test_any_dtype_mix_gives_the_same_bytes_in_any_input_order(
    n: int, seed: int, rule: str, permutation_seed: int
) -> None:
    rng = np.random.default_rng(seed)
    sizes = {name: int(rng.integers(1, 40)) for name in _KIND_DTYPES}
    base = {name: _random_tensor(rng, name, size) for name, size in sizes.items()}
    updates = [{name: _random_tensor(rng, name, size) for name, size in sizes.items()} for _ in range(n)]
    weights = [int(w) for w in rng.integers(1, 10001, n)]
    spec = {
        "fedavg": AggregationSpec.fedavg(clip="5"),
        "trimmed": AggregationSpec.trimmed_mean("0.2"),
        "median": AggregationSpec.median(),
        "krum": AggregationSpec.multi_krum(f=min(1, n - 1)),
    }[rule]
    digests = [bytes(rng.integers(0, 256, 32).astype(np.uint8)) for _ in range(n)]

    def run(order: list[int]) -> dict[str, np.ndarray]:
        inputs = [Contribution(digests[i], ArraySource(updates[i]), weights[i]) for i in order]
        return aggregate(ArraySource(base), inputs, spec)

    first = run(list(range(n)))
    order = list(range(n))
    random.Random(permutation_seed).shuffle(order)
    again = run(order)
    for name in _KIND_DTYPES:
        assert first[name].dtype == base[name].dtype
        assert first[name].tobytes() == again[name].tobytes(), name

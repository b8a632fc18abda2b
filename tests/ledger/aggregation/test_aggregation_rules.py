"""Each rule against a plain in-memory reference, and the robustness each rule promises."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.aggregation import AggregationSpec, ArraySource, Contribution, aggregate, prepare, rules
from ledger.aggregation.stream import gram_matrix, sumsq

# --- plain references: obviously correct, not streamed, not careful about order ---------------------------------


def ref_norms(models: list[dict[str, np.ndarray]]) -> list[float]:
    return [
        float(np.linalg.norm(np.concatenate([m[k].astype(np.float64).ravel() for k in sorted(m)])))
        for m in models
    ]


def ref_scales(models: list[dict[str, np.ndarray]], clip: float | None) -> list[float]:
    if clip is None:
        return [1.0] * len(models)
    return [min(1.0, clip / n) if n > 0 else 1.0 for n in ref_norms(models)]


def ref_aggregate(
    base: dict[str, np.ndarray],
    models: list[dict[str, np.ndarray]],
    counts: list[int],
    spec: AggregationSpec,
) -> tuple[dict[str, np.ndarray], list[int]]:
    scales = ref_scales(models, spec.clip_norm)
    clipped = [{k: m[k].astype(np.float64) * s for k in m} for m, s in zip(models, scales, strict=True)]
    chosen = list(range(len(models)))
    if spec.rule.slug == "multi-krum":
        chosen = ref_krum(clipped, spec.krum_f, spec.krum_m)
    out = {}
    for key, base_value in base.items():
        stack = np.stack([clipped[i][key] for i in chosen])
        if spec.rule.slug == "fedavg":
            w = np.array([counts[i] for i in chosen], np.float64)
            delta = np.tensordot(w, stack, axes=1) / w.sum()
        elif spec.rule.slug == "median":
            delta = np.median(stack, axis=0)
        elif spec.rule.slug == "trimmed-mean":
            k = spec.trim_count(len(chosen))
            delta = np.sort(stack, axis=0)[k : len(chosen) - k].mean(axis=0)
        else:
            delta = stack.mean(axis=0)
        out[key] = (base_value.astype(np.float64) + delta).astype(base_value.dtype)
    return out, chosen


def ref_krum(models: list[dict[str, np.ndarray]], f: int, m: int) -> list[int]:
    """Krum on direct differences; equal scores go to the lower digest (update i has digest sha256("update i"))."""
    rank = {i: digest_of(i) for i in range(len(models))}
    flat = [np.concatenate([mm[k].ravel() for k in sorted(mm)]) for mm in models]
    n = len(flat)
    if n == 1:
        return [0]
    d = np.array([[np.sum((a - b) ** 2) for b in flat] for a in flat])
    k = min(max(n - f - 2, 1), n - 1)
    scores = [np.sort(np.delete(d[i], i))[:k].sum() for i in range(n)]
    keep = min(max(m or n - f, 1), n)
    return sorted(sorted(range(n), key=lambda i: (scores[i], rank[i]))[:keep])


def digest_of(i: int) -> bytes:
    return hashlib.sha256(f"update {i}".encode()).digest()


# --- fixtures ----------------------------------------------------------------------------------------------------


def make_round(
    seed: int, n: int, shapes: dict[str, tuple[int, ...]], *, ties: bool = False, dtype: Any = np.float32
) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]], list[int]]:
    rng = np.random.default_rng(seed)

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        if ties:
            return np.asarray(rng.integers(-2, 3, size=shape), dtype=dtype)
        return np.asarray(rng.standard_normal(shape), dtype=dtype)

    base = {k: draw(s) for k, s in shapes.items()}
    models = [{k: draw(s) for k, s in shapes.items()} for _ in range(n)]
    counts = [int(c) for c in rng.integers(1, 1000, size=n)]
    return base, models, counts


def contributions(models: list[dict[str, np.ndarray]], counts: list[int]) -> list[Contribution]:
    return [
        Contribution(digest_of(i), ArraySource(m), c)
        for i, (m, c) in enumerate(zip(models, counts, strict=True))
    ]


def run(
    base: dict[str, np.ndarray], models: list[dict[str, np.ndarray]], counts: list[int], spec: AggregationSpec
) -> tuple[dict[str, np.ndarray], list[int]]:
    """Aggregate and return the result plus the selected inputs as indices into ``models``."""
    contribs = contributions(models, counts)
    agg = prepare(ArraySource(base), contribs, spec)
    index = {c.digest: i for i, c in enumerate(contribs)}
    chosen = sorted(index[agg.inputs[i].digest] for i in agg.selected)
    return dict(agg.tensors()), chosen


def assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert got.keys() == want.keys()
    for k, expected in want.items():
        assert got[k].dtype == expected.dtype
        assert got[k].shape == expected.shape
        # the reference sums in another order: allow a couple of float32 ulps
        np.testing.assert_allclose(got[k], expected, rtol=3e-7, atol=3e-7)


SPECS = st.one_of(
    st.builds(AggregationSpec.fedavg, clip=st.sampled_from([None, "0.5", "3"])),
    st.builds(AggregationSpec.median, clip=st.sampled_from([None, "0.5"])),
    st.builds(AggregationSpec.trimmed_mean, st.sampled_from(["0.05", "0.1", "0.25", "0.4999"])),
    st.builds(
        AggregationSpec.multi_krum, st.integers(0, 3), st.integers(0, 4), clip=st.sampled_from([None, "2"])
    ),
)


@settings(max_examples=80, deadline=None)
@given(
    spec=SPECS,
    n=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
    ties=st.booleans(),
    shapes=st.sampled_from([{"w": (3, 4), "b": (4,)}, {"x": (17,)}, {"a": (2, 3, 2), "s": ()}]),
)
def test_every_rule_matches_the_in_memory_reference(
    spec: AggregationSpec, n: int, seed: int, ties: bool, shapes: dict[str, tuple[int, ...]]
) -> None:
    base, models, counts = make_round(seed, n, shapes, ties=ties)
    got, chosen = run(base, models, counts, spec)
    want, want_chosen = ref_aggregate(base, models, counts, spec)
    if not ties:  # with integer-valued inputs Krum scores tie and either choice is right
        assert chosen == want_chosen
        assert_close(got, want)
    elif spec.rule.slug != "multi-krum":
        assert_close(got, want)


@settings(max_examples=40, deadline=None)
@given(spec=SPECS, n=st.integers(1, 8), seed=st.integers(0, 2**32 - 1), ties=st.booleans(), data=st.data())
def test_input_order_does_not_change_a_single_bit(
    spec: AggregationSpec, n: int, seed: int, ties: bool, data: st.DataObject
) -> None:
    base, models, counts = make_round(seed, n, {"w": (5, 3), "b": (7,)}, ties=ties)
    contribs = contributions(models, counts)
    shuffled = data.draw(st.permutations(contribs))
    a = aggregate(ArraySource(base), contribs, spec)
    b = aggregate(ArraySource(base), shuffled, spec)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes()


def test_list_functions_equal_the_streamed_result_bitwise() -> None:
    base, models, counts = make_round(3, 6, {"w": (50, 40)})
    contribs = contributions(models, counts)
    order = sorted(range(6), key=lambda i: contribs[i].digest)
    arrays = [models[i]["w"] for i in order]
    cs = [counts[i] for i in order]
    for spec, delta in [
        (AggregationSpec.fedavg(), rules.fedavg(arrays, cs)),
        (AggregationSpec.median(), rules.median(arrays)),
        (AggregationSpec.trimmed_mean(0.2), rules.trimmed_mean(arrays, 1)),
    ]:
        got = aggregate(ArraySource(base), contribs, spec)["w"]
        assert got.tobytes() == (base["w"].astype(np.float64) + delta).astype(np.float32).tobytes()


# --- robustness --------------------------------------------------------------------------------------------------


def honest_round(
    n: int, seed: int = 0, size: int = 200
) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(size)
    base = {"w": np.zeros(size, np.float32)}
    models = [{"w": (direction + 0.1 * rng.standard_normal(size)).astype(np.float32)} for _ in range(n)]
    return base, models


def test_multi_krum_drops_attackers_that_are_far_away() -> None:
    base, models = honest_round(8)
    rng = np.random.default_rng(9)
    attackers = [{"w": (50.0 * rng.standard_normal(200)).astype(np.float32)} for _ in range(2)]
    everyone = models[:3] + attackers[:1] + models[3:] + attackers[1:]
    got, chosen = run(base, everyone, [1] * 10, AggregationSpec.multi_krum(2))
    attacker_ids = {3, 9}
    assert not attacker_ids & set(chosen)
    assert len(chosen) == 8
    honest_mean = np.mean([m["w"].astype(np.float64) for m in models], axis=0)
    np.testing.assert_allclose(got["w"], honest_mean, rtol=1e-6, atol=1e-6)


def test_multi_krum_m_keeps_that_many() -> None:
    base, models = honest_round(7)
    _, chosen = run(base, models, [1] * 7, AggregationSpec.multi_krum(1, 3))
    assert len(chosen) == 3


def test_scaled_and_sign_flipped_attackers_are_not_selected() -> None:
    base, models = honest_round(9, seed=4)
    evil = [{"w": m["w"] * np.float32(-10.0)} for m in models[:2]]
    _, chosen = run(base, models + evil, [1] * 11, AggregationSpec.multi_krum(2))
    assert set(chosen) <= set(range(9))


def test_median_and_trimmed_mean_resist_one_huge_outlier() -> None:
    base, models = honest_round(9, seed=2)
    huge = {"w": np.full(200, 1e30, np.float32)}
    honest = np.stack([m["w"].astype(np.float64) for m in models])
    lo, hi = honest.min(axis=0), honest.max(axis=0)
    for spec in (AggregationSpec.median(), AggregationSpec.trimmed_mean(0.1)):
        got, _ = run(base, [*models, huge], [1] * 10, spec)
        assert np.all(got["w"] >= lo.astype(np.float32)), spec
        assert np.all(got["w"] <= hi.astype(np.float32)), spec
    fedavg, _ = run(base, [*models, huge], [1] * 10, AggregationSpec.fedavg())
    assert np.all(fedavg["w"] > 1e28)  # the contrast: the plain mean follows the outlier


def test_clipping_bounds_every_update_norm() -> None:
    base, models = honest_round(5, seed=7)
    models.append({"w": np.full(200, 100.0, np.float32)})  # norm 1414
    counts = [1] * 6
    contribs = contributions(models, counts)
    agg = prepare(ArraySource(base), contribs, AggregationSpec.fedavg(clip=2))
    assert agg.norms is not None
    for norm, scale in zip(agg.norms, agg.scales, strict=True):
        assert norm * scale <= 2.0 * (1 + 1e-12)
        assert scale == 1.0 or np.isclose(norm * scale, 2.0)
    got = dict(agg.tensors())
    assert np.linalg.norm(got["w"].astype(np.float64)) <= 2.0 * (1 + 1e-6)  # a mean of clipped updates


def test_clipping_leaves_small_updates_alone() -> None:
    assert rules.clip_factors([0.5, 2.0, 4.0], 2.0) == [1.0, 1.0, 0.5]
    assert rules.clip_factors([0.5, 4.0], None) == [1.0, 1.0]


def test_gram_diagonal_is_the_protocol_norm_bit_for_bit() -> None:
    base, models, _ = make_round(5, 4, {"w": (300, 700), "b": (9,)})
    sources = [ArraySource(m) for m in models]
    layout = prepare(ArraySource(base), contributions(models, [1] * 4), AggregationSpec.median()).layout
    gram = gram_matrix(sources, layout, memory_budget=1 << 20)
    for i, s in enumerate(sources):
        assert gram[i, i] == sumsq(s, layout, memory_budget=1 << 22)
    np.testing.assert_allclose(np.sqrt(np.diag(gram)), ref_norms(models), rtol=1e-12)


def test_krum_scores_use_the_n_minus_f_minus_2_nearest() -> None:
    d = np.array([[0, 1, 4, 9], [1, 0, 1, 4], [4, 1, 0, 1], [9, 4, 1, 0]], np.float64)
    assert rules.krum_scores(d, 1) == [1.0, 1.0, 1.0, 1.0]  # k = 1
    assert rules.krum_scores(d, 0) == [5.0, 2.0, 2.0, 5.0]  # k = 2
    assert rules.multi_krum_select(d, 0, 2) == [1, 2]
    assert rules.multi_krum_select(d, 1, 1) == [0]  # equal scores: the first in digest order wins

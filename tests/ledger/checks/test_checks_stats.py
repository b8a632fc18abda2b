"""The streaming scan (finite, norm, fingerprint) and the round-level statistics (z-score, duplicates)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from ledger.aggregation import AggregationSpec, ArraySource, Contribution, prepare
from ledger.aggregation.numerics import CHUNK, chunk_sums
from ledger.aggregation.source import describe_source
from ledger.checks import CheckLimits, UpdateProfile, check_values, cosine, is_duplicate, round_stats, scan
from ledger.checks.profile import _SUB, TensorScanner, fingerprint_positions, scan_file
from ledger.content.unixfs import import_file
from ledger.errors import ConfigError
from ledger.reasons import Reason
from ledger.updatefile import BF16, UpdateFile, UpdateMeta, write_update


def test_scan_norm_is_the_aggregation_norm_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    tensors = {
        "a": rng.standard_normal((700, 300)).astype(np.float32),
        "b": rng.standard_normal(3 * CHUNK + 5).astype(np.float16),
        "c": np.arange(4, dtype=np.int64),
    }
    source = ArraySource(tensors)
    result = scan(source, describe_source(source))
    base = ArraySource({k: np.zeros_like(v) for k, v in tensors.items()})
    agg = prepare(base, [Contribution(b"\x01" * 32, source, 1)], AggregationSpec.fedavg(clip="1"))
    assert agg.norms == (result.norm,)
    floats = np.concatenate([tensors["a"].ravel(), tensors["b"]]).astype(np.float64)
    assert result.norm == pytest.approx(float(np.linalg.norm(floats)), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_a_tensor_fed_in_pieces_of_any_size_is_summed_as_the_protocol_says(dtype: type) -> None:
    """Pieces that split chunks and values (a store's blocks after a header) change nothing: the sum is the
    protocol's (chunks of CHUNK values from the tensor's first, summed in order), the samples the same."""
    rng = np.random.default_rng(5)
    values = rng.standard_normal(2 * _SUB + 3 * CHUNK + 17).astype(dtype)
    expected = 0.0
    for chunk_sum in chunk_sums((values.astype(np.float64) ** 2).reshape(1, -1))[0].tolist():
        expected += chunk_sum
    (info,) = describe_source(ArraySource({"w": values}))
    wanted = fingerprint_positions(values.size)
    scanner = TensorScanner(info, wanted, np.empty(_SUB))
    data = memoryview(values.tobytes())
    at = 0
    for size in itertools.cycle([1, 3, 4093, 262144, 5, 65536 * values.itemsize]):
        if at >= len(data):
            break
        scanner.feed(data[at : at + size])
        at += size
    scanner.finish()
    assert scanner.total == expected
    assert scanner.samples == [float(values[i]) for i in wanted]
    assert not scanner.non_finite


def test_fingerprint_samples_fixed_positions_across_tensors() -> None:
    assert fingerprint_positions(10, 4) == [0, 2, 5, 7]
    assert fingerprint_positions(3, 256) == [0, 1, 2]
    a = np.arange(600, dtype=np.float32)
    b = np.arange(600, 1000, dtype=np.float32)
    source = ArraySource({"a": a, "b": b, "n": np.zeros(3, np.int32)})
    result = scan(source, describe_source(source))
    assert list(result.fingerprint) == [float(p) for p in fingerprint_positions(1000)]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_scan_names_the_first_non_finite_tensor(bad: float) -> None:
    good = np.ones(10, np.float32)
    poisoned = np.ones(10, np.float32)
    poisoned[7] = bad
    source = ArraySource({"a": good, "b": poisoned, "c": poisoned.copy()})
    result = scan(source, describe_source(source))
    assert result.non_finite == "b"
    verdict = check_values(result, CheckLimits())
    assert verdict is not None
    assert verdict.reason is Reason.NON_FINITE


def test_float64_values_whose_squares_overflow_are_too_large_not_non_finite() -> None:
    source = ArraySource({"a": np.full(4, 1e200)})
    result = scan(source, describe_source(source))
    assert result.non_finite is None
    verdict = check_values(result, CheckLimits())
    assert verdict is not None
    assert verdict.reason is Reason.NORM_TOO_LARGE


def test_nan_after_an_overflow_is_still_non_finite() -> None:
    source = ArraySource({"a": np.full(4, 1e200), "b": np.array([0.0, np.nan])})
    assert scan(source, describe_source(source)).non_finite == "b"


def test_norm_bounds() -> None:
    source = ArraySource({"a": np.array([3.0, 4.0], np.float32)})
    result = scan(source, describe_source(source))
    assert result.norm == 5.0
    assert check_values(result, CheckLimits(max_norm=5.0)) is None
    too_large = check_values(result, CheckLimits(max_norm=4.99))
    assert too_large is not None
    assert too_large.reason is Reason.NORM_TOO_LARGE
    too_small = check_values(result, CheckLimits(min_norm=5.0))
    assert too_small is not None
    assert too_small.reason is Reason.NORM_TOO_SMALL


# --- round statistics ---------------------------------------------------------------------------------------


def profile(i: int, norm: float, direction: np.ndarray | None = None) -> UpdateProfile:
    rng = np.random.default_rng(i)
    d = rng.standard_normal(256) if direction is None else direction
    fp = tuple(float(x) for x in d / np.linalg.norm(d) * norm / 16)
    return UpdateProfile(bytes([i]) * 32, norm, fp)


def test_zscore_is_leave_one_out_on_log_norms() -> None:
    norms = [1.0, 1.1, 0.9, 1.2, 0.8, 10.0]
    stats = round_stats([profile(i, n) for i, n in enumerate(norms)])
    limits = CheckLimits(zscore_min_mad=1e-9)
    peers = np.log([1.0, 1.1, 0.9, 1.2, 0.8])
    med = float(np.median(peers))
    mad = float(np.median(np.abs(peers - med)))
    z = stats.zscore(bytes([5]) * 32, limits)
    assert z == pytest.approx(0.6745 * (math.log(10.0) - med) / mad)
    # scaling up and scaling down by the same factor are equally far on a log scale
    up = round_stats([profile(i, n) for i, n in enumerate([1.0, 1.0, 1.0, 1.0, 4.0])])
    down = round_stats([profile(i, n) for i, n in enumerate([1.0, 1.0, 1.0, 1.0, 0.25])])
    z_up = up.zscore(bytes([4]) * 32, CheckLimits())
    z_down = down.zscore(bytes([4]) * 32, CheckLimits())
    assert z_up is not None
    assert z_down is not None
    assert z_up == pytest.approx(-z_down)


def test_small_rounds_have_no_zscore() -> None:
    stats = round_stats([profile(i, n) for i, n in enumerate([1.0, 1.0, 100.0])])
    assert stats.zscore(bytes([2]) * 32, CheckLimits()) is None  # two peers < zscore_min_peers = 3
    stats = round_stats([profile(i, n) for i, n in enumerate([1.0, 1.0, 1.0, 100.0])])
    z = stats.zscore(bytes([3]) * 32, CheckLimits())
    assert z is not None
    assert z > 3.5


def test_a_round_of_three_under_the_anchored_minimum_judges_only_norms_far_above() -> None:
    """docs/aggregation.md, "Rounds of three updates" (``zscore_min_peers`` = SPEC_ZSCORE_MIN_PEERS): a ×10 boost
    among two honest updates is NORM_OUTLIER (under the library default it had no z-score and was accepted); an
    honest update between its peers is never an outlier, one below both only widened by the boost; a norm as far
    below is kept; with three peers both sides count; two updates alone still have no z-score."""
    from ledger.checks.limits import SPEC_ZSCORE_MIN_PEERS
    from ledger.checks.update_checks import check_in_round

    limits = CheckLimits(zscore_min_peers=SPEC_ZSCORE_MIN_PEERS)

    def verdict(norms: list[float], i: int, limits: CheckLimits = limits) -> Reason | None:
        stats = round_stats([profile(j, n) for j, n in enumerate(norms)])
        found = check_in_round(stats.profiles[i], stats, limits)
        return None if found is None else found.reason

    boosted = [1.0, 1.6, 13.0]
    assert verdict(boosted, 2) is Reason.NORM_OUTLIER
    assert verdict(boosted, 2, CheckLimits()) is None  # what a specification without the key means
    assert [verdict(boosted, i) for i in (0, 1)] == [None, None]
    stats = round_stats([profile(j, n) for j, n in enumerate(boosted)])
    between = stats.zscore(bytes([1]) * 32, limits)
    assert between is not None
    assert abs(between) <= 0.6745 + 1e-12  # between its two peers, whatever the boost
    assert (
        verdict([1.2, 1.9, 0.12], 2) is None
    )  # ten times smaller: kept (no z-score test below with 2 peers)
    assert verdict([1.2, 1.9, 1.5, 0.15], 3) is Reason.NORM_OUTLIER  # three peers: both sides, as before
    pair = round_stats([profile(j, n) for j, n in enumerate([1.0, 10.0])])
    assert pair.zscore(bytes([1]) * 32, limits) is None


def test_mad_floor_keeps_honest_variation_in_a_tight_round() -> None:
    norms = [1.0, 1.0, 1.0, 1.0, 1.0, 1.5]  # MAD of the peers is 0
    stats = round_stats([profile(i, n) for i, n in enumerate(norms)])
    z = stats.zscore(bytes([5]) * 32, CheckLimits())
    assert z is not None
    assert abs(z) < 3.5
    z_unfloored = stats.zscore(bytes([5]) * 32, CheckLimits(zscore_min_mad=1e-12))
    assert z_unfloored is not None
    assert z_unfloored > 1e6


def test_duplicates_are_near_copies_and_the_earliest_is_kept() -> None:
    rng = np.random.default_rng(5)
    d = rng.standard_normal(256)
    original = profile(1, 2.0, d)
    noisy = profile(2, 2.0 * (1 + 1e-7), d + 1e-5 * rng.standard_normal(256))
    scaled = profile(3, 4.0, d)
    unrelated = profile(4, 2.0)
    limits = CheckLimits()
    assert is_duplicate(noisy, original, limits)
    assert not is_duplicate(scaled, original, limits)  # same direction, another norm
    assert not is_duplicate(unrelated, original, limits)
    stats = round_stats([original, unrelated, noisy, scaled])
    assert stats.duplicate_of(original.digest, limits) is None
    dup = stats.duplicate_of(noisy.digest, limits)
    assert dup is not None
    assert dup.digest == original.digest
    assert stats.duplicate_of(noisy.digest, CheckLimits(duplicate_cosine=None)) is None


def test_cosine_is_undefined_for_zero_fingerprints() -> None:
    assert cosine([0.0, 0.0], [1.0, 2.0]) is None
    assert cosine([1.0, 2.0], [2.0, 4.0]) == pytest.approx(1.0)
    assert cosine([], []) is None


def test_round_stats_refuse_a_digest_twice() -> None:
    with pytest.raises(ValueError, match="twice"):
        round_stats([profile(1, 1.0), profile(1, 1.0)])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_norm": -1.0},
        {"max_norm": math.inf},
        {"min_norm": math.nan},
        {"zscore_min_mad": 0.0},
        {"duplicate_cosine": 1.5},
        {"max_update_bytes": 0},
        {"max_scale_ratio": 0.0},
        {"max_scale_ratio": -2.0},
        {"max_scale_ratio": math.inf},
        {"max_scale_ratio": math.nan},
    ],
)
def test_limits_refuse_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        CheckLimits(**kwargs)  # type: ignore[arg-type]


def test_profile_round_trips_through_json() -> None:
    p = profile(9, 1.2345)
    assert UpdateProfile.from_dict(p.to_dict()) == p


def _update_file(tmp_path: Path, tensors: dict[str, object]) -> Path:
    path = tmp_path / "u.safetensors"
    meta = UpdateMeta(
        task=1,
        round=1,
        base="QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n",
        contributor="0x5B38Da6a701c568545dCfcB03FcB875f56beddC4",
        num_samples=1,
    )
    write_update(path, tensors, meta)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize("batch", [262144, 4 << 20, 1000, 4093])
def test_scan_file_hashes_and_scans_in_one_pass_like_the_separate_passes(tmp_path: Path, batch: int) -> None:
    rng = np.random.default_rng(3)
    bits = (rng.standard_normal(CHUNK + 3).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    path = _update_file(
        tmp_path,
        {
            "z.first_in_sort_last_in_file": rng.standard_normal(2 * CHUNK + 11).astype(np.float16),
            "a.weight": rng.standard_normal((300, 100)).astype(np.float32),
            "m.double": rng.standard_normal(CHUNK + 1),
            "b.bf16": BF16(bits),
            "n.steps": np.array(5, np.int64),
        },
    )
    with UpdateFile.open(path) as update:
        layout = describe_source(update)
        spans = {k: (t.start, t.end) for k, t in update.header.tensors.items()}
        separate = scan(update, layout)
    fused = scan_file(path, spans, layout, batch_bytes=batch)
    assert fused.digest == import_file(path).digest
    assert fused.sumsq == separate.sumsq
    assert fused.fingerprint == separate.fingerprint
    assert len(fused.fingerprint) == 256
    assert fused.non_finite is None


def test_scan_file_finds_nan_and_can_skip_hashing(tmp_path: Path) -> None:
    values = np.ones(3 * CHUNK, np.float32)
    values[2 * CHUNK + 7] = np.nan
    path = _update_file(tmp_path, {"w": values, "a": np.ones(3, np.float32)})
    with UpdateFile.open(path) as update:
        layout = describe_source(update)
        spans = {k: (t.start, t.end) for k, t in update.header.tensors.items()}
    result = scan_file(path, spans, layout, hash_cid=False, batch_bytes=5000)
    assert result.non_finite == "w"
    assert result.digest is None
    only_cid = scan_file(path, spans, None)
    assert only_cid.digest == import_file(path).digest

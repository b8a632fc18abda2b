"""Copy detection that scales and that honest IID rounds survive: sketches prune the O(N^2) exact comparisons
(the exact cosine still decides), and the honest-spread rule keeps honest updates that point alike (cos >= 0.95 on
IID data) from being rejected as duplicates, while copies with small noise or a scale are still found, the later
submission rejected and never the author."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import ledger.checks.copies as copies
from ledger.checks.copies import SKETCH_MIN, find_copies, sketch
from ledger.checks.vectors import cosine
from ledger.reasons import Reason

MEMBERS = [f"0x{i:040x}" for i in range(1, 20)]


def _iid_round(n: int, size: int, *, residual: float = 0.2, seed: int = 0) -> list[np.ndarray]:
    """Honest IID updates: one shared gradient plus each member's own noise (cos ~ 1/(1 + residual^2) ~ 0.96)."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(size).astype(np.float32)
    return [(g + residual * rng.standard_normal(size).astype(np.float32)) for _ in range(n)]


def _noisy(v: np.ndarray, level: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(v.size).astype(np.float32)
    return (v + level * np.linalg.norm(v) / np.linalg.norm(noise) * noise).astype(np.float32)


def test_honest_iid_updates_at_cosine_0_96_are_not_duplicates_with_the_spread_rule() -> None:
    honest = _iid_round(8, 20_000)
    assert min(cosine(a, b) or 0 for a in honest for b in honest) > 0.95
    assert find_copies(honest, MEMBERS[:8]) == [None] * 8
    # The threshold alone (the rule before) rejects every honest update after the first as a duplicate.
    assert all(
        c is not None and c.reason is Reason.DUPLICATE
        for c in find_copies(honest, MEMBERS[:8], spread=None)[1:]
    )


@pytest.mark.parametrize("size", [20_000, SKETCH_MIN + 12_345], ids=["exact", "sketched"])
@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("verbatim", lambda v: v.copy()),
        ("1% noise", lambda v: _noisy(v, 0.01, 7)),
        ("5% noise", lambda v: _noisy(v, 0.05, 7)),
        ("scaled 0.5", lambda v: (0.5 * v).astype(np.float32)),
        ("scaled 3 and 2% noise", lambda v: _noisy(3 * v, 0.02, 7)),
    ],
)
def test_in_an_iid_round_a_copy_is_still_the_later_duplicate_and_the_author_is_kept(
    size: int, name: str, make: Any
) -> None:
    honest = _iid_round(6, size)
    copy = make(honest[2])
    vectors = [*honest[:4], copy, *honest[4:]]
    found = find_copies(vectors, MEMBERS[:7])
    assert [i for i, f in enumerate(found) if f is not None] == [4], name
    assert found[4] is not None
    assert found[4].reason is Reason.DUPLICATE
    assert found[4].index == 2  # the author's update is the original
    # Submitted before its original, the copy is the original and the author's update the duplicate: within a
    # round the chain's order is all a validator knows (module docstring of ledger.checks.copies).
    swapped = find_copies([copy, *honest], MEMBERS[:7])
    assert [i for i, f in enumerate(swapped) if f is not None] == [3]


@pytest.mark.parametrize("size", [20_000, SKETCH_MIN + 1], ids=["exact", "sketched"])
def test_a_near_copy_of_a_past_update_in_an_iid_round(size: int) -> None:
    honest = _iid_round(5, size, seed=1)
    past = _iid_round(3, size, seed=2)
    vectors = [*honest, _noisy(past[1], 0.02, 3)]
    found = find_copies(vectors, MEMBERS[:6], [(MEMBERS[10 + i], p) for i, p in enumerate(past)])
    assert found[:5] == [None] * 5
    assert found[5] is not None
    assert found[5].reason is Reason.NEAR_COPY
    assert found[5].of == MEMBERS[11]


def test_sketched_honest_rounds_compare_no_pair_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the sketches, counted: a round of independent (non-IID) updates costs one sketch pass per
    vector and no exact pairwise product over the whole vectors."""
    rng = np.random.default_rng(5)
    vectors = [rng.standard_normal(SKETCH_MIN).astype(np.float32) for _ in range(6)]
    past = [(MEMBERS[9], rng.standard_normal(SKETCH_MIN).astype(np.float32))]
    whole: list[int] = []
    real_dot = copies.dot

    def counting_dot(a: np.ndarray, b: np.ndarray) -> float:
        if a.size >= SKETCH_MIN:
            whole.append(a.size)
        return real_dot(a, b)

    monkeypatch.setattr(copies, "dot", counting_dot)
    assert find_copies(vectors, MEMBERS[:6], past) == [None] * 6
    assert whole == []
    copy = vectors[0] * np.float32(2)
    found = find_copies([*vectors, copy], MEMBERS[:7], past)
    assert found[-1] is not None
    assert found[-1].index == 0
    assert len(whole) <= 3  # the two norms and the one pair the sketches pointed at


def test_sketch_cosines_track_exact_ones_on_structured_vectors() -> None:
    """Structure a model's update has (rows of a matrix sharing a column pattern, a few large coordinates) does
    not line up in the sketch: its cosines stay within 0.01 of the exact ones."""
    rng = np.random.default_rng(3)
    rows, width = 2048, 512
    pattern = rng.standard_normal(width) * 3
    base = (pattern + rng.standard_normal((rows, width))).ravel()
    base[rng.integers(0, base.size, 50)] *= 40
    others = [base + level * rng.standard_normal(base.size) * base.std() for level in (0.1, 0.5, 1.0, 3.0)]
    others.append(rng.standard_normal(base.size))
    sb = sketch(base)
    for other in others:
        exact = cosine(base, other)
        so = sketch(other)
        estimate = float(sb @ so / np.linalg.norm(sb) / np.linalg.norm(so))
        assert exact is not None
        assert abs(estimate - exact) < 0.01, (exact, estimate)


def test_the_spread_is_checked() -> None:
    with pytest.raises(ValueError, match="spread"):
        find_copies([], [], spread=0.0)


def test_the_spread_is_a_check_limit_a_task_can_anchor_or_turn_off() -> None:
    from ledger.checks import CheckLimits
    from ledger.checks.anchored import anchored_limits
    from ledger.errors import ConfigError

    assert CheckLimits().near_copy_spread == copies.NEAR_COPY_SPREAD
    assert anchored_limits({"near_copy_spread": None}).near_copy_spread is None
    with pytest.raises(ConfigError, match="near_copy_spread"):
        CheckLimits(near_copy_spread=-1.0)


def test_judge_round_applies_the_spread_from_its_limits() -> None:
    from ledger.checks import CheckLimits, Judged, Verdict, judge_round
    from ledger.checks.profile import UpdateProfile

    honest = _iid_round(5, 20_000)
    judged = [
        Judged(
            Verdict(
                Reason.ACCEPTED,
                norm=1.0,
                digest=bytes([i]) * 32,
                profile=UpdateProfile(bytes([i]) * 32, 1.0, ()),
            )
        )
        for i in range(5)
    ]
    kept = judge_round(judged, CheckLimits(zscore_threshold=None), vectors=honest, authors=MEMBERS[:5])
    assert [v.reason for v in kept] == [Reason.ACCEPTED] * 5
    strict = judge_round(
        judged, CheckLimits(zscore_threshold=None, near_copy_spread=None), vectors=honest, authors=MEMBERS[:5]
    )
    assert [v.reason for v in strict][1:] == [Reason.DUPLICATE] * 4

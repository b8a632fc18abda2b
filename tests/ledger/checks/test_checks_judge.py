"""Judging a round from files (``ledger.checks.judge``): per-update verdicts, the round's verdicts, the ballot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ledger.aggregation.source import describe_source
from ledger.checks import (
    ChainRecord,
    CheckLimits,
    Judged,
    Verdict,
    ballot_for,
    base_norm,
    judge_round,
    judge_update,
    kubo_digest,
)
from ledger.content.multiformats import digest_to_cid
from ledger.reasons import Reason
from ledger.updatefile import GenesisMeta, UpdateFile, UpdateMeta, write_aggregate, write_update

ALICE = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"


def _base() -> dict[str, np.ndarray]:
    return {"w": np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)}


def _delta(seed: int, scale: float = 0.01) -> dict[str, np.ndarray]:
    return {"w": (scale * np.random.default_rng(seed).standard_normal((6, 5))).astype(np.float32)}


@pytest.fixture
def base_path(tmp_path: Path) -> Path:
    path = tmp_path / "base.safetensors"
    write_aggregate(path, _base(), GenesisMeta(model="m", params={}))
    return path


def _judge(base_path: Path, deltas: list[dict[str, np.ndarray]], limits: CheckLimits) -> list[Judged]:
    base_digest = kubo_digest(base_path)
    judged = []
    with UpdateFile.open(base_path) as base:
        layout = describe_source(base)
        for i, delta in enumerate(deltas):
            path = base_path.parent / f"u{i}.safetensors"
            meta = UpdateMeta(
                task=1, round=1, base=digest_to_cid(base_digest), contributor=ALICE, num_samples=10 + i
            )
            write_update(path, delta, meta)
            record = ChainRecord(digest=kubo_digest(path), base=base_digest)
            judged.append(judge_update(path, base=base, layout=layout, record=record, limits=limits))
    return judged


def test_a_round_is_judged_per_update_then_against_the_others(base_path: Path) -> None:
    limits = CheckLimits()
    deltas = [_delta(seed) for seed in range(1, 6)]
    nan = _delta(9)
    nan["w"][0, 0] = np.nan
    deltas += [nan, {"w": deltas[0]["w"] * 30}]
    judged = _judge(base_path, deltas, limits)
    assert judged[5].verdict.reason is Reason.NON_FINITE
    assert all(j.verdict.accepted for j in judged[:5] + judged[6:])  # alone, x30 of a small update passes
    verdicts = judge_round(judged, limits)
    assert [v.reason for v in verdicts] == [Reason.ACCEPTED] * 5 + [Reason.NON_FINITE, Reason.NORM_OUTLIER]


def test_a_round_of_only_scaled_updates_is_rejected_though_none_is_an_outlier_among_them(
    base_path: Path,
) -> None:
    limits = CheckLimits()
    honest = [_delta(seed, scale=0.1) for seed in range(1, 6)]  # about 0.1x the base's norm
    assert [v.reason for v in judge_round(_judge(base_path, honest, limits), limits)] == [Reason.ACCEPTED] * 5
    scaled = [{"w": d["w"] * 100} for d in honest]  # about 10x the base's norm, all alike
    verdicts = judge_round(_judge(base_path, scaled, limits), limits)
    assert [v.reason for v in verdicts] == [Reason.SCALE_OUT_OF_PROPORTION] * 5
    unchecked = CheckLimits(max_scale_ratio=None)  # the z-score alone sees nothing wrong: they agree
    assert [v.reason for v in judge_round(_judge(base_path, scaled, unchecked), unchecked)] == [
        Reason.ACCEPTED
    ] * 5


def test_the_base_norm_can_be_given_once_per_round(base_path: Path) -> None:
    with UpdateFile.open(base_path) as base:
        scale = base_norm(base)
    assert scale is not None
    path = base_path.parent / "u.safetensors"
    meta = UpdateMeta(
        task=1, round=1, base=digest_to_cid(kubo_digest(base_path)), contributor=ALICE, num_samples=1
    )
    write_update(path, {"w": _base()["w"] * 3}, meta)  # 3x the base: inside 5x
    record = ChainRecord(base=kubo_digest(base_path))
    with UpdateFile.open(base_path) as base:
        layout = describe_source(base)
        found = judge_update(path, base=base, layout=layout, record=record, limits=CheckLimits())
        told = judge_update(
            path, base=base, layout=layout, record=record, limits=CheckLimits(), base_scale=scale / 2
        )
    assert found.verdict.accepted
    assert told.verdict.reason is Reason.SCALE_OUT_OF_PROPORTION


def test_the_same_bytes_twice_are_a_duplicate_of_the_earlier_submission(base_path: Path) -> None:
    limits = CheckLimits()
    judged = _judge(base_path, [_delta(1), _delta(2)], limits)
    verdicts = judge_round([*judged, judged[0]], limits)
    assert [v.reason for v in verdicts] == [Reason.ACCEPTED, Reason.ACCEPTED, Reason.DUPLICATE]
    assert digest_to_cid(judged[0].verdict.digest or b"") in verdicts[2].detail


def test_a_judged_update_round_trips_through_json(base_path: Path) -> None:
    (judged,) = _judge(base_path, [_delta(1)], CheckLimits())
    with_loss = Judged(judged.verdict, Verdict(Reason.LOSS_REGRESSION, "worse", loss=2.0, base_loss=1.0))
    for one in (judged, with_loss):
        assert Judged.from_json(one.to_json()) == one


def test_a_loss_regression_decides_last(base_path: Path) -> None:
    judged = _judge(base_path, [_delta(1), _delta(2)], CheckLimits())
    worse = Verdict(Reason.LOSS_REGRESSION, "held-out loss up", loss=2.0, base_loss=1.0)
    verdicts = judge_round([judged[0], Judged(judged[1].verdict, worse)], CheckLimits())
    assert [v.reason for v in verdicts] == [Reason.ACCEPTED, Reason.LOSS_REGRESSION]
    assert (verdicts[1].loss, verdicts[1].base_loss) == (2.0, 1.0)


def test_ballot_encodes_only_the_updates_to_vote_on_in_ascending_order() -> None:
    verdicts = [
        Verdict(Reason.ACCEPTED),
        Verdict(Reason.NON_FINITE),
        Verdict(Reason.ACCEPTED),
        Verdict(Reason.DUPLICATE),
    ]
    assert ballot_for(verdicts, 0b1111) == (0b1111, 0b0101, bytes([0, 14, 0, 18]))
    assert ballot_for(verdicts, 0b1010) == (0b1010, 0, bytes([14, 18]))  # 0 and 2 already voted

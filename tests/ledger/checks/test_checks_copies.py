"""Copies over whole vectors (protocol R1, ``ledger.checks.copies``) and authorship, on real update files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ledger.aggregation.source import describe_source
from ledger.checks import (
    ChainRecord,
    CheckLimits,
    Judged,
    find_copies,
    flatten,
    judge_round,
    judge_update,
    kubo_digest,
)
from ledger.checks.vectors import cosine, dot
from ledger.content.multiformats import digest_to_cid
from ledger.reasons import Reason
from ledger.updatefile import GenesisMeta, UpdateFile, UpdateMeta, write_aggregate, write_update

ALICE = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"
BOB = "0xAb8483F64d9C6d1EcF9b849Ae677dD3315835cb2"
CAROL = "0x4B20993Bc481177ec7E8f571ceCaE8A9e22C02db"
SHAPES = {"a.weight": (40, 30), "b.bias": (30,), "c.weight": (30, 10)}


def _base() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}


def _delta(seed: int, scale: float = 0.01) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (scale * rng.standard_normal(s)).astype(np.float32) for k, s in SHAPES.items()}


def _noisy(delta: dict[str, np.ndarray], relative: float, seed: int) -> dict[str, np.ndarray]:
    """``delta`` plus Gaussian noise whose norm is ``relative`` times the delta's."""
    rng = np.random.default_rng(seed)
    noise = {k: rng.standard_normal(v.shape) for k, v in delta.items()}
    size = math.sqrt(sum(float((v.astype(np.float64) ** 2).sum()) for v in delta.values()))
    noise_norm = math.sqrt(sum(float((n**2).sum()) for n in noise.values()))
    return {k: (v + relative * size / noise_norm * noise[k]).astype(np.float32) for k, v in delta.items()}


def _scaled(delta: dict[str, np.ndarray], factor: float) -> dict[str, np.ndarray]:
    return {k: (factor * v).astype(np.float32) for k, v in delta.items()}


@pytest.fixture
def base_path(tmp_path: Path) -> Path:
    path = tmp_path / "base.safetensors"
    write_aggregate(path, _base(), GenesisMeta(model="m", params={}))
    return path


def _write(
    base_path: Path, name: str, delta: dict[str, np.ndarray], contributor: str, round_: int = 1
) -> Path:
    path = base_path.parent / f"{name}.safetensors"
    meta = UpdateMeta(
        task=1,
        round=round_,
        base=digest_to_cid(kubo_digest(base_path)),
        contributor=contributor,
        num_samples=10,
    )
    write_update(path, delta, meta)
    return path


def _vector(path: Path) -> np.ndarray:
    with UpdateFile.open(path) as update:
        return flatten(update)


def _judge_files(base_path: Path, paths: list[Path], authors: list[str], limits: CheckLimits) -> list[Judged]:
    base_digest = kubo_digest(base_path)
    with UpdateFile.open(base_path) as base:
        layout = describe_source(base)
        return [
            judge_update(
                p,
                base=base,
                layout=layout,
                record=ChainRecord(digest=kubo_digest(p), base=base_digest, contributor=who),
                limits=limits,
            )
            for p, who in zip(paths, authors, strict=True)
        ]


# --- the vectors ------------------------------------------------------------------------------------------


def test_flatten_lays_the_float_tensors_end_to_end_in_sorted_key_order(base_path: Path) -> None:
    delta = _delta(1)
    delta["d.count"] = np.array([7], dtype=np.int64)  # a buffer: no part of the vector
    path = _write(base_path, "u", delta, ALICE)
    expected = np.concatenate([delta[k].reshape(-1).astype(np.float64) for k in sorted(SHAPES)])
    assert np.array_equal(_vector(path), expected)


def test_dot_is_the_exact_inner_product_to_rounding_and_refuses_different_layouts() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(300_001), rng.standard_normal(300_001).astype(np.float32)
    assert dot(a, b) == pytest.approx(math.fsum((a * b.astype(np.float64)).tolist()), rel=1e-12)
    assert dot(a, b) == dot(a.copy(), b.copy())  # fixed order: the same bits every time
    with pytest.raises(ValueError, match="layouts differ"):
        dot(a, b[:-1])
    assert cosine(a, np.zeros_like(a)) is None


# --- NEAR_COPY: a copy of another member's recent update --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("verbatim", lambda d: d),
        ("plus 0.5% noise", lambda d: _noisy(d, 0.005, 9)),
        ("plus 30% noise", lambda d: _noisy(d, 0.30, 9)),
        ("scaled by 0.9", lambda d: _scaled(d, 0.9)),
        ("scaled by 3 with 1% noise", lambda d: _noisy(_scaled(d, 3.0), 0.01, 9)),
    ],
)
def test_a_copy_of_another_members_published_update_is_a_near_copy(
    base_path: Path, name: str, make: object
) -> None:
    original = _delta(1)
    published = _vector(_write(base_path, "alice-r1", original, ALICE))
    copy = _write(base_path, "bob-r2", make(original), BOB, round_=2)  # type: ignore[operator]
    honest = _write(base_path, "carol-r2", _delta(2), CAROL, round_=2)
    found = find_copies([_vector(copy), _vector(honest)], [BOB, CAROL], [(ALICE, published)])
    assert found[0] is not None, name
    assert found[0].reason is Reason.NEAR_COPY
    assert found[0].of == ALICE.lower()
    assert found[0].cosine >= 0.95
    assert found[1] is None


def test_noise_beyond_the_threshold_is_no_longer_a_copy() -> None:
    """Noise of norm 0.4|g| leaves cos ~ 1/sqrt(1.16) = 0.93 < 0.95: a different update for the check."""
    original = np.random.default_rng(1).standard_normal(50_000)
    noise = np.random.default_rng(2).standard_normal(50_000)
    noisy = original + 0.4 * np.linalg.norm(original) / np.linalg.norm(noise) * noise
    assert find_copies([noisy], [BOB], [(ALICE, original)]) == [None]


def test_an_authors_own_earlier_update_is_not_a_copy(base_path: Path) -> None:
    earlier = _delta(1)
    published = _vector(_write(base_path, "alice-r1", earlier, ALICE))
    again = _vector(_write(base_path, "alice-r2", _noisy(earlier, 0.01, 5), ALICE, round_=2))
    # Addresses compare case-insensitively: the chain's checksum form and a lower-case history are one member.
    assert find_copies([again], [ALICE], [(ALICE.lower(), published)]) == [None]
    assert find_copies([again], [BOB], [(ALICE.lower(), published)])[0] is not None


def test_independent_updates_are_not_copies() -> None:
    vectors = [np.random.default_rng(s).standard_normal(10_000) for s in range(6)]
    history = [(CAROL, np.random.default_rng(100 + s).standard_normal(10_000)) for s in range(3)]
    authors = [ALICE, BOB, "0x1", "0x2", "0x3", "0x4"]
    assert find_copies(vectors, authors, history) == [None] * 6


# --- DUPLICATE within a round: the later submission, never the earlier --------------------------------------


def test_in_round_the_later_of_two_similar_updates_is_the_duplicate_whichever_it_is() -> None:
    a = np.random.default_rng(1).standard_normal(20_000)
    b = 0.9 * a + 0.05 * np.random.default_rng(2).standard_normal(20_000)
    first = find_copies([a, b], [ALICE, BOB])
    assert first[0] is None
    assert first[1] is not None
    assert first[1].reason is Reason.DUPLICATE
    assert first[1].index == 0
    assert first[1].of == ALICE
    swapped = find_copies([b, a], [BOB, ALICE])
    assert swapped[0] is None
    assert swapped[1] is not None
    assert swapped[1].index == 0


def test_a_rejected_update_is_no_original() -> None:
    """A hard-rejected update (vector None) and a near copy cannot make a later update a duplicate: a copier of
    Alice's last update, submitting first, must not get Alice's new update rejected."""
    alice_old = np.random.default_rng(1).standard_normal(20_000)
    alice_new = alice_old + 0.2 * np.random.default_rng(2).standard_normal(20_000)
    bob_copy = 0.9 * alice_old
    found = find_copies([bob_copy, None, alice_new], [BOB, CAROL, ALICE], [(ALICE, alice_old)])
    assert found[0] is not None
    assert found[0].reason is Reason.NEAR_COPY
    assert found[1] is None
    assert found[2] is None


def test_the_threshold_is_checked() -> None:
    with pytest.raises(ValueError, match="threshold"):
        find_copies([], [], threshold=0.0)
    with pytest.raises(ValueError, match="authors"):
        find_copies([np.ones(3)], [])


# --- judge_round with vectors, from files ----------------------------------------------------------------


def test_a_round_judged_from_files_rejects_the_copies_and_keeps_their_authors(base_path: Path) -> None:
    limits = CheckLimits(zscore_threshold=None)
    alice_r1 = _delta(1)
    history = [(ALICE, _vector(_write(base_path, "alice-r1", alice_r1, ALICE)))]
    carol = _delta(3)
    paths = [
        _write(base_path, "alice", _delta(2), ALICE, round_=1),  # Alice's new, honest update
        _write(base_path, "bob", _noisy(alice_r1, 0.005, 7), BOB, round_=1),  # last round's Alice + noise
        _write(base_path, "carol", carol, CAROL, round_=1),
        _write(base_path, "dave", _scaled(carol, 0.9), "0x" + "d" * 40, round_=1),  # colludes with Carol
    ]
    authors = [ALICE, BOB, CAROL, "0x" + "d" * 40]
    judged = _judge_files(base_path, paths, authors, limits)
    assert all(j.verdict.accepted for j in judged)
    vectors = [_vector(p) for p in paths]
    verdicts = judge_round(judged, limits, vectors=vectors, authors=authors, history=history)
    assert [v.reason for v in verdicts] == [
        Reason.ACCEPTED,
        Reason.NEAR_COPY,
        Reason.ACCEPTED,
        Reason.DUPLICATE,
    ]
    assert verdicts[3].duplicate_of == judged[2].verdict.digest
    assert "update 2" in verdicts[3].detail
    # Without vectors only verbatim value copies are caught: the scaled and the noisy copy pass.
    assert all(v.accepted for v in judge_round(judged, limits))
    # near_copy_cosine None turns the whole-vector checks off.
    off = judge_round(
        judged, CheckLimits(zscore_threshold=None, near_copy_cosine=None), vectors=vectors, authors=authors
    )
    assert all(v.accepted for v in off)


def test_judge_round_needs_one_vector_and_author_per_update(base_path: Path) -> None:
    limits = CheckLimits()
    path = _write(base_path, "alice", _delta(2), ALICE)
    judged = _judge_files(base_path, [path], [ALICE], limits)
    with pytest.raises(ValueError, match="one vector"):
        judge_round(judged, limits, vectors=[], authors=[ALICE])


# --- authorship (R1) ------------------------------------------------------------------------------------


def test_authorship_theft_submitting_another_members_file_is_a_metadata_mismatch(base_path: Path) -> None:
    """A front-runner that puts Alice's digest on chain under its own name submits a file whose metadata names
    Alice: the chain records Bob, so Bob's submission is METADATA_MISMATCH, and Alice's is accepted."""
    limits = CheckLimits()
    path = _write(base_path, "alice", _delta(2), ALICE)
    stolen, own = _judge_files(base_path, [path, path], [BOB, ALICE], limits)
    assert stolen.verdict.reason is Reason.METADATA_MISMATCH
    assert "contributor" in stolen.verdict.detail
    assert BOB in stolen.verdict.detail
    assert own.verdict.accepted
    # The thief submitted first (index 0): still only the thief is rejected.
    verdicts = judge_round([stolen, own], limits, vectors=[None, _vector(path)], authors=[BOB, ALICE])
    assert [v.reason for v in verdicts] == [Reason.METADATA_MISMATCH, Reason.ACCEPTED]


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5, float("nan")])
def test_a_copy_threshold_outside_0_1_is_a_config_error(bad: float) -> None:
    from ledger.errors import ConfigError

    with pytest.raises(ConfigError, match="near_copy_cosine"):
        CheckLimits(near_copy_cosine=bad)
    assert CheckLimits(near_copy_cosine=None).near_copy_cosine is None

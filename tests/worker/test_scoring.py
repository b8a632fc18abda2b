"""The validator's scores (``worker.scoring``) against a reference update really trained with torch
(``worker.reference``), on real update files; the history of vectors the copy checks use."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ledger.aggregation.source import describe_source
from ledger.chain.scores import REJECT, check_scores
from ledger.checks import (
    ChainRecord,
    CheckLimits,
    ScoringError,
    find_copies,
    judge_round,
    judge_update,
    kubo_digest,
    reveal_arrays,
)
from ledger.content.multiformats import digest_to_cid
from ledger.errors import ConfigError
from ledger.reasons import Reason
from ledger.updatefile import GenesisMeta, UpdateFile, UpdateMeta, write_aggregate, write_update
from worker.reference import load_trainer, reference_seed, reference_update
from worker.scoring import VectorHistory, round_scores, score_update, vector_of

ALICE = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"
BOB = "0xAb8483F64d9C6d1EcF9b849Ae677dD3315835cb2"
FEATURES, CLASSES = 8, 3
_TRUE = np.random.default_rng(42).standard_normal((CLASSES, FEATURES)) * 2


def _data(seed: int, n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples of one fixed task: 8 features, the class is the argmax of a fixed linear map."""
    x = np.random.default_rng(seed).standard_normal((n, FEATURES)).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy((x @ _TRUE.T).argmax(axis=1))


HELDOUT = _data(1_000)


def _train(
    weights: Mapping[str, Any], data: tuple[torch.Tensor, torch.Tensor], *, seed: int, steps: int
) -> dict[str, np.ndarray]:
    w = torch.tensor(np.asarray(weights["fc.weight"]), requires_grad=True)
    b = torch.tensor(np.asarray(weights["fc.bias"]), requires_grad=True)
    start = {"fc.weight": w.detach().clone(), "fc.bias": b.detach().clone()}
    opt = torch.optim.SGD([w, b], lr=0.5)
    gen = torch.Generator().manual_seed(seed)
    x, y = data
    for _ in range(steps):
        batch = torch.randint(0, len(x), (32,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(x[batch] @ w.T + b, y[batch]).backward()  # type: ignore[no-untyped-call]
        opt.step()
    return {
        "fc.weight": (w.detach() - start["fc.weight"]).numpy(),
        "fc.bias": (b.detach() - start["fc.bias"]).numpy(),
    }


def train_reference(weights: Mapping[str, Any], *, seed: int, steps: int) -> dict[str, np.ndarray]:
    """A validator's reference trainer (``tests.worker.test_scoring:train_reference``): its held-out slice."""
    return _train(weights, HELDOUT, seed=seed, steps=steps)


def heldout_loss(weights: Mapping[str, Any]) -> float:
    x, y = HELDOUT
    w = torch.from_numpy(np.asarray(weights["fc.weight"], np.float32))
    b = torch.from_numpy(np.asarray(weights["fc.bias"], np.float32))
    return float(torch.nn.functional.cross_entropy(x @ w.T + b, y))


@pytest.fixture
def base_path(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    base = {
        "fc.weight": (0.1 * rng.standard_normal((CLASSES, FEATURES))).astype(np.float32),
        "fc.bias": np.zeros(CLASSES, np.float32),
    }
    path = tmp_path / "base.safetensors"
    write_aggregate(path, base, GenesisMeta(model="linear"))
    return path


def _weights(base_path: Path) -> dict[str, np.ndarray]:
    with UpdateFile.open(base_path) as f:
        return {k: np.array(f.tensor(k)) for k in sorted(f.keys())}


def _write(base_path: Path, name: str, delta: Mapping[str, np.ndarray], who: str = ALICE) -> Path:
    path = base_path.parent / f"{name}.safetensors"
    meta = UpdateMeta(
        task=1, round=1, base=digest_to_cid(kubo_digest(base_path)), contributor=who, num_samples=256
    )
    write_update(path, {k: np.asarray(v, np.float32) for k, v in delta.items()}, meta)
    return path


def _member(base_path: Path, seed: int, factor: float = 1.0, name: str | None = None) -> Path:
    delta = _train(_weights(base_path), _data(seed), seed=seed, steps=20)
    return _write(base_path, name or f"m{seed}-{factor}", {k: factor * v for k, v in delta.items()})


def _reference(base_path: Path, validator: str = ALICE) -> np.ndarray:
    with UpdateFile.open(base_path) as base:
        return reference_update(train_reference, base, seed=reference_seed(1, 1, validator), steps=20)


# --- the reference -------------------------------------------------------------------------------------------


def test_the_reference_is_reproducible_per_validator_and_round(base_path: Path) -> None:
    first, again = _reference(base_path), _reference(base_path)
    assert first.tobytes() == again.tobytes()
    other = _reference(base_path, BOB)
    assert other.tobytes() != first.tobytes()
    assert reference_seed(1, 1, ALICE) == reference_seed(1, 1, ALICE.lower())
    assert len({reference_seed(1, 1, ALICE), reference_seed(1, 2, ALICE), reference_seed(2, 1, ALICE)}) == 3
    # Two validators' references point alike (same task), though their batches differ.
    assert float(first @ other) / (np.linalg.norm(first) * np.linalg.norm(other)) > 0.8


def test_a_trainer_is_loaded_by_name_and_a_bad_name_says_so(base_path: Path) -> None:
    trainer = load_trainer("tests.worker.test_scoring:train_reference")
    with UpdateFile.open(base_path) as base:
        got = reference_update(trainer, base, seed=reference_seed(1, 1, ALICE), steps=20)
    assert got.tobytes() == _reference(base_path).tobytes()
    for spec, message in [
        ("tests.worker.test_scoring", "MODULE:FUNCTION"),
        ("tests.worker.nowhere:train", "cannot load"),
        ("tests.worker.test_scoring:FEATURES", "not callable"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_trainer(spec)


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        (lambda w, *, seed, steps: {"fc.weight": np.ones((CLASSES, FEATURES))}, "no 'fc.bias'"),
        (lambda w, *, seed, steps: {k: np.full(np.shape(v), np.nan) for k, v in w.items()}, "NaN"),
        (lambda w, *, seed, steps: {k: np.zeros(np.shape(v)) for k, v in w.items()}, "zero"),
        (lambda w, *, seed, steps: {k: np.ones(2) for k in w}, "values"),
    ],
)
def test_a_failing_trainer_is_the_validators_problem(base_path: Path, trainer: Any, message: str) -> None:
    with UpdateFile.open(base_path) as base, pytest.raises(ScoringError, match=message):
        reference_update(trainer, base, seed=1)


# --- scores ----------------------------------------------------------------------------------------------


def _score(base_path: Path, path: Path, reference: np.ndarray, **kw: Any) -> Any:
    with UpdateFile.open(base_path) as base:
        return score_update(path, base=base, reference=reference, **kw)


def test_honest_updates_score_high_and_attacks_score_low(base_path: Path) -> None:
    reference = _reference(base_path)
    honest = [_score(base_path, _member(base_path, s), reference).value for s in (1, 2, 3)]
    assert min(honest) > 5_000
    flipped = _score(base_path, _member(base_path, 1, -1.0), reference)
    assert flipped.value < -5_000
    assert flipped.reason is Reason.ACCEPTED  # a score, not a hard reject: the consensus decides
    tiny = _score(base_path, _member(base_path, 1, 0.05), reference)
    assert 0 < tiny.value < honest[0] // 50  # the magnitude discount (4th power, floored at UNSURE = 1)
    boosted = _score(base_path, _member(base_path, 1, 10.0), reference)
    assert boosted.value <= max(honest)  # boosting earns nothing: min(1, |g|/|g0|)
    noise = {
        k: 0.1 * np.random.default_rng(7).standard_normal(v.shape) for k, v in _weights(base_path).items()
    }
    assert abs(_score(base_path, _write(base_path, "noise", noise), reference).value) < 3_000


def test_a_reference_norm_given_once_scores_as_measuring_it_per_update(base_path: Path) -> None:
    from ledger.checks.vectors import norm

    reference = _reference(base_path)
    given = norm(reference)
    for path in (_member(base_path, 1), _member(base_path, 2, -1.0), _member(base_path, 3, 0.05)):
        assert _score(base_path, path, reference, reference_norm=given) == _score(base_path, path, reference)
    # It is used, not recomputed: a wrong norm changes the score (the caller must pass norm(reference)).
    honest = _member(base_path, 1)
    assert _score(base_path, honest, reference, reference_norm=given * 4) != _score(
        base_path, honest, reference
    )


def test_the_loss_gate_rejects_an_update_that_makes_the_heldout_loss_worse(base_path: Path) -> None:
    reference = _reference(base_path)
    base_loss = heldout_loss(_weights(base_path))
    harmful = _member(base_path, 1, -20.0)
    s = _score(base_path, harmful, reference, evaluate=heldout_loss, margin=0.5)
    assert (s.value, s.reason) == (REJECT, Reason.LOSS_REGRESSION)
    assert s.base_loss == pytest.approx(base_loss)
    assert s.loss is not None
    assert s.loss > base_loss + 0.5
    good = _score(
        base_path, _member(base_path, 2), reference, evaluate=heldout_loss, margin=0.5, base_loss=base_loss
    )
    assert good.reason is Reason.ACCEPTED
    assert good.value > 5_000
    assert good.loss is not None
    assert good.loss < base_loss
    with pytest.raises(ScoringError, match="both"):
        _score(base_path, harmful, reference, evaluate=heldout_loss)


def test_a_round_of_files_becomes_what_reveal_scores_takes(base_path: Path) -> None:
    """Hard checks, copies over whole vectors, then scores: one (score, reason) per update, in index order."""
    reference = _reference(base_path)
    limits = CheckLimits(zscore_threshold=None, max_scale_ratio=None)
    honest = _member(base_path, 1, name="alice")
    copy_delta = {k: 0.9 * np.asarray(v) for k, v in _vectors_of(honest).items()}
    paths = [honest, _write(base_path, "bob", copy_delta, BOB), _member(base_path, 2, 0.0, name="carol")]
    authors = [ALICE, BOB, "0x" + "c" * 40]
    with UpdateFile.open(base_path) as base:
        layout = describe_source(base)
        digest = kubo_digest(base_path)
        judged = [
            judge_update(p, base=base, layout=layout, record=ChainRecord(base=digest), limits=limits)
            for p in paths
        ]
        vectors = [
            vector_of(p, layout) if j.verdict.accepted else None for p, j in zip(paths, judged, strict=True)
        ]
        verdicts = judge_round(judged, limits, vectors=vectors, authors=authors)
        scored = {
            i: score_update(paths[i], base=base, reference=reference, vector=vectors[i])
            for i, v in enumerate(verdicts)
            if v.accepted
        }
    values, reasons = reveal_arrays(round_scores(verdicts, scored))
    assert reasons == [0, int(Reason.DUPLICATE), int(Reason.NORM_TOO_SMALL)]
    assert values[0] > 5_000
    assert values[1:] == [REJECT, REJECT]
    check_scores(values, reasons)
    with pytest.raises(ScoringError, match="update 0"):
        round_scores(verdicts, {})


def _vectors_of(path: Path) -> dict[str, np.ndarray]:
    with UpdateFile.open(path) as f:
        return {k: np.array(f.tensor(k)) for k in sorted(f.keys())}


# --- the history of accepted vectors -------------------------------------------------------------------


def test_the_history_keeps_the_last_three_rounds_and_catches_a_copy_from_disk(tmp_path: Path) -> None:
    history = VectorHistory(tmp_path / "vectors")
    rng = np.random.default_rng(5)
    kept = {r: rng.standard_normal(1_000) for r in range(1, 6)}
    for r, v in kept.items():
        history.put(7, r, 0, ALICE, v)
    history.put(8, 4, 0, BOB, rng.standard_normal(1_000))  # another task: never mixed in
    recent = history.recent(7, 5)
    assert [who for who, _ in recent] == [ALICE.lower()] * 3
    assert {round(float(v[0]), 5) for _, v in recent} == {round(float(kept[r][0]), 5) for r in (2, 3, 4)}
    assert all(v.dtype == np.float32 for _, v in recent)  # half the disk; the dot widens to float64
    noisy = kept[3] * 0.9 + 0.01 * rng.standard_normal(1_000)
    found = find_copies([noisy, kept[4]], [BOB, ALICE], recent)
    assert found[0] is not None
    assert found[0].reason is Reason.NEAR_COPY
    assert found[1] is None  # Alice's own update is no copy
    assert history.prune(7, 5) == 1  # round 1: no round from 5 on compares with it
    assert len(history.recent(7, 4)) == 2  # rounds 2 and 3 are left of 1..3
    assert not list((tmp_path / "vectors" / "7").glob("*.tmp*"))
    with pytest.raises(ValueError, match="not an address"):
        history.put(7, 6, 0, "alice", kept[1])
    with pytest.raises(ValueError, match="NaN"):
        history.put(7, 6, 0, ALICE, np.full(3, np.nan))


def test_an_update_slightly_against_the_reference_is_accepted_with_the_smallest_weight(
    base_path: Path,
) -> None:
    """Session 5's sign band, on a real update file through ``score_update``: a cosine of about -0.1 to this
    validator's reference is within what two honest references disagree by, so it scores UNSURE (1), not -1,000
    (the session-4 scorer): the honest validators agree and the update carries 10^-4 of a full weight. A
    sign-flipped honest update (cosine far below -0.15) is still scored by its cosine."""
    from ledger.checks.score import SIGN_BAND, UNSURE

    reference = _reference(base_path)
    unit = reference / np.linalg.norm(reference)
    other = np.random.default_rng(3).standard_normal(reference.size)
    other -= other.dot(unit) * unit
    other /= np.linalg.norm(other)
    vector = (-0.1 * unit + np.sqrt(1 - 0.01) * other) * np.linalg.norm(reference)
    with UpdateFile.open(base_path) as base:
        layout = [info for info in describe_source(base) if info.parameter]
    delta, offset = {}, 0
    for info in layout:
        delta[info.key] = vector[offset : offset + info.size].reshape(info.shape)
        offset += info.size
    path = _write(base_path, "slightly-against", delta)
    s = _score(base_path, path, reference)
    assert s.cosine is not None
    assert -SIGN_BAND < s.cosine < -0.09
    assert s.value == UNSURE
    flipped = _score(base_path, _member(base_path, 1, -1.0), reference)
    assert flipped.cosine is not None
    assert flipped.cosine <= -SIGN_BAND
    assert flipped.value == round(flipped.cosine * 10_000)

"""The validator checks on real update files: a corpus of malformed and malicious updates, each with its code."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.aggregation.source import describe_source
from ledger.checks import (
    ChainRecord,
    CheckLimits,
    UpdateRejected,
    Verdict,
    base_norm,
    check_update,
    judge_in_round,
    kubo_digest,
    round_stats,
    verify_update,
)
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason
from ledger.updatefile import (
    AggregateMeta,
    GenesisMeta,
    UpdateFile,
    UpdateMeta,
    write_aggregate,
    write_update,
)

ALICE = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"
BOB = "0xAb8483F64d9C6d1EcF9b849Ae677dD3315835cb2"
TASK, ROUND, SAMPLES = 1, 3, 100


def base_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "fc.weight": rng.standard_normal((8, 5)).astype(np.float32),
        "fc.bias": rng.standard_normal(8).astype(np.float32),
        "bn.num_batches_tracked": np.array(7, np.int64),
    }


def honest_delta(seed: int = 1, scale: float = 0.01) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "fc.weight": (scale * rng.standard_normal((8, 5))).astype(np.float32),
        "fc.bias": (scale * rng.standard_normal(8)).astype(np.float32),
        "bn.num_batches_tracked": np.array(12, np.int64),
    }


@dataclass
class Round:
    dir: Path
    base_path: Path
    base_digest: bytes

    def meta(self, **changes: Any) -> UpdateMeta:
        fields = {
            "task": TASK,
            "round": ROUND,
            "base": _cid(self.base_digest),
            "contributor": ALICE,
            "num_samples": SAMPLES,
        }
        fields.update(changes)
        return UpdateMeta(**fields)

    def write(self, name: str, tensors: dict[str, np.ndarray], **meta: Any) -> Path:
        path = self.dir / f"{name}.safetensors"
        write_update(path, tensors, self.meta(**meta))
        return path

    def record(self, path: Path, **changes: Any) -> ChainRecord:
        fields: dict[str, Any] = {
            "digest": kubo_digest(path),
            "task": TASK,
            "round": ROUND,
            "base": self.base_digest,
            "contributor": ALICE,
            "num_samples": SAMPLES,
        }
        fields.update(changes)
        return ChainRecord(**fields)

    def verify(self, path: Path, limits: CheckLimits | None = None, **record: Any) -> Verdict:
        with UpdateFile.open(self.base_path) as base:
            return verify_update(path, base=base, record=self.record(path, **record), limits=limits)


def _cid(digest: bytes) -> str:
    from ledger.content.multiformats import digest_to_cid

    return digest_to_cid(digest)


@pytest.fixture
def rnd(tmp_path: Path) -> Round:
    base_path = tmp_path / "base.safetensors"
    write_aggregate(base_path, base_tensors(), GenesisMeta(model="mlp", params={"seed": 0}))
    return Round(tmp_path, base_path, kubo_digest(base_path))


# --- byte-level surgery on a valid file ---------------------------------------------------------------------


def split(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def join(header: dict[str, Any], data: bytes) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def edited(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], bytes]:
    def mutate(path: Path) -> bytes:
        header, data = split(path)
        edit(header)
        return join(header, data)

    return mutate


def _set(key: str, field_name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(h: dict[str, Any]) -> None:
        h[key][field_name] = value

    return edit


def _overlap(h: dict[str, Any]) -> None:
    entries = sorted((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][0])
    _first, second = entries[0], entries[1]
    begin, end = h[second]["data_offsets"]
    h[second]["data_offsets"] = [begin - 4, end - 4]


def _metadata(value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(h: dict[str, Any]) -> None:
        if value is None:
            h.pop("__metadata__")
        else:
            h["__metadata__"] = value

    return edit


def _meta_field(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(h: dict[str, Any]) -> None:
        inner = json.loads(h["__metadata__"]["meshprov"])
        inner[name] = value
        h["__metadata__"]["meshprov"] = json.dumps(inner, separators=(",", ":"), sort_keys=True)

    return edit


@dataclass
class Case:
    name: str
    reason: Reason
    bytes_of: Callable[[Path], bytes] | None = None  # mutate the honest file
    tensors: Callable[[], dict[str, np.ndarray]] | None = None  # or write other tensors
    meta: dict[str, Any] = field(default_factory=dict)
    limits: CheckLimits | None = None
    record: dict[str, Any] = field(default_factory=dict)


def _with(key: str, value: np.ndarray | None) -> Callable[[], dict[str, np.ndarray]]:
    def make() -> dict[str, np.ndarray]:
        t = honest_delta()
        if value is None:
            del t[key]
        else:
            t[key] = value
        return t

    return make


def _poisoned(value: float) -> Callable[[], dict[str, np.ndarray]]:
    def make() -> dict[str, np.ndarray]:
        t = honest_delta()
        t["fc.weight"][3, 2] = value
        return t

    return make


CORPUS = [
    Case("honest", Reason.ACCEPTED),
    Case("oversized", Reason.TOO_LARGE, limits=CheckLimits(max_update_bytes=64)),
    Case("cid mismatch", Reason.CID_MISMATCH, record={"digest": b"\x11" * 32}),
    Case("empty file", Reason.TRUNCATED, bytes_of=lambda p: b""),
    Case("cut in the length", Reason.TRUNCATED, bytes_of=lambda p: p.read_bytes()[:5]),
    Case("cut in the data", Reason.TRUNCATED, bytes_of=lambda p: p.read_bytes()[:-9]),
    Case("header bomb", Reason.HEADER_TOO_LARGE, bytes_of=lambda p: struct.pack("<Q", 1 << 40) + b"{}"),
    Case(
        "header longer than file", Reason.TRUNCATED, bytes_of=lambda p: struct.pack("<Q", 4096) + b"{}      "
    ),
    Case("header not json", Reason.HEADER_NOT_JSON, bytes_of=lambda p: struct.pack("<Q", 8) + b"{nope!!}"),
    Case("header a list", Reason.HEADER_NOT_JSON, bytes_of=lambda p: struct.pack("<Q", 8) + b"[1,2,3] "),
    Case("unknown dtype", Reason.UNKNOWN_DTYPE, bytes_of=edited(_set("fc.bias", "dtype", "C64"))),
    Case("overlapping offsets", Reason.BAD_OFFSETS, bytes_of=edited(_overlap)),
    Case("trailing bytes", Reason.BAD_OFFSETS, bytes_of=lambda p: p.read_bytes() + b"\0" * 8),
    Case("shape lies about size", Reason.BAD_SHAPE, bytes_of=edited(_set("fc.weight", "shape", [8, 6]))),
    Case("negative dim", Reason.BAD_SHAPE, bytes_of=edited(_set("fc.weight", "shape", [-8, -5]))),
    Case("no metadata", Reason.BAD_METADATA, bytes_of=edited(_metadata(None))),
    Case("two metadata keys", Reason.BAD_METADATA, bytes_of=edited(_metadata({"meshprov": "{}", "x": "y"}))),
    Case("extra metadata field", Reason.BAD_METADATA, bytes_of=edited(_meta_field("bonus", 1))),
    Case("another round", Reason.METADATA_MISMATCH, meta={"round": ROUND + 1}),
    Case("another contributor", Reason.METADATA_MISMATCH, meta={"contributor": BOB}),
    Case("another task", Reason.METADATA_MISMATCH, meta={"task": TASK + 1}),
    Case("another base", Reason.METADATA_MISMATCH, meta={"base": _cid(b"\x22" * 32)}),
    Case("inflated num_samples", Reason.METADATA_MISMATCH, meta={"num_samples": 10**6}),
    Case("missing key", Reason.KEYS_MISMATCH, tensors=_with("fc.bias", None)),
    Case("extra key", Reason.KEYS_MISMATCH, tensors=_with("backdoor", np.zeros(3, np.float32))),
    Case("wrong shape", Reason.SHAPE_MISMATCH, tensors=_with("fc.bias", np.zeros(9, np.float32))),
    Case("transposed", Reason.SHAPE_MISMATCH, tensors=_with("fc.weight", np.zeros((5, 8), np.float32))),
    Case("wrong dtype", Reason.DTYPE_MISMATCH, tensors=_with("fc.bias", np.zeros(8, np.float64))),
    Case("half precision", Reason.DTYPE_MISMATCH, tensors=_with("fc.weight", np.zeros((8, 5), np.float16))),
    Case("nan", Reason.NON_FINITE, tensors=_poisoned(float("nan"))),
    Case("inf", Reason.NON_FINITE, tensors=_poisoned(float("-inf"))),
    Case(
        "scaled x1000",
        Reason.NORM_TOO_LARGE,
        tensors=lambda: {k: v * 1000 if v.dtype.kind == "f" else v for k, v in honest_delta().items()},
        limits=CheckLimits(max_norm=1.0),
    ),
    Case(
        "scaled x1000, no absolute bound",
        Reason.SCALE_OUT_OF_PROPORTION,
        tensors=lambda: {k: v * 1000 if v.dtype.kind == "f" else v for k, v in honest_delta().items()},
    ),
    Case(
        "free rider",
        Reason.NORM_TOO_SMALL,
        tensors=lambda: {
            k: np.zeros_like(v) if v.dtype.kind == "f" else v for k, v in honest_delta().items()
        },
    ),
]


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_corpus_each_rejected_with_its_reason(rnd: Round, case: Case) -> None:
    tensors = case.tensors() if case.tensors else honest_delta()
    path = rnd.write(case.name.replace(" ", "_"), tensors, **case.meta)
    if case.bytes_of is not None:
        path.write_bytes(case.bytes_of(path))
    verdict = rnd.verify(path, case.limits, **case.record)
    assert verdict.reason is case.reason, verdict.detail
    assert verdict.accepted == (case.reason is Reason.ACCEPTED)
    if verdict.accepted:
        assert verdict.profile is not None
        assert verdict.norm is not None
        assert verdict.norm > 0


def test_the_corpus_covers_every_per_update_reason() -> None:
    # PRIVACY_BUDGET_EXCEEDED depends on the member's earlier submissions: tests/ledger/checks/test_privacy_budget
    per_update = set(Reason) - {
        Reason.NORM_OUTLIER,
        Reason.DUPLICATE,
        Reason.LOSS_REGRESSION,
        Reason.NEAR_COPY,
        Reason.PRIVACY_BUDGET_EXCEEDED,
    }
    assert {c.reason for c in CORPUS} == per_update
    assert len(CORPUS) >= 20


def test_scale_is_judged_against_the_base_norm_and_only_after_the_absolute_bound(rnd: Round) -> None:
    with UpdateFile.open(rnd.base_path) as base:
        scale = base_norm(base)
    floats = np.concatenate([base_tensors()["fc.bias"], base_tensors()["fc.weight"].ravel()]).astype(
        np.float64
    )
    assert scale == pytest.approx(float(np.linalg.norm(floats)), rel=1e-12)
    delta = honest_delta()
    norm = rnd.verify(rnd.write("honest", delta)).norm
    assert norm is not None
    factor = 4.0 * scale / norm  # 4x the base's norm: inside the default 5x
    inside = rnd.write("x4", {k: v * factor if v.dtype.kind == "f" else v for k, v in delta.items()})
    outside = rnd.write("x6", {k: v * 1.5 * factor if v.dtype.kind == "f" else v for k, v in delta.items()})
    assert rnd.verify(inside).accepted
    rejected = rnd.verify(outside)
    assert rejected.reason is Reason.SCALE_OUT_OF_PROPORTION
    assert "6x the base's" in rejected.detail
    assert rnd.verify(outside, CheckLimits(max_scale_ratio=7.0)).accepted
    assert rnd.verify(outside, CheckLimits(max_scale_ratio=None)).accepted
    assert rnd.verify(inside, CheckLimits(max_scale_ratio=3.0)).reason is Reason.SCALE_OUT_OF_PROPORTION
    assert rnd.verify(outside, CheckLimits(max_norm=norm)).reason is Reason.NORM_TOO_LARGE
    with UpdateFile.open(rnd.base_path) as base:  # a norm given by the caller is used as is
        given = verify_update(outside, base=base, record=rnd.record(outside), base_scale=scale * 2)
    assert given.accepted


def test_a_base_of_zeros_has_no_scale_to_compare_with(rnd: Round, tmp_path: Path) -> None:
    zeros = tmp_path / "zeros.safetensors"
    write_aggregate(zeros, {k: np.zeros_like(v) for k, v in base_tensors().items()}, GenesisMeta("mlp", {}))
    path = rnd.write("any", honest_delta(), base=_cid(kubo_digest(zeros)))
    assert check_update(path, zeros).accepted


def test_an_aggregate_submitted_as_an_update_is_bad_metadata(rnd: Round) -> None:
    path = rnd.dir / "agg.safetensors"
    meta = AggregateMeta(
        task=TASK, round=ROUND, rule_id=0, rule="fedavg", inputs=(), parent=_cid(rnd.base_digest)
    )
    write_aggregate(path, honest_delta(), meta)
    assert rnd.verify(path).reason is Reason.BAD_METADATA


def test_norm_is_over_floating_point_tensors_only(rnd: Round) -> None:
    delta = honest_delta()
    path = rnd.write("honest", delta)
    verdict = rnd.verify(path)
    floats = np.concatenate([delta["fc.bias"], delta["fc.weight"].ravel()]).astype(np.float64)
    assert verdict.norm == pytest.approx(float(np.linalg.norm(floats)), rel=1e-12)


def _round_of(rnd: Round, deltas: list[dict[str, np.ndarray]]) -> list[Verdict]:
    verdicts = []
    for i, delta in enumerate(deltas):
        path = rnd.write(f"member{i}", delta)
        verdicts.append(rnd.verify(path))
    assert all(v.accepted for v in verdicts)
    stats = round_stats([v.profile for v in verdicts if v.profile is not None])
    return [judge_in_round(v, stats) for v in verdicts]


def test_round_level_scaled_update_is_an_outlier_and_sign_flip_is_left_to_the_rule(rnd: Round) -> None:
    deltas = [honest_delta(seed) for seed in range(1, 6)]
    scaled = {k: v * 10 if v.dtype.kind == "f" else v for k, v in honest_delta(42).items()}
    flipped = {k: -v if v.dtype.kind == "f" else v for k, v in honest_delta(43).items()}
    verdicts = _round_of(rnd, [*deltas, scaled, flipped])
    assert [v.reason for v in verdicts] == [Reason.ACCEPTED] * 5 + [Reason.NORM_OUTLIER, Reason.ACCEPTED]
    assert verdicts[5].zscore is not None
    assert verdicts[5].zscore > 3.5
    assert all(v.zscore is not None and abs(v.zscore) < 3.5 for v in verdicts[:5])


def test_round_level_copy_under_another_name_is_a_duplicate(rnd: Round) -> None:
    original = honest_delta(7)
    paths = [rnd.write("a", original), rnd.write("b", honest_delta(8))]
    copy = rnd.dir / "copy.safetensors"
    write_update(copy, original, rnd.meta(contributor=BOB))  # other metadata, so another digest
    with UpdateFile.open(rnd.base_path) as base:
        verdicts = [rnd.verify(p) for p in paths]
        verdicts.append(verify_update(copy, base=base, record=rnd.record(copy, contributor=BOB)))
    stats = round_stats([v.profile for v in verdicts if v.profile is not None])
    judged = [judge_in_round(v, stats) for v in verdicts]
    assert [v.reason for v in judged] == [Reason.ACCEPTED, Reason.ACCEPTED, Reason.DUPLICATE]
    assert judged[2].duplicate_of == verdicts[0].digest


def test_loss_regression_through_the_hook(rnd: Round) -> None:
    target = base_tensors()["fc.weight"] + 0.05

    def loss(weights: dict[str, np.ndarray]) -> float:
        assert weights["fc.weight"].dtype == np.float32
        return float(np.mean((weights["fc.weight"] - target) ** 2))

    good = rnd.write("good", {**honest_delta(), "fc.weight": np.full((8, 5), 0.05, np.float32)})
    bad = rnd.write("bad", {**honest_delta(), "fc.weight": np.full((8, 5), -0.5, np.float32)})
    limits = CheckLimits(loss_delta=0.01)
    ok = check_update(good, rnd.base_path, limits=limits, evaluate=loss)
    assert ok.accepted
    assert ok.loss is not None
    assert ok.base_loss is not None
    assert ok.loss < ok.base_loss
    rejected = check_update(bad, rnd.base_path, limits=limits, evaluate=loss)
    assert rejected.reason is Reason.LOSS_REGRESSION
    assert check_update(bad, rnd.base_path, evaluate=loss).accepted  # no loss_delta: no loss check


def test_offline_check_compares_the_base_only(rnd: Round, tmp_path: Path) -> None:
    path = rnd.write("offline", honest_delta(), round=99, contributor=BOB)
    assert check_update(path, rnd.base_path).accepted
    other_base = tmp_path / "other.safetensors"
    write_aggregate(other_base, base_tensors(), GenesisMeta(model="mlp", params={"seed": 1}))
    verdict = check_update(path, other_base)
    assert verdict.reason is Reason.METADATA_MISMATCH
    assert "base" in verdict.detail


def test_verdict_round_trips_through_json_and_raises_with_exit_code(rnd: Round) -> None:
    path = rnd.write("nan", _poisoned(float("nan"))())
    verdict = rnd.verify(path)
    again = Verdict.from_dict(json.loads(json.dumps(verdict.to_dict())))
    assert again == verdict
    with pytest.raises(UpdateRejected) as info:
        verdict.raise_if_rejected()
    assert info.value.exit_code is ExitCode.REJECTED
    assert info.value.reason is Reason.NON_FINITE
    assert "non-finite" in str(info.value)
    accepted = rnd.verify(rnd.write("ok", honest_delta()))
    assert Verdict.from_dict(json.loads(json.dumps(accepted.to_dict()))) == accepted
    accepted.raise_if_rejected()


def test_base_layout_can_be_computed_once(rnd: Round) -> None:
    path = rnd.write("ok", honest_delta())
    with UpdateFile.open(rnd.base_path) as base:
        layout = describe_source(base)
        verdict = verify_update(path, base=base, record=rnd.record(path), base_layout=layout)
    assert verdict.accepted

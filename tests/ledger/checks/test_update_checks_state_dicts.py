"""The validator checks on any state dict: every update tensor's name, shape and dtype against the base (BatchNorm
buffers, float16, bfloat16, bool and uint8 buffers), NaN/Inf in float16 and bfloat16, norms over the floating-point
tensors only, the loss hook's full weights, and thousands of tensors under the header bound."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.checks import CheckLimits, Verdict, check_loss, kubo_digest, verify_update
from ledger.checks.limits import DEFAULT_MAX_HEADER_BYTES
from ledger.checks.update_checks import ChainRecord
from ledger.reasons import Reason
from ledger.updatefile import GenesisMeta, UpdateFile, UpdateMeta, file_tensors, write_aggregate, write_update
from ledger.updatefile.dtypes import bf16_to_float32, float32_to_bf16
from ledger.updatefile.header import read_header
from tests.ledger.aggregation.state_dicts import State, mixed_base, mixed_deltas

ALICE = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"


class Files:
    def __init__(self, root: Path, base: State) -> None:
        self.root = root
        self.base = base
        self.base_path = root / "base.safetensors"
        self.base_cid = write_aggregate(self.base_path, file_tensors(base), GenesisMeta(model="mixed")).cid

    def update(self, name: str, tensors: State) -> Path:
        path = self.root / f"{name}.safetensors"
        meta = UpdateMeta(task=1, round=1, base=self.base_cid, contributor=ALICE, num_samples=10)
        write_update(path, file_tensors(tensors), meta)
        return path

    def verify(self, path: Path, limits: CheckLimits | None = None) -> Verdict:
        record = ChainRecord(digest=kubo_digest(path), task=1, round=1, base=kubo_digest(self.base_path))
        with UpdateFile.open(self.base_path) as base:
            return verify_update(path, base=base, record=record, limits=limits or CheckLimits())


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path, mixed_base())


def _honest() -> State:
    return mixed_deltas(mixed_base(), 2)[1]


def test_an_honest_mixed_update_is_accepted_and_its_norm_is_over_its_parameters_only(files: Files) -> None:
    delta = _honest()
    verdict = files.verify(files.update("ok", delta))
    assert verdict.reason is Reason.ACCEPTED, verdict.detail
    floats = []
    for key in sorted(delta):
        value = delta[key]
        if "running" in key:  # BatchNorm's running statistics: aggregated, but not in the norm
            continue
        if key == "proj.weight":
            floats.append(bf16_to_float32(value).astype(np.float64).ravel())
        elif value.dtype.kind == "f":
            floats.append(value.astype(np.float64).ravel())
    expected = math.sqrt(float(np.square(np.concatenate(floats)).sum()))
    assert verdict.norm == pytest.approx(expected, rel=1e-12)


def _with(**changes: Any) -> State:
    delta = _honest()
    for name, value in changes.items():
        key = name.replace("__", ".")
        if value is None:
            del delta[key]
        else:
            delta[key] = value
    return delta


@pytest.mark.parametrize(
    ("case", "tensors", "reason", "detail"),
    [
        (
            "missing counter",
            _with(bn__num_batches_tracked=None),
            Reason.KEYS_MISMATCH,
            "missing 'bn.num_batches_tracked'",
        ),
        (
            "extra buffer",
            {**_honest(), "bn.running_std": np.ones(4, np.float32)},
            Reason.KEYS_MISMATCH,
            "extra 'bn.running_std'",
        ),
        (
            "running mean shape",
            _with(bn__running_mean=np.zeros(5, np.float32)),
            Reason.SHAPE_MISMATCH,
            "'bn.running_mean' has shape [5], base [4]",
        ),
        (
            "counter as a vector",
            _with(bn__num_batches_tracked=np.zeros(1, np.int64)),
            Reason.SHAPE_MISMATCH,
            "'bn.num_batches_tracked' has shape [1], base []",
        ),
        (
            "counter as int32",
            _with(bn__num_batches_tracked=np.array(1, np.int32)),
            Reason.DTYPE_MISMATCH,
            "'bn.num_batches_tracked' is int32, base int64",
        ),
        (
            "float16 head as float32",
            _with(head__weight=np.zeros((3, 4), np.float32)),
            Reason.DTYPE_MISMATCH,
            "'head.weight' is float32, base float16",
        ),
        (
            "bfloat16 as float16",
            _with(proj__weight=np.zeros((2, 3), np.float16)),
            Reason.DTYPE_MISMATCH,
            "'proj.weight' is float16, base BF16",
        ),
        (
            "float32 as bfloat16",
            _with(conv__bias=np.zeros(4, np.uint16)),
            Reason.DTYPE_MISMATCH,
            "'conv.bias' is BF16, base float32",
        ),
        (
            "mask as uint8",
            _with(mask=np.zeros(4, np.uint8)),
            Reason.DTYPE_MISMATCH,
            "'mask' is uint8, base bool",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_names_shapes_and_dtypes_are_checked_against_the_base(
    files: Files, case: str, tensors: State, reason: Reason, detail: str
) -> None:
    verdict = files.verify(files.update(case.replace(" ", "-"), tensors))
    assert verdict.reason is reason, verdict.detail
    assert verdict.detail == detail


def _bf16(values: list[float]) -> np.ndarray:
    return float32_to_bf16(np.array(values, np.float32)).reshape(2, 3)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("head.weight", np.full((3, 4), np.nan, np.float16)),
        ("head.bias", np.array([0.0, np.inf, 0.0], np.float16)),
        ("proj.weight", _bf16([0, 0, 0, float("nan"), 0, 0])),
        ("proj.weight", _bf16([0, float("-inf"), 0, 0, 0, 0])),
        ("bn.running_var", np.array([1, np.nan, 1, 1], np.float32)),
    ],
)
def test_non_finite_float16_and_bfloat16_values_are_rejected(
    files: Files, key: str, value: np.ndarray
) -> None:
    delta = _honest()
    delta[key] = value
    verdict = files.verify(files.update("bad", delta))
    assert verdict.reason is Reason.NON_FINITE
    assert verdict.detail == f"{key!r} holds NaN or Inf"


def test_integer_and_bool_buffers_do_not_count_in_the_norm(files: Files) -> None:
    delta = {k: np.zeros_like(v) for k, v in _honest().items()}
    delta["bn.num_batches_tracked"] = np.array(500, np.int64)
    delta["mask"] = np.ones(4, bool)
    verdict = files.verify(files.update("buffers-only", delta))
    assert verdict.reason is Reason.NORM_TOO_SMALL  # a member that only ran batches contributed nothing


def test_the_loss_hook_sees_base_plus_update_applied_per_dtype(files: Files) -> None:
    delta = _honest()
    path = files.update("ok", delta)
    seen: list[dict[str, np.ndarray]] = []

    def evaluate(weights: Any) -> float:
        seen.append(dict(weights))
        return 1.0

    with UpdateFile.open(files.base_path) as base, UpdateFile.open(path) as update:
        verdict = check_loss(update, base, evaluate, CheckLimits(loss_delta=0.1))
    assert verdict.reason is Reason.ACCEPTED
    base_w, full = seen
    assert int(full["bn.num_batches_tracked"]) == 10 + int(delta["bn.num_batches_tracked"])
    assert full["mask"].tolist() == (files.base["mask"] ^ delta["mask"]).tolist()
    assert full["codes"].tolist() == (files.base["codes"].astype(int) + delta["codes"].view(np.int8)).tolist()
    assert full["proj.weight"].dtype == np.float32  # bfloat16 given as float32, exactly
    assert base_w["proj.weight"].tolist() == bf16_to_float32(files.base["proj.weight"]).tolist()
    assert full["head.weight"].dtype == np.float16


def test_a_thousand_tensor_header_is_far_under_the_bound_and_checks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base: State = {}
    for i in range(1000):
        stem = f"model.transformer.h.{i:04d}.attention.output.dense"  # long, realistic names
        base[f"{stem}.weight"] = rng.standard_normal(4).astype(np.float16)
        base[f"{stem}.norm.num_batches_tracked"] = np.array(i, np.int64)
    files = Files(tmp_path, base)
    delta = {
        k: (np.full(4, 0.01, np.float16) if v.dtype == np.float16 else np.array(1, np.int64))
        for k, v in base.items()
    }
    path = files.update("many", delta)
    header = read_header(path)
    assert len(header.tensors) == 2000
    assert header.header_len * 50 < DEFAULT_MAX_HEADER_BYTES  # ~170 KB of the 16 MiB bound
    assert files.verify(path).reason is Reason.ACCEPTED
    # a tensor of the thousand with the wrong dtype is still found, and named
    delta["model.transformer.h.0500.attention.output.dense.weight"] = np.zeros(4, np.float32)
    verdict = files.verify(files.update("many-bad", delta))
    assert verdict.reason is Reason.DTYPE_MISMATCH
    assert "h.0500" in verdict.detail


def test_running_statistics_moving_far_do_not_fail_an_honest_update(files: Files) -> None:
    # A BatchNorm behind unnormalised inputs: its running statistics move by hundreds of units in one round
    # (a CNN on raw 0..16 digits measured 18.6x its base's norm with them, 1.6x without).
    delta = _honest()
    delta["bn.running_mean"] = np.full(4, 300.0, np.float32)
    delta["bn.running_var"] = np.full(4, 900.0, np.float32)
    verdict = files.verify(files.update("raw-inputs", delta))
    assert verdict.reason is Reason.ACCEPTED, verdict.detail
    again = files.verify(files.update("same-weights", _honest()))
    assert verdict.norm == again.norm  # the statistics take no part in the norm (nor in the fingerprint)
    assert verdict.profile is not None
    assert again.profile is not None
    assert verdict.profile.fingerprint == again.profile.fingerprint

"""StreamChecks: the per-update checks on an update's bytes as a store hands them over (one pass, nothing
written) give the verdict verify_update gives for the same bytes on disk, whatever the pieces' sizes; the vector
written on the way and the tensors kept are the update's own values; the header is buffered only up to its bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.aggregation.source import describe_source
from ledger.checks import CheckLimits, Verdict, base_norm, check_loss, flatten, kubo_digest, verify_update
from ledger.checks.update_checks import ChainRecord, StreamChecks
from ledger.reasons import Reason
from ledger.updatefile import UpdateFile
from tests.ledger.aggregation.state_dicts import State, mixed_base
from tests.ledger.checks.test_update_checks_state_dicts import Files, _honest, _with
from worker.vectorfiles import VectorSource, VectorWriter


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path, mixed_base())


def _stream(files: Files, path: Path, piece: int, limits: CheckLimits, sink: Any = None) -> StreamChecks:
    data = path.read_bytes()
    record = ChainRecord(digest=kubo_digest(path), task=1, round=1, base=kubo_digest(files.base_path))
    with UpdateFile.open(files.base_path) as base:
        checks = StreamChecks(len(data), base=base, record=record, limits=limits, sink=sink)
        for start in range(0, len(data), piece):
            checks.feed(memoryview(data)[start : start + piece])
        checks.base_scale = base_norm(base)
    return checks


def _same(files: Files, tensors: State, limits: CheckLimits | None = None) -> Verdict:
    limits = limits or CheckLimits()
    path = files.update("u", tensors)
    want = files.verify(path, limits)
    for piece in (1, 7, 64, 4096, 1 << 20):  # elements and the header cut anywhere
        got = _stream(files, path, piece, limits).finish(kubo_digest(path))
        assert got == want, (piece, got, want)
    return want


@pytest.mark.parametrize(
    "tensors",
    [
        _honest(),
        _with(bn__num_batches_tracked=None),
        _with(head__weight=np.zeros((3, 4), np.float32)),
        _with(head__weight=np.full((3, 4), np.nan, np.float16)),
        _with(bn__running_var=np.array([1, np.nan, 1, 1], np.float32)),
        {k: np.zeros_like(v) for k, v in _honest().items()},
    ],
    ids=["honest", "keys", "dtype", "nan", "nan-statistic", "zero"],
)
def test_the_stream_verdict_is_the_file_verdict(files: Files, tensors: State) -> None:
    _same(files, tensors)


def test_limits_apply_to_the_stream_as_to_the_file(files: Files) -> None:
    assert _same(files, _honest(), CheckLimits(max_norm=1e-3)).reason is Reason.NORM_TOO_LARGE
    assert _same(files, _honest(), CheckLimits(max_header_bytes=64)).reason is Reason.HEADER_TOO_LARGE


def test_a_header_bomb_is_refused_after_its_length_without_buffering_it(files: Files) -> None:
    announced = 1 << 40
    data = announced.to_bytes(8, "little") + b"{" * 100_000
    with UpdateFile.open(files.base_path) as base:
        checks = StreamChecks(len(data), base=base, limits=CheckLimits())
    for start in range(0, len(data), 1000):
        checks.feed(data[start : start + 1000])
        assert len(checks._prefix) <= 8  # the bound is the point of the test
    verdict = checks.finish(b"\0" * 32)
    assert verdict.reason is Reason.HEADER_TOO_LARGE


def test_a_truncated_stream_is_truncated(files: Files) -> None:
    path = files.update("u", _honest())
    data = path.read_bytes()[:20]
    with UpdateFile.open(files.base_path) as base:
        checks = StreamChecks(len(data), base=base, limits=CheckLimits())
    checks.feed(data)
    assert checks.finish(b"\0" * 32).reason is Reason.TRUNCATED


def test_the_vector_and_kept_tensors_are_the_updates_values(files: Files, tmp_path: Path) -> None:
    delta = _honest()
    path = files.update("u", delta)
    with UpdateFile.open(files.base_path) as base:
        layout = describe_source(base)
    writer = VectorWriter(tmp_path / "u.npy", layout)
    checks = _stream(files, path, 5, CheckLimits(), sink=writer)
    assert checks.finish(kubo_digest(path)).accepted
    vector = writer.finish()
    with UpdateFile.open(path) as update:
        assert np.array_equal(vector, flatten(update, layout))  # float16 and bfloat16 widened exactly
        source = VectorSource(vector, layout, checks.kept)
        for info in layout:  # every tensor in its stored dtype, bit for bit
            got, want = source.tensor(info.key), np.asarray(update.tensor(info.key))
            assert got.dtype == want.dtype, info.key
            assert got.shape == want.shape, info.key
            assert got.tobytes() == want.tobytes(), info.key
        seen: list[dict[str, Any]] = []

        def evaluate(weights: Any) -> float:
            seen.append({k: np.array(v) for k, v in weights.items()})
            return 1.0

        with UpdateFile.open(files.base_path) as base:
            check_loss(update, base, evaluate, CheckLimits(loss_delta=1.0), base_loss=1.0)
            check_loss(source, base, evaluate, CheckLimits(loss_delta=1.0), base_loss=1.0)
    assert seen[0].keys() == seen[1].keys()
    for key in seen[0]:
        assert seen[0][key].tobytes() == seen[1][key].tobytes(), key


def test_verify_update_on_the_file_agrees_with_a_digest_mismatch_first(files: Files) -> None:
    path = files.update("u", _with(head__weight=np.zeros((3, 4), np.float32)))
    record = ChainRecord(digest=b"\1" * 32, task=1, round=1)
    with UpdateFile.open(files.base_path) as base:
        want = verify_update(path, base=base, record=record)
        data = path.read_bytes()
        checks = StreamChecks(len(data), base=base, record=record)
        checks.feed(data)
    got = checks.finish(kubo_digest(path))
    assert got == want
    assert got.reason is Reason.CID_MISMATCH

"""The bounded header pre-parser: every malformed or hostile header is rejected with its reason code."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.exit_codes import ExitCode
from ledger.reasons import Reason
from ledger.updatefile import (
    FileRejected,
    HeaderLimits,
    HeaderRejected,
    UpdateFile,
    UpdateMeta,
    encode,
    read_header,
)

META = UpdateMeta(
    task=1, round=1, base="QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
    contributor="0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", num_samples=5,
)  # fmt: skip
GOOD = encode({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.int8)}, META)


def raw_file(header: Any, data: bytes = b"", *, length: int | None = None) -> bytes:
    """A safetensors file with this header (a dict, serialised, or raw bytes) and data section."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return (len(text) if length is None else length).to_bytes(8, "little") + text + data


def f32(shape: list[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}


def rejected(data: bytes, limits: HeaderLimits | None = None) -> HeaderRejected:
    with pytest.raises(HeaderRejected) as caught:
        read_header(data, limits or HeaderLimits())
    return caught.value


def test_a_good_header() -> None:
    header = read_header(GOOD)
    assert list(header.tensors) == ["a", "b"]
    assert header.tensors["a"].dtype == "F32"
    assert header.tensors["a"].shape == (2, 3)
    assert header.tensors["a"].start == header.data_start
    assert header.tensors["b"].end == len(GOOD)
    assert header.metadata == {"meshprov": META.to_json()}
    assert header.data_start % 8 == 0


def test_paths_bytes_and_streams_give_the_same_header(tmp_path: Path) -> None:
    path = tmp_path / "u"
    path.write_bytes(GOOD)
    assert read_header(path) == read_header(GOOD) == read_header(io.BytesIO(GOOD)) == read_header(str(path))


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (b"", Reason.TRUNCATED, "0 bytes"),
        (b"\x10\x00\x00", Reason.TRUNCATED, "8-byte length"),
        (GOOD[:-1], Reason.TRUNCATED, "file holds"),
        (GOOD[:40], Reason.TRUNCATED, "only"),
        (raw_file(b"{}", length=10**6), Reason.TRUNCATED, "only 2 bytes"),
        (raw_file(b"{}", length=2**63), Reason.HEADER_TOO_LARGE, "limit"),
        (raw_file(b"{}", length=16 * 1024 * 1024 + 1), Reason.HEADER_TOO_LARGE, "limit"),
        (raw_file(b"not json"), Reason.HEADER_NOT_JSON, "start with '{'"),
        (raw_file(b"{not json}"), Reason.HEADER_NOT_JSON, "Expecting"),
        (raw_file(b'{"a": "\xff"}'), Reason.HEADER_NOT_JSON, "UTF-8"),
        (raw_file(b'{"a": NaN}'), Reason.HEADER_NOT_JSON, "NaN"),
        (raw_file(b'{"a": 1, "a": 2}'), Reason.HEADER_NOT_JSON, "duplicate key 'a'"),
        (raw_file(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), Reason.HEADER_NOT_JSON, "nested"),
        (raw_file(b'{"a": ' + b"1" * 5000 + b"}"), Reason.HEADER_NOT_JSON, "digits"),
        (raw_file({"a": [1, 2]}), Reason.HEADER_NOT_JSON, "exactly dtype, shape, data_offsets"),
        (raw_file({"a": {**f32([1], 0, 4), "extra": 1}}, bytes(4)), Reason.HEADER_NOT_JSON, "exactly"),
        (raw_file({"__metadata__": {"k": 1}}), Reason.BAD_METADATA, "strings to strings"),
        (raw_file({"__metadata__": ["x"]}), Reason.BAD_METADATA, "strings to strings"),
        (raw_file({"a": {**f32([1], 0, 1), "dtype": "F8_E4M3"}}, bytes(1)), Reason.UNKNOWN_DTYPE, "F8_E4M3"),
        (raw_file({"a": {**f32([1], 0, 2), "dtype": "U16"}}, bytes(2)), Reason.UNKNOWN_DTYPE, "U16"),
        (raw_file({"a": {**f32([1], 0, 4), "dtype": 7}}, bytes(4)), Reason.UNKNOWN_DTYPE, "7"),
        (raw_file({"a": f32([-1], 0, 4)}, bytes(4)), Reason.BAD_SHAPE, "non-negative"),
        (
            raw_file({"a": {**f32([1], 0, 4), "shape": [1.0]}}, bytes(4)),
            Reason.BAD_SHAPE,
            "non-negative ints",
        ),
        (raw_file({"a": f32([True], 0, 4)}, bytes(4)), Reason.BAD_SHAPE, "non-negative ints"),
        (raw_file({"a": {**f32([1], 0, 4), "shape": "1"}}, bytes(4)), Reason.BAD_SHAPE, "list"),
        (raw_file({"a": f32([1] * 17, 0, 4)}, bytes(4)), Reason.BAD_SHAPE, "17 dimensions"),
        (raw_file({"a": f32([2, 3], 0, 20)}, bytes(20)), Reason.BAD_SHAPE, "needs 24 bytes"),
        (raw_file({"a": f32([2**40, 2**40], 0, 4)}, bytes(4)), Reason.BAD_SHAPE, "needs"),
        (raw_file({"a": f32([1], 4, 0)}, bytes(4)), Reason.BAD_OFFSETS, "begin <= end"),
        (raw_file({"a": f32([1], -4, 0)}, bytes(4)), Reason.BAD_OFFSETS, "begin <= end"),
        (
            raw_file({"a": {**f32([1], 0, 4), "data_offsets": [0, 4, 8]}}, bytes(4)),
            Reason.BAD_OFFSETS,
            "[begin",
        ),
        (
            raw_file({"a": {**f32([1], 0, 4), "data_offsets": [0, "4"]}}, bytes(4)),
            Reason.BAD_OFFSETS,
            "[begin",
        ),
        (raw_file({"a": f32([2], 0, 8), "b": f32([1], 4, 8)}, bytes(8)), Reason.BAD_OFFSETS, "overlaps"),
        (raw_file({"a": f32([1], 0, 4), "b": f32([1], 8, 12)}, bytes(12)), Reason.BAD_OFFSETS, "gap of 4"),
        (raw_file({"a": f32([1], 4, 8)}, bytes(8)), Reason.BAD_OFFSETS, "gap"),
        (raw_file({"a": f32([1], 0, 4)}, bytes(9)), Reason.BAD_OFFSETS, "5 bytes after"),
        (
            raw_file({"a": f32([1], 0, 4), "b": f32([2**20], 4, 4 + 2**22)}, bytes(8)),
            Reason.TRUNCATED,
            "holds 8",
        ),
    ],
)
def test_bad_headers_are_rejected_with_their_reason(data: bytes, reason: Reason, detail: str) -> None:
    error = rejected(data)
    assert error.reason == reason
    assert detail in error.detail
    assert error.exit_code == ExitCode.REJECTED
    assert reason.slug in error.message
    assert error.hint == reason.help


def test_the_limits_are_the_callers() -> None:
    error = rejected(GOOD, HeaderLimits(max_header_bytes=64))
    assert error.reason == Reason.HEADER_TOO_LARGE
    assert rejected(GOOD, HeaderLimits(max_file_bytes=100)).reason == Reason.TOO_LARGE
    assert read_header(GOOD, HeaderLimits(max_file_bytes=len(GOOD)))


def test_tensors_listed_out_of_order_but_tiling_the_data_are_accepted() -> None:
    data = raw_file({"b": f32([1], 4, 8), "a": f32([1], 0, 4), "z": f32([0], 8, 8)}, bytes(8))
    assert list(read_header(data).tensors) == ["a", "b", "z"]


def test_a_huge_declared_header_is_never_read(tmp_path: Path) -> None:
    path = tmp_path / "liar"
    path.write_bytes(raw_file(b"{}", length=15 * 1024 * 1024))
    reads: list[int] = []

    class Counting(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            reads.append(-1 if n is None else n)
            return super().read(n)

    tracemalloc.start()
    try:
        assert rejected(path.read_bytes()).reason == Reason.TRUNCATED
        with pytest.raises(HeaderRejected):
            read_header(Counting(path.read_bytes()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reads == [8]
    assert peak < 1024 * 1024


def test_update_file_open_rejects_before_mapping(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(GOOD[:-3])
    with pytest.raises(HeaderRejected) as caught:
        UpdateFile.open(path)
    assert caught.value.reason == Reason.TRUNCATED
    assert str(path) in caught.value.message


def open_or_reason(data: bytes) -> UpdateFile | Reason:
    try:
        return UpdateFile.from_bytes(data)
    except FileRejected as exc:
        return exc.reason


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_files_are_accepted_or_rejected_never_crash(data: st.DataObject) -> None:
    raw = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "splice"]))
        if kind == "flip" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            raw = raw[: data.draw(st.integers(0, len(raw)))]
        else:
            i = data.draw(st.integers(0, len(raw)))
            raw[i:i] = data.draw(st.binary(max_size=12))
    f = open_or_reason(bytes(raw))
    if isinstance(f, Reason):
        return
    # Whatever got through is safe to read in full.
    for key in f:
        assert f.tensor(key).nbytes == f.info(key).nbytes


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=8, max_size=64))
def test_random_bytes_are_rejected_cleanly(blob: bytes) -> None:
    with pytest.raises(FileRejected):
        UpdateFile.from_bytes(blob)

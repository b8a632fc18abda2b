"""One suite for every content store: the local block directory and the Kubo client (against a fake Kubo)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.content import (
    CidMismatch,
    ContentNotFound,
    ContentStore,
    ContentTooLarge,
    InvalidCID,
    fetch_to_file,
    open_stream,
    read_bytes,
)
from ledger.content.local_store import LocalStore
from ledger.content.multiformats import CID
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason
from tests.support.kubo import (
    EMPTY_V0,
    HELLO,
    HELLO_V0,
    MISSING_V0,
    FakeKubo,
    kubo_store,
)
from tests.support.unixfs_reference import reference_import, vector_bytes


@dataclass
class StoreUnderTest:
    store: ContentStore
    fake: FakeKubo | None


@pytest.fixture(params=["local", "kubo"])
def sut(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    if request.param == "local":
        store: ContentStore = LocalStore(tmp_path / "blocks")
        fake = None
    else:
        fake = FakeKubo()
        store = kubo_store(fake)
    yield StoreUnderTest(store, fake)
    store.close()


def test_store_satisfies_the_protocol(sut: StoreUnderTest) -> None:
    assert isinstance(sut.store, ContentStore)
    assert sut.store.name in ("local", "kubo")


def test_put_bytes_returns_kubos_cid_and_the_content_comes_back(sut: StoreUnderTest) -> None:
    cid = sut.store.put_bytes(HELLO)
    assert cid == HELLO_V0
    assert sut.store.has(cid)
    assert read_bytes(sut.store, cid, max_bytes=100) == HELLO
    stat = sut.store.stat(cid)
    assert (stat.cid, stat.size, stat.block_size) == (HELLO_V0, 12, 20)


def test_put_file_streams_a_multi_chunk_file(sut: StoreUnderTest, tmp_path: Path) -> None:
    data = vector_bytes("one-mib-plus-7")
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    seen: list[int] = []
    cid = sut.store.put_file(path, progress=seen.append)
    assert cid == "QmTycvXn5bcvXoYegXvRUYMG14qPJZLKXGRgtSH8723ozx"
    assert sum(seen) == len(data)
    chunks = list(sut.store.get(cid, max_bytes=len(data)))
    assert all(isinstance(c, memoryview) for c in chunks)
    assert b"".join(chunks) == data
    assert sut.store.stat(cid).size == len(data)


def test_the_same_content_gets_the_same_cid_twice(sut: StoreUnderTest, tmp_path: Path) -> None:
    data = random.Random(1).randbytes(600_000)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert sut.store.put_bytes(data) == sut.store.put_file(path) == reference_import(data).cid


def test_empty_content(sut: StoreUnderTest) -> None:
    assert sut.store.put_bytes(b"") == EMPTY_V0
    assert read_bytes(sut.store, EMPTY_V0, max_bytes=0) == b""
    assert sut.store.stat(EMPTY_V0).size == 0


def test_get_accepts_cidv1(sut: StoreUnderTest) -> None:
    cid = sut.store.put_bytes(HELLO)
    assert read_bytes(sut.store, CID.parse(cid).v1, max_bytes=100) == HELLO


def test_get_refuses_content_over_max_bytes(sut: StoreUnderTest) -> None:
    data = random.Random(2).randbytes(300_000)
    cid = sut.store.put_bytes(data)
    assert read_bytes(sut.store, cid, max_bytes=len(data)) == data
    with pytest.raises(ContentTooLarge) as caught:
        read_bytes(sut.store, cid, max_bytes=len(data) - 1)
    assert caught.value.reason == Reason.TOO_LARGE
    assert caught.value.limit == len(data) - 1


def test_missing_content(sut: StoreUnderTest) -> None:
    assert not sut.store.has(MISSING_V0)
    for call in (lambda: sut.store.get(MISSING_V0), lambda: sut.store.stat(MISSING_V0)):
        with pytest.raises(ContentNotFound) as caught:
            call()
        assert caught.value.exit_code == ExitCode.NOT_FOUND
        assert MISSING_V0 in caught.value.message
    with pytest.raises(ContentNotFound):
        sut.store.pin(MISSING_V0)


def test_pin_after_put(sut: StoreUnderTest) -> None:
    cid = sut.store.put_bytes(HELLO)
    sut.store.pin(cid)
    pinned = sut.store.stat(cid).pinned
    assert pinned is True or (pinned is None and sut.fake is not None)
    if sut.fake is not None:
        assert CID.parse(cid).digest in sut.fake.pins


@pytest.mark.parametrize("bad", ["", "Qm123", "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"])
def test_bad_cids_are_refused_before_the_store_is_asked(sut: StoreUnderTest, bad: str) -> None:
    for call in (sut.store.get, sut.store.has, sut.store.pin, sut.store.stat):
        with pytest.raises(InvalidCID):
            call(bad)
    if sut.fake is not None:
        assert sut.fake.requests == []


def test_fetch_to_file_is_atomic(sut: StoreUnderTest, tmp_path: Path) -> None:
    data = random.Random(3).randbytes(700_000)
    cid = sut.store.put_bytes(data)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dest = out_dir / "update.safetensors"
    dest.write_bytes(b"previous")
    with pytest.raises(ContentTooLarge):
        fetch_to_file(sut.store, cid, dest, max_bytes=1000)
    assert dest.read_bytes() == b"previous"
    assert os.listdir(out_dir) == ["update.safetensors"]
    progress: list[int] = []
    assert fetch_to_file(sut.store, cid, dest, max_bytes=len(data), progress=progress.append) == len(data)
    assert dest.read_bytes() == data
    assert sum(progress) == len(data)
    assert os.listdir(out_dir) == ["update.safetensors"]


def test_fetch_to_file_shows_every_byte_as_it_passes_and_syncs_before_renaming(
    sut: StoreUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = random.Random(5).randbytes(600_000)
    cid = sut.store.put_bytes(data)
    dest = tmp_path / "got"
    seen = bytearray()
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert fetch_to_file(sut.store, cid, dest, on_bytes=seen.extend) == len(data)
    assert bytes(seen) == data == dest.read_bytes()
    assert events == ["fsync", "rename"]


class OverflowingStore:
    """A store that ignores ``max_bytes`` (a buggy or hostile backend)."""

    name = "overflowing"

    def get(self, cid: str, *, max_bytes: int | None = None) -> Iterator[memoryview]:
        for _ in range(10):
            yield memoryview(b"x" * 1000)


def test_fetch_to_file_holds_the_size_bound_even_against_the_store(tmp_path: Path) -> None:
    dest = tmp_path / "got"
    seen: list[int] = []
    with pytest.raises(ContentTooLarge):
        fetch_to_file(
            OverflowingStore(), HELLO_V0, dest, max_bytes=2500, on_bytes=lambda b: seen.append(len(b))
        )  # type: ignore[arg-type]
    assert sum(seen) <= 2500
    assert list(tmp_path.iterdir()) == []


class BytesStore:
    """A third-party store that hands over whatever bytes it holds, verifying nothing."""

    name = "bytes"

    def __init__(self, data: bytes) -> None:
        self.data = data

    def get(self, cid: str, *, max_bytes: int | None = None) -> Iterator[memoryview]:
        yield memoryview(self.data)


def test_fetch_to_file_proves_the_kubo_cid_of_a_store_that_does_not(tmp_path: Path) -> None:
    dest = tmp_path / "got"
    assert fetch_to_file(BytesStore(HELLO), HELLO_V0, dest) == len(HELLO)  # type: ignore[arg-type]
    assert dest.read_bytes() == HELLO
    dest.unlink()
    with pytest.raises(CidMismatch):
        fetch_to_file(BytesStore(HELLO + b"!"), HELLO_V0, dest)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_open_stream_reads_in_any_pieces(sut: StoreUnderTest) -> None:
    data = random.Random(4).randbytes(555_555)
    cid = sut.store.put_bytes(data)
    with open_stream(sut.store, cid, max_bytes=len(data)) as stream:
        pieces = [stream.read(size) for size in (1, 1000, 262_143, 300_000, 10)]
        assert stream.read() == b""
    assert b"".join(pieces) == data

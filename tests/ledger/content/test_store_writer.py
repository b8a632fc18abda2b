"""Streaming puts (ledger.content.store_writer): the same CID and blocks as a put of the finished file, each
byte hashed once and written once, and no root for a put that did not finish."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

import ledger.content.local_store as local_store
from ledger.content.local_store import LocalStore
from ledger.content.store_writer import StreamingPut, open_put, supports_streaming
from ledger.content.unixfs import CHUNK_SIZE
from tests.support.unixfs_reference import VECTOR_NAMES, load_vectors, vector_bytes


def _pieces(data: bytes, sizes: list[int]) -> list[bytes]:
    out, at, i = [], 0, 0
    while at < len(data):
        n = sizes[i % len(sizes)]
        out.append(data[at : at + n])
        at += n
        i += 1
    return out


def _blocks(store: LocalStore) -> dict[str, bytes]:
    return {
        p.relative_to(store.root).as_posix(): p.read_bytes()
        for p in store.root.glob("*/*.data")
        if not p.parent.name.startswith(".")
    }


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_a_streamed_put_gives_kubos_cid_for_every_vector(tmp_path: Path, name: str) -> None:
    vector = next(v for v in load_vectors() if v["name"] == name)
    data = vector_bytes(name)
    store = LocalStore(tmp_path / "s")
    with open_put(store) as put:
        for piece in _pieces(data, [1, 7, 100_000, CHUNK_SIZE, 3 * CHUNK_SIZE + 5]):
            put.write(piece)
        result = put.finish()
    assert result.cid == vector["cid_v0"]
    assert result.size == len(data)
    assert store.stat(result.cid).pinned
    assert b"".join(bytes(c) for c in store.get(result.cid)) == data


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        5 * CHUNK_SIZE,
        174 * CHUNK_SIZE,
        174 * CHUNK_SIZE + 1,
    ],
)
def test_streamed_and_file_puts_write_the_same_blocks(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    by_file = LocalStore(tmp_path / "a")
    cid = by_file.put_file(path)
    streamed = LocalStore(tmp_path / "b")
    with streamed.open_put() as put:
        for piece in _pieces(data, [CHUNK_SIZE // 3, CHUNK_SIZE, 17]):
            put.write(memoryview(piece))
        assert put.finish().cid == cid
    assert _blocks(streamed) == _blocks(by_file)
    assert sorted(p.name for p in (streamed.root / ".pins").iterdir()) == [cid]


class _CountingHash:
    def __init__(self, seen: list[int], data: Any = b"") -> None:
        self._h = _REAL_SHA(data)
        self._seen = seen
        seen.append(len(data))

    def update(self, data: Any) -> None:
        self._seen.append(memoryview(data).nbytes)
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.digest()


_REAL_SHA = hashlib.sha256


def test_each_byte_is_hashed_once_and_written_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted: the bytes hashed are exactly the bytes of the blocks (each block once, the payload inside its
    leaf), the bytes written are exactly those too, and no file is written outside the store's blocks."""
    data = os.urandom(9 * CHUNK_SIZE + 1234)
    store = LocalStore(tmp_path / "s")
    hashed: list[int] = []
    written: list[int] = []
    real_write = local_store.LocalStore.write_block

    def counting_write(self: LocalStore, block: bytes, final: Path) -> None:
        written.append(len(block))
        real_write(self, block, final)

    monkeypatch.setattr(hashlib, "sha256", lambda data=b"": _CountingHash(hashed, data))
    monkeypatch.setattr(local_store.LocalStore, "write_block", counting_write)
    with open_put(store) as put:
        for piece in _pieces(data, [100_000, 3 * CHUNK_SIZE]):
            put.write(piece)
        result = put.finish()
    monkeypatch.undo()
    blocks = _blocks(store)
    assert len(blocks) == 10 + 1  # 10 leaves and the root
    block_bytes = sum(len(b) for b in blocks.values())
    assert sum(hashed) == block_bytes == sum(written)
    assert len(written) == len(blocks)
    overhead = block_bytes - len(data)
    assert 0 < overhead < 0.001 * len(data)  # leaf framing and the root's links: every payload byte once
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert sorted(p.relative_to(store.root).as_posix() for p in files) == sorted(
        ["SHARDING", f".pins/{result.cid}", *blocks]
    )


def test_a_put_that_does_not_finish_leaves_no_root_and_no_pin(tmp_path: Path) -> None:
    data = os.urandom(4 * CHUNK_SIZE + 10)
    expected = LocalStore(tmp_path / "ref").put_bytes(data)
    store = LocalStore(tmp_path / "s")

    def interrupted() -> StreamingPut:
        with open_put(store) as put:
            put.write(data[: 3 * CHUNK_SIZE])
            put.write(data[3 * CHUNK_SIZE :])
            raise RuntimeError("interrupted before finish")

    with pytest.raises(RuntimeError):
        interrupted()
    put = store.open_put()
    put.abort()
    assert not store.has(expected)
    assert list((store.root / ".pins").iterdir()) == []
    with pytest.raises(ValueError, match="aborted"):
        put.write(b"more")
    # The leaves already written are harmless leftovers: the same put again reuses them and completes.
    with open_put(store) as again:
        again.write(data)
        assert again.finish().cid == expected
    assert store.has(expected)
    assert b"".join(bytes(c) for c in store.get(expected)) == data


def test_leaving_the_block_without_finish_writes_no_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    with open_put(store) as put:
        put.write(b"hello world\n")
    assert not store.has("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")
    assert list((store.root / ".pins").iterdir()) == []


def test_without_a_store_only_the_cid_is_computed_and_the_tee_gets_the_bytes(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 3)
    with open(tmp_path / "out", "wb") as f, StreamingPut(None, tee=f) as put:
        put.write(data[:5])
        put.write(data[5:])
        cid = put.finish().cid
    assert (tmp_path / "out").read_bytes() == data
    assert cid == LocalStore(tmp_path / "s").put_bytes(data)
    assert supports_streaming(LocalStore(tmp_path / "t"))
    assert not supports_streaming(object())

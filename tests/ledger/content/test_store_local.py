"""The local block store: Kubo's flatfs layout, verified reads, atomic and deduplicated writes."""

from __future__ import annotations

import hashlib
import os
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.content import ContentNotFound, CorruptBlock, MalformedDag, fetch_to_file, read_bytes
from ledger.content.local_store import LocalStore, block_key
from ledger.content.multiformats import CID
from ledger.content.unixfs import CHUNK_SIZE, Link, encode_branch, leaf_frame
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason
from tests.support.unixfs_reference import reference_import

HELLO_V0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


def drain(chunks: Iterator[memoryview], into: bytearray) -> None:
    for chunk in chunks:
        into += chunk


def block_files(store: LocalStore) -> list[Path]:
    return sorted(p for p in store.root.glob("*/*.data"))


def test_blocks_are_kubos_bytes_in_flatfs_layout(store: LocalStore) -> None:
    data = random.Random(5).randbytes(3 * CHUNK_SIZE + 11)
    cid = store.put_bytes(data)
    ref = reference_import(data)
    assert cid == ref.cid
    assert (store.root / "SHARDING").read_text() == "/repo/flatfs/shard/v1/next-to-last/2\n"
    stored = {hashlib.sha256(p.read_bytes()).digest(): p.read_bytes() for p in block_files(store)}
    assert stored == ref.blocks
    for digest in ref.blocks:
        key = block_key(digest)
        assert key.startswith("CIQ")
        assert (store.root / key[-3:-1] / f"{key}.data").is_file()
    assert list((store.root / ".tmp").iterdir()) == []


def test_identical_blocks_are_stored_once(store: LocalStore) -> None:
    data = b"\x07" * (5 * CHUNK_SIZE)  # five identical leaves
    store.put_bytes(data)
    assert len(block_files(store)) == 2  # one leaf, one root
    before = {p: p.stat().st_mtime_ns for p in block_files(store)}
    store.put_bytes(data)
    assert {p: p.stat().st_mtime_ns for p in block_files(store)} == before


def test_a_corrupt_leaf_is_detected_before_its_bytes_are_returned(store: LocalStore, tmp_path: Path) -> None:
    data = random.Random(6).randbytes(3 * CHUNK_SIZE)
    cid = store.put_bytes(data)
    second_leaf = hashlib.sha256(
        b"".join(leaf_frame(CHUNK_SIZE)[:1]) + data[CHUNK_SIZE : 2 * CHUNK_SIZE] + leaf_frame(CHUNK_SIZE)[1]
    ).digest()
    path = store.block_path(second_leaf)
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    received = bytearray()
    with pytest.raises(CorruptBlock) as caught:
        drain(store.get(cid), received)
    assert bytes(received) == data[:CHUNK_SIZE]  # the first leaf, and nothing of the bad one
    assert caught.value.reason == Reason.CID_MISMATCH
    assert caught.value.exit_code == ExitCode.MISMATCH
    assert caught.value.cid == CID(second_leaf).v0
    assert str(path) in caught.value.message
    dest = tmp_path / "out"
    with pytest.raises(CorruptBlock):
        fetch_to_file(store, cid, dest)
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_a_corrupt_root_fails_stat_and_get_at_once(store: LocalStore) -> None:
    cid = store.put_bytes(b"hello world\n")
    store.block_path(CID.parse(cid).digest).write_bytes(b"\x0a\x12\x08\x02\x12\x0cHELLO world\n\x18\x0c")
    with pytest.raises(CorruptBlock):
        store.stat(cid)
    with pytest.raises(CorruptBlock):
        store.get(cid)
    with pytest.raises(CorruptBlock):
        store.pin(cid)


def test_a_missing_inner_block_is_named(store: LocalStore) -> None:
    data = random.Random(7).randbytes(2 * CHUNK_SIZE)
    cid = store.put_bytes(data)
    leaf = next(p for p in block_files(store) if p.stat().st_size > CHUNK_SIZE)
    leaf.unlink()
    with pytest.raises(ContentNotFound) as caught:
        read_bytes(store, cid, max_bytes=len(data))
    assert "missing" in caught.value.message
    with pytest.raises(ContentNotFound):
        store.pin(cid)


def test_a_damaged_block_is_rewritten_by_the_next_put(store: LocalStore) -> None:
    data = random.Random(8).randbytes(2 * CHUNK_SIZE + 1)
    cid = store.put_bytes(data)
    victim = max(block_files(store), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[:1000])  # cut short, as after a crash without fsync
    with pytest.raises(CorruptBlock):
        read_bytes(store, cid, max_bytes=len(data))
    assert store.put_bytes(data) == cid
    assert read_bytes(store, cid, max_bytes=len(data)) == data


def test_an_interrupted_put_leaves_no_root_and_no_temporary_files(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = random.Random(9).randbytes(4 * CHUNK_SIZE)
    path = tmp_path / "f"
    path.write_bytes(data)
    real_replace = os.replace
    calls = 0

    def flaky_replace(src: str, dst: os.PathLike[str]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(OSError, match="No space"):
        store.put_file(path)
    monkeypatch.undo()
    cid = reference_import(data).cid
    assert not store.has(cid)
    assert list((store.root / ".tmp").iterdir()) == []
    assert store.put_file(path) == cid
    assert read_bytes(store, cid, max_bytes=len(data)) == data


def test_blocks_that_are_not_unixfs_files_are_malformed(store: LocalStore) -> None:
    def put_block(block: bytes) -> str:
        digest = hashlib.sha256(block).digest()
        path = store.block_path(digest)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(block)
        return CID(digest).v0

    garbage = put_block(b"\xff\xff\xff")
    with pytest.raises(MalformedDag) as caught:
        store.stat(garbage)
    assert caught.value.reason == Reason.CID_MISMATCH
    directory = put_block(b"\x0a\x02\x08\x01")  # UnixFS Type = Directory
    with pytest.raises(MalformedDag, match="not a file"):
        read_bytes(store, directory, max_bytes=10)
    leaf = reference_import(b"abc")
    leaf_digest = leaf.root.digest
    put_block(leaf.blocks[leaf_digest])
    lying = put_block(encode_branch([Link(leaf_digest, 17, 4)]))  # the leaf holds 3 bytes, not 4
    with pytest.raises(MalformedDag, match="for 4 bytes"):  # and 4 bytes are one leaf, not a branch
        read_bytes(store, lying, max_bytes=10)
    empty_child = put_block(encode_branch([Link(leaf_digest, 17, 0)]))
    with pytest.raises(MalformedDag, match="0 bytes"):
        read_bytes(store, empty_child, max_bytes=10)
    odd = reference_import(b"abcdefghij", chunk_size=4)  # valid UnixFS, other chunk size: not Kubo's DAG
    for block in odd.blocks.values():
        put_block(block)
    with pytest.raises(MalformedDag, match="Kubo's default importer") as odd_caught:
        read_bytes(store, odd.cid, max_bytes=10)
    assert odd_caught.value.reason == Reason.CID_MISMATCH
    with pytest.raises(MalformedDag):
        store.pin(odd.cid)
    huge = put_block(b"\x0a" + b"\x00" * (2 * 1024 * 1024))
    with pytest.raises(MalformedDag, match="larger than"):
        store.stat(huge)


def test_the_size_limit_is_checked_on_the_root_before_any_leaf_is_read(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger.content import ContentTooLarge

    data = random.Random(10).randbytes(3 * CHUNK_SIZE)
    cid = store.put_bytes(data)
    reads: list[bytes] = []
    real = store._read_block
    monkeypatch.setattr(store, "_read_block", lambda d, r: reads.append(d) or real(d, r))
    with pytest.raises(ContentTooLarge):
        list(store.get(cid, max_bytes=CHUNK_SIZE))
    assert reads == [CID.parse(cid).digest] * len(reads)


def test_get_streams_in_constant_memory(store: LocalStore, tmp_path: Path) -> None:
    path = tmp_path / "big"
    with open(path, "wb") as f:
        for i in range(48):
            f.write(bytes([i]) * (1024 * 1024))
    cid = store.put_file(path)
    tracemalloc.start()
    try:
        total = sum(len(c) for c in store.get(cid))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 48 * 1024 * 1024
    assert peak < 4 * 1024 * 1024


def test_pin_marks_and_stat_reports_it(store: LocalStore) -> None:
    cid = store.put_bytes(b"hello world\n")
    assert cid == HELLO_V0
    assert store.stat(cid).pinned
    (store.root / ".pins" / cid).unlink()
    assert not store.stat(cid).pinned
    store.pin(cid)
    assert store.stat(cid).pinned


def test_stale_temporaries_of_a_crashed_put_are_removed_fresh_ones_kept(tmp_path: Path) -> None:
    root = tmp_path / "blocks"
    LocalStore(root)
    stale = root / ".tmp" / "block-crashed.tmp"
    fresh = root / ".tmp" / "block-in-progress.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (0, 0))
    LocalStore(root)
    assert not stale.exists()
    assert fresh.exists()

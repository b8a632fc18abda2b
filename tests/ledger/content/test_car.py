"""CARv1 writing and bounded, verifying reading (ledger.content.car), checked against libipld's decoder."""

from __future__ import annotations

import io
import os
from pathlib import Path

import libipld
import pytest

from ledger.content.car import (
    MAX_HEADER_SIZE,
    ByteRange,
    CarError,
    CarReader,
    car_header,
    dag_blocks,
    section_prefix,
    write_car,
)
from ledger.content.dag import iter_file
from ledger.content.local_store import LocalStore
from ledger.content.multiformats import CID
from ledger.content.unixfs import CHUNK_SIZE, varint

DATA = os.urandom(3 * CHUNK_SIZE + 1000)
REPEATED = bytes(3 * CHUNK_SIZE) + b"tail"  # three identical leaves, stored once


def _store(tmp_path: Path, data: bytes) -> tuple[LocalStore, bytes]:
    store = LocalStore(tmp_path / "blocks")
    return store, CID.parse(store.put_bytes(data)).digest


def _car(store: LocalStore, root: bytes, **kw: object) -> bytes:
    def read(digest: bytes) -> bytes:
        return store._read_block(digest, root)

    blocks = dag_blocks(root, read(root), read, **kw)  # type: ignore[arg-type]
    return b"".join(bytes(p) for p in write_car(CID(root).multihash, blocks))


def _reader(data: bytes, **kw: int) -> CarReader:
    return CarReader(io.BytesIO(data), **kw)


def _drain(reader: CarReader) -> None:
    while reader.peek() is not None:
        reader.take()


def test_header_is_the_dag_cbor_libipld_reads() -> None:
    root = CID.parse("QmS74RSyLP3sHiSGPBXkgzJhRDsjq17XdxWdmLhArU2uUW")
    raw = car_header(root.multihash)
    assert raw[0] == len(raw) - 1
    assert libipld.decode_dag_cbor(raw[1:]) == {"roots": [root.multihash], "version": 1}


def test_a_written_car_reads_back_block_by_block_and_walks_to_the_file(tmp_path: Path) -> None:
    store, root = _store(tmp_path, DATA)
    car = _car(store, root)
    reader = _reader(car)
    assert reader.header() == [CID(root).multihash]

    def read_block(digest: bytes) -> bytes:
        section = reader.peek()
        assert section is not None
        assert section.digest == digest
        reader.take()
        return section.block  # type: ignore[return-value]

    # list() keeps every view alive at once: the reader must not reuse a buffer they point into
    chunks = list(iter_file(root, read_block))
    assert b"".join(chunks) == DATA
    assert reader.peek() is None


def test_views_survive_many_segments(tmp_path: Path) -> None:
    data = os.urandom(20 * CHUNK_SIZE + 5)
    store, root = _store(tmp_path, data)
    reader = _reader(_car(store, root))
    reader.header()
    blocks = []
    while (section := reader.peek()) is not None:
        reader.take()
        blocks.append((section.digest, section.block))
    assert reader.bytes_read > 2 * 2 * 1024 * 1024  # went through several 2 MiB segments
    for digest, block in blocks:
        assert store._read_block(digest, root) == block


def test_dups_scope_and_entity_bytes(tmp_path: Path) -> None:
    store, root = _store(tmp_path, REPEATED)

    def read(digest: bytes) -> bytes:
        return store._read_block(digest, root)

    once = [d for d, _ in dag_blocks(root, read(root), read)]
    every = [d for d, _ in dag_blocks(root, read(root), read, dups=True)]
    assert len(once) == 3  # root, the zero leaf, the tail leaf
    assert len(every) == 5
    assert every[1] == every[2] == every[3]
    assert [d for d, _ in dag_blocks(root, read(root), read, scope="block")] == [root]
    tail = ByteRange.parse("-4:*", len(REPEATED))
    assert [d for d, _ in dag_blocks(root, read(root), read, byte_range=tail)] == [root, every[4]]
    middle = ByteRange.parse(f"{CHUNK_SIZE}:{CHUNK_SIZE}", len(REPEATED))
    assert [d for d, _ in dag_blocks(root, read(root), read, byte_range=middle, dups=True)] == [
        root,
        every[2],
    ]
    assert ByteRange.parse(f"{len(REPEATED)}:*", len(REPEATED)) is None  # past the end: the root alone
    with pytest.raises(ValueError):
        ByteRange.parse("nonsense", 10)


def test_a_truncated_car_is_an_error_a_clean_end_is_not(tmp_path: Path) -> None:
    store, root = _store(tmp_path, DATA)
    car = _car(store, root)
    header_len = len(car_header(CID(root).multihash))
    reader = _reader(car[:-100])
    reader.header()
    with pytest.raises(CarError, match="truncated"):
        _drain(reader)
    reader = _reader(car[:header_len])
    reader.header()
    assert reader.peek() is None


def test_a_block_that_is_not_its_cids_bytes_is_refused(tmp_path: Path) -> None:
    store, root = _store(tmp_path, DATA)
    car = bytearray(_car(store, root))
    car[-10] ^= 1
    reader = _reader(bytes(car))
    reader.header()
    with pytest.raises(CarError, match="does not hash"):
        _drain(reader)


def test_bounds_are_checked_before_the_bytes_are_read() -> None:
    root = CID.parse("QmS74RSyLP3sHiSGPBXkgzJhRDsjq17XdxWdmLhArU2uUW").multihash
    huge = car_header(root) + varint(50 * 1024 * 1024) + root
    reader = _reader(huge)
    reader.header()
    with pytest.raises(CarError, match="a block is at most"):
        reader.peek()
    with pytest.raises(CarError, match="header of"):
        _reader(varint(MAX_HEADER_SIZE + 1) + b"\xa0" * 10).header()
    body = libipld.encode_dag_cbor({"roots": [], "version": 2})
    with pytest.raises(CarError, match="version must be 1"):
        _reader(varint(len(body)) + body).header()
    with pytest.raises(CarError, match="not DAG-CBOR"):
        _reader(varint(3) + b"\xff\xff\xff").header()


def test_blocks_of_other_codecs_are_refused() -> None:
    root = CID.parse("QmS74RSyLP3sHiSGPBXkgzJhRDsjq17XdxWdmLhArU2uUW")
    raw_leaf_cid = bytes([0x01, 0x55]) + root.multihash  # bafk…: a raw-leaves block, not a meshprov file's
    car = car_header(root.multihash) + section_prefix(raw_leaf_cid, 3) + b"abc"
    reader = _reader(car)
    reader.header()
    with pytest.raises(CarError, match="codec 0x55"):
        reader.peek()
    junk = car_header(root.multihash) + varint(40) + b"\x07" * 40
    reader = _reader(junk)
    reader.header()
    with pytest.raises(CarError, match="CID"):
        reader.peek()


def test_a_cidv1_section_is_read_like_a_cidv0_one(tmp_path: Path) -> None:
    store, root = _store(tmp_path, b"small file")
    block = store._read_block(root, root)
    v1 = bytes([0x01, 0x70]) + CID(root).multihash
    reader = _reader(car_header(v1) + section_prefix(v1, len(block)) + block)
    assert reader.header() == [v1]
    section = reader.peek()
    assert section is not None
    assert section.digest == root
    assert bytes(section.block) == block

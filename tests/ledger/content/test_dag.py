"""The DAG walker proves Kubo's default layout: a verified walk from a digest yields exactly the file whose Kubo
CID that digest is, and any other DAG (even a valid one with the right bytes) is refused."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.content import MalformedDag
from ledger.content.dag import KuboLayout, iter_file
from ledger.content.multiformats import CIDV1_PREFIX
from ledger.content.unixfs import CHUNK_SIZE, MAX_LINKS, Link, encode_branch, import_bytes, leaf_frame
from ledger.reasons import Reason
from tests.support.unixfs_reference import pb_bytes, pb_uint, reference_import, unixfs_file

Blocks = dict[bytes, bytes]


def put(data: bytes, *, chunk_size: int = CHUNK_SIZE, max_links: int = MAX_LINKS) -> tuple[bytes, Blocks]:
    blocks: Blocks = {}

    def sink(digest: bytes, parts: object) -> None:
        blocks[digest] = b"".join(bytes(p) for p in parts)  # type: ignore[attr-defined]

    return import_bytes(data, on_block=sink, chunk_size=chunk_size, max_links=max_links).digest, blocks


def reader(blocks: Blocks) -> Callable[[bytes], bytes]:
    def read(digest: bytes) -> bytes:
        block = blocks[digest]
        assert hashlib.sha256(block).digest() == digest  # what a store does before handing a block over
        return block

    return read


def walk(root: bytes, blocks: Blocks, **shape: int) -> bytes:
    return b"".join(bytes(c) for c in iter_file(root, reader(blocks), **shape))


def add(blocks: Blocks, block: bytes) -> bytes:
    digest = hashlib.sha256(block).digest()
    blocks[digest] = block
    return digest


@settings(max_examples=300, deadline=None)
@given(chunk_size=st.integers(1, 5), max_links=st.integers(2, 4), data=st.data())
def test_every_default_shape_is_read_back_and_other_shapes_are_refused(
    chunk_size: int, max_links: int, data: st.DataObject
) -> None:
    # Small chunks and fan-out reach 3-4 levels in a few hundred bytes: every level boundary is walked.
    levels = data.draw(st.integers(0, 4))
    boundary = chunk_size * max_links**levels
    size = max(0, boundary + data.draw(st.integers(-chunk_size - 1, chunk_size + 1)))
    content = data.draw(st.binary(min_size=size, max_size=size))
    root, blocks = put(content, chunk_size=chunk_size, max_links=max_links)
    assert walk(root, blocks, chunk_size=chunk_size, max_links=max_links) == content
    for other in (
        {"chunk_size": chunk_size + 1, "max_links": max_links},
        {"chunk_size": chunk_size, "max_links": max_links + 1},
    ):
        expected = reference_import(content, **other)
        if expected.root.digest == root:
            continue  # small files have the same DAG under both settings
        with pytest.raises(MalformedDag):
            walk(root, blocks, **other)


@pytest.mark.parametrize(
    ("size", "leaves", "height"),
    [
        (0, 1, 0),
        (1, 1, 0),
        (CHUNK_SIZE, 1, 0),
        (CHUNK_SIZE + 1, 2, 1),
        (174 * CHUNK_SIZE, 174, 1),
        (174 * CHUNK_SIZE + 1, 175, 2),
    ],
)
def test_the_layout_of_a_size(size: int, leaves: int, height: int) -> None:
    layout = KuboLayout.of(size)
    assert (layout.leaves, layout.height) == (leaves, height)
    if height == 2:
        assert layout.children(0, 2) == [(0, 174 * CHUNK_SIZE), (174, 1)]  # docs/content.md: 174 leaves + 1


def test_a_dag_with_another_chunk_size_is_refused_with_the_cid_mismatch_reason() -> None:
    content = random.Random(1).randbytes(3000)
    root, blocks = put(content, chunk_size=256)  # a valid UnixFS DAG of these bytes, not Kubo's default one
    with pytest.raises(MalformedDag, match="Kubo's default importer") as caught:
        walk(root, blocks)
    assert caught.value.reason is Reason.CID_MISMATCH


def test_a_dag_with_a_wider_fan_out_is_refused_before_any_byte_is_yielded() -> None:
    content = random.Random(2).randbytes(5 * 4)
    root, blocks = put(content, chunk_size=4, max_links=8)  # one branch of 5 leaves where 4 links are allowed
    got = iter_file(root, reader(blocks), chunk_size=4, max_links=4)
    with pytest.raises(MalformedDag, match="where"):
        next(got)


def test_a_trickle_like_unbalanced_dag_is_refused() -> None:
    # Three leaves of 4 bytes, the third one level deeper than the others: the right bytes, the wrong shape.
    chunks = [b"aaaa", b"bbbb", b"cccc"]
    blocks: Blocks = {}
    leaves = [Link(add(blocks, leaf_frame(4)[0] + c + leaf_frame(4)[1]), 4 + 8, 4) for c in chunks]
    inner = encode_branch([leaves[2]])
    deep = Link(add(blocks, inner), len(inner) + leaves[2].tsize, 4)
    root = add(blocks, encode_branch([leaves[0], leaves[1], deep]))
    with pytest.raises(MalformedDag):
        walk(root, blocks, chunk_size=4, max_links=4)


def test_branch_encodings_kubo_does_not_write_are_refused() -> None:
    content = random.Random(3).randbytes(2 * 8 + 3)
    root, blocks = put(content, chunk_size=8)
    links = _links(blocks[root])
    sizes = [8, 8, 3]

    def branch(cid_prefix: bytes, unixfs_first: bool = False) -> bytes:
        body = [pb_bytes(2, pb_bytes(1, cid_prefix + d) + pb_bytes(2, b"") + pb_uint(3, t)) for d, t in links]
        data = pb_bytes(1, unixfs_file(None, sizes))
        return data + b"".join(body) if unixfs_first else b"".join(body) + data

    assert branch(b"\x12\x20") == blocks[root]  # Kubo's bytes, built field by field
    # Links named by CIDv1, or the fields in another order: the same tree, but not the bytes Kubo writes.
    for other in (branch(CIDV1_PREFIX), branch(b"\x12\x20", unixfs_first=True)):
        with pytest.raises(MalformedDag, match="not encoded as Kubo"):
            walk(add(blocks, other), blocks, chunk_size=8)


def test_kubo_branches_are_read_without_a_protobuf_decode_and_other_bytes_still_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ledger.content.dag as dag

    content = random.Random(5).randbytes(9 * 8 + 5)
    root, blocks = put(content, chunk_size=8, max_links=4)  # three levels of branches
    links = _links(blocks[root])
    decoded: list[bytes] = []
    real = dag.decode_file_node

    def counting(block: bytes | bytearray, cid: str = "?") -> dag.FileNode:
        decoded.append(bytes(block))
        return real(block, cid)

    monkeypatch.setattr(dag, "decode_file_node", counting)
    assert walk(root, blocks, chunk_size=8, max_links=4) == content
    assert decoded == [blocks[root]]  # the root's size is read from it; every branch below by the fast path
    sizes = [32, 32, 13]

    def branch(body: Callable[[bytes, int], bytes]) -> bytes:
        return b"".join(pb_bytes(2, body(d, t)) for d, t in links) + pb_bytes(1, unixfs_file(None, sizes))

    def kubo(d: bytes, t: int) -> bytes:
        return pb_bytes(1, b"\x12\x20" + d) + pb_bytes(2, b"") + pb_uint(3, t)

    assert branch(kubo) == blocks[root]
    others = (
        branch(lambda d, t: kubo(d, t)[:-1] + bytes([kubo(d, t)[-1] | 0x80]) + b"\x00"),  # Tsize padded
        branch(lambda d, t: pb_bytes(1, b"\x12\x20" + d) + pb_bytes(2, b"x") + pb_uint(3, t)),  # a name
        branch(lambda d, t: pb_bytes(1, b"\x12\x20" + d) + pb_uint(3, t)),  # no Name field
        blocks[root] + b"\x00",  # a byte after Kubo's
    )
    for other in others:
        decoded.clear()
        with pytest.raises(MalformedDag):
            walk(add(blocks, other), blocks, chunk_size=8, max_links=4)
        assert decoded  # refused by the full decode's checks, as before


def test_a_wrong_cumulative_size_is_refused() -> None:
    content = random.Random(4).randbytes(3 * 8)
    root, blocks = put(content, chunk_size=8)
    node_links = [Link(d, t, 8) for d, t in _links(blocks[root])]
    lying = [Link(node_links[0].digest, node_links[0].tsize + 1, 8), *node_links[1:]]
    with pytest.raises(MalformedDag, match="cumulative size"):
        walk(add(blocks, encode_branch(lying)), blocks, chunk_size=8)
    # One level up: the root of a two-level tree misstates the size of a branch below it.
    deep_root, deep = put(content, chunk_size=4, max_links=2)
    top = [Link(d, t, size) for (d, t), size in zip(_links(deep[deep_root]), [16, 8], strict=True)]
    assert encode_branch(top) == deep[deep_root]
    misstated = [top[0], Link(top[1].digest, top[1].tsize - 1, top[1].filesize)]
    with pytest.raises(MalformedDag, match="cumulative size"):
        walk(add(deep, encode_branch(misstated)), deep, chunk_size=4, max_links=2)


def test_a_leaf_with_a_field_kubo_does_not_write_is_refused() -> None:
    blocks: Blocks = {}
    prefix, suffix = leaf_frame(3)
    canonical = prefix + b"abc" + suffix
    assert walk(add(blocks, canonical), blocks) == b"abc"
    # filesize written as a two-byte varint: decodes to the same node, hashes to another CID.
    padded = b"\x0a\x0a\x08\x02\x12\x03abc\x18\x83\x00"
    with pytest.raises(MalformedDag, match="not the 3-byte leaf"):
        walk(add(blocks, padded), blocks)


def _links(branch: bytes) -> list[tuple[bytes, int]]:
    from ledger.content.dag import decode_file_node

    node = decode_file_node(branch)
    return [(link.digest, link.tsize or 0) for link in node.links]

"""Reading UnixFS file DAGs back: decode dag-pb nodes and walk a file's leaves in order.

Only what Kubo's default importer writes is accepted (dag-pb nodes, sha2-256 links, UnixFS ``File`` data); every
length is bounded and checked against the parent's record of it before any data is returned, so a hostile or
damaged DAG yields a :class:`~ledger.content.errors.MalformedDag`, never a crash or an unbounded read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ledger.content.errors import ContentTooLarge, MalformedDag
from ledger.content.multiformats import CID, CIDV1_PREFIX, MULTIHASH_PREFIX

# Kubo refuses to exchange blocks over 1 MiB; ours are at most a chunk plus a few bytes of framing.
MAX_BLOCK_SIZE = 1024 * 1024 + 1024
# 174**8 chunks of 256 KiB is far beyond any file; a deeper DAG is a cycle or an attack.
MAX_DEPTH = 8

_UNIXFS_RAW = 0
_UNIXFS_FILE = 2

BlockReader = Callable[[bytes], bytes]
"""Returns the verified bytes of the block with this sha-256 digest (raising if absent or corrupt)."""


@dataclass(frozen=True, slots=True)
class PBLink:
    digest: bytes
    tsize: int | None


@dataclass(frozen=True, slots=True)
class FileNode:
    """A decoded UnixFS file node: its links, the data it holds itself, and its recorded sizes."""

    links: tuple[PBLink, ...]
    data: memoryview
    filesize: int
    blocksizes: tuple[int, ...]


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= end:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value >= 1 << 64:
                raise ValueError("varint over 64 bits")
            return value, pos
    raise ValueError("varint too long")


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int | memoryview]]:
    """Protobuf fields of ``buf[start:end]`` as (number, value): an int for varints, a view for bytes fields."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield number, value
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if length > end - pos:
                raise ValueError("field runs past the end of the block")
            yield number, buf[pos : pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("field runs past the end of the block")


def _link(body: memoryview) -> PBLink:
    digest: bytes | None = None
    tsize: int | None = None
    for number, value in _fields(body, 0, len(body)):
        if number == 1 and isinstance(value, memoryview):
            raw = bytes(value)
            if len(raw) == 34 and raw[:2] == MULTIHASH_PREFIX:
                digest = raw[2:]
            elif len(raw) == 36 and raw[:4] == CIDV1_PREFIX:
                digest = raw[4:]
            else:
                raise ValueError(
                    "link is not a dag-pb sha2-256 CID (raw leaves and other hashes are not read)"
                )
        elif number == 3 and isinstance(value, int):
            tsize = value
    if digest is None:
        raise ValueError("link without a hash")
    return PBLink(digest, tsize)


def decode_file_node(block: bytes, cid: str = "?") -> FileNode:
    """Decode a dag-pb block holding a UnixFS file (or raw) node; :class:`MalformedDag` otherwise."""
    buf = memoryview(block)
    links: list[PBLink] = []
    unixfs: memoryview | None = None
    try:
        for number, value in _fields(buf, 0, len(buf)):
            if number == 2 and isinstance(value, memoryview):
                links.append(_link(value))
            elif number == 1 and isinstance(value, memoryview):
                unixfs = value
            else:
                raise ValueError(f"unexpected dag-pb field {number}")
        if unixfs is None:
            raise ValueError("no UnixFS data")
        kind: int | None = None
        data = memoryview(b"")
        filesize: int | None = None
        blocksizes: list[int] = []
        for number, value in _fields(unixfs, 0, len(unixfs)):
            if number == 1 and isinstance(value, int):
                kind = value
            elif number == 2 and isinstance(value, memoryview):
                data = value
            elif number == 3 and isinstance(value, int):
                filesize = value
            elif number == 4 and isinstance(value, int):
                blocksizes.append(value)
        if kind not in (_UNIXFS_FILE, _UNIXFS_RAW):
            raise ValueError(f"UnixFS type {kind} is not a file")
    except ValueError as exc:
        raise MalformedDag(cid, str(exc)) from None
    if len(blocksizes) != len(links):
        raise MalformedDag(cid, f"{len(links)} links but {len(blocksizes)} block sizes")
    if 0 in blocksizes:
        # Kubo never links an empty child; allowing it would let a tiny file fan out to endless empty blocks.
        raise MalformedDag(cid, "a link to a child of 0 bytes")
    total = len(data) + sum(blocksizes)
    if filesize is None:
        filesize = total
    if filesize != total:
        raise MalformedDag(cid, f"filesize {filesize} but data and children hold {total} bytes")
    return FileNode(tuple(links), data, filesize, tuple(blocksizes))


def iter_file(
    root: bytes, read_block: BlockReader, *, max_bytes: int | None = None, store: str = "store"
) -> Iterator[memoryview]:
    """Yield a file's bytes in order by walking its DAG from ``root`` (a digest), one block in memory at a time.

    Each child must hold exactly the bytes its parent records for it, and the total must be at most
    ``max_bytes`` (checked on the root before any content is read).
    """
    root_cid = CID(root).v0
    node = decode_file_node(read_block(root), root_cid)
    if max_bytes is not None and node.filesize > max_bytes:
        raise ContentTooLarge(root_cid, max_bytes, node.filesize)
    yield from _walk(node, root_cid, read_block, depth=0)


def _walk(node: FileNode, cid: str, read_block: BlockReader, depth: int) -> Iterator[memoryview]:
    if len(node.data):
        yield node.data
    if node.links and depth >= MAX_DEPTH:
        raise MalformedDag(cid, f"deeper than {MAX_DEPTH} levels")
    for link, expected in zip(node.links, node.blocksizes, strict=True):
        child_cid = CID(link.digest).v0
        child = decode_file_node(read_block(link.digest), child_cid)
        if child.filesize != expected:
            raise MalformedDag(
                cid, f"child {child_cid} holds {child.filesize} bytes, parent records {expected}"
            )
        yield from _walk(child, child_cid, read_block, depth + 1)

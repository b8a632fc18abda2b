"""Reading UnixFS file DAGs back: decode dag-pb nodes and walk a file's leaves in order.

Only what Kubo's default importer writes is accepted: the walk checks that the DAG is, block for block, the one
stock Kubo builds for a file of the root's size (dag-pb leaves of 262144 bytes, balanced layout, at most 174
links per node, Kubo's exact encoding, every recorded size right). With the block reader verifying each block's
hash, a walk from a digest proves the bytes yielded are the file whose Kubo CID that digest is. Everything is
checked before the data that depends on it is returned, so a hostile or damaged DAG (or a valid DAG built with
other settings) yields a :class:`~ledger.content.errors.MalformedDag`, never a crash or an unbounded read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ledger.content.errors import ContentTooLarge, MalformedDag
from ledger.content.multiformats import CID, CIDV1_PREFIX, MULTIHASH_PREFIX
from ledger.content.unixfs import CHUNK_SIZE, MAX_LINKS, Link, encode_branch, leaf_frame

# Kubo refuses to exchange blocks over 1 MiB; ours are at most a chunk plus a few bytes of framing.
MAX_BLOCK_SIZE = 1024 * 1024 + 1024

_UNIXFS_RAW = 0
_UNIXFS_FILE = 2

BlockReader = Callable[[bytes], bytes | bytearray]
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


def decode_file_node(block: bytes | bytearray, cid: str = "?") -> FileNode:
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
    root: bytes,
    read_block: BlockReader,
    *,
    max_bytes: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    max_links: int = MAX_LINKS,
) -> Iterator[memoryview]:
    """Yield a file's bytes in order by walking its DAG from ``root`` (a digest), one block in memory at a time.

    The DAG must be exactly the one Kubo's default importer builds for a file of the root's ``filesize``
    (:class:`KuboLayout`): ``read_block`` verifies each block's hash once, as it is read, and the walk checks
    every block's bytes and place in the tree, so the bytes yielded are proven to have the Kubo CID ``root``
    with no second hashing pass. The size is checked against ``max_bytes`` on the root, before any content.
    ``chunk_size`` and ``max_links`` are Kubo's defaults; other values exist to test the tree's shape.
    """
    root_cid = CID(root).v0
    block = read_block(root)
    node = decode_file_node(block, root_cid)
    if max_bytes is not None and node.filesize > max_bytes:
        raise ContentTooLarge(root_cid, max_bytes, node.filesize)
    layout = KuboLayout.of(node.filesize, chunk_size=chunk_size, max_links=max_links)
    yield from _walk(block, root, read_block, layout, first=0, height=layout.height, tsize=None)


@dataclass(frozen=True, slots=True)
class KuboLayout:
    """The shape of the DAG Kubo's default importer builds for a file of ``size`` bytes.

    ``leaves`` leaves (the empty file is one empty leaf), all of ``chunk_size`` bytes but the last; every leaf
    ``height`` levels below the root, the smallest height at which ``max_links ** height`` leaves fit (a file of
    one chunk is that leaf); each branch filled left to right: a branch at height ``h`` covers the next
    ``max_links ** h`` leaves (fewer only on the right edge) with one child per ``max_links ** (h - 1)``.
    """

    size: int
    leaves: int
    height: int
    chunk_size: int = CHUNK_SIZE
    max_links: int = MAX_LINKS

    @classmethod
    def of(cls, size: int, *, chunk_size: int = CHUNK_SIZE, max_links: int = MAX_LINKS) -> KuboLayout:
        leaves = max(1, -(-size // chunk_size))
        height, capacity = 0, 1
        while capacity < leaves:  # size < 2**64: at most 6 levels with Kubo's defaults
            height += 1
            capacity *= max_links
        return cls(size, leaves, height, chunk_size, max_links)

    def leaf_size(self, index: int) -> int:
        return self.chunk_size if index < self.leaves - 1 else self.size - (self.leaves - 1) * self.chunk_size

    def children(self, first: int, height: int) -> list[tuple[int, int]]:
        """(first leaf, file bytes) of each child of the branch at ``height`` whose first leaf is ``first``."""
        span = self.max_links ** (height - 1)
        end = min(first + span * self.max_links, self.leaves)
        return [(a, self._bytes(a, min(a + span, end))) for a in range(first, end, span)]

    def _bytes(self, first: int, end: int) -> int:
        return min(end * self.chunk_size, self.size) - first * self.chunk_size


_FULL_LEAF = leaf_frame(CHUNK_SIZE)


def _walk(
    block: bytes | bytearray,
    digest: bytes,
    read_block: BlockReader,
    layout: KuboLayout,
    *,
    first: int,
    height: int,
    tsize: int | None,
) -> Iterator[memoryview]:
    """Check ``block`` is the node Kubo writes at this place (``tsize``: what its parent records), then yield
    its bytes: a leaf's data, or its children's, in order."""
    if height == 0:
        size = layout.leaf_size(first)
        prefix, suffix = _FULL_LEAF if size == CHUNK_SIZE else leaf_frame(size)
        end = len(prefix) + size
        if len(block) != end + len(suffix) or block[: len(prefix)] != prefix or block[end:] != suffix:
            raise MalformedDag(
                _cid(digest), _not_default(f"leaf {first} is not the {size}-byte leaf", layout)
            )
        if tsize is not None and tsize != len(block):
            raise MalformedDag(
                _cid(digest), _not_default(f"its parent records a cumulative size of {tsize}", layout)
            )
        if size:
            yield memoryview(block)[len(prefix) : end]
        return
    expected = layout.children(first, height)
    links = _kubo_links(block, expected)
    cid = ""  # named only for an error: a string per branch is measurable next to the fast path
    if (
        links is None
    ):  # not byte for byte Kubo's branch: decode it to say what is wrong (or accept it, if equal)
        cid = _cid(digest)
        node = decode_file_node(block, cid)
        if len(node.data) or node.blocksizes != tuple(size for _, size in expected):
            raise MalformedDag(
                cid,
                _not_default(
                    f"a node at height {height} holding {len(node.data)} bytes and children of "
                    f"{_sizes(node.blocksizes)} bytes, where {_sizes([s for _, s in expected])} belong",
                    layout,
                ),
            )
        links = [
            Link(link.digest, link.tsize or 0, size)
            for link, (_, size) in zip(node.links, expected, strict=True)
        ]
        if encode_branch(links) != block:
            raise MalformedDag(cid, _not_default("a branch not encoded as Kubo encodes it", layout))
    if tsize is not None and tsize != len(block) + sum(link.tsize for link in links):
        raise MalformedDag(
            cid or _cid(digest), _not_default(f"its parent records a cumulative size of {tsize}", layout)
        )
    for link, (child_first, _) in zip(links, expected, strict=True):
        yield from _walk(
            read_block(link.digest),
            link.digest,
            read_block,
            layout,
            first=child_first,
            height=height - 1,
            tsize=link.tsize,
        )


_LINK_HEAD = b"\x0a\x22\x12\x20"  # a link's Hash field: 34 bytes of sha2-256 multihash
_LINK_MID = b"\x12\x00\x18"  # its empty Name, then its Tsize varint


def _kubo_links(block: bytes | bytearray, expected: Sequence[tuple[int, int]]) -> list[Link] | None:
    """The links of ``block`` read as Kubo encodes a branch with these children, without a protobuf decode;
    None unless ``block`` is exactly ``encode_branch`` of them (then the slow path says what is wrong).

    Only digests and Tsizes are read from the block; the result is accepted only if re-encoding it with the
    expected file sizes gives back every byte of ``block``, the same condition the full decode ends with."""
    links: list[Link] = []
    pos = 0
    end = len(block)
    try:
        for _, size in expected:
            length = block[pos + 1]  # a link body is at most 49 bytes: one length byte
            if block[pos] != 0x12 or length > 0x7F or block[pos + 2 : pos + 6] != _LINK_HEAD:
                return None
            stop = pos + 2 + length
            if stop > end or block[pos + 38 : pos + 41] != _LINK_MID:
                return None
            tsize = 0
            shift = 0
            for byte in block[pos + 41 : stop]:
                tsize |= (byte & 0x7F) << shift
                shift += 7
            links.append(Link(bytes(block[pos + 6 : pos + 38]), tsize, size))
            pos = stop
    except IndexError:
        return None
    return links if encode_branch(links) == block else None


def _cid(digest: bytes) -> str:
    return CID(digest).v0


def _not_default(problem: str, layout: KuboLayout) -> str:
    return (
        f"not the DAG Kubo's default importer builds for {layout.size} bytes ({layout.leaves} chunks of "
        f"{layout.chunk_size}, at most {layout.max_links} links per node): {problem}"
    )


def _sizes(sizes: Sequence[int], most: int = 4) -> str:
    shown = ", ".join(str(s) for s in sizes[:most])
    return f"[{shown}{', …' if len(sizes) > most else ''}] ({len(sizes)})"

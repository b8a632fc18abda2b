"""The UnixFS file importer, byte-for-byte what stock Kubo's ``ipfs add`` does with its defaults.

Kubo's defaults (``--cid-version=0``): a fixed-size chunker of 262144 bytes; every chunk wrapped in a dag-pb
leaf whose UnixFS ``Data`` is ``{Type: File, Data: chunk, filesize: len(chunk)}`` (not raw leaves); leaves joined
by the balanced layout into dag-pb nodes of at most 174 links, every leaf at the same depth; a file of one chunk
is that single leaf, and the empty file is a leaf without data. Each link carries the child's cumulative block
size (``Tsize``) and an empty name; each branch records its children's file sizes in ``blocksizes``.

The importer works in constant memory: it keeps one pending list of links per tree level (at most 174 each) and a
bounded window of chunk buffers. Hashing the leaves dominates; ``hashlib`` and ``os.preadv`` release the GIL on
large buffers, so with ``workers > 1`` a thread pool reads and hashes a window of 4 MiB batches in parallel while
the main thread assembles the tree in order.

Blocks are handed to an optional ``on_block(digest, parts)`` sink as a tuple of buffers (prefix, chunk, suffix
for leaves) so a store can write them without joining them; leaves come before their parent and the root last.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ledger.content.multiformats import CID

CHUNK_SIZE = 262144
MAX_LINKS = 174
# Chunks per unit of work handed to a hashing thread: large enough that the pool's overhead is noise next to
# hashing 4 MiB, small enough that the read-ahead window stays a few tens of MiB.
BATCH_CHUNKS = 16

Buffer = bytes | bytearray | memoryview
BlockSink = Callable[[bytes, Sequence[Buffer]], None]
Progress = Callable[[int], None]


class Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


def varint(n: int) -> bytes:
    """Protobuf unsigned varint."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Link:
    """A child of a dag-pb node: its digest, its cumulative block size (``Tsize``) and its file bytes."""

    digest: bytes
    tsize: int
    filesize: int


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What importing a file produced: the root and the file's size."""

    digest: bytes
    size: int
    dag_size: int
    blocks: int

    @property
    def cid(self) -> str:
        """The CIDv0, exactly what ``ipfs add --only-hash -Q`` prints."""
        return CID(self.digest).v0

    @property
    def cid_v1(self) -> str:
        return CID(self.digest).v1


def leaf_frame(size: int) -> tuple[bytes, bytes]:
    """The bytes before and after a chunk of ``size`` bytes in its dag-pb leaf block."""
    if size == 0:
        # Kubo's empty file: UnixFS {Type: File, filesize: 0} with no Data field at all.
        unixfs = b"\x08\x02\x18\x00"
        return b"\x0a" + varint(len(unixfs)) + unixfs, b""
    head = b"\x08\x02\x12" + varint(size)
    tail = b"\x18" + varint(size)
    return b"\x0a" + varint(len(head) + size + len(tail)) + head, tail


_FULL_FRAME = leaf_frame(CHUNK_SIZE)


def _frame(size: int) -> tuple[bytes, bytes]:
    return _FULL_FRAME if size == CHUNK_SIZE else leaf_frame(size)


def encode_leaf(chunk: Buffer) -> bytes:
    """The whole dag-pb leaf block for one chunk (for tests and small data; the importer never joins)."""
    prefix, suffix = leaf_frame(len(chunk))
    return prefix + bytes(chunk) + suffix


def encode_branch(children: Sequence[Link]) -> bytes:
    """A dag-pb node linking ``children`` in order, with UnixFS ``{Type: File, filesize, blocksizes}``."""
    parts = []
    for child in children:
        body = b"\x0a\x22\x12\x20" + child.digest + b"\x12\x00\x18" + varint(child.tsize)
        parts.append(b"\x12" + varint(len(body)) + body)
    filesize = sum(c.filesize for c in children)
    unixfs = b"\x08\x02\x18" + varint(filesize) + b"".join(b"\x20" + varint(c.filesize) for c in children)
    parts.append(b"\x0a" + varint(len(unixfs)) + unixfs)
    return b"".join(parts)


class DagBuilder:
    """Joins leaves into Kubo's balanced layout as they arrive, holding at most 174 links per level.

    A level is closed into a branch only when one more link arrives for it (or at :meth:`finish`), so a level
    that holds exactly 174 links at the end becomes the root rather than the only child of another node.
    """

    def __init__(self, on_block: BlockSink | None = None, *, max_links: int = MAX_LINKS) -> None:
        if max_links < 2:
            raise ValueError(f"max_links must be at least 2, got {max_links}")
        self._levels: list[list[Link]] = [[]]
        self._max_links = max_links
        self._on_block = on_block
        self.blocks = 0
        self.leaves = 0

    def add_leaf(self, link: Link) -> None:
        self.leaves += 1
        self.blocks += 1
        self._push(0, link)

    def _push(self, level: int, link: Link) -> None:
        if level == len(self._levels):
            self._levels.append([])
        pending = self._levels[level]
        if len(pending) == self._max_links:
            self._levels[level] = []
            self._push(level + 1, self._branch(pending))
            pending = self._levels[level]
        pending.append(link)

    def _branch(self, children: Sequence[Link]) -> Link:
        block = encode_branch(children)
        digest = hashlib.sha256(block).digest()
        if self._on_block is not None:
            self._on_block(digest, (block,))
        self.blocks += 1
        return Link(digest, len(block) + sum(c.tsize for c in children), sum(c.filesize for c in children))

    def finish(self) -> Link:
        """Close every level and return the root (the empty leaf when no leaf was added)."""
        if self.leaves == 0:
            prefix, suffix = leaf_frame(0)
            digest = hashlib.sha256(prefix + suffix).digest()
            if self._on_block is not None:
                self._on_block(digest, (prefix, suffix))
            self.blocks += 1
            return Link(digest, len(prefix) + len(suffix), 0)
        level = 0
        while True:
            pending = self._levels[level]
            top = level == len(self._levels) - 1
            if top and len(pending) == 1:
                return pending[0]
            self._levels[level] = []
            self._push(level + 1, self._branch(pending))
            level += 1


def _hash_leaves(view: memoryview, length: int, chunk_size: int) -> list[tuple[bytes, int]]:
    """Digest and chunk size of each leaf in ``view[:length]`` (runs in a worker thread; hashlib drops the GIL)."""
    out = []
    sha256 = hashlib.sha256
    for offset in range(0, length, chunk_size):
        size = min(chunk_size, length - offset)
        prefix, suffix = _frame(size)
        h = sha256(prefix)
        h.update(view[offset : offset + size])
        h.update(suffix)
        out.append((h.digest(), size))
    return out


def _hashed(length: int, view: memoryview, chunk_size: int) -> tuple[int, list[tuple[bytes, int]]]:
    return length, _hash_leaves(view, length, chunk_size)


def _pread_and_hash(
    fd: int, offset: int, view: memoryview, chunk_size: int
) -> tuple[int, list[tuple[bytes, int]]]:
    """Read the batch at ``offset`` of a file (os.preadv drops the GIL) and hash its leaves."""
    filled = 0
    while filled < len(view):
        n = os.preadv(fd, [view[filled:]], offset + filled)
        if not n:
            break
        filled += n
    return filled, _hash_leaves(view, filled, chunk_size)


def _positional(stream: Readable) -> tuple[int | None, int]:
    """The descriptor and position of a regular file that can be read at offsets, else (None, 0)."""
    fileno = getattr(stream, "fileno", None)
    tell = getattr(stream, "tell", None)
    if fileno is None or tell is None or getattr(stream, "seekable", lambda: False)() is False:
        return None, 0
    try:
        fd = fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, 0
        if isinstance(stream, io.BufferedIOBase):
            return None, 0  # its buffer may hold bytes already read ahead of the descriptor's position
        return fd, int(tell())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None, 0


def _read_full(stream: Readable, view: memoryview) -> int:
    """Fill ``view`` from ``stream``; fewer bytes only at end of stream."""
    filled = 0
    while filled < len(view):
        n = stream.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled


def default_workers() -> int:
    """Hashing threads to use by default: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def import_stream(
    stream: Readable,
    *,
    workers: int | None = 1,
    on_block: BlockSink | None = None,
    progress: Progress | None = None,
    chunk_size: int = CHUNK_SIZE,
    max_links: int = MAX_LINKS,
) -> ImportResult:
    """Import everything ``stream`` yields (until EOF) and return the root, as ``ipfs add`` would.

    ``stream`` needs only ``readinto`` (open files with ``buffering=0`` for speed). ``workers`` threads hash the
    leaves (``None``: one per core); with more than one, an unbuffered regular file is read from its current
    position with ``pread`` by the threads themselves, and left positioned at its end. Memory stays bounded by
    ``2 * workers + 1`` buffers of 4 MiB.
    ``chunk_size`` and ``max_links`` are Kubo's defaults; other values exist to test the tree's shape.
    """
    threads = default_workers() if workers is None else workers
    if threads < 1:
        raise ValueError(f"workers must be at least 1, got {threads}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    builder = DagBuilder(on_block, max_links=max_links)
    batch_bytes = BATCH_CHUNKS * chunk_size
    size = 0

    def consume(view: memoryview, leaves: list[tuple[bytes, int]]) -> None:
        nonlocal size
        offset = 0
        for digest, leaf_size in leaves:
            prefix, suffix = _frame(leaf_size)
            if on_block is not None:
                on_block(digest, (prefix, view[offset : offset + leaf_size], suffix))
            builder.add_leaf(Link(digest, len(prefix) + leaf_size + len(suffix), leaf_size))
            offset += leaf_size
        size += offset
        if progress is not None and offset:
            progress(offset)

    if threads == 1:
        view = memoryview(bytearray(batch_bytes))
        while True:
            n = _read_full(stream, view)
            consume(view, _hash_leaves(view, n, chunk_size))
            if n < batch_bytes:
                break
        root = builder.finish()
        return ImportResult(digest=root.digest, size=size, dag_size=root.tsize, blocks=builder.blocks)

    # Several threads. From a regular file each task reads its own batch with pread and hashes it, so copying
    # from the page cache runs in parallel too; from any other stream the main thread reads ahead in order.
    fd, start = _positional(stream)
    window = 2 * threads
    free = [memoryview(bytearray(batch_bytes)) for _ in range(window + 1)]
    in_flight: deque[tuple[memoryview, Future[tuple[int, list[tuple[bytes, int]]]]]] = deque()
    offset = start
    scheduling = True
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="meshprov-cid") as pool:
        try:
            while True:
                while scheduling and free and len(in_flight) < window:
                    view = free.pop()
                    if fd is not None:
                        future = pool.submit(_pread_and_hash, fd, offset, view, chunk_size)
                        offset += batch_bytes
                    else:
                        n = _read_full(stream, view)
                        scheduling = n == batch_bytes
                        future = pool.submit(_hashed, n, view, chunk_size)
                    in_flight.append((view, future))
                if not in_flight:
                    break
                view, future = in_flight.popleft()
                n, leaves = future.result()
                consume(view, leaves)
                free.append(view)
                if n < batch_bytes:
                    # End of the stream: batches read past it (pread mode) hold nothing and are dropped.
                    scheduling = False
                    for _, late in in_flight:
                        late.cancel()
                    in_flight.clear()
        finally:
            for _, future in in_flight:
                future.cancel()
    if fd is not None:
        os.lseek(fd, start + size, os.SEEK_SET)
    root = builder.finish()
    return ImportResult(digest=root.digest, size=size, dag_size=root.tsize, blocks=builder.blocks)


def import_file(
    path: str | os.PathLike[str],
    *,
    workers: int | None = None,
    on_block: BlockSink | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import a file from disk (see :func:`import_stream`); ``workers=None`` uses every core."""
    with open(path, "rb", buffering=0) as stream:
        return import_stream(stream, workers=workers, on_block=on_block, progress=progress)


def import_bytes(
    data: Buffer,
    *,
    on_block: BlockSink | None = None,
    chunk_size: int = CHUNK_SIZE,
    max_links: int = MAX_LINKS,
) -> ImportResult:
    """Import bytes already in memory."""
    hasher = UnixfsHasher(on_block=on_block, chunk_size=chunk_size, max_links=max_links)
    hasher.update(data)
    return hasher.finish()


def cid_of_file(path: str | os.PathLike[str], *, workers: int | None = None, v1: bool = False) -> str:
    """The CID ``ipfs add --only-hash -Q`` prints for this file (CIDv1 of the same DAG if ``v1``)."""
    result = import_file(Path(path), workers=workers)
    return result.cid_v1 if v1 else result.cid


def verify_file(
    path: str | os.PathLike[str], expected: bytes | str, *, workers: int | None = None
) -> ImportResult:
    """Check a file against a CID or an on-chain ``bytes32`` digest; :class:`CidMismatch` if it differs."""
    from ledger.content.errors import CidMismatch

    want = CID(bytes(expected)) if isinstance(expected, bytes | bytearray) else CID.parse(expected)
    result = import_file(path, workers=workers)
    if result.digest != want.digest:
        raise CidMismatch(
            want.v0,
            result.cid,
            context=f"{path} ({result.size} bytes) does not hash to the expected CID",
            hint="the file differs from the one anchored on chain: do not use it",
        )
    return result


def cid_of_bytes(data: Buffer, *, v1: bool = False) -> str:
    result = import_bytes(data)
    return result.cid_v1 if v1 else result.cid


class UnixfsHasher:
    """Push-style importer: feed bytes with :meth:`update` as they arrive (a download), then :meth:`finish`.

    Holds one chunk buffer; single-threaded (use :func:`import_stream` to hash a file with several cores).
    """

    def __init__(
        self, *, on_block: BlockSink | None = None, chunk_size: int = CHUNK_SIZE, max_links: int = MAX_LINKS
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self._chunk_size = chunk_size
        self._buffer = bytearray(chunk_size)
        self._view = memoryview(self._buffer)
        self._fill = 0
        self._size = 0
        self._on_block = on_block
        self._builder = DagBuilder(on_block, max_links=max_links)
        self._finished = False

    @property
    def size(self) -> int:
        """Bytes fed so far."""
        return self._size

    def update(self, data: Buffer) -> None:
        if self._finished:
            raise ValueError("update() after finish()")
        src = memoryview(data).cast("B")
        self._size += len(src)
        while len(src):
            chunk = self._chunk_size
            if self._fill == 0 and len(src) >= chunk:
                # A whole chunk straight from the caller's buffer, without copying it first.
                self._leaf(src[:chunk])
                src = src[chunk:]
                continue
            take = min(chunk - self._fill, len(src))
            self._view[self._fill : self._fill + take] = src[:take]
            self._fill += take
            src = src[take:]
            if self._fill == chunk:
                self._leaf(self._view)
                self._fill = 0

    def _leaf(self, chunk: memoryview) -> None:
        size = len(chunk)
        prefix, suffix = _frame(size)
        h = hashlib.sha256(prefix)
        h.update(chunk)
        h.update(suffix)
        digest = h.digest()
        if self._on_block is not None:
            self._on_block(digest, (prefix, chunk, suffix))
        self._builder.add_leaf(Link(digest, len(prefix) + size + len(suffix), size))

    def finish(self) -> ImportResult:
        if not self._finished:
            self._finished = True
            if self._fill:
                self._leaf(self._view[: self._fill])
        root = self._builder.finish()
        return ImportResult(
            digest=root.digest, size=self._size, dag_size=root.tsize, blocks=self._builder.blocks
        )

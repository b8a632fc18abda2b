"""CARv1 for the trustless gateway: writing a file's DAG as a CAR stream, and reading one back block by block.

A CARv1 (https://ipld.io/specs/transport/car/carv1/) is a varint-prefixed DAG-CBOR header ``{roots, version: 1}``
followed by sections, each ``varint(len(cid) + len(block)) || cid || block``. The trustless gateway spec sends a
file's whole DAG this way in one response (``application/vnd.ipld.car``), which is what makes a gateway fetch as
cheap as hashing the bytes: one request instead of one per 256 KiB block.

Parsing untrusted CARs here is bounded before anything is decoded: the header may be at most
:data:`MAX_HEADER_SIZE` bytes, a section at most a block (:data:`~ledger.content.dag.MAX_BLOCK_SIZE`) plus a CID,
and every block is hashed against the CID in front of it as it is read. The header's DAG-CBOR and the sections'
CIDs are decoded by ``libipld`` (Rust); dag-pb / UnixFS nodes by :mod:`ledger.content.dag`, since libipld does not
read dag-pb.

* :class:`CarReader`: sections of a CAR stream as ``(digest, block)``, each block hashed once; blocks are views
  into a few reused 2 MiB segments (no copy, no zeroed allocation per block). With ``verify_ahead`` it reads and
  parses up to that many bytes of sections ahead while a second thread hashes them (hashlib releases the GIL), so
  receiving and hashing overlap; a block is still handed out only once its hash matched.
* :func:`car_header` / :func:`section_prefix` / :func:`dag_blocks`: what a server needs to write one.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import libipld

from ledger.content.dag import MAX_BLOCK_SIZE, decode_file_node
from ledger.content.multiformats import CID, DAG_PB, DIGEST_LEN, MULTIHASH_PREFIX, SHA2_256
from ledger.content.unixfs import varint

CAR = "application/vnd.ipld.car"
MAX_HEADER_SIZE = 4096
"""A header with one root is 60 bytes; a longer one is refused before it is decoded."""
MAX_CID_SIZE = 64
MAX_SECTION_SIZE = MAX_BLOCK_SIZE + MAX_CID_SIZE
SEGMENT_SIZE = 2 * 1024 * 1024
"""Receive buffer: large reads (few syscalls) that still stay in cache between the copy and the hash (measured
best of 256 KiB to 16 MiB, docs/benchmarks.md). Must hold one whole section."""
SMALL_BLOCK = 64 * 1024
MAX_DEPTH = 16
"""Kubo's layout is at most 6 levels deep for any 64-bit size; a deeper DAG is not one of ours."""
HASH_IN_THREAD = 64 * 1024
"""With ``verify_ahead``, blocks at least this large are hashed by the reader's hashing thread; smaller ones
(the root, branch nodes, a small file's tail) inline, where a thread hand-off costs more than their hash."""


class CarError(Exception):
    """A CAR stream that is malformed, truncated, oversized, or carries a block that is not its CID's bytes."""


class Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


def car_header(root: bytes) -> bytes:
    """The varint-prefixed CARv1 header ``{"roots": [root], "version": 1}`` for a CID given as bytes.

    Hand-encoded: libipld 3.5 cannot build a CID (tag 42) from Python; the tests decode it with libipld.
    """
    if len(root) > MAX_CID_SIZE:
        raise ValueError("CID too long")
    cid = b"\x00" + root  # tag 42 carries the CID's bytes after a 0x00 multibase prefix
    body = (
        b"\xa2\x65roots\x81\xd8\x2a"
        + (bytes([0x58, len(cid)]) if len(cid) > 23 else bytes([0x40 | len(cid)]))
        + cid
        + b"\x67version\x01"
    )
    return varint(len(body)) + body


def section_prefix(cid: bytes, block_size: int) -> bytes:
    """What goes before a block in a CAR: the section's length and the block's CID."""
    return varint(len(cid) + block_size) + cid


def cid_v0_bytes(digest: bytes) -> bytes:
    return MULTIHASH_PREFIX + digest


def parse_cid(data: bytes) -> tuple[bytes, int]:
    """(sha-256 digest, length in bytes) of the dag-pb CID at the start of ``data`` (CIDv0 or CIDv1)."""
    try:
        decoded = libipld.decode_cid(data)
    except ValueError as exc:
        raise CarError(f"a section does not start with a CID: {exc}") from None
    hashed = decoded["hash"]
    if decoded["codec"] != DAG_PB or hashed["code"] != SHA2_256 or hashed["size"] != DIGEST_LEN:
        raise CarError(
            f"a block with codec 0x{decoded['codec']:x}, hash 0x{hashed['code']:x}: "
            "not a dag-pb sha2-256 block of a meshprov file"
        )
    if decoded["version"] == 0:
        return hashed["digest"], 2 + DIGEST_LEN
    size = len(varint(decoded["version"])) + len(varint(DAG_PB)) + 2 + DIGEST_LEN
    return hashed["digest"], size


_V0_SIZE = 2 + DIGEST_LEN
MAX_VARINT = 9
"""Varints in a CAR are at most 63 bits."""
MAX_SPARE = 4
_SPARE: list[bytearray] = []
_SPARE_LOCK = threading.Lock()


def _take_spare(size: int) -> bytearray | None:
    """A segment a finished reader left, if one is free (no view of it alive) and of this size."""
    with _SPARE_LOCK:
        for i, segment in enumerate(_SPARE):
            if len(segment) == size and _unexported(segment):
                return _SPARE.pop(i)
    return None


def _unexported(buffer: bytearray) -> bool:
    """Whether no view of ``buffer`` is alive (a bytearray with views refuses to change size)."""
    try:
        buffer.append(0)
    except BufferError:
        return False
    buffer.pop()
    return True


@dataclass(frozen=True, slots=True)
class Section:
    digest: bytes
    block: memoryview


class _Queued:
    """A parsed section waiting to be handed out: ``ok`` is None until its hash was compared with its CID."""

    __slots__ = ("ok", "section")

    def __init__(self, section: Section, ok: bool | None) -> None:
        self.section = section
        self.ok = ok


_Job = tuple[bytes, memoryview] | None
_Result = bool | Exception


def _hash_sections(jobs: queue.SimpleQueue[_Job], results: queue.SimpleQueue[_Result]) -> None:
    """The hashing thread: for each (digest, block) in order, whether the block hashes to the digest; None ends."""
    while True:
        job = jobs.get()
        if job is None:
            return
        try:
            results.put(hashlib.sha256(job[1]).digest() == job[0])
        except Exception as exc:  # pragma: no cover - hashlib does not fail on a buffer
            results.put(exc)
        del job  # no view of a segment is held while waiting: the reader may reuse it


class CarReader:
    """Sections of a CARv1 read from ``source`` (anything with ``readinto``), every block hashed against its CID.

    Large reads go into a 2 MiB segment; blocks are views into it. A segment is only reused once nothing holds a
    view into it (a consumer that keeps every block gets fresh segments, one that writes each block and drops
    it cycles through two), so no block is copied and no buffer is zeroed per block.

    ``verify_ahead`` (bytes, 0: off): while the next section's hash is not known yet, read and parse further
    sections, up to that many bytes of blocks queued, and hash the large ones in a second thread (started with
    the first such block, stopped by :meth:`close`), so the socket is read while blocks are hashed. What
    :meth:`peek` returns is the same either way: sections in order, each only once its hash matched; an error
    met while reading ahead (a bad hash, a truncated or oversized section, a timeout) is raised when the
    sections before it have been handed out, at the point it would have been raised without reading ahead.
    The read-ahead is bounded: ``verify_ahead`` bytes of queued blocks, plus the section being read.
    """

    def __init__(
        self,
        source: Readable,
        *,
        segment_size: int = SEGMENT_SIZE,
        max_pool: int = 4,
        min_rate: float | None = None,
        grace: float = 10.0,
        verify_ahead: int = 0,
    ) -> None:
        if segment_size < MAX_SECTION_SIZE + 16:
            raise ValueError("a segment must hold a whole section")
        if verify_ahead < 0:
            raise ValueError("verify_ahead is a number of bytes, at least 0")
        self._source = source
        # A sender that dribbles (a byte now and then, never a timeout) is refused once, after ``grace`` seconds,
        # it has averaged less than ``min_rate`` bytes a second.
        self._min_rate = min_rate
        self._grace = grace
        self._started = time.monotonic()
        self._segment_size = segment_size
        self._max_pool = max_pool
        self._pool: list[bytearray] = []
        self._buf = self._fresh()
        self._start = 0
        self._end = 0
        self._eof = False
        self._pending: Section | None = None
        self.bytes_read = 0
        self._ahead = verify_ahead
        self._queue: deque[_Queued | Exception | None] = deque()
        """Parsed sections in order; last, once met, the end (None) or the error that stopped the reading."""
        self._queued_bytes = 0
        self._awaiting: deque[_Queued] = deque()
        """The queued sections the hashing thread has not answered for yet, in the order it answers."""
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[_Result] = queue.SimpleQueue()
        self._hasher: threading.Thread | None = None

    def _fresh(self) -> bytearray:
        current = getattr(self, "_buf", None)
        for segment in self._pool:
            if segment is not current and _unexported(segment):
                return segment
        segment = _take_spare(self._segment_size) or bytearray(self._segment_size)
        if len(self._pool) < self._max_pool:
            self._pool.append(segment)
        return segment

    def close(self) -> None:
        """Stop and join the hashing thread, if any; hand this reader's segments to the next reader (a fresh 2 MiB
        segment costs 512 page faults). Idempotent."""
        self._stop_hasher()
        self._queue.clear()
        self._awaiting.clear()
        self._pending = None
        pool, self._pool = self._pool, []
        with _SPARE_LOCK:
            room = MAX_SPARE - len(_SPARE)
            _SPARE.extend(pool[:room])

    def _fill(self, need: int) -> bool:
        """Make ``need`` bytes available from ``_start``; False if the stream ends first (what came stays)."""
        while self._end - self._start < need:
            if self._eof:
                return False
            if len(self._buf) - self._start < need:
                # The section does not fit in what is left of this segment: carry its start to a free one.
                fresh = self._fresh()
                held = self._end - self._start
                fresh[:held] = memoryview(self._buf)[self._start : self._end]
                self._buf, self._start, self._end = fresh, 0, held
            got = self._source.readinto(memoryview(self._buf)[self._end :])
            if not got:
                self._eof = True
                continue
            self._end += got
            self.bytes_read += got
            if self._min_rate is not None:
                elapsed = time.monotonic() - self._started
                if elapsed > self._grace and self.bytes_read < self._min_rate * elapsed:
                    raise CarError(
                        f"too slow: {self.bytes_read} bytes in {elapsed:.1f} s "
                        f"(less than {self._min_rate / 1024:.0f} KiB/s)"
                    )
        return True

    def _varint(self) -> int | None:
        """A varint at ``_start`` (consumed); None at a clean end of the stream."""
        if self._end - self._start < MAX_VARINT:
            self._fill(MAX_VARINT)  # one read for the length and, mostly, the section after it
        available = self._end - self._start
        if not available:
            return None
        buf, pos = self._buf, self._start
        value = 0
        for i in range(min(MAX_VARINT, available)):
            byte = buf[pos + i]
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                self._start = pos + i + 1
                return value
        if available < MAX_VARINT:
            raise CarError("the CAR ends inside a section length")
        raise CarError("a section length varint is too long")

    def header(self) -> list[bytes]:
        """Read the CARv1 header; its roots (as CID bytes), which the trustless gateway spec says to ignore."""
        size = self._varint()
        if size is None:
            raise CarError("empty CAR")
        if not 0 < size <= MAX_HEADER_SIZE:
            raise CarError(f"a CAR header of {size} bytes (at most {MAX_HEADER_SIZE})")
        if not self._fill(size):
            raise CarError("the CAR ends inside its header")
        raw = bytes(self._buf[self._start : self._start + size])
        self._start += size
        try:
            header = libipld.decode_dag_cbor(raw)
        except (ValueError, RecursionError) as exc:
            raise CarError(f"the CAR header is not DAG-CBOR: {exc}") from None
        if not isinstance(header, dict) or header.get("version") != 1:
            raise CarError("not a CARv1 header (version must be 1)")
        roots = header.get("roots")
        if not isinstance(roots, list) or not all(isinstance(r, bytes) for r in roots):
            raise CarError("the CAR header's roots are not a list of CIDs")
        return roots

    def peek(self) -> Section | None:
        """The next section (verified), without consuming it; None at the end of the CAR."""
        if self._pending is None:
            self._pending = self._next_ahead() if self._ahead else self._next()
        return self._pending

    def take(self) -> None:
        self._pending = None

    @property
    def hashing_thread(self) -> threading.Thread | None:
        """The thread hashing blocks read ahead (None before the first large block, without ``verify_ahead``
        and after :meth:`close`)."""
        return self._hasher

    def _next(self) -> Section | None:
        section = self._parse()
        if section is not None and hashlib.sha256(section.block).digest() != section.digest:
            raise CarError(f"block {CID(section.digest).v0} does not hash to its CID")
        return section

    def _next_ahead(self) -> Section | None:
        """:meth:`_next` with reading ahead: the first queued section once its hash is known."""
        queued = self._queue
        while True:
            self._collect(wait=False)
            head = queued[0] if queued else None
            if isinstance(head, _Queued) and head.ok is not None:
                queued.popleft()
                self._queued_bytes -= len(head.section.block)
                if not head.ok:
                    raise CarError(f"block {CID(head.section.digest).v0} does not hash to its CID")
                return head.section
            if queued and not isinstance(head, _Queued):
                if head is None:
                    return None
                error, head = head, None  # stays queued: asked again, the reader fails again
                try:
                    raise error
                finally:
                    del error  # no cycle between the error and this frame in its traceback
            ended = bool(queued) and not isinstance(queued[-1], _Queued)
            if not ended and (not queued or self._queued_bytes < self._ahead):
                self._read_ahead()
            else:
                self._collect(wait=True)  # the head is being hashed and the queue is full or ended

    def _read_ahead(self) -> None:
        try:
            section = self._parse()
        except Exception as exc:  # CarError, IncompleteRead, a timeout: raised when its turn comes
            self._queue.append(exc)
            return
        if section is None:
            self._queue.append(None)
            return
        block = section.block
        if len(block) < HASH_IN_THREAD:
            self._queue.append(_Queued(section, hashlib.sha256(block).digest() == section.digest))
        else:
            entry = _Queued(section, None)
            self._queue.append(entry)
            self._awaiting.append(entry)
            if self._hasher is None:
                self._start_hasher()
            self._jobs.put((section.digest, block))
        self._queued_bytes += len(block)

    def _collect(self, *, wait: bool) -> None:
        """Record the hashing thread's answers that are in (``wait``: at least one)."""
        while self._awaiting:
            try:
                result = self._results.get(block=wait)
            except queue.Empty:
                return
            wait = False
            entry = self._awaiting.popleft()
            if isinstance(result, Exception):  # pragma: no cover - see _hash_sections
                raise result
            entry.ok = result

    def _start_hasher(self) -> None:
        thread = threading.Thread(
            target=_hash_sections, args=(self._jobs, self._results), name="meshprov-car-hash", daemon=True
        )
        thread.start()
        self._hasher = thread
        # A reader dropped without close() still ends its thread (the thread holds the queues, not the reader).
        weakref.finalize(self, self._jobs.put, None)

    def _stop_hasher(self) -> None:
        thread, self._hasher = self._hasher, None
        if thread is None:
            return
        while True:  # what was not hashed yet is not needed any more
            try:
                self._jobs.get(block=False)
            except queue.Empty:
                break
        self._jobs.put(None)
        # Not from the thread itself: a dropped fetch may be finalized by a garbage collection run in that thread.
        if thread is not threading.current_thread():
            thread.join()
        while True:
            try:
                self._results.get(block=False)
            except queue.Empty:
                break

    def _parse(self) -> Section | None:
        """The next section, its block not yet hashed; None at the end of the CAR."""
        size = self._varint()
        if size is None:
            return None
        if size > MAX_SECTION_SIZE:
            raise CarError(f"a section of {size} bytes (a block is at most {MAX_BLOCK_SIZE})")
        if not self._fill(size):
            raise CarError(f"the CAR ends inside a section of {size} bytes (truncated)")
        start = self._start
        buf = self._buf
        if size > _V0_SIZE and buf[start] == SHA2_256 and buf[start + 1] == DIGEST_LEN:
            # CIDv0, what Kubo and we write for every link: its digest is bytes 2-33, nothing to decode.
            digest, cid_size = bytes(buf[start + 2 : start + _V0_SIZE]), _V0_SIZE
        else:
            digest, cid_size = parse_cid(bytes(buf[start : start + min(size, MAX_CID_SIZE)]))
        if cid_size > size:
            raise CarError("a section shorter than its CID")
        block = memoryview(self._buf)[start + cid_size : start + size]
        self._start = start + size
        if len(block) < SMALL_BLOCK:
            # A branch node is kept by the walk while its 174 children pass: a copy of its few KiB keeps it
            # from pinning a whole segment (leaves, the bulk, stay views).
            block = memoryview(block.tobytes())
        return Section(digest, block)


class LeafFile:
    """A block with no links, already verified, left in its open file so a server can send it with
    ``socket.sendfile`` instead of reading it into memory; :func:`dag_blocks` passes it on without decoding it
    (a node without links has no children). Whoever takes it from :func:`dag_blocks` closes it."""

    __slots__ = ("file", "size")

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file = file
        self.size = size

    def __len__(self) -> int:
        return self.size

    def read(self) -> bytes:
        """Its bytes (for a consumer that does not send files)."""
        self.file.seek(0)
        data = self.file.read(self.size + 1)
        if len(data) != self.size:
            raise CarError("a block file changed size while it was served")
        return data

    def close(self) -> None:
        self.file.close()


Block = bytes | bytearray | LeafFile
BlockSource = Callable[[bytes], Block]
"""Returns the verified bytes of a block by digest (or, for a leaf, its open file); raises when it is absent."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An ``entity-bytes`` range resolved against the file size: ``first`` to ``last`` inclusive."""

    first: int
    last: int

    @classmethod
    def parse(cls, text: str, size: int) -> ByteRange | None:
        """``from:to`` (``to`` may be ``*``; negative values count from the end); None for an empty range.

        ``ValueError`` for text that is not a range.
        """
        first_text, sep, last_text = text.partition(":")
        if not sep or len(text) > 64:
            raise ValueError("entity-bytes is from:to")
        first = int(first_text)
        last = size - 1 if last_text == "*" else int(last_text)
        if first < 0:
            first = max(0, size + first)
        if last < 0:
            last = size + last
        last = min(last, size - 1)
        return cls(first, last) if first <= last else None


def dag_blocks(
    root: bytes,
    root_block: bytes | bytearray,
    read_block: BlockSource,
    *,
    scope: str = "all",
    dups: bool = False,
    byte_range: ByteRange | None = None,
) -> Iterator[tuple[bytes, Block]]:
    """(digest, block) of a UnixFS file's DAG in depth-first order, as a trustless gateway sends them.

    ``scope``: ``block`` is the root alone; ``entity`` and ``all`` are the whole file (the same thing for a
    file). ``dups``: send a block again each time the DAG links it (``dups=y``), or only the first time.
    ``byte_range``: only the blocks needed to verify those bytes of the file (``entity-bytes``); ``None`` with
    ``scope="entity"`` and an empty range means the root alone, as the spec says. ``read_block`` is called for
    each child before it is sent, so a missing child ends the stream there (the client sees a truncated CAR).
    """
    yield root, root_block
    if scope == "block":
        return
    seen: set[bytes] = {root}
    yield from _children(
        root, root_block, read_block, dups=dups, seen=seen, byte_range=byte_range, offset=0, depth=1
    )


def _children(
    digest: bytes,
    block: Block,
    read_block: BlockSource,
    *,
    dups: bool,
    seen: set[bytes],
    byte_range: ByteRange | None,
    offset: int,
    depth: int,
) -> Iterator[tuple[bytes, Block]]:
    if isinstance(block, LeafFile):
        return
    node = decode_file_node(block, CID(digest).v0)
    if not node.links:
        return
    if depth > MAX_DEPTH:
        raise CarError(f"a DAG deeper than {MAX_DEPTH} levels")
    start = offset + len(node.data)
    for link, size in zip(node.links, node.blocksizes, strict=True):
        child_start, start = start, start + size
        if byte_range is not None and (start <= byte_range.first or child_start > byte_range.last):
            continue
        if not dups and link.digest in seen:
            continue
        seen.add(link.digest)
        child = read_block(link.digest)
        yield link.digest, child
        yield from _children(
            link.digest,
            child,
            read_block,
            dups=dups,
            seen=seen,
            byte_range=byte_range,
            offset=child_start,
            depth=depth + 1,
        )


def write_car(root: bytes, blocks: Iterator[tuple[bytes, Block]]) -> Iterator[bytes | bytearray]:
    """The CAR's bytes, in pieces: the header for ``root`` (CID bytes), then each block with its CIDv0 prefix
    (a :class:`LeafFile` is read and closed)."""
    yield car_header(root)
    for digest, block in blocks:
        if isinstance(block, LeafFile):
            try:
                data: bytes | bytearray = block.read()
            finally:
                block.close()
        else:
            data = block
        yield section_prefix(cid_v0_bytes(digest), len(data))
        yield data

"""The embedded content store: a directory of blocks, laid out the way Kubo's flatfs datastore lays them out.

    <root>/SHARDING                      /repo/flatfs/shard/v1/next-to-last/2
    <root>/<XY>/<KEY>.data               one block; KEY = base32 of its multihash, XY = KEY's next-to-last 2 chars
    <root>/.pins/<CIDv0>                 an empty file per pinned root
    <root>/.tmp/                         blocks being written

Blocks are the exact dag-pb bytes Kubo stores, so a CID names the same bytes here as on any IPFS node. Each block
is written to ``.tmp``, fsynced and renamed into place (on a few threads: the fsyncs overlap), and the root is
written last, once every other block and directory entry is durable: a root block is present only when the
whole file is. Identical blocks are stored once. Every block read is hashed and compared
with its name before any of its bytes are used (:class:`CorruptBlock` otherwise).

Nothing is ever garbage-collected; pins record what a member intends to keep.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.content.dag import MAX_BLOCK_SIZE, decode_file_node, iter_file
from ledger.content.errors import ContentNotFound, CorruptBlock, MalformedDag
from ledger.content.multiformats import CID, MULTIHASH_PREFIX
from ledger.content.store import ContentStat
from ledger.content.unixfs import Buffer, Progress, UnixfsHasher, import_file

if TYPE_CHECKING:
    from ledger.content.store_writer import StreamingPut

SHARDING = "/repo/flatfs/shard/v1/next-to-last/2\n"
STALE_TEMP_S = 24 * 3600


def block_key(digest: bytes) -> str:
    """flatfs key of a block: upper-case base32 of its multihash, no padding."""
    return base64.b32encode(MULTIHASH_PREFIX + digest).decode("ascii").rstrip("=")


class BlockWrites:
    """Blocks written durably into a store on a few threads: each to ``.tmp``, fsynced, renamed into place.

    At most ``max_pending`` blocks are in flight (:meth:`write` waits for the oldest beyond that); the directories
    a write created or wrote into are remembered, so :meth:`sync_dirs` can make their entries durable before a
    root that needs them is written. Used by a put (:class:`_BlockWriter`) and by a fetch that keeps what it
    verified (:class:`~ledger.content.replicate.BlockKeeper`).
    """

    def __init__(self, store: LocalStore, *, threads: int, max_pending: int, name: str) -> None:
        self._store = store
        self._threads = threads
        self._max_pending = max_pending
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()
        self._dirs: set[Path] = set()

    def ensure_dir(self, directory: Path) -> None:
        """Create a block's shard directory if needed and remember it (and the root, for a new entry) to sync."""
        if directory not in self._dirs:
            if not directory.is_dir():
                directory.mkdir(exist_ok=True)
                self._dirs.add(directory.parent)  # the new entry in the store's root must be durable too
            self._dirs.add(directory)

    def write(self, block: Buffer, final: Path) -> None:
        self.ensure_dir(final.parent)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix=self._name)
        self._pending.append(self._pool.submit(self._store.write_block, block, final))
        while len(self._pending) > self._max_pending:
            self._pending.popleft().result()

    def sync_dirs(self) -> None:
        """Wait for every block in flight, then fsync the directories they went into (their entries durable)."""
        while self._pending:
            self._pending.popleft().result()
        if self._pool is not None and len(self._dirs) > 1:
            list(self._pool.map(fsync_dir, sorted(self._dirs)))
        else:
            for directory in self._dirs:
                fsync_dir(directory)

    def abort(self) -> None:
        """Cancel what has not started and let the blocks in flight finish (each cleans up after itself)."""
        for future in self._pending:
            future.cancel()
        for future in self._pending:
            with contextlib.suppress(BaseException):
                future.result()
        self._pending.clear()
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class _BlockWriter:
    """The block sink of one put: writes blocks durably on a few threads (:class:`BlockWrites`), the root last.

    Each block is copied out of the importer's buffer (which is reused) and handed to a thread; fsyncs are what a
    put waits on, and they overlap well. The latest block is held back, since it may be the root: :meth:`commit`
    waits for every other block, makes the directory entries durable, and only then writes the root.
    """

    def __init__(self, store: LocalStore, *, threads: int, max_pending: int = 32) -> None:
        self._store = store
        self._writes = BlockWrites(store, threads=threads, max_pending=max_pending, name="meshprov-store")
        self._held: tuple[bytes, Path] | None = None

    def __call__(self, digest: bytes, parts: Sequence[Buffer]) -> None:
        if self._held is not None:
            self._writes.write(*self._held)
            self._held = None
        final = self._store.block_path(digest)
        with contextlib.suppress(FileNotFoundError):
            if final.stat().st_size == sum(len(p) for p in parts):
                # Deduplicated: the name is the hash of the bytes (and every read checks them again). A block
                # of another length was cut short by a crash and is replaced.
                return
        self._held = (b"".join(parts), final)

    def commit(self) -> None:
        """Wait for every block, make the directory entries durable, then write the last block (the root)."""
        held, self._held = self._held, None
        if held is not None:
            self._writes.ensure_dir(held[1].parent)
        self._writes.sync_dirs()
        if held is not None:
            self._store.write_block(*held)
            fsync_dir(held[1].parent)
        self._writes.close()

    def abort(self) -> None:
        """Drop the held block and let the blocks in flight finish (each cleans up after itself)."""
        self._held = None
        self._writes.abort()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """A :class:`~ledger.content.store.ContentStore` in a local directory (see the module docstring)."""

    name = "local"

    def __init__(
        self, root: str | os.PathLike[str], *, workers: int | None = None, write_threads: int = 8
    ) -> None:
        self.root = Path(root)
        self._root = str(self.root)
        self.workers = workers
        self.write_threads = write_threads
        self._tmp = self.root / ".tmp"
        self._pins = self.root / ".pins"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._pins.mkdir(exist_ok=True)
        sharding = self.root / "SHARDING"
        if not sharding.exists():
            sharding.write_text(SHARDING, encoding="ascii")
        self._remove_stale_temporaries()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # --- layout --------------------------------------------------------------------------------------------
    def block_path(self, digest: bytes) -> Path:
        return Path(self._block_file(digest))

    def _block_file(self, digest: bytes) -> str:
        key = block_key(digest)
        return os.path.join(self._root, key[-3:-1], f"{key}.data")

    def write_block(self, block: Buffer, final: Path) -> None:
        """Write one block durably under its final name: temporary file, fsync, rename."""
        fd, name = tempfile.mkstemp(prefix="block-", suffix=".tmp", dir=self._tmp)
        try:
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(name, final)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise

    # --- ContentStore --------------------------------------------------------------------------------------
    def put_file(self, path: str | os.PathLike[str], *, progress: Progress | None = None) -> str:
        writer = _BlockWriter(self, threads=self.write_threads)
        try:
            result = import_file(path, workers=self.workers, on_block=writer, progress=progress)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        self._mark_pinned(result.cid)
        return result.cid

    def open_put(self, *, progress: Progress | None = None) -> StreamingPut:
        """A put fed piece by piece, hashed and written in one pass (:mod:`ledger.content.store_writer`)."""
        from ledger.content.store_writer import StreamingPut

        return StreamingPut(self, progress=progress)

    def put_bytes(self, data: Buffer) -> str:
        writer = _BlockWriter(self, threads=self.write_threads)
        try:
            hasher = UnixfsHasher(on_block=writer)
            hasher.update(data)
            result = hasher.finish()
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        self._mark_pinned(result.cid)
        return result.cid

    def get(self, cid: str, *, max_bytes: int | None = None) -> Iterator[memoryview]:
        root = CID.parse(cid).digest
        # Check the root before the generator starts, so a missing CID fails at the call, not the first next().
        self._read_block(root, root)
        return iter_file(root, lambda d: self._read_block(d, root), max_bytes=max_bytes)

    def has(self, cid: str) -> bool:
        return self.block_path(CID.parse(cid).digest).is_file()

    def pin(self, cid: str) -> None:
        parsed = CID.parse(cid)
        # Pinning promises the whole file is here: read (and so verify) every block once.
        for _ in iter_file(parsed.digest, lambda d: self._read_block(d, parsed.digest)):
            pass
        self._mark_pinned(parsed.v0)

    def stat(self, cid: str) -> ContentStat:
        parsed = CID.parse(cid)
        block = self._read_block(parsed.digest, parsed.digest)
        node = decode_file_node(block, parsed.v0)
        return ContentStat(
            cid=parsed.v0, size=node.filesize, block_size=len(block), pinned=(self._pins / parsed.v0).exists()
        )

    def close(self) -> None:
        """Nothing to release: files are opened per block."""

    # --- internals -----------------------------------------------------------------------------------------
    def _remove_stale_temporaries(self) -> None:
        """Remove blocks a crashed put left half-written in ``.tmp`` (a day old: no live put is that slow)."""
        cutoff = time.time() - STALE_TEMP_S
        for entry in os.scandir(self._tmp):
            with contextlib.suppress(FileNotFoundError):
                if entry.name.startswith("block-") and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)

    def _mark_pinned(self, cid: str) -> None:
        marker = self._pins / cid
        if not marker.exists():
            marker.touch()

    def _read_block(self, digest: bytes, root: bytes) -> bytes:
        path = self._block_file(digest)
        try:
            # Plain descriptors, not file objects: a read is one block, and this runs once per 256 KiB.
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            root_cid = CID(root).v0
            detail = None if digest == root else f"block {CID(digest).v0} of it is missing"
            raise ContentNotFound(root_cid, self.name, detail=detail) from None
        try:
            size = os.fstat(fd).st_size
            if size > MAX_BLOCK_SIZE:
                raise MalformedDag(CID(digest).v0, f"block larger than {MAX_BLOCK_SIZE} bytes")
            # Exactly the block's size: a larger buffer would make every read a fresh mapping to fault in.
            block = os.read(fd, size)
            while len(block) < size and (more := os.read(fd, size - len(block))):
                block += more
        finally:
            os.close(fd)
        actual = hashlib.sha256(block).digest()
        if actual != digest:
            raise CorruptBlock(CID(digest).v0, actual, where=path)
        return block

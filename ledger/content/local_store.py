"""The embedded content store: a directory of blocks, laid out the way Kubo's flatfs datastore lays them out.

    <root>/SHARDING                      /repo/flatfs/shard/v1/next-to-last/2
    <root>/<XY>/<KEY>.data               one block; KEY = base32 of its multihash, XY = KEY's next-to-last 2 chars
    <root>/.pins/<CIDv0>                 an empty file per pinned root
    <root>/.tmp/                         blocks being written

Blocks are the exact dag-pb bytes Kubo stores, so a CID names the same bytes here as on any IPFS node. Each block
is written to ``.tmp``, fsynced and renamed into place, and a file's blocks are written children first with the
root last (its rename held back until every other block and directory entry is durable): a root block is
present only when the whole file is. Identical blocks are stored once. Every block read is hashed and compared
with its name before any of its bytes are used (:class:`CorruptBlock` otherwise).

Nothing is ever garbage-collected; pins record what a member intends to keep.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from ledger.content.dag import MAX_BLOCK_SIZE, decode_file_node, iter_file
from ledger.content.errors import ContentNotFound, CorruptBlock, MalformedDag
from ledger.content.multiformats import CID, MULTIHASH_PREFIX
from ledger.content.store import ContentStat
from ledger.content.unixfs import Buffer, Progress, UnixfsHasher, import_file

SHARDING = "/repo/flatfs/shard/v1/next-to-last/2\n"


def block_key(digest: bytes) -> str:
    """flatfs key of a block: upper-case base32 of its multihash, no padding."""
    return base64.b32encode(MULTIHASH_PREFIX + digest).decode("ascii").rstrip("=")


class _BlockWriter:
    """Writes blocks durably, holding back the rename of the latest one until the next arrives or it commits."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self._held: tuple[str, Path] | None = None
        self._dirs: set[Path] = set()
        self.written = 0

    def __call__(self, digest: bytes, parts: Sequence[Buffer]) -> None:
        final = self._store.block_path(digest)
        expected = sum(len(p) for p in parts)
        self._release()
        with contextlib.suppress(FileNotFoundError):
            if final.stat().st_size == expected:
                return  # deduplicated: the same name means the same bytes (checked again on every read)
        self._held = (self._store.write_temp(parts), final)

    def _release(self) -> None:
        """Rename the held block into place (it stays held, for :meth:`abort` to remove, if that fails)."""
        if self._held is not None:
            tmp, final = self._held
            self._ensure_dir(final.parent)
            os.replace(tmp, final)
            self._held = None
            self._dirs.add(final.parent)
            self.written += 1

    def _ensure_dir(self, directory: Path) -> None:
        if not directory.is_dir():
            directory.mkdir(exist_ok=True)
            self._dirs.add(directory.parent)  # the new entry in the store's root must be durable too

    def commit(self) -> None:
        """Make every block durable, then rename the last one (the root) into place."""
        if self._held is not None:
            self._ensure_dir(self._held[1].parent)
        for directory in sorted(self._dirs):
            _fsync_dir(directory)
        if self._held is not None:
            tmp, final = self._held
            os.replace(tmp, final)
            self._held = None
            _fsync_dir(final.parent)
            self.written += 1

    def abort(self) -> None:
        if self._held is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._held[0])
            self._held = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """A :class:`~ledger.content.store.ContentStore` in a local directory (see the module docstring)."""

    name = "local"

    def __init__(self, root: str | os.PathLike[str], *, workers: int | None = None) -> None:
        self.root = Path(root)
        self.workers = workers
        self._tmp = self.root / ".tmp"
        self._pins = self.root / ".pins"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._pins.mkdir(exist_ok=True)
        sharding = self.root / "SHARDING"
        if not sharding.exists():
            sharding.write_text(SHARDING, encoding="ascii")

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # --- layout --------------------------------------------------------------------------------------------
    def block_path(self, digest: bytes) -> Path:
        key = block_key(digest)
        return self.root / key[-3:-1] / f"{key}.data"

    def write_temp(self, parts: Sequence[Buffer]) -> str:
        """Write a block's bytes to a fsynced temporary file and return its name."""
        fd, name = _mkstemp(self._tmp)
        try:
            view_parts = [memoryview(p) for p in parts if len(p)]
            while view_parts:
                n = os.writev(fd, view_parts)
                while view_parts and n >= len(view_parts[0]):
                    n -= len(view_parts[0])
                    view_parts.pop(0)
                if view_parts and n:
                    view_parts[0] = view_parts[0][n:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(name)
            raise
        os.close(fd)
        return name

    # --- ContentStore --------------------------------------------------------------------------------------
    def put_file(self, path: str | os.PathLike[str], *, progress: Progress | None = None) -> str:
        writer = _BlockWriter(self)
        try:
            result = import_file(path, workers=self.workers, on_block=writer, progress=progress)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        self._mark_pinned(result.cid)
        return result.cid

    def put_bytes(self, data: Buffer) -> str:
        writer = _BlockWriter(self)
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
        return iter_file(root, lambda d: self._read_block(d, root), max_bytes=max_bytes, store=self.name)

    def has(self, cid: str) -> bool:
        return self.block_path(CID.parse(cid).digest).is_file()

    def pin(self, cid: str) -> None:
        parsed = CID.parse(cid)
        # Pinning promises the whole file is here: read (and so verify) every block once.
        for _ in iter_file(parsed.digest, lambda d: self._read_block(d, parsed.digest), store=self.name):
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
    def _mark_pinned(self, cid: str) -> None:
        marker = self._pins / cid
        if not marker.exists():
            marker.touch()

    def _read_block(self, digest: bytes, root: bytes) -> bytes:
        path = self.block_path(digest)
        cid = CID(digest).v0
        try:
            with open(path, "rb") as f:
                block = f.read(MAX_BLOCK_SIZE + 1)
        except FileNotFoundError:
            root_cid = CID(root).v0
            detail = None if digest == root else f"block {cid} of it is missing"
            raise ContentNotFound(root_cid, self.name, detail=detail) from None
        if len(block) > MAX_BLOCK_SIZE:
            raise MalformedDag(cid, f"block larger than {MAX_BLOCK_SIZE} bytes")
        actual = hashlib.sha256(block).digest()
        if actual != digest:
            raise CorruptBlock(cid, actual, where=str(path))
        return block


def _mkstemp(directory: Path) -> tuple[int, str]:
    return tempfile.mkstemp(prefix="block-", suffix=".tmp", dir=directory)

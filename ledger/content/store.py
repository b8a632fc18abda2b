"""The content-store interface every backend implements, and helpers that work with any of them.

A store holds files as UnixFS DAGs named by their Kubo-identical CID (see :mod:`ledger.content.unixfs`):

* :class:`LocalStore <ledger.content.local_store.LocalStore>`: an embedded directory of blocks.
* :class:`KuboStore <ledger.content.kubo_store.KuboStore>`: a Kubo node over its RPC API.

Contract shared by every store (one test suite checks it against each):

* ``put_file``/``put_bytes`` return the CIDv0 computed locally; the content is pinned.
* ``get`` yields the file's bytes in order, never more than ``max_bytes`` (:class:`ContentTooLarge` as soon as it
  is known, before the rest is read). Bytes whose Kubo-default CID is not the one asked for raise
  :class:`CidMismatch`, :class:`CorruptBlock` or :class:`MalformedDag`: the local store checks every block and
  its place in Kubo's default layout before yielding it; the Kubo store re-imports the whole stream and raises at
  its end, so consumers that must never act on bad bytes use :func:`fetch_to_file` (which only renames a verified
  download into place) or :func:`read_bytes`.
* ``has`` answers from what the store holds now, without fetching from elsewhere.
* CID arguments may be CIDv0 or CIDv1 strings; bad ones raise :class:`InvalidCID`.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from ledger.content.errors import (
    CidMismatch,
    ContentError,
    ContentNotFound,
    ContentTooLarge,
    CorruptBlock,
    InvalidCID,
    MalformedDag,
    StoreError,
    StoreUnavailable,
)
from ledger.content.multiformats import CID
from ledger.content.unixfs import Buffer, ImportResult, Progress, UnixfsHasher

__all__ = [
    "PROVES_KUBO_CID",
    "CidMismatch",
    "ContentError",
    "ContentNotFound",
    "ContentStat",
    "ContentStore",
    "ContentTooLarge",
    "CorruptBlock",
    "InvalidCID",
    "MalformedDag",
    "StoreError",
    "StoreUnavailable",
    "fetch_to_file",
    "open_stream",
    "read_bytes",
]


@dataclass(frozen=True, slots=True)
class ContentStat:
    """What a store can say about a CID without reading the whole file."""

    cid: str
    """CIDv0."""
    size: int
    """Bytes of the file (the UnixFS ``filesize`` of the root)."""
    block_size: int
    """Bytes of the root block itself."""
    pinned: bool | None
    """Whether the store pins it; ``None`` when the store cannot tell cheaply."""


@runtime_checkable
class ContentStore(Protocol):
    """A place to put and get content by CID. See the module docstring for the contract."""

    name: str
    """Short name for messages: ``local`` or ``kubo``."""

    def put_file(self, path: str | os.PathLike[str], *, progress: Progress | None = None) -> str:
        """Store a file (streamed, constant memory), pin it and return its CIDv0."""
        ...

    def put_bytes(self, data: Buffer) -> str:
        """Store bytes, pin them and return their CIDv0."""
        ...

    def get(self, cid: str, *, max_bytes: int | None = None) -> Iterator[memoryview]:
        """Yield the content's bytes in order; at most ``max_bytes`` of them."""
        ...

    def has(self, cid: str) -> bool:
        """Whether the store holds the content now (no fetching from elsewhere)."""
        ...

    def pin(self, cid: str) -> None:
        """Make sure the whole content is held and protected from garbage collection."""
        ...

    def stat(self, cid: str) -> ContentStat:
        """Size of the content and of its root block; :class:`ContentNotFound` if absent."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


def read_bytes(store: ContentStore, cid: str, *, max_bytes: int) -> bytes:
    """The whole content in memory (bounded by ``max_bytes``), verified before it is returned."""
    out = bytearray()
    for chunk in store.get(cid, max_bytes=max_bytes):
        out += chunk
    return bytes(out)


# Stores whose ``get`` proves the bytes have the Kubo-default CID asked for: the local store walks the DAG
# checking Kubo's default layout (ledger.content.dag), the Kubo client re-imports the stream with the default
# importer. A store that only verified blocks would not prove the layout, so :func:`fetch_to_file` hashes its
# bytes as they pass.
PROVES_KUBO_CID = frozenset({"local", "kubo"})


def fetch_to_file(
    store: ContentStore,
    cid: str,
    dest: str | os.PathLike[str],
    *,
    max_bytes: int | None = None,
    progress: Progress | None = None,
    on_bytes: Callable[[memoryview], None] | None = None,
) -> int:
    """Download content to ``dest`` atomically and return its size: the one verified download every caller uses.

    ``dest`` is only ever the whole content, proven to have the Kubo-default CID ``cid``: the bytes go to a
    temporary file beside it that is fsynced and renamed into place once the store has verified all of it; on
    any failure the temporary file is removed and ``dest`` is left as it was. At most ``max_bytes`` are accepted
    (:class:`ContentTooLarge`, also when a store hands over more than it should). ``on_bytes`` sees every piece
    of the content, in order, as it passes (to scan it without reading the file back: the pieces are not
    verified until the call returns); ``progress`` is told each piece's length.
    """
    target = Path(dest)
    hasher = None if store.name in PROVES_KUBO_CID else UnixfsHasher()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent or Path("."))
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in store.get(cid, max_bytes=max_bytes):
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise ContentTooLarge(cid, max_bytes)
                if hasher is not None:
                    hasher.update(chunk)
                if on_bytes is not None:
                    on_bytes(chunk)
                out.write(chunk)
                if progress is not None:
                    progress(len(chunk))
            if hasher is not None:
                _check_kubo_cid(store, cid, hasher.finish())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return size


def _check_kubo_cid(store: ContentStore, cid: str, got: ImportResult) -> None:
    want = CID.parse(cid)
    if got.digest != want.digest:
        raise CidMismatch(
            want.v0,
            got.cid,
            context=f"the {got.size} bytes the {store.name} store returned",
            hint="the store returned other content (or a DAG built with other settings); do not use these bytes",
        )


class _ChunkStream(io.RawIOBase):
    def __init__(self, chunks: Iterator[memoryview]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        while not len(self._pending):
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._pending = memoryview(nxt).cast("B")
        n = min(len(target), len(self._pending))
        target[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


def open_stream(store: ContentStore, cid: str, *, max_bytes: int | None = None) -> io.BufferedReader:
    """The content as a readable binary stream (same verification as ``store.get``)."""
    return io.BufferedReader(_ChunkStream(store.get(cid, max_bytes=max_bytes)), buffer_size=256 * 1024)

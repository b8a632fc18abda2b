"""Streaming puts: bytes go into a local store as they are produced, hashed once and written once, as blocks.

    with open_put(store) as put:            # or store.open_put()
        put.write(header)
        for view in tensors:
            put.write(view)
        result = put.finish()               # the root written last, pinned; result.cid is Kubo's CID

:func:`ledger.content.local_store.LocalStore.put_file` reads a finished file, hashes it and writes it again as
blocks; a producer that has the bytes in memory (an update being serialized) can skip the file: each byte is
copied into the importer's chunk, hashed once with its leaf's framing (:class:`~ledger.content.unixfs.
UnixfsHasher`, the same importer as ``put_file``, so the CID is the same as a put of the finished file) and
written once, in its leaf block, by the store's block writer (``.tmp`` → fsync → rename, on a few threads).

Atomic like ``put_file``: the root block is written only by :meth:`StreamingPut.finish`, after every other block
and directory entry is durable, and the pin after it. A write that fails or is interrupted (an exception, a
killed process) leaves no root and no pin, so nothing names a partial file; the leaf and branch blocks already
written are content-addressed (their names are the hashes of their bytes) and unreachable without the root, so
leftovers are harmless: a later put of the same bytes finds them and skips them.

``tee`` also writes the same bytes, in the same pass, to an open binary file (for a caller that must keep a
file); with ``store=None`` nothing goes to a store and only the CID is computed (a file written and hashed in
one pass, never read back).
"""

from __future__ import annotations

from types import TracebackType
from typing import IO, TYPE_CHECKING, Self

from ledger.content.unixfs import Buffer, ImportResult, Progress, UnixfsHasher

if TYPE_CHECKING:
    from ledger.content.local_store import LocalStore, _BlockWriter


class StreamingPut:
    """One put fed piece by piece (see the module docstring). Single-threaded; use once."""

    def __init__(
        self,
        store: LocalStore | None,
        *,
        tee: IO[bytes] | None = None,
        pin: bool = True,
        progress: Progress | None = None,
    ) -> None:
        from ledger.content.local_store import _BlockWriter

        self._store = store
        self._writer: _BlockWriter | None = (
            _BlockWriter(store, threads=store.write_threads) if store is not None else None
        )
        self._hasher = UnixfsHasher(on_block=self._writer)
        self._tee = tee
        self._pin = pin
        self._progress = progress
        self._state = "open"
        self.result: ImportResult | None = None

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._hasher.size

    def write(self, data: Buffer) -> None:
        if self._state != "open":
            raise ValueError(f"write() on a put that is {self._state}")
        try:
            if self._tee is not None:
                self._tee.write(data)
            self._hasher.update(data)
        except BaseException:
            self.abort()
            raise
        if self._progress is not None:
            self._progress(memoryview(data).nbytes)

    def finish(self) -> ImportResult:
        """Close the DAG, write the root last (after every other block is durable), pin it; return the root."""
        if self._state != "open":
            raise ValueError(f"finish() on a put that is {self._state}")
        try:
            result = self._hasher.finish()
            if self._writer is not None:
                self._writer.commit()
        except BaseException:
            self.abort()
            raise
        self._state = "finished"
        self.result = result
        if self._store is not None and self._pin:
            self._store._mark_pinned(result.cid)
        return result

    def abort(self) -> None:
        """Give up: no root is written and nothing is pinned (the blocks already written stay, unreferenced)."""
        if self._state == "open":
            self._state = "aborted"
            if self._writer is not None:
                self._writer.abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Leaving the block without finish() (an exception, an early return) never writes a root.
        self.abort()


def open_put(
    store: LocalStore, *, tee: IO[bytes] | None = None, pin: bool = True, progress: Progress | None = None
) -> StreamingPut:
    """A streaming put into ``store`` (a :class:`~ledger.content.local_store.LocalStore`)."""
    return StreamingPut(store, tee=tee, pin=pin, progress=progress)


def supports_streaming(store: object) -> bool:
    """Whether ``store`` takes streaming puts (the local block store does; Kubo and gateways take files)."""
    from ledger.content.local_store import LocalStore

    return isinstance(store, LocalStore)

"""The replication rule: a host that verified content keeps it and serves it (issue 15 item 2).

Validators and the aggregator fetch every update they judge or aggregate and verify every block of it against
its CID. They keep what they verified, pinned in their local block store, and their ``meshprov store serve``
serves it, so an update stays fetchable from them after its author's host goes offline: with ``v`` validators,
each update accepted into a round is held by its author, by every validator that judged it and by the
aggregator.

* :func:`keep_verified`: the call a worker makes after a verified fetch (the file it wrote, or nothing when the
  store already kept the blocks as they passed).
* :class:`BlockKeeper`: the sink :class:`~ledger.content.gateway.GatewayStore` (``keep=True``) hands each
  verified block to while it streams, so keeping costs no second fetch and no second hash.
* :func:`replicate`: fetch a file from the gateways into the local store (every block verified) and pin it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.content.errors import CidMismatch
from ledger.content.local_store import BlockWrites, LocalStore, fsync_dir
from ledger.content.multiformats import CID

if TYPE_CHECKING:
    from ledger.content.gateway import GatewayStore
    from ledger.content.store import ContentStore


@dataclass(frozen=True, slots=True)
class Kept:
    cid: str
    how: str
    """``already`` (held and pinned before), ``blocks`` (kept while it was fetched), ``file`` (imported from the
    verified file), ``fetched`` (fetched again from the gateways) or ``store`` (a store that pins itself)."""


def _pin_marker(local: LocalStore, cid: str) -> Path:
    return local.root / ".pins" / CID.parse(cid).v0  # the layout LocalStore documents


class BlockKeeper:
    """Writes verified blocks into a local store as a fetch passes them; the root last, at :meth:`commit`.

    A root block present in the store means the whole file is (the store's invariant), so the root is held back
    until the walk that verified every block has finished, and the other blocks are durable (fsynced, on a few
    threads). A fetch that fails leaves only verified, unreferenced blocks: harmless, and reused by the next one.
    """

    def __init__(self, local: LocalStore, *, threads: int = 4, max_pending: int = 16) -> None:
        self.local = local
        self._writes = BlockWrites(local, threads=threads, max_pending=max_pending, name="meshprov-keep")
        self._root: tuple[bytes, bytes] | None = None
        self._done: set[bytes] = set()

    def add(self, digest: bytes, block: bytes | bytearray | memoryview) -> None:
        if digest in self._done:
            return
        self._done.add(digest)
        if self._root is None:
            # The first block a walk reads is its root.
            self._root = (digest, bytes(block))
            return
        final = self.local.block_path(digest)
        if final.is_file():
            return
        # The block may be a view into the gateway reader's buffer: the reader does not reuse a buffer while a
        # view of it is alive, so writing from the view is safe and costs no copy.
        self._writes.write(block, final)

    def commit(self, root: bytes) -> None:
        """Every block verified and walked: make them durable, write the root, pin the file."""
        try:
            self._writes.sync_dirs()
            if self._root is None or self._root[0] != root:
                return
            final = self.local.block_path(root)
            if not final.is_file():
                final.parent.mkdir(exist_ok=True)
                self.local.write_block(self._root[1], final)
                fsync_dir(final.parent)
            _pin_marker(self.local, CID(root).v0).touch()
        finally:
            self._writes.close()

    def abort(self) -> None:
        self._writes.abort()


def replicate(store: GatewayStore, cid: str, *, max_bytes: int | None = None) -> None:
    """Fetch ``cid`` from the store's gateways into its local store, every block verified, and pin it."""
    from ledger.content.gateway import gateway_get

    keeper = BlockKeeper(store.local)
    for _ in gateway_get(
        store.gateways, cid, max_bytes=max_bytes, timeout=store.timeout, car=store.car, keeper=keeper
    ):
        pass


def keep_verified(store: ContentStore, cid: str, path: str | os.PathLike[str] | None = None) -> Kept:
    """The replication rule, after a verified fetch of ``cid``: hold it, pinned, where this host serves it.

    ``store`` is the store the worker fetched from. A :class:`GatewayStore` with ``keep=True`` has already kept
    the blocks as they passed; otherwise ``path`` (the verified file the fetch wrote) is imported into the local
    store (its CID checked again), or, without a path, the file is fetched again from the gateways. A Kubo
    store is pinned there (Kubo serves what it pins). Idempotent.
    """
    from ledger.content.gateway import GatewayStore

    parsed = CID.parse(cid)
    if isinstance(store, GatewayStore):
        local: LocalStore = store.local
    elif isinstance(store, LocalStore):
        local = store
    else:
        store.pin(parsed.v0)
        return Kept(parsed.v0, "store")
    marker = _pin_marker(local, parsed.v0)
    if local.has(parsed.v0):
        how = "already" if marker.exists() else "blocks"
        marker.touch()
        return Kept(parsed.v0, how)
    if path is not None:
        got = local.put_file(path)
        if got != parsed.v0:
            # The file changed after it was verified: keep nothing under the wrong name.
            with contextlib.suppress(FileNotFoundError):
                _pin_marker(local, got).unlink()
            raise CidMismatch(parsed.v0, got, context=f"the file {os.fspath(path)} kept after verification")
        return Kept(parsed.v0, "file")
    if not isinstance(store, GatewayStore):
        raise ValueError(f"{parsed.v0} is not in the local store and no verified file was given")
    replicate(store, parsed.v0)
    return Kept(parsed.v0, "fetched")

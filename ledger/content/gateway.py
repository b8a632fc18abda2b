"""Blocks between hosts over the IPFS trustless gateway protocol, raw blocks only (a first part of issue 15 item 2).

* :func:`gateway_get`: a file's bytes from an ordered list of gateways (``GET /ipfs/{cid}`` with
  ``Accept: application/vnd.ipld.raw``, one request per block). Every block is hashed against the CID it was
  asked for and every DAG node is checked by :func:`ledger.content.dag.iter_file` (Kubo's default layout), so no
  gateway is trusted: a gateway that is down, lacks the block or hands back other bytes is skipped, the reason
  logged, and the next one asked for that block.
* :func:`serve_blocks`: a small HTTP server answering those requests (GET and HEAD) from a :class:`LocalStore`,
  on 127.0.0.1 unless told otherwise.

Not yet here: ``application/vnd.ipld.car`` (CAR of the whole DAG, ``dag-scope=all``), which saves one round trip
per block; a server asked for it answers 406 so a client falls back to raw blocks. See docs/gateway.md.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from ledger.content.dag import MAX_BLOCK_SIZE, iter_file
from ledger.content.errors import ContentNotFound, InvalidCID, StoreError, StoreUnavailable
from ledger.content.multiformats import CID

if TYPE_CHECKING:
    from ledger.content.local_store import LocalStore
    from ledger.content.store import ContentStat
    from ledger.content.unixfs import Buffer, Progress

log = logging.getLogger(__name__)

RAW = "application/vnd.ipld.raw"
TIMEOUT_S = 30.0
MAX_PATH = 256
"""A CIDv0 or CIDv1 path is well under this; longer request lines are refused before parsing."""


class BlockSkipped(Exception):
    """One gateway could not give one block (the reason is logged; the next gateway is asked)."""


class _Connections:
    """One kept-alive HTTP connection per gateway for a whole fetch: a new TCP connection per 256 KiB block
    cost more CPU than hashing it."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._open: dict[str, http.client.HTTPConnection] = {}

    def get(self, gateway: str) -> http.client.HTTPConnection:
        conn = self._open.get(gateway)
        if conn is None:
            parts = urllib.parse.urlsplit(gateway)
            kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            conn = kind(parts.netloc, timeout=self._timeout)
            self._open[gateway] = conn
        return conn

    def drop(self, gateway: str) -> None:
        conn = self._open.pop(gateway, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for gateway in list(self._open):
            self.drop(gateway)


def _read_raw_block(connections: _Connections, gateway: str, digest: bytes) -> bytes | bytearray:
    prefix = urllib.parse.urlsplit(gateway).path.rstrip("/")
    try:
        conn = connections.get(gateway)
        conn.request("GET", f"{prefix}/ipfs/{CID(digest).v0}", headers={"Accept": RAW})
        response = conn.getresponse()
        # Bounded before anything else looks at it: one byte more than a block may be means a liar. With a
        # Content-Length (Kubo and our server send one) the body is read into a buffer of exactly its size:
        # read(amt) would zero a 1 MiB buffer and copy it out again for every block.
        length = response.length
        if length is not None and length <= MAX_BLOCK_SIZE:
            buffer = bytearray(length)
            got = response.readinto(buffer)
            if got != length:
                raise BlockSkipped(f"sent {got} of the {length} bytes it announced")
            block: bytes | bytearray = buffer
        else:
            block = response.read(MAX_BLOCK_SIZE + 1)
        if response.status != 200:
            raise BlockSkipped(f"HTTP {response.status}")
        kind = (response.getheader("Content-Type") or "").split(";")[0].strip()
        if kind != RAW:
            raise BlockSkipped(f"answered {kind or 'no Content-Type'}, not {RAW}")
        if not response.isclosed() and response.will_close:
            connections.drop(gateway)
    except (http.client.HTTPException, OSError) as exc:
        connections.drop(gateway)
        raise BlockSkipped(f"unreachable: {exc}") from None
    except BlockSkipped:
        connections.drop(gateway)
        raise
    if len(block) > MAX_BLOCK_SIZE:
        connections.drop(gateway)
        raise BlockSkipped(f"sent more than {MAX_BLOCK_SIZE} bytes for one block")
    if hashlib.sha256(block).digest() != digest:
        raise BlockSkipped("sent bytes that do not hash to the CID")
    return block


def gateway_get(
    gateways: Sequence[str],
    cid: str,
    *,
    max_bytes: int | None = None,
    timeout: float = TIMEOUT_S,
) -> Iterator[memoryview]:
    """A file's bytes, every block verified, each block from the first gateway in ``gateways`` that gives it.

    Raises :class:`ContentNotFound` when every gateway answered and none had a block, :class:`StoreUnavailable`
    when some could not be asked (down, lying): retrying later may help. The DAG checks (Kubo's layout, the size
    bound) raise what :func:`iter_file` raises.
    """
    if not gateways:
        raise StoreUnavailable("gateways", "no gateway is configured", hint="list at least one gateway URL")
    for gateway in gateways:
        if not gateway.startswith(("http://", "https://")):
            raise StoreError(
                gateway, "a gateway is an http:// or https:// URL", hint="e.g. http://127.0.0.1:8080"
            )
    root = CID.parse(cid).digest
    connections = _Connections(timeout)

    def read_block(digest: bytes) -> bytes | bytearray:
        reasons = []
        for gateway in gateways:
            try:
                return _read_raw_block(connections, gateway, digest)
            except BlockSkipped as exc:
                log.warning("gateway %s skipped for block %s: %s", gateway, CID(digest).v0, exc)
                reasons.append(f"{gateway}: {exc}")
        if all(r.endswith("HTTP 404") for r in reasons):
            detail = None if digest == root else f"block {CID(digest).v0} of it is missing"
            raise ContentNotFound(CID(root).v0, "gateway", detail=detail)
        raise StoreUnavailable(
            ", ".join(gateways), "; ".join(reasons), hint="check the gateways or try later"
        )

    try:
        read_block(root)  # fail at the call, not at the first next(), like the other stores
    except BaseException:
        connections.close()
        raise
    return _closing(iter_file(root, read_block, max_bytes=max_bytes), connections)


def _closing(chunks: Iterator[memoryview], connections: _Connections) -> Iterator[memoryview]:
    try:
        yield from chunks
    finally:
        connections.close()


class _Handler(BaseHTTPRequestHandler):
    store: LocalStore
    server_version = "meshprov-gateway"
    protocol_version = "HTTP/1.1"  # keep-alive: every answer has a Content-Length

    def log_message(self, format: str, *args: object) -> None:
        log.debug("gateway %s: " + format, self.client_address[0], *args)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, *, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if len(self.path) > MAX_PATH or not path.startswith("/ipfs/") or path.count("/") != 2:
            self._error(400, "ask for /ipfs/{cid} (one block)")
            return
        accept = self.headers.get("Accept", "")
        if RAW not in accept and "format=raw" not in self.path:
            self._error(406, f"only {RAW} is served (CAR is not implemented yet)")
            return
        try:
            digest = CID.parse(path[len("/ipfs/") :]).digest
        except InvalidCID as exc:
            self._error(400, f"not a CID: {exc.problem}")
            return
        try:
            with open(self.store.block_path(digest), "rb") as f:
                block = f.read(MAX_BLOCK_SIZE + 1)
        except FileNotFoundError:
            self._error(404, "block not held here")
            return
        if len(block) > MAX_BLOCK_SIZE or hashlib.sha256(block).digest() != digest:
            # Never pass on a block our own disk corrupted: clients would skip us anyway.
            log.error("gateway: block %s on disk does not match its CID", CID(digest).v0)
            self._error(500, "block corrupt on this host")
            return
        self.send_response(200)
        self.send_header("Content-Type", RAW)
        self.send_header("Content-Length", str(len(block)))
        self.send_header("Cache-Control", "public, max-age=29030400, immutable")
        self.end_headers()
        if body:
            self.wfile.write(block)

    def _error(self, code: int, message: str) -> None:
        data = (message + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def serve_blocks(store: LocalStore, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """A started gateway server for ``store``'s blocks (in a daemon thread); ``.shutdown()`` stops it."""
    handler = type("Handler", (_Handler,), {"store": store})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="meshprov-gateway", daemon=True).start()
    return server


class GatewayStore:
    """The local store, and for content it lacks, the gateways (read-through; what they serve is not kept yet).

    Writes go to the local store. ``name`` is ``"local"`` so :func:`fetch_to_file` trusts the walk's proof of the
    Kubo CID, which the gateway path gives too (it walks the same :func:`iter_file`).
    """

    name = "local"

    def __init__(self, local: LocalStore, gateways: Sequence[str], *, timeout: float = TIMEOUT_S) -> None:
        self.local = local
        self.gateways = list(gateways)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"GatewayStore({self.local!r}, {self.gateways!r})"

    def put_file(self, path: str | os.PathLike[str], *, progress: Progress | None = None) -> str:
        return self.local.put_file(path, progress=progress)

    def put_bytes(self, data: Buffer) -> str:
        return self.local.put_bytes(data)

    def get(self, cid: str, *, max_bytes: int | None = None) -> Iterator[memoryview]:
        if self.local.has(cid):
            return self.local.get(cid, max_bytes=max_bytes)
        return gateway_get(self.gateways, cid, max_bytes=max_bytes, timeout=self.timeout)

    def has(self, cid: str) -> bool:
        return self.local.has(cid)

    def pin(self, cid: str) -> None:
        self.local.pin(cid)

    def stat(self, cid: str) -> ContentStat:
        return self.local.stat(cid)

    def close(self) -> None:
        self.local.close()

"""Blocks between hosts over the IPFS trustless gateway protocol: raw blocks and CAR streams (issue 15 item 2).

* :func:`gateway_get`: a file's bytes from an ordered list of gateways. It asks for the whole DAG in one CAR
  (``GET /ipfs/{cid}?format=car&dag-scope=all``, ``Accept: application/vnd.ipld.car; version=1; order=dfs;
  dups=y``) and hashes every block against its CID as it streams past; a gateway that cannot or will not send a
  CAR, or whose CAR lies (a block that is not its CID's bytes, a block the DAG does not need next, a truncated or
  oversized stream), is dropped and the rest of the file asked from the next gateway with ``entity-bytes`` from
  where the walk stands; when no gateway gives a CAR, the rest comes as raw blocks (``application/vnd.ipld.raw``,
  one request per block, every gateway in order). Every DAG node is checked by
  :func:`ledger.content.dag.iter_file` (Kubo's default layout), so no gateway is trusted. A CAR is received and
  parsed up to :data:`VERIFY_AHEAD` bytes ahead while a second thread hashes the blocks (receiving and hashing
  overlap); a block reaches the walk only once its hash matched.
* :func:`serve_blocks`: an HTTP server answering those requests (GET and HEAD, raw and CAR, ``dag-scope``
  ``all``/``entity``/``block``, ``entity-bytes``, ``dups=y``/``n``) from a :class:`LocalStore`, on 127.0.0.1
  unless told otherwise; a CAR's leaves that it verified before go out with ``sendfile`` from their files.
* :class:`GatewayStore`: the local store, then the gateways; with ``keep=True`` what it fetches and verifies is
  written to the local store and pinned, so this host serves it next (the replication rule, docs/gateway.md).

See docs/gateway.md.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, cast

from ledger.content.car import (
    CAR,
    ByteRange,
    CarError,
    CarReader,
    LeafFile,
    car_header,
    cid_v0_bytes,
    dag_blocks,
    section_prefix,
)
from ledger.content.dag import MAX_BLOCK_SIZE, decode_file_node, iter_file
from ledger.content.errors import ContentNotFound, InvalidCID, MalformedDag, StoreError, StoreUnavailable
from ledger.content.multiformats import CID

if TYPE_CHECKING:
    from ledger.content.local_store import LocalStore
    from ledger.content.replicate import BlockKeeper
    from ledger.content.store import ContentStat
    from ledger.content.unixfs import Buffer, Progress

log = logging.getLogger(__name__)

RAW = "application/vnd.ipld.raw"
CAR_ACCEPT = f"{CAR}; version=1; order=dfs; dups=y"
"""What the fetcher asks for: depth-first with duplicates, so a block can be dropped as soon as it is used."""
TIMEOUT_S = 30.0
MAX_PATH = 512
"""A CIDv0/CIDv1 path with the CAR query parameters is well under this; longer request lines are refused
before parsing."""
MAX_ERROR_BODY = 4096
MIN_RATE = 256 * 1024
"""A CAR slower than this on average after :data:`RATE_GRACE_S` is dropped for the next gateway (a loopback or
LAN peer sends ~100 MB/s; a gateway that dribbles would otherwise hold a fetch without ever timing out)."""
RATE_GRACE_S = 10.0
RCVLOWAT = 512 * 1024
VERIFY_AHEAD = 4 * 1024 * 1024
"""How far a CAR is read ahead of the walk while a second thread hashes its blocks (16 blocks of 256 KiB): the
memory a fetch holds beyond the block the caller has is this plus the 2 MiB segment being filled (at most
:data:`CAR_SEGMENTS` segments are kept for reuse). 0: read and hash in the caller's thread, one block at a time."""
CAR_SEGMENTS = 6
"""Receive segments (2 MiB) a CAR reader keeps for reuse: the read-ahead spans up to three, the one being filled
and the one whose block the caller holds."""


class BlockSkipped(Exception):
    """One gateway could not give one block (the reason is logged; the next gateway is asked)."""


@dataclass
class FetchStats:
    """What one :func:`gateway_get` did (for reports such as the multi-host harness's counts)."""

    car_requests: int = 0
    car_blocks: int = 0
    raw_blocks: int = 0
    skipped: int = 0
    """Gateways dropped for this fetch or skipped for a block (each with a logged reason)."""


class _Connections:
    """One kept-alive HTTP connection per gateway for a whole fetch: a new TCP connection per 256 KiB block
    cost more CPU than hashing it."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._open: dict[str, http.client.HTTPConnection] = {}

    def get(self, gateway: str) -> http.client.HTTPConnection:
        conn = self._open.get(gateway)
        if conn is None:
            conn = _connect(gateway, self._timeout)
            self._open[gateway] = conn
        return conn

    def drop(self, gateway: str) -> None:
        conn = self._open.pop(gateway, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for gateway in list(self._open):
            self.drop(gateway)


def _connect(gateway: str, timeout: float) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(gateway)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return kind(parts.netloc, timeout=timeout)


def _prefix(gateway: str) -> str:
    return urllib.parse.urlsplit(gateway).path.rstrip("/")


def _media_type(value: str | None) -> tuple[str, dict[str, str]]:
    """``type/subtype`` and its parameters (lower-cased names) of a Content-Type or one Accept entry."""
    kind, *params = (value or "").split(";")
    parsed = {}
    for param in params:
        name, _, val = param.partition("=")
        parsed[name.strip().lower()] = val.strip().strip('"')
    return kind.strip().lower(), parsed


def _read_raw_block(connections: _Connections, gateway: str, digest: bytes) -> bytes | bytearray:
    try:
        conn = connections.get(gateway)
        conn.request("GET", f"{_prefix(gateway)}/ipfs/{CID(digest).v0}?format=raw", headers={"Accept": RAW})
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
        kind = _media_type(response.getheader("Content-Type"))[0]
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


def _reason(exc: Exception) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return "the CAR stream was cut short (truncated)"
    return str(exc) or type(exc).__name__


class _Body:
    """An identity CAR body (sized or ended by the close), read one socket read at a time (``readinto1``): the
    reader's rate floor is checked after every read, not once per 2 MiB that a dribbling sender may never fill.
    Chunked bodies (Kubo's) go through ``HTTPResponse.readinto``, which fills the whole request first."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self._response = response  # held: a collected response closes the file it read from
        self._fp = response.fp
        self._remaining = response.length

    def readinto(self, buffer: memoryview) -> int:
        if self._remaining is not None:
            if not self._remaining:
                return 0
            buffer = buffer[: self._remaining]
        got = self._fp.readinto1(buffer)
        if self._remaining is not None:
            if not got:
                raise http.client.IncompleteRead(b"", self._remaining)
            self._remaining -= got
        return got


class _CarStream:
    """One CAR response being read: its connection and the reader over its body."""

    def __init__(self, gateway: str, conn: http.client.HTTPConnection, reader: CarReader) -> None:
        self.gateway = gateway
        self.conn = conn
        self.reader = reader
        self.discarded = 0

    def close(self) -> None:
        self.reader.close()
        self.conn.close()


class _Fetch:
    """The blocks of one file for :func:`iter_file`: from CAR streams while a gateway gives an honest one, then
    from raw blocks. ``offset`` (file bytes already handed out) is where a replacement CAR starts."""

    def __init__(
        self,
        gateways: Sequence[str],
        root: bytes,
        timeout: float,
        *,
        car: bool,
        stats: FetchStats,
        keeper: BlockKeeper | None,
    ) -> None:
        self.gateways = list(gateways)
        self.root = root
        self.timeout = timeout
        self.stats = stats
        self.keeper = keeper
        self.connections = _Connections(timeout)
        self.min_rate: float | None = MIN_RATE
        self.rate_grace = RATE_GRACE_S
        self.car_gateways = list(gateways) if car else []
        self.stream: _CarStream | None = None
        self.seen: set[bytes] = set()
        self.offset = 0
        self.verify_ahead = VERIFY_AHEAD
        self._held: tuple[bytes, bytes | bytearray | memoryview] | None = None

    # --- the walk's block reader -----------------------------------------------------------------------------
    def read_block(self, digest: bytes) -> bytes | bytearray:
        if self._held is not None and self._held[0] == digest:
            block = self._held[1]
            self._held = None
        else:
            from_car = self._car_block(digest)
            block = self._raw_block(digest) if from_car is None else from_car
            self.seen.add(digest)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("gateway verified block %s (%d bytes)", CID(digest).v0, len(block))
            if self.keeper is not None:
                self.keeper.add(digest, block)
        # iter_file only slices, compares and hashes a block, which a memoryview does as well as bytes: the view
        # into the CAR reader's segment saves a copy of every block (a widened BlockReader type is requested).
        return cast("bytes", block)

    def first(self) -> None:
        """Fetch the root now, so a missing CID fails at the call (like the other stores), and hold it."""
        block = self.read_block(self.root)
        self._held = (self.root, block)

    def _car_block(self, digest: bytes) -> memoryview | None:
        while self.car_gateways:
            if self.stream is None:
                self.stream = self._open_car()
                if self.stream is None:
                    return None
            stream = self.stream
            try:
                section = stream.reader.peek()
            except (CarError, http.client.HTTPException, OSError) as exc:
                self._drop_car(_reason(exc))
                continue
            if section is None:
                self._drop_car(f"the CAR ended before block {CID(digest).v0}")
                continue
            if section.digest == digest:
                stream.reader.take()
                self.stats.car_blocks += 1
                return section.block
            if digest in self.seen:
                return None  # a dups=n CAR sends a repeated block once: ask for it raw
            if section.digest in self.seen and stream.discarded <= len(self.seen):
                # A block already used (a replacement CAR repeats the root and the branches down to its start;
                # a gateway that ignores entity-bytes repeats everything). Bounded: a gateway cannot loop us.
                stream.reader.take()
                stream.discarded += 1
                continue
            self._drop_car(f"sent block {CID(section.digest).v0} where the DAG needs {CID(digest).v0}")
        return None

    def _open_car(self) -> _CarStream | None:
        """A CAR of the file from the first gateway that gives one (from ``offset`` on), or None."""
        query = "format=car&dag-scope=all"
        if self.offset:
            query = f"format=car&dag-scope=entity&entity-bytes={self.offset}:*"
        while self.car_gateways:
            gateway = self.car_gateways[0]
            conn = _connect(gateway, self.timeout)
            try:
                self.stats.car_requests += 1
                conn.request(
                    "GET",
                    f"{_prefix(gateway)}/ipfs/{CID(self.root).v0}?{query}",
                    headers={"Accept": CAR_ACCEPT},
                )
                response = conn.getresponse()
                if response.status != 200:
                    response.read(MAX_ERROR_BODY)
                    raise CarError(f"HTTP {response.status}")
                kind, params = _media_type(response.getheader("Content-Type"))
                if kind != CAR:
                    raise CarError(f"answered {kind or 'no Content-Type'}, not {CAR}")
                if params.get("version", "1") != "1":
                    raise CarError(f"sent a CAR version {params['version']}, not 1")
                if response.length is None and not response.chunked and conn.sock is not None:
                    # The CAR ends when the connection does (our server): wake only once a good part of a
                    # segment is there, not per arriving packet, which costs more CPU than copying the bytes.
                    # Not for chunked or sized bodies: their end is not a close, and would wait for the timeout.
                    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, RCVLOWAT)
                body: _Body | http.client.HTTPResponse = response if response.chunked else _Body(response)
                reader = CarReader(
                    body,
                    min_rate=self.min_rate,
                    grace=self.rate_grace,
                    verify_ahead=self.verify_ahead,
                    max_pool=CAR_SEGMENTS,
                )
                reader.header()  # roots: the spec tells clients to ignore them; every block is checked instead
                return _CarStream(gateway, conn, reader)
            except (CarError, http.client.HTTPException, OSError) as exc:
                conn.close()
                self._skip_car(gateway, _reason(exc))
        return None

    def _skip_car(self, gateway: str, reason: str) -> None:
        log.warning(
            "gateway %s: no CAR of %s used from byte %d on: %s",
            gateway,
            CID(self.root).v0,
            self.offset,
            reason,
        )
        self.stats.skipped += 1
        if gateway in self.car_gateways:
            self.car_gateways.remove(gateway)

    def _drop_car(self, reason: str) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.close()
            self._skip_car(stream.gateway, reason)

    def _raw_block(self, digest: bytes) -> bytes | bytearray:
        reasons = []
        for gateway in self.gateways:
            try:
                block = _read_raw_block(self.connections, gateway, digest)
            except BlockSkipped as exc:
                log.warning("gateway %s skipped for block %s: %s", gateway, CID(digest).v0, exc)
                self.stats.skipped += 1
                reasons.append(f"{gateway}: {exc}")
                continue
            self.stats.raw_blocks += 1
            return block
        if all(r.endswith("HTTP 404") for r in reasons):
            detail = None if digest == self.root else f"block {CID(digest).v0} of it is missing"
            raise ContentNotFound(CID(self.root).v0, "gateway", detail=detail)
        raise StoreUnavailable(
            ", ".join(self.gateways), "; ".join(reasons), hint="check the gateways or try later"
        )

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        self.connections.close()


def _check_gateways(gateways: Sequence[str]) -> None:
    if not gateways:
        raise StoreUnavailable("gateways", "no gateway is configured", hint="list at least one gateway URL")
    for gateway in gateways:
        if not gateway.startswith(("http://", "https://")):
            raise StoreError(
                gateway, "a gateway is an http:// or https:// URL", hint="e.g. http://127.0.0.1:8080"
            )


def gateway_get(
    gateways: Sequence[str],
    cid: str,
    *,
    max_bytes: int | None = None,
    timeout: float = TIMEOUT_S,
    car: bool = True,
    stats: FetchStats | None = None,
    keeper: BlockKeeper | None = None,
    min_rate: float | None = MIN_RATE,
    rate_grace: float = RATE_GRACE_S,
    verify_ahead: int = VERIFY_AHEAD,
) -> Iterator[memoryview]:
    """A file's bytes, every block verified, from the first gateway in ``gateways`` that gives them honestly.

    One CAR request per file while gateways answer with honest CARs (``car=False``: raw blocks only, one request
    each). A CAR averaging less than ``min_rate`` bytes a second after ``rate_grace`` seconds is dropped like a
    lying one (``None``: no floor). Raises :class:`ContentNotFound` when every gateway answered and none had a block,
    :class:`StoreUnavailable` when some could not be asked (down, lying): retrying later may help. The DAG checks
    (Kubo's layout, the size bound) raise what :func:`iter_file` raises. ``keeper`` is handed every verified
    block (see :mod:`ledger.content.replicate`) and committed once the whole file was walked.

    A CAR is read up to ``verify_ahead`` bytes ahead of the walk while a second thread hashes its blocks
    (:class:`~ledger.content.car.CarReader`); no byte of a block is yielded, or handed to ``keeper``, before that
    block matched its CID, and errors met while reading ahead are raised (or make the fetch fall back) only once
    the blocks before them were used, as without it. The thread ends with the CAR stream: when the walk ends,
    fails, or the caller closes (or drops) the iterator. ``0``: no second thread.

    A yielded view stays valid while it is referenced (the reader reuses a buffer only once no view of it is
    alive), so consumers may keep them.
    """
    _check_gateways(gateways)
    root = CID.parse(cid).digest
    fetch = _Fetch(gateways, root, timeout, car=car, stats=stats or FetchStats(), keeper=keeper)
    fetch.min_rate, fetch.rate_grace, fetch.verify_ahead = min_rate, rate_grace, verify_ahead
    try:
        fetch.first()
    except BaseException:
        fetch.close()
        if keeper is not None:
            keeper.abort()
        raise
    return _walk(fetch, max_bytes, keeper)


def _walk(fetch: _Fetch, max_bytes: int | None, keeper: BlockKeeper | None) -> Iterator[memoryview]:
    done = False
    try:
        for chunk in iter_file(fetch.root, fetch.read_block, max_bytes=max_bytes):
            fetch.offset += len(chunk)
            yield chunk
        done = True
    finally:
        fetch.close()
        if keeper is not None:
            if done:
                keeper.commit(fetch.root)
            else:
                keeper.abort()


# --- serving -------------------------------------------------------------------------------------------------


class _Corrupt(Exception):
    pass


class _Missing(Exception):
    pass


_FileKey = tuple[int, int, int]


class _Verified:
    """Blocks this server has hashed already, by the file that holds them (inode, size, mtime), and whether each
    is a leaf (no links): a block file is never rewritten in place (a put renames a new file over it), so the
    same file need not be hashed for every peer that asks, and a verified leaf can be sent from its file
    (``sendfile``) without reading it. Bounded; forgetting only costs a hash."""

    MAX = 1 << 18  # 64 GiB of 256 KiB blocks, ~30 MB of entries

    def __init__(self) -> None:
        self._seen: dict[bytes, tuple[_FileKey, bool]] = {}
        self._paths: dict[bytes, str] = {}
        self._lock = threading.Lock()

    def path(self, store: LocalStore, digest: bytes) -> str:
        """The block's file name (remembered: computing it costs a base32 encoding and a Path per block)."""
        path = self._paths.get(digest)
        if path is None:
            path = str(store.block_path(digest))
            with self._lock:
                if len(self._paths) >= self.MAX:
                    self._paths.clear()
                self._paths[digest] = path
        return path

    def check(self, digest: bytes, key: _FileKey) -> bool:
        seen = self._seen.get(digest)
        return seen is not None and seen[0] == key

    def leaf(self, digest: bytes, key: _FileKey) -> bool:
        """Whether this file of the block was verified and holds a node without links."""
        return self._seen.get(digest) == (key, True)

    def add(self, digest: bytes, key: _FileKey, *, leaf: bool) -> None:
        with self._lock:
            if len(self._seen) >= self.MAX:
                self._seen.clear()
            self._seen[digest] = (key, leaf)


def _is_leaf(block: bytes) -> bool:
    try:
        return not decode_file_node(block).links
    except MalformedDag:
        return False  # read and decoded again when served: the CAR's walk reports it


def _load(fd: int, st: os.stat_result, digest: bytes, verified: _Verified | None) -> bytes:
    """The block in ``fd``, checked against its CID (unless this file was checked before)."""
    if st.st_size > MAX_BLOCK_SIZE:
        block = b""
    else:
        block = os.read(fd, st.st_size)
        while len(block) < st.st_size and (more := os.read(fd, st.st_size - len(block))):
            block += more
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    if verified is not None and len(block) == st.st_size and verified.check(digest, key):
        return block
    if not block or len(block) > MAX_BLOCK_SIZE or hashlib.sha256(block).digest() != digest:
        # Never pass on a block our own disk corrupted: clients would skip us anyway.
        log.error("gateway: block %s on disk does not match its CID", CID(digest).v0)
        raise _Corrupt
    if verified is not None:
        verified.add(digest, key, leaf=_is_leaf(block))
    return block


def _read_verified(store: LocalStore, digest: bytes, verified: _Verified | None = None) -> bytes | None:
    """A block of the store, checked against its CID; None when absent; :class:`_Corrupt` when it does not match."""
    try:
        fd = os.open(store.block_path(digest), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _load(fd, os.fstat(fd), digest, verified)
    finally:
        os.close(fd)


def _open_verified(store: LocalStore, digest: bytes, verified: _Verified) -> bytes | LeafFile | None:
    """A CAR's child block: a leaf whose file this server verified before stays in that open file, to be sent
    with ``sendfile`` (an open file keeps its inode even if a put renames a new file over the path); any other
    block as :func:`_read_verified` gives it."""
    try:
        file = open(verified.path(store, digest), "rb", buffering=0)  # noqa: SIM115 - closed below or by the sender
    except FileNotFoundError:
        return None
    handed = False
    try:
        st = os.fstat(file.fileno())
        if verified.leaf(digest, (st.st_ino, st.st_size, st.st_mtime_ns)):
            handed = True
            return LeafFile(file, st.st_size)
        return _load(file.fileno(), st, digest, verified)
    finally:
        if not handed:
            file.close()


def _choose(accept: str, fmt: str | None) -> tuple[str, dict[str, str]] | None:
    """The response type asked for: ``format`` first (the spec's precedence), then the first of raw or CAR in
    Accept; None for anything else (a trustless gateway serves no deserialized responses)."""
    wanted = {"raw": RAW, "car": CAR}.get(fmt) if fmt is not None else None
    if fmt is not None and wanted is None:
        return None
    for entry in accept.split(",")[:32]:
        kind, params = _media_type(entry)
        if wanted is not None and kind == wanted:
            return kind, params  # format picks the type; Accept may still carry its parameters
        if (
            wanted is None
            and kind in (RAW, CAR)
            and params.get("q", "1") not in ("0", "0.0", "0.00", "0.000")
        ):
            return kind, params
    return (wanted, {}) if wanted is not None else None


class _Handler(BaseHTTPRequestHandler):
    store: LocalStore
    verified: _Verified
    server_version = "meshprov-gateway"
    protocol_version = "HTTP/1.1"  # keep-alive for raw blocks: every raw answer has a Content-Length

    def log_message(self, format: str, *args: object) -> None:
        log.debug("gateway %s: " + format, self.client_address[0], *args)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, *, body: bool) -> None:
        path, _, query = self.path.partition("?")
        if len(self.path) > MAX_PATH or not path.startswith("/ipfs/") or path.count("/") != 2:
            self._error(400, "ask for /ipfs/{cid} (no paths below a CID)")
            return
        try:
            params = {k: v[-1] for k, v in urllib.parse.parse_qs(query, max_num_fields=16).items()}
        except ValueError:
            self._error(400, "too many query parameters")
            return
        chosen = _choose(self.headers.get("Accept", ""), params.get("format"))
        if chosen is None:
            self._error(406, f"ask for {RAW} or {CAR} (Accept or ?format=raw|car)")
            return
        try:
            cid = CID.parse(path[len("/ipfs/") :])
        except InvalidCID as exc:
            self._error(400, f"not a CID: {exc.problem}")
            return
        try:
            block = _read_verified(self.store, cid.digest, self.verified)
        except _Corrupt:
            self._error(500, "block corrupt on this host")
            return
        if block is None:
            self._error(404, "block not held here")
            return
        kind, accept_params = chosen
        if kind == RAW:
            self._raw(cid, block, body=body)
        else:
            self._car(cid, block, {**accept_params, **_car_query(params)}, params, body=body)

    def _raw(self, cid: CID, block: bytes, *, body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", RAW)
        self.send_header("Content-Length", str(len(block)))
        self.send_header("Content-Disposition", f'attachment; filename="{cid.v0}.bin"')
        self.send_header("Etag", f'"{cid.v0}.raw"')
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "public, max-age=29030400, immutable")
        self.end_headers()
        if body:
            self.wfile.write(block)

    def _car(
        self, cid: CID, root_block: bytes, car_params: dict[str, str], params: dict[str, str], *, body: bool
    ) -> None:
        if car_params.get("version", "1") != "1":
            self._error(406, "only CAR version 1 is served")
            return
        if car_params.get("order", "dfs") not in ("dfs", "unk", ""):
            self._error(406, "only order=dfs is served")
            return
        dups = car_params.get("dups") == "y"  # the spec: without dups=y, send each block once
        scope = params.get("dag-scope", "all")
        if scope not in ("all", "entity", "block"):
            self._error(400, "dag-scope is all, entity or block")
            return
        byte_range: ByteRange | None = None
        ranged = "entity-bytes" in params
        if ranged:
            scope = "entity"
            try:
                size = decode_file_node(root_block, cid.v0).filesize
                byte_range = ByteRange.parse(params["entity-bytes"], size)
            except ValueError:
                self._error(400, "entity-bytes is from:to (integers, to may be *)")
                return
            except MalformedDag:
                ranged = False  # not a file: entity-bytes is ignored, as the spec says
            else:
                if byte_range is None:
                    scope = "block"  # an empty range: the root alone, so the client can see why
        self.send_response(200)
        self.send_header("Content-Type", f"{CAR}; version=1; order=dfs; dups={'y' if dups else 'n'}")
        self.send_header("Content-Disposition", f'attachment; filename="{cid.v0}.car"')
        tag = f"{scope}.{'y' if dups else 'n'}" + (f".{params['entity-bytes']}" if ranged else "")
        self.send_header("Etag", f'W/"{cid.v0}.car.{hashlib.sha256(tag.encode()).hexdigest()[:16]}"')
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "public, max-age=29030400, immutable")
        # Streamed without a length: the end of the CAR is the end of the connection, and a missing child
        # block cuts it short, which the client sees as a truncated CAR (the spec's streaming rule).
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if not body:
            return

        def read_block(digest: bytes) -> bytes | LeafFile:
            block = _open_verified(self.store, digest, self.verified)
            if block is None:
                raise _Missing
            return block

        blocks = dag_blocks(cid.digest, root_block, read_block, scope=scope, dups=dups, byte_range=byte_range)
        corked = _cork(self.connection, on=True)
        try:
            # wfile is unbuffered: what it writes and what sendfile sends go out in order
            self.wfile.write(car_header(cid.multihash))
            for digest, block in blocks:
                try:
                    self.wfile.write(section_prefix(cid_v0_bytes(digest), len(block)))
                    if isinstance(block, LeafFile):
                        _send_file(self.connection, block)
                    else:
                        self.wfile.write(block)
                finally:
                    if isinstance(block, LeafFile):
                        block.close()
        except (_Missing, _Corrupt, MalformedDag, CarError) as exc:
            log.warning("gateway: CAR of %s cut short: %s", cid.v0, type(exc).__name__.strip("_"))
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            if corked:
                _cork(self.connection, on=False)

    def _error(self, code: int, message: str) -> None:
        data = (message + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _send_file(conn: socket.socket, leaf: LeafFile) -> None:
    """The whole of ``leaf``'s file on ``conn`` (``os.sendfile``: no copy through this process)."""
    if conn.gettimeout() is not None:  # a socket with a timeout is non-blocking underneath
        sent = conn.sendfile(leaf.file, 0, leaf.size)
    else:
        out, fd, sent = conn.fileno(), leaf.file.fileno(), 0
        while sent < leaf.size and (more := os.sendfile(out, fd, sent, leaf.size - sent)):
            sent += more
    if sent != leaf.size:
        raise _Corrupt  # the file shrank under us: stop, the client sees a truncated CAR


def _cork(conn: socket.socket, *, on: bool) -> bool:
    """TCP_CORK: send full segments, not a 40-byte packet for each section's length and CID before its block
    (the receiver pays per packet); uncorking flushes. False where the option does not exist."""
    cork = getattr(socket, "TCP_CORK", None)
    if cork is None:
        return False
    try:
        conn.setsockopt(socket.IPPROTO_TCP, cork, 1 if on else 0)
    except OSError:
        return False
    return True


def _car_query(params: dict[str, str]) -> dict[str, str]:
    """``car-version``/``car-order``/``car-dups`` query parameters, which take precedence over Accept's."""
    return {
        name[4:]: value for name, value in params.items() if name in ("car-version", "car-order", "car-dups")
    }


def serve_blocks(store: LocalStore, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """A started gateway server for ``store``'s blocks (in a daemon thread); ``.shutdown()`` stops it."""
    handler = type("Handler", (_Handler,), {"store": store, "verified": _Verified()})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="meshprov-gateway", daemon=True).start()
    return server


class GatewayStore:
    """The local store, and for content it lacks, the gateways.

    Writes go to the local store. With ``keep=True`` (the replication rule for validators and aggregators) every
    block fetched from a gateway and verified is written to the local store as it passes, and the root, which
    makes the file present, last, once the whole DAG was walked; the file is then pinned and served by this
    host's gateway. ``name`` is ``"local"`` so :func:`fetch_to_file` trusts the walk's proof of the Kubo CID,
    which the gateway path gives too (it walks the same :func:`iter_file`).
    """

    name = "local"

    def __init__(
        self,
        local: LocalStore,
        gateways: Sequence[str],
        *,
        timeout: float = TIMEOUT_S,
        keep: bool = False,
        car: bool = True,
    ) -> None:
        self.local = local
        self.gateways = list(gateways)
        self.timeout = timeout
        self.keep = keep
        self.car = car
        self.stats = FetchStats()

    def __repr__(self) -> str:
        return f"GatewayStore({self.local!r}, {self.gateways!r}, keep={self.keep})"

    def put_file(self, path: str | os.PathLike[str], *, progress: Progress | None = None) -> str:
        return self.local.put_file(path, progress=progress)

    def put_bytes(self, data: Buffer) -> str:
        return self.local.put_bytes(data)

    def get(self, cid: str, *, max_bytes: int | None = None) -> Iterator[memoryview]:
        if self.local.has(cid):
            return self.local.get(cid, max_bytes=max_bytes)
        keeper = None
        if self.keep:
            from ledger.content.replicate import BlockKeeper

            keeper = BlockKeeper(self.local)
        return gateway_get(
            self.gateways,
            cid,
            max_bytes=max_bytes,
            timeout=self.timeout,
            car=self.car,
            stats=self.stats,
            keeper=keeper,
        )

    def has(self, cid: str) -> bool:
        return self.local.has(cid)

    def pin(self, cid: str) -> None:
        """Make the whole file held here: fetched (every block verified) into the local store if absent."""
        if not self.local.has(cid):
            from ledger.content.replicate import replicate

            replicate(self, cid)
        self.local.pin(cid)

    def stat(self, cid: str) -> ContentStat:
        """From the local store; for content it lacks, from the root block the gateways give (verified against the
        CID): a validator's path asks ``stat`` before it reads."""
        try:
            return self.local.stat(cid)
        except ContentNotFound:
            if not self.gateways:
                raise
        from ledger.content.store import ContentStat

        parsed = CID.parse(cid)
        fetch = _Fetch(self.gateways, parsed.digest, self.timeout, car=False, stats=self.stats, keeper=None)
        try:
            block = fetch.read_block(parsed.digest)
        finally:
            fetch.close()
        node = decode_file_node(block, parsed.v0)
        return ContentStat(cid=parsed.v0, size=node.filesize, block_size=len(block), pinned=False)

    def close(self) -> None:
        self.local.close()

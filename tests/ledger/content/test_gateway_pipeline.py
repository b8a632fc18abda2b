"""The CAR fetch's read-ahead (receiving ∥ hashing in a second thread): no unverified byte reaches the caller, errors
come where they came without it, the hashing thread always ends, and a gateway failing mid-CAR still falls back."""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import threading
from collections.abc import Callable, Generator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ledger.content import CID, StoreUnavailable
from ledger.content.car import CAR, CarError, CarReader, car_header, dag_blocks, section_prefix
from ledger.content.gateway import VERIFY_AHEAD, FetchStats, gateway_get
from ledger.content.local_store import LocalStore
from ledger.content.unixfs import CHUNK_SIZE

LEAVES = 40  # 10 MiB: more than VERIFY_AHEAD, so the reader is well ahead of the walk when the lie comes
DATA = os.urandom(LEAVES * CHUNK_SIZE + 777)
BAD = 33
"""The CAR section (0 is the root, 1.. the leaves) whose block is corrupted: late in the CAR."""
HASHER = "meshprov-car-hash"


def _hashers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == HASHER and t.is_alive()]


@pytest.fixture(autouse=True)
def _no_hashing_thread_left() -> Iterator[None]:
    assert not _hashers()
    yield
    gc.collect()
    assert not _hashers(), "a CAR reader's hashing thread outlived its fetch"


def _car(
    store: LocalStore, cid: str, change: Callable[[list[tuple[bytes, bytes]]], None] | None = None
) -> bytes:
    root = CID.parse(cid).digest

    def read(digest: bytes) -> bytes:
        return store._read_block(digest, root)

    blocks = [(d, bytes(b)) for d, b in dag_blocks(root, read(root), read, dups=True)]  # type: ignore[arg-type]
    if change is not None:
        change(blocks)
    out = bytearray(car_header(CID(root).multihash))
    for digest, block in blocks:
        out += section_prefix(CID(digest).multihash, len(block)) + block
    return bytes(out)


def _corrupt(blocks: list[tuple[bytes, bytes]]) -> None:
    digest, block = blocks[BAD]
    blocks[BAD] = (digest, block[:100] + bytes([block[100] ^ 1]) + block[101:])


def _serving(car: bytes) -> ThreadingHTTPServer:
    """A gateway that answers every request (raw ones too) with ``car``, in one write, then closes."""

    class Liar(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"{CAR}; version=1; order=dfs; dups=y")
            self.send_header("Connection", "close")
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(car)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Liar)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def _sections(car: bytes, verify_ahead: int) -> tuple[list[bytes], str | None]:
    """The digests a reader hands out, in order, and the error it stops with."""
    reader = CarReader(io.BytesIO(car), verify_ahead=verify_ahead)
    got: list[bytes] = []
    try:
        reader.header()
        while (section := reader.peek()) is not None:
            reader.take()
            got.append(section.digest)
    except CarError as exc:
        return got, str(exc)
    finally:
        reader.close()
    return got, None


@pytest.mark.parametrize("lie", ["honest", "corrupt", "truncated", "oversized", "bad_cid"])
def test_reading_ahead_hands_out_the_same_sections_and_errors(store: LocalStore, lie: str) -> None:
    cid = store.put_bytes(DATA)
    car = _car(store, cid, _corrupt if lie == "corrupt" else None)
    if lie == "truncated":
        car = car[: len(car) - 5 * CHUNK_SIZE]
    elif lie == "oversized":
        car = car[: len(car) // 2] + bytes([0xFF, 0xFF, 0xFF, 0x7F]) + b"x" * 100
    elif lie == "bad_cid":
        car = car[: len(car) // 2] + bytes([40]) + b"\x01\x71" + b"y" * 39
    plain = _sections(car, 0)
    ahead = _sections(car, VERIFY_AHEAD)
    assert ahead == plain
    got, error = ahead
    if lie == "honest":
        assert error is None
        assert len(got) == LEAVES + 2
    else:
        assert error is not None
    if lie == "corrupt":
        assert len(got) == BAD
        assert "does not hash to its CID" in (error or "")


def test_no_unverified_byte_reaches_the_caller_before_the_error(store: LocalStore) -> None:
    cid = store.put_bytes(DATA)
    liar = _serving(_car(store, cid, _corrupt))  # also answers raw requests with the lying CAR: no fallback
    got = bytearray()

    def consume() -> None:
        for chunk in gateway_get([_url(liar)], cid):
            assert _hashers(), "the fetch does not read ahead: this test would not test it"
            got.extend(chunk)

    try:
        with pytest.raises(StoreUnavailable, match="raw"):
            consume()
    finally:
        liar.shutdown()
        liar.server_close()
    # Every leaf before the corrupted one, each whole, and not one byte of it or after it.
    assert len(got) == (BAD - 1) * CHUNK_SIZE
    assert got == DATA[: len(got)]


def test_a_gateway_failing_mid_car_falls_back_to_the_next(
    store: LocalStore, served: str, caplog: pytest.LogCaptureFixture
) -> None:
    cid = store.put_bytes(DATA)
    for car in (_car(store, cid, _corrupt), _car(store, cid)[: 30 * CHUNK_SIZE]):
        liar = _serving(car)
        stats = FetchStats()
        caplog.clear()
        try:
            with caplog.at_level(logging.WARNING):
                got = b"".join(gateway_get([_url(liar), served], cid, stats=stats))
        finally:
            liar.shutdown()
            liar.server_close()
        assert got == DATA
        assert (stats.car_requests, stats.raw_blocks) == (2, 0)
        assert "no CAR of" in caplog.text
        assert "from byte 0 on" not in caplog.text  # the next gateway's CAR went on from where the walk stood


def test_the_hashing_thread_ends_when_the_caller_stops_early(store: LocalStore, served: str) -> None:
    cid = store.put_bytes(DATA)
    chunks = gateway_get([served], cid)
    assert bytes(next(chunks)) == DATA[:CHUNK_SIZE]
    assert _hashers()
    assert isinstance(chunks, Generator)
    chunks.close()
    assert not _hashers()

    chunks = gateway_get([served], cid)
    next(chunks)
    next(chunks)
    assert _hashers()
    del chunks  # dropped without close: the generator's cleanup stops the thread
    gc.collect()
    assert not _hashers()


def test_the_hashing_thread_ends_when_the_consumer_fails(store: LocalStore, served: str) -> None:
    cid = store.put_bytes(DATA)

    def consume() -> None:
        for i, _chunk in enumerate(gateway_get([served], cid)):
            if i == 3:
                raise RuntimeError("the consumer's disk is full")

    with pytest.raises(RuntimeError, match="disk is full"):
        consume()
    gc.collect()
    assert not _hashers()


def test_without_read_ahead_no_thread_is_started(store: LocalStore, served: str) -> None:
    cid = store.put_bytes(DATA)
    for chunk in gateway_get([served], cid, verify_ahead=0):
        assert not _hashers()
        del chunk


def test_a_served_car_is_the_same_when_its_leaves_go_out_with_sendfile(
    store: LocalStore, served: str
) -> None:
    import urllib.request

    cid = store.put_bytes(DATA)
    request = urllib.request.Request(f"{served}/ipfs/{cid}?format=car&car-dups=y")
    with urllib.request.urlopen(request, timeout=30) as first:  # every block read and hashed
        first_car = first.read()
    with urllib.request.urlopen(request, timeout=30) as second:  # the verified leaves sent from their files
        second_car = second.read()
    assert first_car == second_car == _car(store, cid)
    assert b"".join(gateway_get([served], cid)) == DATA

"""CAR over the trustless gateway: our server's answers, and the fetcher against honest, lying and broken CARs."""

from __future__ import annotations

import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ledger.content import CID, ContentNotFound
from ledger.content.car import CAR, CarReader, car_header, section_prefix
from ledger.content.gateway import FetchStats, gateway_get, serve_blocks
from ledger.content.local_store import LocalStore
from ledger.content.unixfs import CHUNK_SIZE

DATA = os.urandom(5 * CHUNK_SIZE + 1000)
REPEATED = bytes(3 * CHUNK_SIZE) + b"tail"


def _get(url: str, accept: str | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    headers = {"Accept": accept} if accept else {}
    req = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _blocks(car: bytes) -> list[bytes]:
    import io

    reader = CarReader(io.BytesIO(car))
    reader.header()
    out = []
    while (section := reader.peek()) is not None:
        reader.take()
        out.append(section.digest)
    return out


def test_one_car_request_fetches_the_whole_file(store: LocalStore, served: str) -> None:
    cid = store.put_bytes(DATA)
    stats = FetchStats()
    assert b"".join(gateway_get([served], cid, stats=stats)) == DATA
    assert (stats.car_requests, stats.car_blocks, stats.raw_blocks) == (1, 7, 0)


def test_repeated_blocks_come_in_the_car_when_asked_with_dups(store: LocalStore, served: str) -> None:
    cid = store.put_bytes(REPEATED)
    stats = FetchStats()
    assert b"".join(gateway_get([served], cid, stats=stats)) == REPEATED
    assert (stats.car_requests, stats.car_blocks, stats.raw_blocks) == (1, 5, 0)


def test_server_car_answers_follow_the_spec(store: LocalStore, served: str) -> None:
    cid = store.put_bytes(REPEATED)
    url = f"{served}/ipfs/{cid}"
    code, headers, body = _get(url, "application/vnd.ipld.car")
    assert code == 200
    assert headers["Content-Type"] == f"{CAR}; version=1; order=dfs; dups=n"
    assert headers["Content-Disposition"] == f'attachment; filename="{cid}.car"'
    assert headers["Etag"].startswith(f'W/"{cid}.car.')
    assert len(_blocks(body)) == 3  # dups=n: the repeated leaf once
    code, headers, body = _get(url + "?format=car", f"{CAR}; version=1; order=dfs; dups=y")
    assert headers["Content-Type"].endswith("dups=y")
    assert len(_blocks(body)) == 5
    code, headers, body = _get(url + "?format=car&car-dups=y")  # the query alone, no Accept
    assert code == 200
    assert len(_blocks(body)) == 5
    assert _blocks(_get(url + "?format=car&dag-scope=block")[2]) == [CID.parse(cid).digest]
    assert len(_blocks(_get(url + "?format=car&dag-scope=entity")[2])) == 3
    tail = _blocks(_get(url + "?format=car&entity-bytes=-4:*")[2])
    assert len(tail) == 2
    assert tail[0] == CID.parse(cid).digest
    code, headers, body = _get(url, CAR, method="HEAD")
    assert (code, body) == (200, b"")
    assert headers["Content-Type"].startswith(CAR)
    assert _get(url, f"{CAR}; version=2")[0] == 406
    assert _get(url + "?format=car&dag-scope=most")[0] == 400
    assert _get(url + "?format=car&entity-bytes=x")[0] == 400
    assert _get(f"{served}/ipfs/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG?format=car")[0] == 404


def _fake(answer: Callable[[BaseHTTPRequestHandler], None]) -> ThreadingHTTPServer:
    class Fake(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _car_from(store: LocalStore, cid: str, change: Callable[[list[tuple[bytes, bytes]]], None]) -> bytes:
    """Our server's CAR of ``cid`` (dups=y) with its list of (digest, block) edited by ``change``."""
    from ledger.content.car import dag_blocks

    root = CID.parse(cid).digest

    def read(digest: bytes) -> bytes:
        return store._read_block(digest, root)

    blocks = list(dag_blocks(root, read(root), read, dups=True))
    change(blocks)  # type: ignore[arg-type]
    out = bytearray(car_header(CID(root).multihash))
    for digest, block in blocks:
        out += section_prefix(CID(digest).multihash, len(block)) + block
    return bytes(out)


def _serving(car: bytes, content_type: str = f"{CAR}; version=1; order=dfs; dups=y") -> ThreadingHTTPServer:
    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(car)

    return _fake(answer)


@pytest.mark.parametrize(
    ("lie", "logged"),
    [
        ("flipped", "does not hash"),
        ("truncated", "truncated"),
        ("ends_early", "ended before block"),
        ("swapped", "where the DAG needs"),
        ("oversized", "a block is at most"),
        ("not_car", "not application/vnd.ipld.car"),
    ],
)
def test_a_lying_car_is_dropped_and_the_next_gateway_resumes(
    store: LocalStore, served: str, caplog: pytest.LogCaptureFixture, lie: str, logged: str
) -> None:
    cid = store.put_bytes(DATA)

    def change(blocks: list[tuple[bytes, bytes]]) -> None:
        if lie == "flipped":
            digest, block = blocks[3]
            blocks[3] = (digest, block[:-1] + bytes([block[-1] ^ 1]))
        elif lie == "swapped":
            blocks[2], blocks[3] = blocks[3], blocks[2]
        elif lie == "ends_early":
            del blocks[3:]

    car = _car_from(store, cid, change)
    if lie == "truncated":
        car = car[: len(car) // 2]
    elif lie == "oversized":
        car = car_header(CID.parse(cid).multihash) + bytes([0xFF, 0xFF, 0xFF, 0x7F]) + b"x" * 100
    liar = _serving(car, "text/html" if lie == "not_car" else f"{CAR}; version=1; order=dfs; dups=y")
    stats = FetchStats()
    try:
        with caplog.at_level(logging.WARNING):
            got = b"".join(
                gateway_get([f"http://127.0.0.1:{liar.server_address[1]}", served], cid, stats=stats)
            )
    finally:
        liar.shutdown()
        liar.server_close()
    assert got == DATA
    assert logged in caplog.text
    assert stats.car_requests == 2
    assert stats.raw_blocks == 0


def test_a_car_liar_that_serves_raw_honestly_is_still_used_for_raw_blocks(store: LocalStore) -> None:
    cid = store.put_bytes(DATA)
    honest = serve_blocks(store, port=0)
    base = f"http://127.0.0.1:{honest.server_address[1]}"
    bad_car = _car_from(store, cid, lambda blocks: blocks.reverse())

    def answer(h: BaseHTTPRequestHandler) -> None:
        if "format=car" in h.path:
            h.send_response(200)
            h.send_header("Content-Type", f"{CAR}; version=1")
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(bad_car)
            return
        with urllib.request.urlopen(
            urllib.request.Request(base + h.path, headers={"Accept": "application/vnd.ipld.raw"})
        ) as r:
            body = r.read()
        h.send_response(200)
        h.send_header("Content-Type", "application/vnd.ipld.raw")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    proxy = _fake(answer)
    stats = FetchStats()
    try:
        got = b"".join(gateway_get([f"http://127.0.0.1:{proxy.server_address[1]}"], cid, stats=stats))
    finally:
        for s in (proxy, honest):
            s.shutdown()
            s.server_close()
    assert got == DATA
    assert (stats.car_requests, stats.car_blocks, stats.raw_blocks) == (
        1,
        0,
        7,
    )  # its CAR refused at the root


def test_a_missing_child_cuts_the_car_and_the_fetch_says_which_block(store: LocalStore, served: str) -> None:
    cid = store.put_bytes(DATA)
    root = CID.parse(cid).digest
    from ledger.content.dag import decode_file_node

    leaf = decode_file_node(store._read_block(root, root)).links[2].digest
    store.block_path(leaf).unlink()
    with pytest.raises(ContentNotFound, match=CID(leaf).v0):
        b"".join(gateway_get([served], cid))


def test_a_block_corrupted_after_it_was_served_is_not_served_again(store: LocalStore, served: str) -> None:
    cid = store.put_bytes(DATA)
    root = CID.parse(cid).digest
    assert b"".join(gateway_get([served], cid)) == DATA  # every block hashed once by the server, remembered
    from ledger.content.dag import decode_file_node

    digest = decode_file_node(store._read_block(root, root)).links[1].digest
    leaf = store.block_path(digest)
    damaged = bytearray(leaf.read_bytes())
    damaged[-20] ^= 1
    with open(leaf, "r+b") as f:  # in place, same size: only the file's mtime tells the server
        f.write(damaged)
    assert _get(f"{served}/ipfs/{CID(digest).v0}", "application/vnd.ipld.raw")[0] == 500
    car = _get(f"{served}/ipfs/{cid}?format=car")[2]
    assert len(_blocks(car)) == 2  # the root and the first leaf; the stream stops before the damaged one


def test_a_dribbling_car_is_dropped_for_a_faster_gateway(
    store: LocalStore, served: str, caplog: pytest.LogCaptureFixture
) -> None:

    cid = store.put_bytes(DATA)
    car = _car_from(store, cid, lambda blocks: None)
    stop = threading.Event()

    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", f"{CAR}; version=1; order=dfs; dups=y")
        h.send_header("Content-Length", str(len(car)))
        h.end_headers()
        h.wfile.write(car[:2000])  # the header and the root, then a byte now and then: never a read timeout
        for i in range(2000, len(car)):
            if stop.wait(0.05):
                return
            try:
                h.wfile.write(car[i : i + 1])
            except OSError:
                return

    slow = _fake(answer)
    stats = FetchStats()
    try:
        with caplog.at_level(logging.WARNING):
            url = f"http://127.0.0.1:{slow.server_address[1]}"
            got = b"".join(gateway_get([url, served], cid, stats=stats, min_rate=100_000, rate_grace=1.0))
    finally:
        stop.set()
        slow.shutdown()
        slow.server_close()
    assert got == DATA
    assert "too slow" in caplog.text  # dropped by the rate floor, long before the dribble would have ended
    assert stats.car_requests == 2

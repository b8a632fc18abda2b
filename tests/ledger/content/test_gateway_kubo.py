"""The fetcher against Kubo's own blocks (tests/data/gateway, recorded from Kubo 0.22 by make_vectors.py).

What is recorded is the blocks Kubo 0.22's `ipfs add` wrote and the CIDs it printed; the gateway answers wrapped
around them below (raw with Content-Length; CAR with chunked transfer encoding, as Kubo's Go server streams it,
``order=dfs`` and ``dups=n`` unless ``dups=y`` is asked) are built per the trustless gateway spec, not recorded
from a Kubo gateway (none can run here).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ledger.content import CID
from ledger.content.car import CAR, car_header, section_prefix
from ledger.content.gateway import RAW, FetchStats, gateway_get, serve_blocks
from ledger.content.local_store import LocalStore

HERE = Path(__file__).resolve().parents[2] / "data" / "gateway"
MANIFEST = json.loads((HERE / "kubo-0.22.json").read_text())
FILES = MANIFEST["files"]


def _block(cid: str) -> bytes:
    return (HERE / "kubo-0.22-blocks" / f"{cid}.bin").read_bytes()


def _counter_bytes(size: int) -> bytes:  # make_vectors.counter_bytes
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(i.to_bytes(4, "big")).digest()
        i += 1
    return bytes(out[:size])


INPUTS = {
    "hello": b"hello meshprov\n",
    "two-leaves": _counter_bytes(262144 + 1000),
    "repeated": bytes(3 * 262144) + b"tail",
}


def _kubo_like(*, lie: str | None = None, dups_n_only: bool = False) -> ThreadingHTTPServer:
    """A gateway answering from the recorded blocks the way Kubo's does (spec-built framing, see the docstring)."""
    by_root = {f["cid"]: f for f in FILES.values()}

    class Kubo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            cid = path.rsplit("/", 1)[-1]
            accept = self.headers.get("Accept", "")
            if "format=car" in query or CAR in accept:
                self._car(by_root.get(cid), dups=("dups=y" in accept and not dups_n_only))
                return
            try:
                block = _block(cid)
            except FileNotFoundError:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", RAW)
            self.send_header("Content-Length", str(len(block)))
            self.end_headers()
            self.wfile.write(block)

        def _car(self, entry: dict[str, object] | None, *, dups: bool) -> None:
            if entry is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            order = list(entry["blocks_dfs"])  # type: ignore[call-overload]
            if not dups:
                order = list(dict.fromkeys(order))
            if lie == "wrong_block":
                order[1] = order[0]
            car = bytearray(car_header(CID.parse(str(entry["cid"])).multihash))
            for cid in order:
                block = _block(cid)
                car += section_prefix(CID.parse(cid).multihash, len(block)) + block
            self.send_response(200)
            self.send_header("Content-Type", f"{CAR}; version=1; order=dfs; dups={'y' if dups else 'n'}")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            body = bytes(car)
            if lie == "truncated":
                body = body[: len(body) // 2]
            for i in range(0, len(body), 32768):
                piece = body[i : i + 32768]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            if lie == "truncated":
                self.close_connection = True  # no last chunk: the stream just stops
                return
            self.wfile.write(b"0\r\n\r\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Kubo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def kubo() -> Iterator[str]:
    server = _kubo_like()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("name", sorted(FILES))
def test_our_importer_and_server_give_kubos_cid_blocks_and_order(name: str, tmp_path: Path) -> None:
    entry = FILES[name]
    assert hashlib.sha256(INPUTS[name]).hexdigest() == entry["sha256"]
    store = LocalStore(tmp_path / "blocks")
    assert store.put_bytes(INPUTS[name]) == entry["cid"]
    for cid in entry["blocks_dfs"]:
        assert store.block_path(CID.parse(cid).digest).read_bytes() == _block(cid)
    server = serve_blocks(store, port=0)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        # our CAR with dups=y carries exactly Kubo's blocks in Kubo's depth-first order
        stats = FetchStats()
        assert b"".join(gateway_get([url], entry["cid"], stats=stats)) == INPUTS[name]
        assert stats.car_blocks == len(entry["blocks_dfs"])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("car", [True, False])
@pytest.mark.parametrize("name", sorted(FILES))
def test_fetch_from_a_kubo_gateway(kubo: str, name: str, car: bool) -> None:
    entry = FILES[name]
    stats = FetchStats()
    data = b"".join(gateway_get([kubo], entry["cid"], car=car, stats=stats))
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    if car:
        assert stats.car_requests == 1
        assert stats.car_blocks == len(entry["blocks_dfs"])
        assert stats.raw_blocks == 0
    else:
        assert stats.raw_blocks == len(entry["blocks_dfs"])


def test_a_dups_n_car_gets_its_repeated_blocks_raw() -> None:
    entry = FILES["repeated"]
    server = _kubo_like(dups_n_only=True)
    stats = FetchStats()
    try:
        data = b"".join(
            gateway_get([f"http://127.0.0.1:{server.server_address[1]}"], entry["cid"], stats=stats)
        )
    finally:
        server.shutdown()
        server.server_close()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert (stats.car_blocks, stats.raw_blocks) == (3, 2)  # the zero leaf came once; its two repeats raw


@pytest.mark.parametrize(
    ("lie", "logged"), [("truncated", "truncated"), ("wrong_block", "where the DAG needs")]
)
def test_a_lying_kubo_is_dropped_for_the_next_gateway(
    kubo: str, lie: str, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    entry = FILES["two-leaves"]
    liar = _kubo_like(lie=lie)
    stats = FetchStats()
    try:
        with caplog.at_level(logging.WARNING):
            data = b"".join(
                gateway_get([f"http://127.0.0.1:{liar.server_address[1]}", kubo], entry["cid"], stats=stats)
            )
    finally:
        liar.shutdown()
        liar.server_close()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert logged in caplog.text
    assert stats.car_requests == 2

"""The raw-block trustless gateway: a real server on 127.0.0.1, an honest and a lying one, and the fetcher."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ledger.content import CID, ContentNotFound, StoreError, StoreUnavailable, cid_of_bytes
from ledger.content.dag import MAX_BLOCK_SIZE
from ledger.content.gateway import RAW, gateway_get, serve_blocks
from ledger.content.local_store import LocalStore

DATA = os.urandom(3 * 262144 + 1000)  # several leaves and a root node


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    store = LocalStore(tmp_path / "blocks")
    cid = store.put_bytes(DATA)
    server = serve_blocks(store, port=0)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", cid
    finally:
        server.shutdown()
        server.server_close()


def _liar(body: bytes, kind: str = RAW) -> ThreadingHTTPServer:
    class Liar(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Liar)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_fetches_every_block_from_a_served_store(served: tuple[str, str]) -> None:
    url, cid = served
    assert b"".join(gateway_get([url], cid)) == DATA


def test_a_lying_gateway_is_skipped_and_the_next_one_serves(
    served: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    url, cid = served
    liar = _liar(b"not the block")
    try:
        with caplog.at_level(logging.WARNING):
            got = b"".join(gateway_get([f"http://127.0.0.1:{liar.server_address[1]}", url], cid, car=False))
    finally:
        liar.shutdown()
        liar.server_close()
    assert got == DATA
    assert "do not hash to the CID" in caplog.text


def test_only_liars_is_unavailable_not_a_verdict(served: tuple[str, str]) -> None:
    _, cid = served
    liar = _liar(b"x" * 10, kind="text/html")
    try:
        with pytest.raises(StoreUnavailable, match=r"not application/vnd\.ipld\.raw"):
            gateway_get([f"http://127.0.0.1:{liar.server_address[1]}"], cid)
    finally:
        liar.shutdown()
        liar.server_close()


def test_missing_everywhere_is_not_found(served: tuple[str, str]) -> None:
    url, _ = served
    with pytest.raises(ContentNotFound):
        gateway_get([url], cid_of_bytes(b"held by nobody"))


def test_server_answers_raw_head_404_400_406(served: tuple[str, str]) -> None:
    url, cid = served

    def status(path: str, accept: str = RAW, method: str = "GET") -> tuple[int, bytes, str]:
        req = urllib.request.Request(url + path, headers={"Accept": accept}, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read(), r.headers["Content-Type"]
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers["Content-Type"]

    code, body, kind = status(f"/ipfs/{cid}")
    assert (code, kind) == (200, RAW)
    assert hashlib.sha256(body).digest() == CID.parse(cid).digest  # the root block itself, not the file
    code, body, _ = status(f"/ipfs/{cid}", method="HEAD")
    assert (code, body) == (200, b"")
    assert status("/ipfs/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG")[0] == 404
    assert status("/ipfs/not-a-cid")[0] == 400
    assert status("/ipfs/" + "Q" * 400)[0] == 400
    assert status(f"/ipfs/{cid}", accept="text/html")[0] == 406  # no deserialized responses
    assert status(f"/ipfs/{cid}?format=tar")[0] == 406


def test_only_http_gateways(served: tuple[str, str]) -> None:
    _, cid = served
    with pytest.raises(StoreError, match="http"):
        gateway_get(["file:///etc"], cid)


def test_an_oversized_block_is_refused(served: tuple[str, str]) -> None:
    _, cid = served
    liar = _liar(b"x" * (MAX_BLOCK_SIZE + 10))
    try:
        with pytest.raises(StoreUnavailable, match="more than"):
            gateway_get([f"http://127.0.0.1:{liar.server_address[1]}"], cid)
    finally:
        liar.shutdown()
        liar.server_close()


def test_open_store_reads_through_the_configured_gateways(served: tuple[str, str], tmp_path: Path) -> None:
    from ledger.content import fetch_to_file, open_store
    from ledger.content.gateway import GatewayStore
    from ledger.errors import ConfigError
    from ledger.settings import load_settings

    url, cid = served
    # from the environment, as a deployment sets it: a dead gateway first, then the peer
    env = {"MESHPROV_GATEWAYS": f"http://127.0.0.1:9, {url}"}
    settings = load_settings(None, environ=env, store="local", store_dir=tmp_path / "mine")
    assert settings.gateways == ["http://127.0.0.1:9", url]
    store = open_store(settings)
    assert isinstance(store, GatewayStore)
    assert not store.has(cid)
    dest = tmp_path / "out.bin"
    assert fetch_to_file(store, cid, dest, max_bytes=len(DATA)) == len(DATA)
    assert dest.read_bytes() == DATA
    plain = load_settings(None, environ={}, store="local", store_dir=tmp_path / "mine")
    assert not isinstance(open_store(plain), GatewayStore)
    with pytest.raises(ConfigError, match="gateway"):
        load_settings(None, environ={"MESHPROV_GATEWAYS": "ftp://peer"}, store="local")


def test_a_truncated_answer_is_skipped_for_the_next_gateway(served: tuple[str, str]) -> None:
    url, cid = served

    class Truncating(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", RAW)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b"x" * 10)  # then the connection closes

        def log_message(self, format: str, *args: object) -> None:
            pass

    liar = ThreadingHTTPServer(("127.0.0.1", 0), Truncating)
    threading.Thread(target=liar.serve_forever, daemon=True).start()
    try:
        got = b"".join(gateway_get([f"http://127.0.0.1:{liar.server_address[1]}", url], cid, car=False))
    finally:
        liar.shutdown()
        liar.server_close()
    assert got == DATA

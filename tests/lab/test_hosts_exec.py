"""lab.host_exec: what a lab host process adds to `meshprov` — the record of verified gateway blocks (the lab's
"every fetched block verified" count) — against a real gateway server; and the `stat` of content only a peer
holds, which the validators on other hosts need (the gateway store does it since faa15b4)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lab import host_exec
from ledger.content import gateway
from ledger.content.errors import ContentNotFound
from ledger.content.gateway import GatewayStore, serve_blocks
from ledger.content.local_store import LocalStore


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever host_exec replaces is put back after the test (it patches process-wide, as a host process does)."""
    monkeypatch.setattr(gateway, "iter_file", getattr(gateway, "iter_file"))  # noqa: B009


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[tuple[str, LocalStore, str]]:
    """A peer host's store holding a 3-block file, served over the gateway on 127.0.0.1."""
    store = LocalStore(tmp_path / "peer")
    data = os.urandom(2 * 262144 + 1000)
    cid = store.put_bytes(data)
    server = serve_blocks(store, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", store, cid
    finally:
        server.shutdown()
        server.server_close()


def test_every_block_taken_from_a_gateway_is_recorded_once_verified(
    patched: None, peer: tuple[str, LocalStore, str], tmp_path: Path
) -> None:
    url, _store, cid = peer
    record = tmp_path / "record.log"
    assert host_exec.install_record(str(record))
    mine = GatewayStore(LocalStore(tmp_path / "mine"), [url])
    data = b"".join(bytes(c) for c in mine.get(cid))
    lines = record.read_text().splitlines()
    # root + 3 leaves, each with its size: the leaves carry the file's bytes in their UnixFS framing
    assert len(lines) == 4
    assert lines[0].split()[0] == cid
    leaves = sum(int(line.split()[1]) for line in lines[1:])
    assert len(data) <= leaves < len(data) + 3 * 32


class _Liar(BaseHTTPRequestHandler):
    """A gateway that answers every block request 200 with bytes that are not the block."""

    protocol_version = "HTTP/1.1"
    asked = 0

    def do_GET(self) -> None:
        type(self).asked += 1
        body = b"not the block you asked for"
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.ipld.raw")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_block_that_does_not_hash_to_its_cid_is_not_recorded(
    patched: None, peer: tuple[str, LocalStore, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, _store, cid = peer
    record = tmp_path / "record.log"
    host_exec.install_record(str(record))
    liar = ThreadingHTTPServer(("127.0.0.1", 0), _Liar)
    threading.Thread(target=liar.serve_forever, daemon=True).start()
    try:
        mine = GatewayStore(
            LocalStore(tmp_path / "mine"), [f"http://127.0.0.1:{liar.server_address[1]}", url], car=False
        )
        b"".join(bytes(c) for c in mine.get(cid))
    finally:
        liar.shutdown()
        liar.server_close()
    assert _Liar.asked >= 4  # the liar was asked first for every block
    assert len(record.read_text().splitlines()) == 4  # only the honest peer's blocks were recorded
    assert sum("hash to the CID" in r.getMessage() for r in caplog.records) >= 4


def test_stat_of_content_only_a_peer_holds_comes_from_its_gateway(
    patched: None, peer: tuple[str, LocalStore, str], tmp_path: Path
) -> None:
    url, store, cid = peer
    mine = GatewayStore(LocalStore(tmp_path / "mine"), [url])
    assert mine.stat(cid).size == store.stat(cid).size == 2 * 262144 + 1000
    other = LocalStore(tmp_path / "other").put_bytes(b"held by nobody else")
    with pytest.raises(ContentNotFound):
        mine.stat(other)


def test_a_command_line_without_the_separator_is_refused() -> None:
    assert host_exec.main(["record.log", "node", "run"]) == 2
    assert host_exec.main(["record.log", "--bogus", "x", "--", "node"]) == 2

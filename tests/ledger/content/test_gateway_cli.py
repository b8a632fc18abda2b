"""`meshprov store serve`: the real command, in its own process, serving a store another store fetches from."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.content.gateway import gateway_get
from ledger.content.local_store import LocalStore

MESHPROV = Path(sys.executable).parent / "meshprov"


def test_store_serve_serves_the_local_store(tmp_path: Path) -> None:
    data = os.urandom(600_000)
    cid = LocalStore(tmp_path / "blocks").put_bytes(data)
    proc = subprocess.Popen(
        [str(MESHPROV), "store", "serve", "--store-dir", str(tmp_path / "blocks"), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "serving DIR at http://127.0.0.1:PORT/ipfs/{cid} ..."
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert found, line
        assert b"".join(gateway_get([f"http://127.0.0.1:{found.group(1)}"], cid)) == data
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
        if proc.stderr is not None:
            proc.stderr.close()
    assert code == 0


def test_store_serve_without_a_store_is_not_found(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [str(MESHPROV), "store", "serve", "--store-dir", str(tmp_path / "none"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 4, done.stderr
    assert "no local block store" in done.stderr
    assert time.monotonic() - started < 60


def test_ctrl_c_as_soon_as_the_address_is_printed_is_a_clean_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server thread answers before the command's own thread is back from printing its address (a client
    read the line, fetched and pressed Ctrl-C while the command was still printing: CI saw exit 130). A Ctrl-C
    there stops the server cleanly: exit 0, the port closed."""
    import ledger.cli.store as store_cli
    from ledger.cli.app import main

    LocalStore(tmp_path / "blocks").put_bytes(b"a block")
    shown: list[str] = []

    def print_then_ctrl_c(message: str) -> None:
        shown.append(message)
        raise KeyboardInterrupt

    monkeypatch.setattr(store_cli, "info", print_then_ctrl_c)
    assert main(["store", "serve", "--store-dir", str(tmp_path / "blocks"), "--port", "0"]) == 0
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", shown[0])
    assert found, shown
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(found.group(1))), timeout=5).close()

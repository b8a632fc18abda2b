"""`meshprov store serve`: the real command, in its own process, serving a store another store fetches from."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

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

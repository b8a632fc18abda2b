"""An update only other hosts' gateways hold, when none of them answers: missing content (scored 0 on its own at
the content deadline), not a fault of this validator's store that fails the whole round (found by `meshprov lab
hosts --fault member-store`: one unreachable gateway turned every update of the round into a retried store fault).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ledger.content import cid_to_digest
from ledger.content.gateway import GatewayStore
from ledger.content.local_store import LocalStore
from ledger.content.unixfs import import_bytes
from worker.errors import ContentMissing
from worker.fetch import fetch, fetch_checked


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_gateway_answering_is_missing_content_not_a_store_fault(tmp_path: Path) -> None:
    digest = cid_to_digest(import_bytes(b"an update only its author's host holds").cid)
    store = GatewayStore(LocalStore(tmp_path / "blocks"), [f"http://127.0.0.1:{_closed_port()}"], timeout=2.0)
    try:
        with pytest.raises(ContentMissing, match="no gateway gave it"):
            fetch(store, digest, tmp_path / "update", max_bytes=1 << 20)
        with pytest.raises(ContentMissing):
            fetch_checked(
                store, digest, max_bytes=1 << 20, checks=lambda _size: pytest.fail("nothing to check")
            )
    finally:
        store.close()
    assert not (tmp_path / "update").exists()

"""Fixtures the content tests share: an empty local store, and that store served as a trustless gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.content.gateway import serve_blocks
from ledger.content.local_store import LocalStore


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "blocks")


@pytest.fixture
def served(store: LocalStore) -> Iterator[str]:
    """The base URL of a gateway serving ``store`` on a free port of 127.0.0.1, shut down after the test."""
    server = serve_blocks(store, port=0)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

"""The replication rule: what a validator verified stays fetchable from it after the author's host is gone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledger.content import CID, CidMismatch, ContentNotFound, fetch_to_file
from ledger.content.gateway import GatewayStore, gateway_get, serve_blocks
from ledger.content.local_store import LocalStore
from ledger.content.replicate import keep_verified
from ledger.content.unixfs import CHUNK_SIZE

DATA = os.urandom(4 * CHUNK_SIZE + 77)


def _pinned(store: LocalStore, cid: str) -> bool:
    return store.stat(cid).pinned is True


def test_a_validator_keeps_what_it_verified_and_serves_it_when_the_author_is_gone(tmp_path: Path) -> None:
    author = LocalStore(tmp_path / "author")
    cid = author.put_bytes(DATA)
    author_server = serve_blocks(author, port=0)
    author_url = f"http://127.0.0.1:{author_server.server_address[1]}"
    validator = GatewayStore(LocalStore(tmp_path / "validator"), [author_url], keep=True)
    assert fetch_to_file(validator, cid, tmp_path / "update.bin", max_bytes=len(DATA)) == len(DATA)
    # kept while it streamed: present, pinned, every block readable and verified by the local store
    assert validator.local.has(cid)
    assert _pinned(validator.local, cid)
    assert keep_verified(validator, cid).how == "already"
    assert b"".join(validator.local.get(cid)) == DATA
    author_server.shutdown()
    author_server.server_close()  # the author's host goes offline
    validator_server = serve_blocks(validator.local, port=0)
    try:
        third = [author_url, f"http://127.0.0.1:{validator_server.server_address[1]}"]
        assert b"".join(gateway_get(third, cid)) == DATA
    finally:
        validator_server.shutdown()
        validator_server.server_close()


def test_keep_verified_imports_the_verified_file_when_blocks_were_not_kept(tmp_path: Path) -> None:
    author = LocalStore(tmp_path / "author")
    cid = author.put_bytes(DATA)
    server = serve_blocks(author, port=0)
    try:
        store = GatewayStore(LocalStore(tmp_path / "mine"), [f"http://127.0.0.1:{server.server_address[1]}"])
        dest = tmp_path / "update.bin"
        fetch_to_file(store, cid, dest)
        assert not store.local.has(cid)  # keep=False: nothing kept by the fetch itself
        assert keep_verified(store, cid, dest).how == "file"
        assert store.local.has(cid)
        assert _pinned(store.local, cid)
        other = GatewayStore(LocalStore(tmp_path / "other"), store.gateways)
        assert keep_verified(other, CID.parse(cid).v1).how == "fetched"  # no file: fetched again, verified
        assert b"".join(other.local.get(cid)) == DATA
    finally:
        server.shutdown()
        server.server_close()


def test_a_file_changed_after_verification_is_not_kept_under_the_cid(tmp_path: Path) -> None:
    author = LocalStore(tmp_path / "author")
    cid = author.put_bytes(DATA)
    mine = LocalStore(tmp_path / "mine")
    changed = tmp_path / "update.bin"
    changed.write_bytes(DATA[:-1] + b"!")
    with pytest.raises(CidMismatch):
        keep_verified(mine, cid, changed)
    assert not mine.has(cid)
    assert not list((mine.root / ".pins").iterdir())


def test_a_fetch_that_fails_midway_keeps_no_root(tmp_path: Path) -> None:
    author = LocalStore(tmp_path / "author")
    cid = author.put_bytes(DATA)
    root = CID.parse(cid).digest
    from ledger.content.dag import decode_file_node

    leaf = decode_file_node(author._read_block(root, root)).links[3].digest
    author.block_path(leaf).unlink()
    server = serve_blocks(author, port=0)
    try:
        store = GatewayStore(
            LocalStore(tmp_path / "mine"), [f"http://127.0.0.1:{server.server_address[1]}"], keep=True
        )
        with pytest.raises(ContentNotFound):
            b"".join(store.get(cid))
        assert not store.local.has(cid)  # the root (the file's presence) is never written for a partial DAG
        with pytest.raises(ContentNotFound):
            store.pin(cid)
    finally:
        server.shutdown()
        server.server_close()


def test_stat_of_content_only_the_gateways_hold(tmp_path: Path) -> None:
    author = LocalStore(tmp_path / "author")
    cid = author.put_bytes(DATA)
    server = serve_blocks(author, port=0)
    try:
        store = GatewayStore(LocalStore(tmp_path / "mine"), [f"http://127.0.0.1:{server.server_address[1]}"])
        stat = store.stat(cid)
        assert (stat.cid, stat.size, stat.pinned) == (cid, len(DATA), False)
        assert not store.has(cid)  # has() answers for this host only, as the store contract says
        with pytest.raises(ContentNotFound):
            store.stat(CID(bytes(32)).v0)
    finally:
        server.shutdown()
        server.server_close()

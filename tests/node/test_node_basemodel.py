"""The round's base model: fetched once through the verified download, cached, refetched when changed on disk."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ledger.content import cid_of_bytes
from ledger.content.local_store import LocalStore
from node.basemodel import fetch_base, remove_partial
from node.faults import BaseUnavailable
from tests.support import malicious as corpus


def test_the_base_is_fetched_once_and_a_changed_cache_is_fetched_again(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blocks")
    data = random.Random(1).randbytes(300_000)
    cid = store.put_bytes(data)
    cache = tmp_path / "cache"
    path = fetch_base(store, cid, cache, round_=1, max_bytes=1 << 20)
    assert path == cache / f"{cid}.safetensors"
    assert path.read_bytes() == data
    path.write_bytes(b"tampered")
    assert fetch_base(store, cid, cache, round_=1, max_bytes=1 << 20).read_bytes() == data
    assert sorted(p.name for p in cache.iterdir()) == [f"{cid}.safetensors"]


def test_a_dag_that_is_not_kubos_default_is_never_used(tmp_path: Path) -> None:
    data = random.Random(2).randbytes(5000)
    odd = corpus.put_odd_dag(tmp_path / "blocks", data)  # right bytes, another chunk size: another CID
    assert odd != cid_of_bytes(data)
    waits: list[float] = []
    retries: list[str] = []
    with pytest.raises(BaseUnavailable) as caught:
        fetch_base(
            LocalStore(tmp_path / "blocks"),
            odd,
            tmp_path / "cache",
            round_=3,
            max_bytes=1 << 20,
            attempts=3,
            sleep=waits.append,
            on_retry=lambda _attempt, error: retries.append(error),
        )
    assert "default importer" in caught.value.last_error
    assert waits == [0.5, 1.0]
    assert len(retries) == 2
    assert list((tmp_path / "cache").iterdir()) == []


def test_partial_downloads_of_a_crash_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".base.safetensors.abc.part").write_bytes(b"half")
    (tmp_path / "kept.safetensors").write_bytes(b"whole")
    remove_partial(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["kept.safetensors"]

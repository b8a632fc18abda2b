"""`meshprov index follow` outlives an unavailable chain: it waits and resumes instead of exiting."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ledger.cli import index as index_cli
from ledger.errors import ServiceUnavailable


def test_follow_retries_when_the_chain_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ledger.chain import client as client_module
    from ledger.cli import endpoints
    from ledger.index import service
    from ledger.index.follower import SyncResult

    calls: list[str] = []
    ok = SyncResult(from_block=1, to_block=5, head=5, events=3, seconds=0.01)

    class Follower:
        def sync(self, progress: Any = None) -> SyncResult:
            calls.append("sync")
            syncs = calls.count("sync")
            if syncs == 1:
                raise ServiceUnavailable("chain RPC", "http://127.0.0.1:9", "connection refused")
            if syncs == 2:
                return ok
            raise KeyboardInterrupt

    fake_client = SimpleNamespace(address="0xLedger", endpoint="http://127.0.0.1:9")
    monkeypatch.setattr(endpoints, "chain_url", lambda s: "http://127.0.0.1:9")
    monkeypatch.setattr(
        client_module.LedgerClient, "from_settings", classmethod(lambda cls, s, **kw: fake_client)
    )
    monkeypatch.setattr(
        service, "open_index", lambda s: SimpleNamespace(url="sqlite://", dispose=lambda: None)
    )
    monkeypatch.setattr(service, "follower", lambda db, client, confirmations, content=None: Follower())
    monkeypatch.setattr("ledger.cli.index.time.sleep", lambda seconds: calls.append(f"sleep {seconds:g}"))

    with pytest.raises(KeyboardInterrupt):
        index_cli.follow(poll=1.0)
    assert calls == ["sync", "sleep 2", "sync", "sleep 1", "sync"]
    err = capsys.readouterr().err
    assert "chain RPC unavailable" in err
    assert "retrying in 2 s" in err
    assert "3 new events" in err

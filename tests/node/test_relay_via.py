"""`meshprov node run --relay-via`: an http(s) relayer or a redis(s) queue; anything else is refused before any
connection (usage error, exit 2)."""

from __future__ import annotations

import pytest

from ledger.cli.app import main
from node.relay import HttpRelay


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--relay-via", "ftp://relay.example:21"], "--relay-via"),
        (["--relay-via", "redis://127.0.0.1:1/0", "--relay-fallback"], "--relay-fallback"),
        (["--relay-fallback"], "--relay-fallback"),
    ],
)
def test_a_relay_the_node_cannot_use_is_a_usage_error(
    args: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["node", "run", "--relay", *args]) == 2
    assert problem in capsys.readouterr().err


def test_an_http_relay_needs_an_http_url() -> None:
    assert HttpRelay("http://127.0.0.1:8700/").url == "http://127.0.0.1:8700/v1/submissions"
    with pytest.raises(ValueError, match="http"):
        HttpRelay("redis://127.0.0.1:6379/0")

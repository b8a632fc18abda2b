"""A broker URL's password never reaches an error message (compose generates one per consortium)."""

from __future__ import annotations

import socket

import pytest

from ledger.dev.services import redact_url, redis_ping
from ledger.errors import ServiceUnavailable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rediss://meshprov:s3cret-Pw@redis:6380/0", "rediss://meshprov:***@redis:6380/0"),
        ("redis://:s3cret-Pw@127.0.0.1:6379", "redis://:***@127.0.0.1:6379"),
        ("redis://127.0.0.1:6379/1", "redis://127.0.0.1:6379/1"),
        ("redis://u:s3cret-Pw@[::1]:6379", "redis://u:***@[::1]:6379"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_unreachable_redis_is_reported_without_its_password() -> None:
    url = f"redis://meshprov:s3cret-Pw@127.0.0.1:{_closed_port()}/0"
    with pytest.raises(ServiceUnavailable) as caught:
        redis_ping(url, timeout=0.5)
    text = str(caught.value)
    assert "s3cret-Pw" not in text
    assert "***" in text

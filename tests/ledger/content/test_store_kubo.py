"""The Kubo client against recorded Kubo replies: parameters, parsing, refusals, retries, bounds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger.content import (
    CidMismatch,
    ContentNotFound,
    ContentTooLarge,
    CorruptBlock,
    InvalidCID,
    StoreError,
    StoreUnavailable,
    fetch_to_file,
    read_bytes,
)
from ledger.content.kubo_store import ADD_PARAMS, KuboStore, RetryPolicy
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason
from tests.support.kubo import (
    HELLO,
    HELLO_V0,
    FakeKubo,
    NoSleep,
    kubo_store,
    multipart_file,
    recording,
    replay,
)

RAW_LEAVES_CID = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"


class Recorded:
    """Serves one recorded reply per request, in order, and keeps the requests."""

    def __init__(self, *replies: httpx.Response | Exception) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def store_for(handler: Recorded | FakeKubo, **kwargs: object) -> tuple[KuboStore, NoSleep]:
    sleep = NoSleep()
    retry = RetryPolicy(sleep=sleep, jitter=lambda: 0.5)
    return KuboStore(
        "http://127.0.0.1:5001", transport=httpx.MockTransport(handler), retry=retry, **kwargs
    ), sleep  # type: ignore[arg-type]


def query(request: httpx.Request) -> dict[str, str]:
    return dict(request.url.params)


# --- recorded exchanges --------------------------------------------------------------------------------------
def test_add_sends_kubos_defaults_explicitly_and_reads_the_recorded_reply(tmp_path: Path) -> None:
    rec = recording("add-hello-world.json")
    server = Recorded(replay("add-hello-world.json"))
    store, _ = store_for(server)
    path = tmp_path / "hello.txt"
    path.write_bytes(HELLO)
    assert store.put_file(path) == HELLO_V0
    (request,) = server.requests
    assert request.method == "POST"
    assert request.url.path == rec["request"]["path"]
    assert query(request) == rec["request"]["query"] == ADD_PARAMS
    assert multipart_file(request) == ("hello.txt", HELLO)


def test_add_refuses_a_cid_other_than_the_local_one() -> None:
    store, _ = store_for(Recorded(replay("add-hello-world-raw-leaves.json")))
    with pytest.raises(CidMismatch) as caught:
        store.put_bytes(HELLO)
    assert caught.value.expected == HELLO_V0
    assert caught.value.actual == RAW_LEAVES_CID
    assert caught.value.reason == Reason.CID_MISMATCH
    assert caught.value.exit_code == ExitCode.MISMATCH
    assert "Import" in (caught.value.hint or "")


def test_kubo_cid_asks_only_hash_and_stores_nothing(tmp_path: Path) -> None:
    rec = recording("add-only-hash-hello-world.json")
    server = Recorded(replay("add-only-hash-hello-world.json"))
    store, _ = store_for(server)
    path = tmp_path / "hello.txt"
    path.write_bytes(HELLO)
    assert store.kubo_cid(path) == HELLO_V0
    assert query(server.requests[0]) == rec["request"]["query"]


def test_cat_of_the_recorded_reply_is_verified_and_returned() -> None:
    server = Recorded(replay("cat-hello-world.json"))
    store, _ = store_for(server)
    assert read_bytes(store, HELLO_V0, max_bytes=12) == HELLO
    assert query(server.requests[0]) == {"arg": HELLO_V0, "progress": "false", "length": "13"}


def test_has_asks_offline_and_reads_the_not_found_error() -> None:
    server = Recorded(replay("block-stat-hello-world.json"), replay("block-stat-not-found-offline.json"))
    store, sleep = store_for(server)
    assert store.has(HELLO_V0)
    assert not store.has("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")
    assert [query(r)["offline"] for r in server.requests] == ["true", "true"]
    assert sleep.waits == []  # a command error is an answer, not a reason to retry


def test_stat_reads_and_verifies_the_root_block() -> None:
    store, _ = store_for(Recorded(replay("block-get-hello-world.json")))
    stat = store.stat(HELLO_V0)
    assert (stat.cid, stat.size, stat.block_size, stat.pinned) == (HELLO_V0, 12, 20, None)


def test_stat_refuses_a_root_block_that_does_not_hash_to_the_cid() -> None:
    bad = replay("block-get-hello-world.json", content=b"\x0a\x12\x08\x02\x12\x0cHELLO world\n\x18\x0c")
    store, _ = store_for(Recorded(bad))
    with pytest.raises(CorruptBlock):
        store.stat(HELLO_V0)


def test_pin_and_version_read_the_recorded_replies() -> None:
    server = Recorded(replay("pin-add-hello-world.json"), replay("version.json"))
    store, _ = store_for(server)
    store.pin(HELLO_V0)
    assert query(server.requests[0]) == recording("pin-add-hello-world.json")["request"]["query"]
    assert store.version()["Version"] == "0.32.1"


def test_pin_reply_that_does_not_name_the_cid_is_an_error() -> None:
    store, _ = store_for(
        Recorded(httpx.Response(200, json={"Pins": ["QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"]}))
    )
    with pytest.raises(StoreError, match="did not confirm"):
        store.pin(HELLO_V0)


def test_invalid_path_command_error_is_not_retried() -> None:
    server = Recorded(replay("cat-invalid-path.json"))
    store, sleep = store_for(server)
    # A CID meshprov accepts that this (hypothetical) Kubo calls invalid: reported, not retried.
    with pytest.raises(InvalidCID, match="Kubo rejected it"):
        store.get(HELLO_V0)
    assert len(server.requests) == 1
    assert sleep.waits == []


# --- verification of what cat returns ------------------------------------------------------------------------
def test_cat_returning_other_bytes_raises_at_the_end_and_fetch_keeps_nothing(tmp_path: Path) -> None:
    fake = FakeKubo()
    store = kubo_store(fake)
    cid = store.put_bytes(b"x" * 600_000)
    fake.tamper = lambda content: content[:-1] + b"y"
    with pytest.raises(CidMismatch) as caught:
        read_bytes(store, cid, max_bytes=10**6)
    assert caught.value.expected == cid
    dest = tmp_path / "u"
    with pytest.raises(CidMismatch):
        fetch_to_file(store, cid, dest, max_bytes=10**6)
    assert list(tmp_path.iterdir()) == []


def test_cat_cut_short_is_a_mismatch() -> None:
    fake = FakeKubo()
    store = kubo_store(fake)
    cid = store.put_bytes(b"z" * 300_000)
    fake.tamper = lambda content: content[:100_000]
    with pytest.raises(CidMismatch):
        read_bytes(store, cid, max_bytes=10**6)


def test_cat_stops_reading_at_max_bytes_even_if_kubo_ignores_length() -> None:
    chunks_sent = 0

    def body() -> Iterator[bytes]:
        nonlocal chunks_sent
        for _ in range(1000):
            chunks_sent += 1
            yield b"\0" * 65536

    server = Recorded(httpx.Response(200, headers={"Content-Type": "text/plain"}, content=body()))
    store, _ = store_for(server)
    with pytest.raises(ContentTooLarge):
        read_bytes(store, HELLO_V0, max_bytes=200_000)
    assert chunks_sent < 10


def test_a_stream_that_breaks_off_is_unavailable_not_corrupt() -> None:
    def body() -> Iterator[bytes]:
        yield b"hello "
        raise httpx.ReadError("connection reset by peer")

    store, _ = store_for(Recorded(httpx.Response(200, content=body())))
    with pytest.raises(StoreUnavailable, match="broke off"):
        read_bytes(store, HELLO_V0, max_bytes=100)


# --- bounded replies -----------------------------------------------------------------------------------------
def test_json_replies_are_read_with_a_bound() -> None:
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        while True:
            sent += 1
            yield b'{"Name":"x","Hash":"' + b"Q" * 65536

    store, _ = store_for(Recorded(httpx.Response(200, content=endless())), max_reply_bytes=256 * 1024)
    with pytest.raises(StoreError, match="larger than"):
        store.put_bytes(HELLO)
    assert sent < 10


def test_add_reply_without_a_cid_is_an_error() -> None:
    store, _ = store_for(Recorded(httpx.Response(200, content=b"")))
    with pytest.raises(StoreError, match="without a CID"):
        store.put_bytes(HELLO)


# --- retries -------------------------------------------------------------------------------------------------
def test_transient_failures_are_retried_with_growing_jittered_waits() -> None:
    server = Recorded(
        httpx.ConnectError("connection refused"),
        replay("gateway-502.json"),
        httpx.Response(500, text="upstream crashed"),
        replay("add-hello-world.json"),
    )
    store, sleep = store_for(server)
    assert store.put_bytes(HELLO) == HELLO_V0
    assert len(server.requests) == 4
    # base 0.25 s doubling, "equal jitter" at draw 0.5: three quarters of each ceiling
    assert sleep.waits == pytest.approx([0.1875, 0.375, 0.75])
    # every attempt re-sends the whole file
    assert all(multipart_file(r)[1] == HELLO for r in server.requests[1:])


def test_jitter_stays_within_half_and_all_of_the_ceiling() -> None:
    low = RetryPolicy(jitter=lambda: 0.0)
    high = RetryPolicy(jitter=lambda: 0.999999)
    for attempt in range(10):
        ceiling = min(5.0, 0.25 * 2**attempt)
        assert low.delay(attempt) == pytest.approx(ceiling / 2)
        assert ceiling / 2 <= high.delay(attempt) <= ceiling


def test_giving_up_after_the_attempts_is_store_unavailable() -> None:
    server = Recorded(*[httpx.ConnectError("connection refused")] * 4)
    store, sleep = store_for(server)
    with pytest.raises(StoreUnavailable) as caught:
        store.version()
    assert len(server.requests) == 4
    assert len(sleep.waits) == 3
    assert caught.value.exit_code == ExitCode.UNAVAILABLE
    assert "4 times" in caught.value.message
    assert caught.value.hint


def test_a_read_timeout_is_not_retried() -> None:
    server = Recorded(httpx.ReadTimeout("timed out"))
    store, sleep = store_for(server)
    with pytest.raises(StoreUnavailable, match="ReadTimeout"):
        store.get(HELLO_V0)
    assert sleep.waits == []


def test_not_found_from_kubo_becomes_content_not_found() -> None:
    body = json.dumps({"Message": f"ipld: could not find {HELLO_V0}", "Code": 0, "Type": "error"})
    store, _ = store_for(Recorded(httpx.Response(500, content=body.encode())))
    with pytest.raises(ContentNotFound):
        store.pin(HELLO_V0)


def test_an_unknown_endpoint_is_a_store_error() -> None:
    store, _ = store_for(Recorded(httpx.Response(404, text="404 page not found")))
    with pytest.raises(StoreError, match="404"):
        store.version()


def test_a_bad_reply_that_is_not_json_is_a_store_error() -> None:
    store, _ = store_for(Recorded(httpx.Response(200, content=b"<html>")))
    with pytest.raises(StoreError, match="not JSON"):
        store.version()

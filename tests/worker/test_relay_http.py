"""The HTTP relayer (worker/relay_http.py) against a real anvil: a valid batch lands in one transaction; every
refused request (bad signature, non-member, zero digest, over the cap, wrong round, a flood, a duplicate) is
answered with its JSON code and sends nothing (the relayer's nonce and the block height do not move); the member
(node/relay.py) believes the chain, not the relayer's word."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.chain.types import SignedSubmission
from ledger.content import cid_to_digest, digest_to_cid
from node.faults import RelayRejected
from node.relay import HttpRelay, RelayMessage, submit_relayed_http
from tests.support.chain import fake_digest
from tests.support.node import NodeNet
from tests.support.relay import Relayer
from worker.relay_http import MAX_BODY_BYTES, Limits, parse_item

pytestmark = [pytest.mark.anvil]

MAX_SAMPLES = 1000
RELAYER = 18  # dev account paying the relayer's gas (no role on the ledger)
OUTSIDER = 17  # dev account with no role


@pytest.fixture
def net(anvil: Any, tmp_path: Path, dev_keys: list[tuple[str, str]]) -> Iterator[NodeNet]:
    n = NodeNet.create(anvil.url, tmp_path, dev_keys, contributors=3, max_samples=MAX_SAMPLES)
    yield n
    n.close()


@pytest.fixture
def relayer(
    net: NodeNet, dev_keys: list[tuple[str, str]], request: pytest.FixtureRequest
) -> Iterator[Relayer]:
    limits = getattr(request, "param", None) or Limits(batch_wait_s=0.3)
    r = Relayer(net, dev_keys[RELAYER][1], limits)
    yield r
    r.close()


def post(url: str, body: bytes | dict[str, Any], **headers: str) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        url + "/v1/submissions",
        content=raw,
        headers={"Content-Type": "application/json", **headers},
        timeout=60,
    )


def signed(
    net: NodeNet, key: str, digest: bytes | None = None, *, n: int = 100, round_: int = 1, **kw: Any
) -> Any:
    return net.client().sign_submission(key, net.task_id, round_, digest or fake_digest(key), n, **kw)


def message(
    net: NodeNet, sub: SignedSubmission, *, task: int | None = None, round_: int = 1
) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RelayMessage(task or net.task_id, round_, sub).to_json())
    return data


class Quiet:
    """The chain must not move: no block, no transaction from the relayer's key."""

    def __init__(self, net: NodeNet, relayer_address: str) -> None:
        self.w3 = net.client().w3
        self.address = relayer_address
        self.before = self.now()

    def now(self) -> tuple[int, int]:
        return int(self.w3.eth.block_number), int(self.w3.eth.get_transaction_count(self.address))

    def check(self) -> None:
        assert self.now() == self.before, "the relayer sent a transaction for a refused request"


# ─── the relayer ─────────────────────────────────────────────────────────────────────────────────────────────


def test_the_member_and_the_relayer_agree_on_the_wire_format(net: NodeNet) -> None:
    _, key = net.contributor_keys[0]
    sub = signed(net, key)
    item = parse_item(RelayMessage(net.task_id, 1, sub).to_json().encode())
    assert (item.task, item.round, item.sub) == (net.task_id, 1, sub)


# A full batch leaves at once: three members, a batch of three, however slow the checks are on a busy machine.
@pytest.mark.parametrize("relayer", [Limits(max_batch=3, batch_wait_s=60)], indirect=True)
def test_a_valid_batch_lands_in_one_transaction_and_the_members_pay_nothing(
    net: NodeNet, relayer: Relayer, dev_keys: list[tuple[str, str]]
) -> None:
    w3 = net.client().w3
    balances = [w3.eth.get_balance(a) for a, _ in net.contributor_keys]
    nonce_before = w3.eth.get_transaction_count(dev_keys[RELAYER][0])
    bodies = [message(net, signed(net, key)) for _, key in net.contributor_keys]
    replies: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda b=b: replies.append(post(relayer.url, b))) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.status_code for r in replies] == [200, 200, 200], [r.text for r in replies]
    answers = [r.json() for r in replies]
    assert {a["status"] for a in answers} == {"submitted"}
    assert len({a["tx"] for a in answers}) == 1  # one batch, one transaction
    assert sorted(a["index"] for a in answers) == [0, 1, 2]
    assert w3.eth.get_transaction_count(dev_keys[RELAYER][0]) == nonce_before + 1
    reader = net.client()
    for address, _ in net.contributor_keys:
        assert reader.submission_of(net.task_id, 1, address).submitted
    assert [w3.eth.get_balance(a) for a, _ in net.contributor_keys] == balances
    assert relayer.service.relayed == 3


def test_refused_requests_send_nothing_and_say_why(
    net: NodeNet, relayer: Relayer, dev_keys: list[tuple[str, str]]
) -> None:
    quiet = Quiet(net, dev_keys[RELAYER][0])
    (member, key), (victim, _), _ = net.contributor_keys
    outsider_key = dev_keys[OUTSIDER][1]
    # Someone signs in a member's name with their own key: the signature recovers to them.
    forged = replace(signed(net, outsider_key), contributor=victim)
    cases: list[tuple[bytes | dict[str, Any], int, str]] = [
        (message(net, forged), 401, "bad_signature"),
        (message(net, signed(net, outsider_key)), 403, "not_member"),
        (message(net, signed(net, key, bytes(32))), 400, "zero_digest"),
        (message(net, signed(net, key, n=0)), 400, "zero_samples"),
        (message(net, signed(net, key, n=MAX_SAMPLES + 1)), 422, "over_cap"),
        (message(net, signed(net, key, round_=2), round_=2), 409, "wrong_round"),
        (message(net, signed(net, key, nonce=7)), 409, "bad_nonce"),
        (message(net, signed(net, key), task=99), 401, "bad_signature"),  # the task is signed too
        ({**message(net, signed(net, key)), "extra": 1}, 400, "malformed"),
        (b"\xff not json", 400, "malformed"),
        (b"{" + b" " * MAX_BODY_BYTES + b"}", 413, "too_large"),
    ]
    for body, status, code in cases:
        reply = post(relayer.url, body)
        assert (reply.status_code, reply.json()["code"]) == (status, code), reply.text
        assert reply.json()["status"] == "rejected"
        assert reply.json()["problem"]
    assert (
        post(relayer.url, message(net, signed(net, key)), **{"Content-Type": "text/plain"}).status_code == 415
    )
    quiet.check()
    reader = net.client()
    assert not reader.submission_of(net.task_id, 1, member).submitted
    assert not reader.submission_of(net.task_id, 1, victim).submitted


def test_an_unknown_task_is_refused(net: NodeNet, relayer: Relayer, dev_keys: list[tuple[str, str]]) -> None:
    quiet = Quiet(net, dev_keys[RELAYER][0])
    _, key = net.contributor_keys[0]
    sub = net.client().sign_submission(key, 99, 1, fake_digest("x"), 10)
    reply = post(relayer.url, message(net, sub, task=99))
    assert (reply.status_code, reply.json()["code"]) == (404, "unknown_task")
    quiet.check()


@pytest.mark.parametrize("relayer", [Limits(member_burst=2, member_rate=1 / 3600)], indirect=True)
def test_a_flood_from_one_member_is_rate_limited_before_any_chain_work(
    net: NodeNet, relayer: Relayer, dev_keys: list[tuple[str, str]]
) -> None:
    quiet = Quiet(net, dev_keys[RELAYER][0])
    _, key = net.contributor_keys[0]
    body = message(net, signed(net, key, round_=2), round_=2)  # well signed, refused by the chain checks
    statuses = []
    for _ in range(6):
        reply = post(relayer.url, body)
        statuses.append(reply.status_code)
        if reply.status_code == 429:
            assert reply.json()["code"] == "rate_limited"
            assert int(reply.headers["Retry-After"]) >= 1
    assert statuses == [409, 409, 429, 429, 429, 429]
    # Another member has its own bucket.
    _, other = net.contributor_keys[1]
    assert post(relayer.url, message(net, signed(net, other, round_=2), round_=2)).status_code == 409
    quiet.check()


@pytest.mark.parametrize("relayer", [Limits(batch_wait_s=1.5)], indirect=True)
def test_a_duplicate_in_the_batch_is_refused_and_the_first_lands(net: NodeNet, relayer: Relayer) -> None:
    address, key = net.contributor_keys[0]
    first = message(net, signed(net, key, fake_digest("one")))
    again = message(net, signed(net, key, fake_digest("two")))  # same nonce, another digest
    replies: list[httpx.Response] = []
    t = threading.Thread(target=lambda: replies.append(post(relayer.url, first)))
    t.start()
    while not relayer.service._queue:  # the first is queued, waiting for company
        threading.Event().wait(0.01)
    dup = post(relayer.url, again)
    t.join(60)
    assert (dup.status_code, dup.json()["code"]) == (409, "duplicate")
    assert replies[0].status_code == 200
    status = net.client().submission_of(net.task_id, 1, address)
    assert status.submitted
    events = net.submissions(1)
    assert [e.args["digest"] for e in events] == [fake_digest("one")]


def test_health_and_unknown_paths(relayer: Relayer, net: NodeNet) -> None:
    health = httpx.get(relayer.url + "/healthz", timeout=10).json()
    assert health["status"] == "ok"
    assert health["ledger"] == net.client().address
    assert httpx.get(relayer.url + "/nope", timeout=10).status_code == 404
    assert httpx.post(relayer.url + "/v1/other", content=b"{}", timeout=10).status_code == 404


# ─── the member believes the chain ───────────────────────────────────────────────────────────────────────────


class Liar:
    """A relayer in the middle: forwards to ``upstream`` (or not) and answers whatever ``reply`` says."""

    def __init__(self, reply: tuple[int, dict[str, Any]], upstream: str | None = None) -> None:
        liar = self
        self.reply, self.upstream, self.seen = reply, upstream, 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                liar.seen += 1
                if liar.upstream is not None:
                    httpx.post(
                        liar.upstream + "/v1/submissions",
                        content=body,
                        headers={"Content-Type": "application/json"},
                        timeout=60,
                    )
                data = json.dumps(liar.reply[1]).encode()
                self.send_response(liar.reply[0])
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


REJECTED = (403, {"status": "rejected", "code": "not_member", "problem": "you are not a member"})


def submit(net: NodeNet, i: int, relay: HttpRelay, *, read_only: bool = True) -> Any:
    _, key = net.contributor_keys[i]
    client = net.client(None if read_only else key)
    return submit_relayed_http(
        client,
        relay,
        key,
        task=net.task_id,
        round_=1,
        cid=digest_to_cid(fake_digest("update", i)),
        num_samples=100,
        poll_s=0.05,
    )


def test_a_member_relays_over_http_and_confirms_on_chain(net: NodeNet, relayer: Relayer) -> None:
    result = submit(net, 0, HttpRelay(relayer.url))
    assert result.status == "submitted"
    status = net.client().submission_of(net.task_id, 1, net.contributor_keys[0][0])
    assert status.submitted
    assert result.index == status.index
    assert result.tx_hash is not None
    receipt = net.client().w3.eth.get_transaction_receipt(result.tx_hash)
    assert receipt["status"] == 1


def test_a_forged_rejection_does_not_stop_a_member_whose_update_is_on_chain(
    net: NodeNet, relayer: Relayer
) -> None:
    """The relayer submits the update and then answers "rejected": the member finds itself on chain."""
    liar = Liar(REJECTED, upstream=relayer.url)
    try:
        result = submit(net, 0, HttpRelay(liar.url))
    finally:
        liar.close()
    assert result.status == "submitted"
    assert net.client().submission_of(net.task_id, 1, net.contributor_keys[0][0]).submitted


def test_a_forged_rejection_the_chain_does_not_bear_out_falls_back_to_a_direct_submission(
    net: NodeNet,
) -> None:
    liar = Liar(REJECTED)  # drops the submission and lies about why
    try:
        result = submit(net, 1, HttpRelay(liar.url, timeout_s=60, fallback_direct=True), read_only=False)
    finally:
        liar.close()
    assert liar.seen == 1
    assert result.status == "submitted"  # directly, without waiting for the timeout
    (event,) = net.submissions(1)
    assert event.args["contributor"] == net.contributor_keys[1][0]
    assert event.args["relayer"] == net.contributor_keys[1][0]  # the member sent it itself


def test_a_relayer_that_claims_a_submission_it_never_sent_is_not_believed(net: NodeNet) -> None:
    claim = (200, {"status": "submitted", "tx": "0x" + "ab" * 32, "index": 0, "block": 1})
    liar = Liar(claim)
    try:
        result = submit(
            net, 2, HttpRelay(liar.url, timeout_s=1, retry_s=0.2, fallback_direct=True), read_only=False
        )
    finally:
        liar.close()
    assert result.status == "submitted"
    assert result.tx_hash != claim[1]["tx"]
    (event,) = net.submissions(1)
    assert event.args["relayer"] == net.contributor_keys[2][0]


def test_a_refusal_the_chain_confirms_stops_the_member(net: NodeNet, dev_keys: list[tuple[str, str]]) -> None:
    liar = Liar(REJECTED)
    outsider, key = dev_keys[OUTSIDER]
    try:
        with pytest.raises(RelayRejected, match=r"the chain agrees: .* is not a contributor"):
            submit_relayed_http(
                net.client(),
                HttpRelay(liar.url),
                key,
                task=net.task_id,
                round_=1,
                cid=digest_to_cid(fake_digest("outsider")),
                num_samples=10,
                poll_s=0.05,
            )
    finally:
        liar.close()
    assert not net.client().submission_of(net.task_id, 1, outsider).submitted


def test_the_member_bounds_the_relayers_reply() -> None:
    from node.relay import MAX_REPLY_BYTES, _answer

    huge = json.dumps({"status": "submitted", "pad": "x" * MAX_REPLY_BYTES}).encode()
    assert _answer(200, huge, {}).body == {}
    assert _answer(429, b'{"status":"limited"}', {"Retry-After": "1e9"}).retry_after == 3600.0
    assert cid_to_digest(digest_to_cid(fake_digest("a"))) == fake_digest("a")


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_the_malleable_twin_of_a_valid_signature_is_refused_before_the_chain(
    net: NodeNet, relayer: Relayer, dev_keys: list[tuple[str, str]]
) -> None:
    """(r, n - s, v ^ 1) recovers to the same key off chain, but the contract refuses it: it must not reach a batch."""
    quiet = Quiet(net, dev_keys[RELAYER][0])
    _, key = net.contributor_keys[0]
    sub = signed(net, key)
    twin = replace(sub, s=(SECP256K1_N - int.from_bytes(sub.s, "big")).to_bytes(32, "big"), v=55 - sub.v)
    reply = post(relayer.url, message(net, twin))
    assert (reply.status_code, reply.json()["code"]) == (401, "bad_signature")
    assert "malleable" in reply.json()["problem"]
    quiet.check()


def test_connections_over_the_bound_are_closed_without_a_thread(relayer: Relayer) -> None:
    import socket

    relayer.server.connections = threading.BoundedSemaphore(2)
    host, port = relayer.server.server_address[:2]
    idle = [socket.create_connection((str(host), int(port)), timeout=5) for _ in range(2)]
    try:
        threading.Event().wait(0.3)  # both accepted and holding their threads (idle, reading a request line)
        extra = socket.create_connection((str(host), int(port)), timeout=5)
        with extra:
            try:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = extra.recv(100)
            except ConnectionResetError:  # closed before our request arrived: the kernel resets
                answer = b""
            assert answer == b""  # closed at once, no answer
    finally:
        for s in idle:
            s.close()
    threading.Event().wait(0.3)
    assert httpx.get(relayer.url + "/healthz", timeout=10).status_code == 200  # the slots came back


def test_a_relayer_holding_the_submission_is_given_until_the_timeout(net: NodeNet) -> None:
    """After a request timed out, a re-send may find the submission still queued ("duplicate"): the member waits
    for the chain until --relay-timeout instead of falling back at once."""
    liar = Liar((409, {"status": "rejected", "code": "duplicate", "problem": "queued"}))
    try:
        result = submit(
            net, 0, HttpRelay(liar.url, timeout_s=1, retry_s=0.2, fallback_direct=True), read_only=False
        )
    finally:
        liar.close()
    assert liar.seen >= 2  # re-sent while waiting, not given up on after the first answer
    assert result.status == "submitted"
    (event,) = net.submissions(1)
    assert event.args["relayer"] == net.contributor_keys[0][0]  # then, after the timeout, directly


def test_a_chain_that_does_not_answer_a_check_is_a_502_not_a_dropped_connection(
    net: NodeNet, relayer: Relayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_a: Any, **_k: Any) -> Any:
        raise ConnectionError("chain down")

    monkeypatch.setattr(relayer.service.reader, "task", down)
    _, key = net.contributor_keys[0]
    reply = post(relayer.url, message(net, signed(net, key)))
    assert (reply.status_code, reply.json()["code"]) == (502, "chain_error")
    assert reply.headers["Retry-After"] == "5"
    assert not net.client().submission_of(net.task_id, 1, net.contributor_keys[0][0]).submitted

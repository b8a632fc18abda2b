"""The HTTP relayer: members of other organisations send their EIP-712 signed submissions here, not into a Redis.

    member (`node run --relay --relay-via https://HOST:PORT`)      relayer (`meshprov worker relay`, funded key)
      POST /v1/submissions  {schema, task, round, contributor,  ─▶ 1. body bounded (Content-Length ≤ 2048) and parsed
                             digest, num_samples, nonce,           2. zero digest / zero samples refused
                             deadline, v, r, s}                    3. signature recovered OFF CHAIN: must be the
                                                                      claimed contributor (no gas, no chain call)
                                                                   4. the member's token bucket (429, Retry-After)
                                                                   5. chain reads: task, current round, open,
                                                                      contributor, sample cap, nonce, deadline,
                                                                      not already on chain, not already queued
                                                                   6. queued; the batcher sends up to 16 per
                                                                      `submitUpdatesFor` (one at a time if a
                                                                      batch reverts)
      200 {status: submitted, tx, index, block}          ◀────────  the answer once the transaction is mined,
      4xx/5xx {status, code, problem[, error]}                      or the decoded revert

Nothing is sent to the chain before steps 1-5 pass, so a refused request costs the relayer no gas. The relayer
cannot alter a submission (the digest and the sample count are signed and the contract checks the signature again);
it can drop or delay one, and a member never believes its word: it confirms its own submission on chain
(``node.relay``). docs/relay.md is the protocol's reference.

The wire format is ``ledger.chain.relay_wire`` (``worker`` never imports ``node``): one strict parser for this
relayer and the Redis queue's; a test checks the member's message parses here.
"""

from __future__ import annotations

import json
import logging
import math
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.chain.relay_wire import MAX_ITEM_BYTES, MalformedItem, RelayItem
from ledger.chain.types import Phase, checksum

if TYPE_CHECKING:
    from ledger.chain.client import LedgerClient

log = logging.getLogger(__name__)

PATH = "/v1/submissions"
MAX_BODY_BYTES = MAX_ITEM_BYTES
MAX_BATCH = 16
# secp256k1's group order / 2: the contract (OpenZeppelin ECDSA) refuses a larger `s` (the malleable twin of a
# valid signature), which eth_account would still recover; refused here so that it never reaches a batch.
_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


class Refusal(Exception):
    """A request the relayer answers without sending anything: HTTP ``status``, a stable ``code``, the problem."""

    def __init__(
        self, status: int, code: str, problem: str, *, retry_after: float | None = None, **extra: Any
    ) -> None:
        super().__init__(problem)
        self.status = status
        self.code = code
        self.problem = problem
        self.retry_after = retry_after
        self.extra = extra

    def body(self) -> dict[str, Any]:
        state = {429: "limited", 503: "busy", 504: "pending", 502: "error"}.get(self.status, "rejected")
        return {"status": state, "code": self.code, "problem": self.problem, **self.extra}


# ─── the wire format ──────────────────────────────────────────────────────────────────────────────────────────


def parse_item(raw: bytes) -> RelayItem:
    """Strictly parse a request body (untrusted, already bounded by the caller): :class:`Refusal` 400 (413 when
    over the size bound) naming what is off."""
    try:
        return RelayItem.parse(raw)
    except MalformedItem as exc:
        if exc.too_large:
            raise Refusal(413, "too_large", str(exc)) from None
        raise Refusal(400, "malformed", str(exc)) from None


# ─── rate limits ──────────────────────────────────────────────────────────────────────────────────────────────


@dataclass
class TokenBucket:
    """``capacity`` requests at once, refilled at ``rate`` per second."""

    capacity: float
    rate: float
    tokens: float = field(default=-1.0)
    updated: float = 0.0

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        if self.tokens < 0:
            self.tokens, self.updated = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate if self.rate > 0 else math.inf


class RateLimiter:
    """One bucket per key (a member's address, a peer's IP), the least recently seen forgotten beyond
    ``max_keys`` so that a flood of fresh keys costs memory only up to that bound."""

    def __init__(
        self,
        capacity: float,
        rate: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity, self.rate, self.max_keys, self.clock = capacity, rate, max_keys, clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        with self._lock:
            bucket = self._buckets.pop(key, None) or TokenBucket(self.capacity, self.rate)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return bucket.take(self.clock())


# ─── checks and batching ──────────────────────────────────────────────────────────────────────────────────────


@dataclass
class Limits:
    max_batch: int = MAX_BATCH
    batch_wait_s: float = 0.5
    member_burst: float = 3.0
    member_rate: float = 1 / 20  # a member submits once a round: one request per 20 s after a burst of 3
    peer_burst: float = 30.0
    peer_rate: float = 10.0  # per client address, before any signature is recovered
    max_queued: int = 112  # a round holds at most 112 updates (MAX_UPDATES_PER_ROUND)
    answer_timeout_s: float = 120.0


@dataclass
class Pending:
    item: RelayItem
    done: threading.Event = field(default_factory=threading.Event)
    status: int = 0
    body: dict[str, Any] = field(default_factory=dict)

    def answer(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body = status, body
        self.done.set()


class RelayService:
    """Checks signed submissions and relays them in batches with ``sender`` (a funded key; only the batcher thread
    uses it); ``reader`` (default: ``sender``) answers the checks' chain reads."""

    def __init__(
        self,
        sender: LedgerClient,
        *,
        reader: LedgerClient | None = None,
        limits: Limits | None = None,
        say: Callable[[str], None] = log.info,
    ) -> None:
        if sender.sender is None:
            raise ValueError("the relayer needs a signing key (it pays the gas)")
        self.sender = sender
        self.reader = reader or sender
        self.limits = limits or Limits()
        if not 1 <= self.limits.max_batch <= 112:
            raise ValueError(f"max_batch must be in [1, 112], got {self.limits.max_batch}")
        self.say = say
        self.members = RateLimiter(self.limits.member_burst, self.limits.member_rate)
        self.peers = RateLimiter(self.limits.peer_burst, self.limits.peer_rate)
        self._read_lock = threading.Lock()
        self._queue: list[Pending] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.relayed = 0
        self.refused = 0
        self.transactions = 0

    # --- admission (request threads) --------------------------------------------------------------------------
    def admit(self, raw: bytes, peer: str) -> Pending:
        """Every check that needs no gas, in order of cost; the item queued for the next batch. Raises
        :class:`Refusal` for anything refused (nothing sent)."""
        wait = self.peers.take(peer)
        if wait:
            raise Refusal(429, "rate_limited", f"too many requests from {peer}", retry_after=wait)
        item = parse_item(raw)
        sub = item.sub
        if sub.digest == bytes(32):
            raise Refusal(400, "zero_digest", "the digest is zero: it names no update")
        if sub.num_samples == 0:
            raise Refusal(400, "zero_samples", "num_samples is 0")
        signer = self._recover(item)
        if signer != sub.contributor:
            raise Refusal(
                401,
                "bad_signature",
                f"the signature recovers to {signer}, not to the contributor {sub.contributor}",
            )
        wait = self.members.take(sub.contributor)
        if wait:
            raise Refusal(
                429,
                "rate_limited",
                f"{sub.contributor} sent too many submissions; retry later",
                retry_after=wait,
            )
        with self._read_lock:
            self._check_chain(item)
        pending = Pending(item)
        with self._cond:
            if self._stopping:
                raise Refusal(503, "stopping", "the relayer is shutting down", retry_after=5)
            if any(p.item.sub.contributor == sub.contributor for p in self._queue):
                raise Refusal(
                    409, "duplicate", f"{sub.contributor} already has a submission in the next batch"
                )
            if len(self._queue) >= self.limits.max_queued:
                raise Refusal(
                    503, "busy", "the relayer's queue is full", retry_after=self.limits.batch_wait_s + 1
                )
            self._queue.append(pending)
            self._cond.notify_all()
        return pending

    def _recover(self, item: RelayItem) -> str:
        from eth_account import Account
        from eth_account.messages import encode_typed_data

        sub = item.sub
        if int.from_bytes(sub.s, "big") > _HALF_N:
            raise Refusal(
                401, "bad_signature", "`s` is in the upper half of the curve order (a malleable signature)"
            )
        with self._read_lock:  # the EIP-712 domain is read from the chain once, then cached
            data = self.reader.submission_typed_data(
                item.task, item.round, sub.digest, sub.num_samples, nonce=sub.nonce, deadline=sub.deadline
            )
        try:
            signer = Account.recover_message(
                encode_typed_data(full_message=data),
                vrs=(sub.v, int.from_bytes(sub.r, "big"), int.from_bytes(sub.s, "big")),
            )
        except Exception as exc:  # a malformed (r, s): eth_keys raises several types; all mean "not signed"
            raise Refusal(
                401, "bad_signature", f"the signature does not recover ({type(exc).__name__})"
            ) from None
        return checksum(signer)

    def _check_chain(self, item: RelayItem) -> None:
        from ledger.chain.errors import UnknownTask
        from ledger.chain.revert import ContractRevert

        c, sub = self.reader, item.sub
        try:
            try:
                task = c.task(item.task)
            except UnknownTask:
                raise Refusal(
                    404, "unknown_task", f"task {item.task} does not exist on this ledger"
                ) from None
            if item.round != task.current_round:
                raise Refusal(
                    409,
                    "wrong_round",
                    f"round {item.round} is not task {item.task}'s current round {task.current_round}",
                )
            if not c.account(sub.contributor).contributor:
                raise Refusal(403, "not_member", f"{sub.contributor} is not a contributor of this ledger")
            if sub.num_samples > task.params.max_samples:
                raise Refusal(
                    422,
                    "over_cap",
                    f"num_samples {sub.num_samples} is over the task's cap of {task.params.max_samples}",
                )
            view = c.round_view(item.task, item.round)
            if view.phase is not Phase.OPEN:
                raise Refusal(409, "closed", f"round {item.round} is {view.phase.name.lower()}")
            if c.submission_of(item.task, item.round, sub.contributor).submitted:
                raise Refusal(
                    409, "already_submitted", f"{sub.contributor} already submitted to round {item.round}"
                )
            expected = c.nonces(sub.contributor)
            if sub.nonce != expected:
                raise Refusal(409, "bad_nonce", f"nonce {sub.nonce}, the chain expects {expected}")
            now = int(c.rpc(lambda: c.w3.eth.get_block("pending"))["timestamp"])
            if sub.deadline <= now:
                raise Refusal(400, "expired", f"the signature expired at {sub.deadline} (now {now})")
        except ContractRevert as exc:
            raise Refusal(409, "refused_by_chain", exc.message, error=exc.error_name) from None

    # --- the batcher (one thread: the only user of the sending key) ---------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="relay-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.limits.answer_timeout_s)

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self.relay(batch)
            except Exception as exc:  # a chain outage must answer the waiting members, not kill the thread
                log.exception("relaying a batch failed")
                for p in batch:
                    if not p.done.is_set():
                        p.answer(502, Refusal(502, "chain_error", f"{type(exc).__name__}: {exc}").body())

    def _next_batch(self) -> list[Pending] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait(1.0)
            # The first item waits at most batch_wait_s for company: latency for one member stays bounded.
            deadline = time.monotonic() + self.limits.batch_wait_s
            while len(self._queue) < self.limits.max_batch and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = self._queue[: self.limits.max_batch]
            del self._queue[: len(batch)]
            return batch

    def relay(self, batch: list[Pending]) -> None:
        """Send ``batch`` (one transaction per task and round) and answer each member."""
        groups: dict[tuple[int, int], list[Pending]] = {}
        for p in batch:
            groups.setdefault((p.item.task, p.item.round), []).append(p)
        for (task, round_), group in groups.items():
            self._send(task, round_, group)

    def _send(self, task: int, round_: int, group: list[Pending]) -> None:
        from ledger.chain.revert import ContractRevert

        try:
            result = self.sender.submit_updates_for(task, round_, [p.item.sub for p in group])
        except ContractRevert as exc:
            if len(group) == 1:
                self._reverted(group[0], exc)
                return
            # The chain changed between the checks and the batch (a member submitted directly, the round
            # closed): one transaction per item so that one stale item does not cost the others their place.
            self.say(
                f"batch of {len(group)} for round {round_} reverted ({exc.error_name}); relaying one by one"
            )
            for p in group:
                try:
                    one = self.sender.submit_update_for(task, round_, p.item.sub)
                except ContractRevert as exc_one:
                    self._reverted(p, exc_one)
                else:
                    self.transactions += 1
                    self._submitted(p, one.value, one.tx_hash, one.block_number)
            return
        self.transactions += 1
        for offset, p in enumerate(group):  # a batch's updates get consecutive indexes
            self._submitted(p, result.value + offset, result.tx_hash, result.block_number)
        self.say(f"relayed {len(group)} update(s) to task {task} round {round_} in {result.tx_hash}")

    def _submitted(self, p: Pending, index: int, tx: str, block: int) -> None:
        self.relayed += 1
        p.answer(200, {"status": "submitted", "tx": tx, "index": index, "block": block})

    def _reverted(self, p: Pending, exc: Any) -> None:
        self.refused += 1
        self.say(f"the chain refused the submission of {p.item.sub.contributor}: {exc.message}")
        p.answer(
            409, {"status": "reverted", "code": "reverted", "error": exc.error_name, "problem": exc.message}
        )


# ─── HTTP ─────────────────────────────────────────────────────────────────────────────────────────────────────


def tls_context(cert_file: str | Path, key_file: str | Path) -> ssl.SSLContext:
    """The relayer's server-side TLS (1.2 or later) from a PEM certificate chain and its private key;
    :class:`~ledger.errors.ConfigError` naming the file and what to do when either is missing, unreadable or they
    do not belong together."""
    from ledger.errors import ConfigError

    hint = (
        "give --tls-cert the relayer's PEM certificate (chain) and --tls-key its PEM private key, readable by "
        "this user (docker compose: deploy/relayer/init.sh generates both)"
    )
    for what, path in (("certificate", Path(cert_file)), ("private key", Path(key_file))):
        try:
            with path.open("rb") as f:
                f.read(1)
        except OSError as exc:
            raise ConfigError(
                f"cannot read the relayer's TLS {what} {path}: {exc.strerror or exc}", hint=hint
            ) from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    except ssl.SSLError as exc:
        raise ConfigError(
            f"the relayer's TLS certificate {cert_file} and key {key_file} cannot be used: {exc.reason or exc} "
            "(not PEM, or the key is not the certificate's)",
            hint=hint,
        ) from None
    return ctx


class RelayHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Bounded concurrency: each request holds a thread while its batch is mined, each connection a thread while
    # it is open (idle ones for at most the handler's timeout).
    max_in_flight = 64
    max_connections = 256
    handshake_timeout_s = 10.0

    def __init__(
        self, address: tuple[str, int], service: RelayService, *, tls: ssl.SSLContext | None = None
    ) -> None:
        self.service = service
        self.tls = tls
        self.in_flight = threading.BoundedSemaphore(self.max_in_flight)
        self.connections = threading.BoundedSemaphore(self.max_connections)
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.tls is None:
            return sock, address
        # The handshake runs in the connection's own thread (process_request_thread), never in the accept loop:
        # a client that stalls it holds one bounded connection for at most handshake_timeout_s.
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.connections.acquire(blocking=False):
            self.shutdown_request(request)  # over the bound: closed at once, no thread
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if isinstance(request, ssl.SSLSocket):
                try:
                    request.settimeout(self.handshake_timeout_s)
                    request.do_handshake()
                except (
                    OSError,
                    ssl.SSLError,
                ) as exc:  # a client that does not trust us, or speaks plain HTTP
                    log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
                    self.shutdown_request(request)
                    return
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{'https' if self.tls is not None else 'http'}://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: RelayHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 10  # a client that sends its body slowly holds a thread at most this long per read
    server_version = "meshprov-relay/1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        if self.path != "/healthz":
            self._reply(404, {"status": "rejected", "code": "not_found", "problem": f"no {self.path}"})
            return
        s = self.server.service
        self._reply(
            200,
            {
                "status": "ok",
                "ledger": s.sender.address,
                "relayer": s.sender.sender_address,
                "relayed": s.relayed,
                "refused": s.refused,
                "max_batch": s.limits.max_batch,
                "max_body_bytes": MAX_BODY_BYTES,
            },
        )

    def do_POST(self) -> None:
        try:
            try:
                self._reply(*self._post())
            except Refusal:
                raise
            except Exception as exc:  # the chain did not answer a check: say so, do not drop the connection
                log.warning("a relay request failed: %s: %s", type(exc).__name__, exc)
                raise Refusal(
                    502,
                    "chain_error",
                    f"the relayer could not check the submission ({type(exc).__name__})",
                    retry_after=5,
                ) from None
        except Refusal as r:
            self.server.service.refused += 1
            headers = {"Retry-After": str(max(1, math.ceil(r.retry_after)))} if r.retry_after else {}
            self._reply(r.status, r.body(), headers, close=r.status in (411, 413))

    def _post(self) -> tuple[int, dict[str, Any]]:
        if self.path != PATH:
            raise Refusal(404, "not_found", f"POST {PATH}")
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise Refusal(415, "content_type", "send Content-Type: application/json")
        length_text = self.headers.get("Content-Length")
        if length_text is None or self.headers.get("Transfer-Encoding"):
            raise Refusal(411, "length_required", "send the body with a Content-Length (no chunked encoding)")
        try:
            length = int(length_text)
        except ValueError:
            raise Refusal(400, "malformed", "Content-Length is not a number") from None
        if not 0 <= length <= MAX_BODY_BYTES:  # bounded before a byte of the body is read
            raise Refusal(413, "too_large", f"{length} bytes, over {MAX_BODY_BYTES}")
        raw = self.rfile.read(length)
        if len(raw) != length:
            raise Refusal(400, "malformed", "the body is shorter than its Content-Length")
        if not self.server.in_flight.acquire(blocking=False):
            raise Refusal(503, "busy", "too many requests in flight", retry_after=2)
        try:
            pending = self.server.service.admit(raw, self.client_address[0])
            if not pending.done.wait(self.server.service.limits.answer_timeout_s):
                raise Refusal(
                    504, "not_mined", "the batch was not mined in time; check the chain before retrying"
                )
            return pending.status, pending.body
        finally:
            self.server.in_flight.release()

    def _reply(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None, *, close: bool = False
    ) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:  # an unread body is still on the connection: do not parse it as the next request
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)


def serve(
    service: RelayService, host: str, port: int, *, tls: ssl.SSLContext | None = None
) -> RelayHTTPServer:
    """Bind the relayer (port 0 picks a free one; HTTPS with ``tls``, see :func:`tls_context`) and start its
    batcher; call ``serve_forever`` (or run it in a thread) and ``shutdown`` + ``service.stop()`` to end."""
    server = RelayHTTPServer((host, port), service, tls=tls)
    service.start()
    return server

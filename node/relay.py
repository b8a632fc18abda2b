"""Gasless submissions: a member signs its submission (EIP-712) and a relayer pays for the transaction.

Two ways to reach a relayer: a Redis queue (members inside the operator's organisation, the queue below) or HTTP
(members of other organisations: ``--relay-via https://HOST:PORT --relay-ca CA.pem``, :class:`HttpRelay`, served by
``meshprov worker relay``; docs/relay.md). Over HTTP the member believes the chain, never the relayer: it confirms
its own submission with ``submissionOf``, checks a refusal against the chain before giving up, and can fall back to
a direct submission after ``--relay-timeout``.

    member (`node run --relay`)                     relayer (`node relay`, any funded key)
      sign_submission(key, task, round, digest, n)
      RPUSH meshprov:relay:<ledger>  ──────────────▶  BLPOP, then up to --max-batch more within --batch-wait
                                                      check each: JSON shape, round open, nonce, deadline,
                                                      role, signature (recovered off chain)
                                                      submitUpdatesFor(task, round, batch)   (one tx per round)
      poll submissionOf(…) / the reply  ◀──────────  SET meshprov:relay:reply:<ledger>:<contributor>:<nonce>

The queue is Redis (the broker every deployment already runs). Messages are untrusted input: bounded, strict JSON,
checked before anything is sent, so one bad message is answered ``rejected`` and never reverts a batch. The chain
checks the signature again; a relayer can delay a submission but never alter it (the digest is signed), and
a member who hears nothing keeps its update file and can resubmit directly.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ledger.chain.relay_wire import MalformedItem, RelayItem
from ledger.chain.types import Phase, SignedSubmission, checksum
from ledger.errors import ConfigError
from node.faults import InvalidRelayMessage, NoSigningKey, RelayRejected
from node.packaging import CLOSED_REVERTS, Submitted, submit_direct

if TYPE_CHECKING:
    import redis

    from ledger.chain.client import LedgerClient

log = logging.getLogger(__name__)

REPLY_TTL_S = 3600


def queue_key(ledger: str) -> str:
    return f"meshprov:relay:{ledger.lower()}"


def reply_key(ledger: str, contributor: str, nonce: int) -> str:
    return f"meshprov:relay:reply:{ledger.lower()}:{contributor.lower()}:{nonce}"


@dataclass(frozen=True)
class RelayMessage(RelayItem):
    """A relay queue message: the wire format's item (:mod:`ledger.chain.relay_wire`), refused as a node fault."""

    @classmethod
    def parse(cls, raw: bytes | str) -> RelayMessage:
        """Strictly parse a queue message (untrusted): :class:`InvalidRelayMessage` for anything off."""
        try:
            item = RelayItem.parse(raw)
        except MalformedItem as exc:
            raise InvalidRelayMessage(str(exc)) from None
        return cls(item.task, item.round, item.sub)


# ─── the member's side ──────────────────────────────────────────────────────────────────────────────────────


def submit_relayed(
    client: LedgerClient,
    redis_client: redis.Redis[bytes] | HttpRelay,
    key: str,
    *,
    task: int,
    round_: int,
    cid: str,
    num_samples: int,
    poll_s: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
    valid_for: int = 3600,
) -> Submitted:
    """Sign the submission, hand it to a relayer (Redis queue or HTTP) and wait until the chain has it (or the
    round closes)."""
    from ledger.content import cid_to_digest

    if isinstance(redis_client, HttpRelay):
        return submit_relayed_http(
            client,
            redis_client,
            key,
            task=task,
            round_=round_,
            cid=cid,
            num_samples=num_samples,
            poll_s=poll_s,
            sleep=sleep,
            valid_for=valid_for,
        )
    signed = client.sign_submission(key, task, round_, cid_to_digest(cid), num_samples, valid_for=valid_for)
    me = signed.contributor
    reply = reply_key(client.address, me, signed.nonce)
    redis_client.delete(reply)
    redis_client.rpush(queue_key(client.address), RelayMessage(task, round_, signed).to_json())
    while True:
        status = client.submission_of(task, round_, me)
        if status.submitted:
            tx = _reply(redis_client, reply).get("tx")
            tx_hash = tx if isinstance(tx, str) and len(tx) == 66 else None
            return Submitted("submitted", index=status.index, tx_hash=tx_hash, detail="relayed")
        answer = _reply(redis_client, reply)
        if answer.get("status") in ("closed", "rejected"):
            # Anyone who can write to the queue's Redis can write this reply: the chain decides.
            problem = str(answer.get("problem", "no reason given"))
            found = own_check(client, task, round_, signed)
            if client.submission_of(task, round_, me).submitted:
                continue
            if found is not None and found[0] == "closed":
                return Submitted("closed", detail=found[1])
            if found is not None:
                raise RelayRejected(me, signed.nonce, f"{problem} (the chain agrees: {found[1]})")
            log.warning(
                "a relay reply says %r (%s) but the chain shows nothing wrong: not believed",
                answer["status"],
                problem,
            )
            redis_client.delete(reply)
            redis_client.rpush(queue_key(client.address), RelayMessage(task, round_, signed).to_json())
        view = client.round_view(task, round_)
        if view.phase is not Phase.OPEN and not client.submission_of(task, round_, me).submitted:
            return Submitted("closed", detail="the round closed before a relayer submitted the update")
        sleep(poll_s)


def _reply(redis_client: redis.Redis[bytes], key: str) -> dict[str, Any]:
    raw = redis_client.get(key)
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# ─── the member's side over HTTP ────────────────────────────────────────────────────────────────────────────

MAX_REPLY_BYTES = 16 * 1024


@dataclass(frozen=True)
class RelayAnswer:
    """What a relayer said: the HTTP ``status`` (0: it could not be reached), its JSON ``body`` and
    ``Retry-After``. Only a claim: the member checks it against the chain."""

    status: int
    body: dict[str, Any]
    retry_after: float | None = None

    @property
    def problem(self) -> str:
        return str(self.body.get("problem") or self.body.get("code") or f"HTTP {self.status}")


class RelayTLSError(ConfigError):
    """The relayer's certificate is not trusted (wrong or missing ``--relay-ca``, a name it was not issued for):
    nothing was sent, and re-sending would not help."""


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): traffic that never leaves the machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class HttpRelay:
    """A relayer's HTTP endpoint (``meshprov worker relay``), as a member of another organisation uses it.

    ``timeout_s``: how long the member waits for its submission to appear on chain before ``fallback_direct``
    (submitting itself; its key then needs ETH). ``retry_s``: how often it re-sends while the chain does not show
    the submission (a relayer may drop requests; the nonce makes a re-send harmless).

    ``https://`` relayers are verified (TLS 1.2 or later) against ``ca_file`` (PEM; default: the system's
    trusted CAs). A plain ``http://`` relayer that is not on loopback is refused unless ``allow_http``: the member
    believes only the chain, so a man in the middle cannot forge an outcome, but it can read every submission
    and silently drop, delay or reorder them (the member's availability and privacy)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 120.0,
        fallback_direct: bool = False,
        retry_s: float = 10.0,
        request_timeout_s: float = 60.0,
        ca_file: str | Path | None = None,
        allow_http: bool = False,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{url!r} is not an http:// or https:// URL")
        host = urlsplit(url).hostname or ""
        if url.startswith("http://"):
            if ca_file is not None:
                raise ConfigError(
                    f"a CA file ({ca_file}) is for an https:// relayer, not {url}",
                    hint="give the relayer's https:// URL (`meshprov worker relay --tls-cert … --tls-key …`)",
                )
            if not allow_http and not is_loopback(host):
                raise ConfigError(
                    f"refusing the plain-HTTP relayer {url}: anyone on the path could read the member's "
                    "submissions and silently drop, delay or reorder them",
                    hint="use https:// (the relayer's --tls-cert/--tls-key, the member's --relay-ca), or pass "
                    "--relay-insecure-http on a network you trust",
                )
        self.verify: ssl.SSLContext | None = None
        if url.startswith("https://"):
            self.verify = client_tls_context(ca_file)
        self.url = url.rstrip("/") + "/v1/submissions"
        self.timeout_s = timeout_s
        self.fallback_direct = fallback_direct
        self.retry_s = retry_s
        self.request_timeout_s = request_timeout_s

    def post(self, body: bytes) -> RelayAnswer:
        import httpx

        try:
            # No redirects followed (httpx's default): the answer comes from the relayer the member chose. The
            # certificate is checked in the handshake, before a byte of the signed body is sent.
            with httpx.stream(
                "POST",
                self.url,
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=self.request_timeout_s,
                verify=self.verify if self.verify is not None else True,
            ) as response:
                raw = bytearray()
                for chunk in response.iter_bytes():
                    raw += chunk
                    if len(raw) > MAX_REPLY_BYTES:
                        break
                return _answer(response.status_code, bytes(raw), response.headers)
        except httpx.HTTPError as exc:  # refused, reset, timed out, a broken reply
            failure = _cause(exc, ssl.SSLCertVerificationError)
            if failure is not None:
                raise RelayTLSError(
                    f"the relayer at {self.url} is not trusted: {failure.verify_message or failure}; "
                    "nothing was sent",
                    hint="give --relay-ca the CA file that signed the relayer's certificate (docker compose: the "
                    "relayer-ca volume's ca.crt), and a URL with a name the certificate was issued for",
                ) from None
            return RelayAnswer(0, {"problem": f"the relayer cannot be reached ({exc})"})

    def close(self) -> None:
        """Nothing to release (one connection per request); here so the CLI closes either relay alike."""


def client_tls_context(ca_file: str | Path | None) -> ssl.SSLContext:
    """Verifies the relayer's certificate and name, TLS 1.2 or later; ``ca_file``: the PEM CA(s) to trust instead
    of the system's."""
    if ca_file is None:
        ctx = ssl.create_default_context()
    else:
        try:
            ctx = ssl.create_default_context(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(
                f"cannot use the relayer's CA file {ca_file}: {problem}",
                hint="give --relay-ca the PEM CA certificate the relayer's operator handed out "
                "(docker compose: deploy/relayer/init.sh writes it)",
            ) from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _cause(
    exc: BaseException, kind: type[ssl.SSLCertVerificationError]
) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _answer(status: int, raw: bytes, headers: Any) -> RelayAnswer:
    body: dict[str, Any] = {}
    if len(raw) <= MAX_REPLY_BYTES:  # a relayer's reply is untrusted: bounded, and anything odd is no answer
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict):
            body = data
    retry: float | None = None
    text = headers.get("Retry-After") if headers is not None else None
    if text is not None:
        try:
            retry = min(max(float(text), 0.0), 3600.0)
        except ValueError:
            retry = None
    return RelayAnswer(status, body, retry)


def own_check(
    client: LedgerClient, task: int, round_: int, signed: SignedSubmission
) -> tuple[str, str] | None:
    """The member's own reading of the chain: ``("closed", why)`` when the round takes no more submissions,
    ``("refused", why)`` when the chain would refuse this signed submission, None when nothing is wrong with it
    (a relayer's refusal is then not believed)."""
    from ledger.chain.revert import ContractRevert

    try:
        current = client.task(task)
        if current.current_round != round_:
            return "closed", f"round {round_} is no longer the task's current round ({current.current_round})"
        view = client.round_view(task, round_)
        if view.phase is not Phase.OPEN:
            return "closed", f"round {round_} is {view.phase.name.lower()}"
        if not client.account(signed.contributor).contributor:
            return "refused", f"{signed.contributor} is not a contributor"
        if signed.num_samples > current.params.max_samples:
            return "refused", f"num_samples {signed.num_samples} is over the cap {current.params.max_samples}"
        if signed.digest == bytes(32) or signed.num_samples == 0:
            return "refused", "a zero digest or sample count"
        nonce = client.nonces(signed.contributor)
        if signed.nonce != nonce:
            return "refused", f"the signature's nonce {signed.nonce} is not the chain's {nonce}"
        now = int(client.rpc(lambda: client.w3.eth.get_block("latest"))["timestamp"])
        if signed.deadline <= now:
            return "refused", f"the signature expired at {signed.deadline}"
    except ContractRevert as exc:
        return "refused", exc.message
    return None


def submit_relayed_http(
    client: LedgerClient,
    relay: HttpRelay,
    key: str,
    *,
    task: int,
    round_: int,
    cid: str,
    num_samples: int,
    poll_s: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
    valid_for: int = 3600,
    clock: Callable[[], float] = time.monotonic,
) -> Submitted:
    """Sign, POST to the relayer, and believe only the chain.

    * on chain (``submissionOf``): submitted, whatever the relayer said;
    * the round closed without it: closed (the runner records the round missed and keeps the file);
    * a refusal the chain bears out (not a contributor, over the cap, an old nonce): :class:`RelayRejected`;
    * a refusal the chain does not bear out, an unreachable or silent relayer: not believed — re-sent every
      ``relay.retry_s``, and after ``relay.timeout_s`` submitted directly when ``relay.fallback_direct``.
    """
    from ledger.content import cid_to_digest

    signed = client.sign_submission(key, task, round_, cid_to_digest(cid), num_samples, valid_for=valid_for)
    me = signed.contributor
    body = RelayMessage(task, round_, signed).to_json().encode()
    give_up = clock() + relay.timeout_s
    next_post = clock()
    claimed_tx: str | None = None
    while True:
        status = client.submission_of(task, round_, me)
        if status.submitted:
            return Submitted("submitted", index=status.index, tx_hash=claimed_tx, detail="relayed")
        view = client.round_view(task, round_)
        if view.phase is not Phase.OPEN:
            return Submitted(
                "closed", detail="the round closed before the relayer's submission reached the chain"
            )
        now = clock()
        if now >= give_up and relay.fallback_direct:
            log.warning(
                "the relayer did not get the submission on chain in %.0f s: submitting directly",
                relay.timeout_s,
            )
            return submit_direct(client, task=task, round_=round_, cid=cid, num_samples=num_samples)
        if now >= next_post:
            answer = relay.post(body)
            next_post = now + relay.retry_s
            if answer.status == 200 and answer.body.get("status") == "submitted":
                tx = answer.body.get("tx")
                claimed_tx = tx if isinstance(tx, str) and len(tx) == 66 else None
                continue  # the claim is checked against the chain at once
            if answer.status in (429, 503) and answer.retry_after is not None:
                next_post = now + max(answer.retry_after, poll_s)
            elif answer.body.get("code") == "duplicate":
                pass  # the relayer says it holds this member's submission for the next batch: wait for the chain
            elif 400 <= answer.status < 500 and answer.status not in (408, 429):
                found = own_check(client, task, round_, signed)
                if client.submission_of(task, round_, me).submitted:
                    continue  # e.g. "already_submitted": the chain has it, which is all that matters
                if found is not None and found[0] == "closed":
                    return Submitted("closed", detail=found[1])
                if found is not None:
                    raise RelayRejected(me, signed.nonce, f"{answer.problem} (the chain agrees: {found[1]})")
                log.warning(
                    "the relayer refused the submission (%s) but the chain shows nothing wrong with it: not believed",
                    answer.problem,
                )
                if relay.fallback_direct:
                    give_up = now
            else:
                log.warning(
                    "the relayer answered %s (%s); re-sending later",
                    answer.status or "nothing",
                    answer.problem,
                )
        sleep(poll_s)


# ─── the relayer ────────────────────────────────────────────────────────────────────────────────────────────


@dataclass
class Verdict:
    """What the relayer made of one message: ``ok`` to submit, then ``submitted`` (index, tx), ``closed`` (the
    round no longer takes submissions) or ``rejected`` (with the problem)."""

    message: RelayMessage
    ok: bool
    status: str = "queued"
    problem: str = ""
    index: int | None = None
    tx: str | None = None


class Relayer:
    """Drains the relay queue of one ledger and submits valid signed submissions in batches."""

    def __init__(
        self,
        client: LedgerClient,
        redis_client: redis.Redis[bytes],
        *,
        max_batch: int = 16,
        batch_wait_s: float = 0.5,
        say: Callable[[str], None] = log.info,
    ) -> None:
        if client.sender is None:
            raise NoSigningKey("relayer")
        self.client = client
        self.redis = redis_client
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_s
        self.say = say
        self.queue = queue_key(client.address)
        self.relayed = 0
        self.rejected = 0

    def next_batch(self, block_s: float) -> list[bytes]:
        """The next message (waiting up to ``block_s``) and whatever else arrives within the batch window."""
        first = self.redis.blpop([self.queue], timeout=max(1, round(block_s)))
        if first is None:
            return []
        batch = [bytes(first[1])]
        deadline = time.monotonic() + self.batch_wait_s
        while len(batch) < self.max_batch:
            raw = self.redis.lpop(self.queue)
            if raw is None:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.02)
                continue
            batch.append(bytes(raw))
        return batch

    def handle(self, raws: Sequence[bytes]) -> list[Verdict]:
        """Check every message, submit the valid ones (one transaction per task and round), reply to each."""
        verdicts: list[Verdict] = []
        for raw in raws:
            try:
                message = RelayMessage.parse(raw)
            except InvalidRelayMessage as exc:
                self.rejected += 1
                self.say(f"dropped a relay message: {exc.problem}")
                continue
            verdicts.append(self._check(message, verdicts))
        groups: dict[tuple[int, int], list[Verdict]] = {}
        for v in verdicts:
            if v.ok:
                groups.setdefault((v.message.task, v.message.round), []).append(v)
        for (task, round_), group in groups.items():
            self._submit(task, round_, group)
        for v in verdicts:
            self._answer(v)
        return verdicts

    def _check(self, message: RelayMessage, earlier: Sequence[Verdict]) -> Verdict:
        from eth_account import Account
        from eth_account.messages import encode_typed_data

        from ledger.chain.revert import ContractRevert

        c = self.client
        sub = message.sub
        try:
            view = c.round_view(message.task, message.round)
            if view.phase is not Phase.OPEN:
                return Verdict(
                    message, False, "closed", f"round {message.round} is {view.phase.name.lower()}"
                )
            if not c.account(sub.contributor).contributor:
                return Verdict(message, False, "rejected", f"{sub.contributor} is not a contributor")
            if c.submission_of(message.task, message.round, sub.contributor).submitted:
                return Verdict(message, False, "rejected", "already submitted to this round")
            pending = [v for v in earlier if v.ok and v.message.sub.contributor == sub.contributor]
            expected = c.nonces(sub.contributor) + len(pending)
            if sub.nonce != expected:
                return Verdict(message, False, "rejected", f"nonce {sub.nonce}, expected {expected}")
            now = int(c.w3.eth.get_block("pending")["timestamp"])
            if sub.deadline <= now:
                return Verdict(message, False, "rejected", f"signature expired at {sub.deadline} (now {now})")
            data = c.submission_typed_data(
                message.task,
                message.round,
                sub.digest,
                sub.num_samples,
                nonce=sub.nonce,
                deadline=sub.deadline,
            )
            signer = Account.recover_message(
                encode_typed_data(full_message=data),
                vrs=(sub.v, int.from_bytes(sub.r), int.from_bytes(sub.s)),
            )
        except ContractRevert as exc:
            return Verdict(message, False, "rejected", exc.message)
        if checksum(signer) != sub.contributor:
            return Verdict(
                message, False, "rejected", f"the signature recovers to {signer}, not the contributor"
            )
        return Verdict(message, True)

    def _submit(self, task: int, round_: int, group: list[Verdict]) -> None:
        from ledger.chain.revert import ContractRevert

        try:
            result = self.client.submit_updates_for(task, round_, [v.message.sub for v in group])
        except ContractRevert as exc:
            # Something changed between the checks and the transaction: fall back to one at a time.
            self.say(
                f"batch of {len(group)} for round {round_} reverted ({exc.error_name}); relaying one by one"
            )
            for v in group:
                self._submit_one(task, round_, v)
            return
        for offset, v in enumerate(group):  # a batch's updates get consecutive indexes
            self._record(v, result.value + offset, result.tx_hash)
        self.say(f"relayed {len(group)} update(s) to task {task} round {round_} in {result.tx_hash}")

    def _submit_one(self, task: int, round_: int, v: Verdict) -> None:
        from ledger.chain.revert import ContractRevert

        try:
            result = self.client.submit_update_for(task, round_, v.message.sub)
        except ContractRevert as exc:
            v.ok = False
            v.status = "closed" if isinstance(exc, CLOSED_REVERTS) else "rejected"
            v.problem = exc.message
            return
        self._record(v, result.value, result.tx_hash)

    def _record(self, v: Verdict, index: int, tx_hash: str) -> None:
        v.status, v.index, v.tx = "submitted", index, tx_hash
        self.relayed += 1

    def _answer(self, v: Verdict) -> None:
        sub = v.message.sub
        if v.status == "submitted":
            body: dict[str, Any] = {"status": "submitted", "index": v.index, "tx": v.tx}
        else:
            body = {"status": v.status if v.status != "queued" else "rejected", "problem": v.problem}
            self.rejected += 1
            self.say(f"refused the submission of {sub.contributor} (nonce {sub.nonce}): {v.problem}")
        self.redis.set(
            reply_key(self.client.address, sub.contributor, sub.nonce), json.dumps(body), ex=REPLY_TTL_S
        )

    def run(self, stop: Callable[[], bool], *, block_s: float = 1.0) -> None:
        """Relay until ``stop()`` is true."""
        while not stop():
            batch = self.next_batch(block_s)
            if batch:
                self.handle(batch)

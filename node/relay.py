"""Gasless submissions: a member signs its submission (EIP-712) and a relayer pays for the transaction.

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

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger.chain.types import Phase, SignedSubmission, checksum
from node.faults import InvalidRelayMessage, NoSigningKey, RelayRejected
from node.packaging import CLOSED_REVERTS, Submitted

if TYPE_CHECKING:
    import redis

    from ledger.chain.client import LedgerClient

log = logging.getLogger(__name__)

SCHEMA = 1
MAX_MESSAGE_BYTES = 2048
REPLY_TTL_S = 3600
_FIELDS = {
    "schema",
    "task",
    "round",
    "contributor",
    "digest",
    "num_samples",
    "nonce",
    "deadline",
    "v",
    "r",
    "s",
}


def queue_key(ledger: str) -> str:
    return f"meshprov:relay:{ledger.lower()}"


def reply_key(ledger: str, contributor: str, nonce: int) -> str:
    return f"meshprov:relay:reply:{ledger.lower()}:{contributor.lower()}:{nonce}"


@dataclass(frozen=True)
class RelayMessage:
    task: int
    round: int
    sub: SignedSubmission

    def to_json(self) -> str:
        s = self.sub
        return json.dumps(
            {
                "schema": SCHEMA,
                "task": self.task,
                "round": self.round,
                "contributor": s.contributor,
                "digest": "0x" + s.digest.hex(),
                "num_samples": s.num_samples,
                "nonce": s.nonce,
                "deadline": s.deadline,
                "v": s.v,
                "r": "0x" + s.r.hex(),
                "s": "0x" + s.s.hex(),
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, raw: bytes | str) -> RelayMessage:
        """Strictly parse a queue message (untrusted): :class:`InvalidRelayMessage` for anything off."""
        if len(raw) > MAX_MESSAGE_BYTES:
            raise InvalidRelayMessage(f"{len(raw)} bytes, over {MAX_MESSAGE_BYTES}")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRelayMessage(f"not JSON ({exc})") from None
        if not isinstance(data, dict) or set(data) != _FIELDS:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise InvalidRelayMessage(f"expected the fields {sorted(_FIELDS)}, got {keys}")
        if data["schema"] != SCHEMA:
            raise InvalidRelayMessage(f"unknown schema {data['schema']!r}")
        try:
            contributor = checksum(_str(data, "contributor"))
        except ValueError:
            raise InvalidRelayMessage("`contributor` is not an address") from None
        v = _int(data, "v", 2**8 - 1)
        if v not in (27, 28):
            raise InvalidRelayMessage(f"`v` must be 27 or 28, got {v}")
        sub = SignedSubmission(
            contributor=contributor,
            digest=_bytes32(data, "digest"),
            num_samples=_int(data, "num_samples", 2**64 - 1),
            nonce=_int(data, "nonce", 2**64 - 1),
            deadline=_int(data, "deadline", 2**64 - 1),
            v=v,
            r=_bytes32(data, "r"),
            s=_bytes32(data, "s"),
        )
        return cls(task=_int(data, "task", 2**256 - 1), round=_int(data, "round", 2**32 - 1), sub=sub)


def _int(data: dict[str, Any], name: str, maximum: int) -> int:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise InvalidRelayMessage(f"`{name}` must be an integer in [0, {maximum}], got {value!r}")
    return value


def _str(data: dict[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise InvalidRelayMessage(f"`{name}` must be a string")
    return value


def _bytes32(data: dict[str, Any], name: str) -> bytes:
    text = _str(data, name)
    if not text.startswith("0x") or len(text) != 66:
        raise InvalidRelayMessage(f"`{name}` must be 0x and 64 hex digits")
    try:
        return bytes.fromhex(text[2:])
    except ValueError:
        raise InvalidRelayMessage(f"`{name}` is not hex") from None


# ─── the member's side ──────────────────────────────────────────────────────────────────────────────────────


def submit_relayed(
    client: LedgerClient,
    redis_client: redis.Redis[bytes],
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
    """Sign the submission, queue it for a relayer and wait until the chain has it (or the round closes)."""
    from ledger.content import cid_to_digest

    signed = client.sign_submission(key, task, round_, cid_to_digest(cid), num_samples, valid_for=valid_for)
    me = signed.contributor
    reply = reply_key(client.address, me, signed.nonce)
    redis_client.delete(reply)
    redis_client.rpush(queue_key(client.address), RelayMessage(task, round_, signed).to_json())
    while True:
        status = client.submission_of(task, round_, me)
        if status.submitted:
            answer = _reply(redis_client, reply)
            return Submitted("submitted", index=status.index, tx_hash=answer.get("tx"), detail="relayed")
        answer = _reply(redis_client, reply)
        if answer.get("status") == "closed":
            return Submitted("closed", detail=str(answer.get("problem", "")))
        if answer.get("status") == "rejected":
            raise RelayRejected(me, signed.nonce, str(answer.get("problem", "no reason given")))
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

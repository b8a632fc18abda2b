"""The Revocations contract (protocol R8) from Python: approve a revocation, read one, read them all from the logs.

rev = RevocationsClient.of(ledger_client)                # the deployment record names the contract
rev.approve(digest, RevocationReason.POISONED, evidence)  # as a current validator
rev.state(digest)                                        # reason, evidence, revoked, approvers, weights
rev.revoked()                                            # every UpdateRevoked, oldest first (bounded log reads)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from ledger.chain.artifacts import load_artifact
from ledger.errors import ConfigError

if TYPE_CHECKING:
    from web3.contract import Contract

    from ledger.chain.client import LedgerClient

LOG_CHUNK = 10_000
"""Blocks per eth_getLogs request: public nodes refuse wide ranges, and a reply stays bounded."""


class RevocationReason(IntEnum):
    POISONED = 1
    DATA_WITHDRAWN = 2
    LICENSE = 3
    OTHER = 4

    @property
    def slug(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, text: str) -> RevocationReason:
        for reason in cls:
            if text.lower() in (reason.slug, reason.name.lower(), str(int(reason))):
                return reason
        raise ConfigError(
            f"{text!r} is not a revocation reason", hint="one of " + ", ".join(r.slug for r in cls)
        )


class NoRevocations(ConfigError):
    def __init__(self) -> None:
        super().__init__(
            "the deployment record names no Revocations contract (it was deployed before protocol R8)",
            hint="redeploy with this meshprov (`meshprov chain deploy`) to revoke and to see revocations",
        )


@dataclass(frozen=True)
class Revocation:
    """An ``UpdateRevoked`` (``approvers`` is filled by ``state``, not by the log)."""

    digest: bytes
    reason: RevocationReason
    evidence: bytes
    approved_weight: int
    total_weight: int
    block_number: int = 0
    tx_hash: str = ""
    revoked: bool = True
    approvers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        from ledger.content import digest_to_cid

        return {
            "cid": digest_to_cid(self.digest),
            "reason": self.reason.slug,
            "evidence": digest_to_cid(self.evidence) if any(self.evidence) else None,
            "revoked": self.revoked,
            "approved_weight": self.approved_weight,
            "total_weight": self.total_weight,
            "approvers": list(self.approvers),
            "block_number": self.block_number,
            "tx_hash": self.tx_hash,
        }


class RevocationsClient:
    def __init__(self, ledger: LedgerClient, address: str, from_block: int) -> None:
        self.ledger = ledger
        self.from_block = from_block
        self.contract: Contract = ledger.w3.eth.contract(  # type: ignore[call-overload]
            address=address, abi=load_artifact("Revocations").abi
        )

    @classmethod
    def of(cls, ledger: LedgerClient) -> RevocationsClient:
        record = ledger.deployment
        if record is None or record.revocations is None:
            raise NoRevocations()
        return cls(ledger, record.revocations, record.deploy_block)

    def approve(self, digest: bytes, reason: RevocationReason, evidence: bytes = bytes(32)) -> Revocation:
        """Approve (or propose) revoking ``digest``; the state after the approval (``revoked`` when it tipped)."""
        from ledger.chain.client import ReadOnlyClient

        sender = self.ledger.sender
        if sender is None:
            raise ReadOnlyClient("approve a revocation")
        fn = self.contract.functions.approveRevocation(digest, int(reason), evidence)
        receipt = self.ledger.rpc(lambda: sender.send(fn))
        state = self.state(digest)
        return Revocation(
            digest,
            state.reason,
            state.evidence,
            state.approved_weight,
            state.total_weight,
            int(receipt["blockNumber"]),
            "0x" + bytes(receipt["transactionHash"]).hex(),
            state.revoked,
            state.approvers,
        )

    def state(self, digest: bytes) -> Revocation:
        """The revocation of ``digest`` as it stands (reason 0 → OTHER is never returned: no proposal raises)."""
        from ledger.errors import NotFound

        reason, evidence, revoked, approvers, approved, total = self.ledger.rpc(
            lambda: self.contract.functions.revocation(digest).call()
        )
        if not approvers:
            raise NotFound(f"no revocation of {digest.hex()} was proposed")
        return Revocation(
            digest,
            RevocationReason(reason),
            bytes(evidence),
            int(approved),
            int(total),
            revoked=bool(revoked),
            approvers=tuple(str(a) for a in approvers),
        )

    def revoked(self, *, to_block: int | None = None) -> list[Revocation]:
        """Every ``UpdateRevoked`` from the deployment block on, oldest first."""
        head = (
            to_block
            if to_block is not None
            else int(self.ledger.rpc(lambda: self.ledger.w3.eth.block_number))
        )
        event = self.contract.events.UpdateRevoked()
        out: list[Revocation] = []
        start = self.from_block
        while start <= head:
            end = min(head, start + LOG_CHUNK - 1)
            logs = self._logs(event, start, end)
            for log in logs:
                args = log["args"]
                out.append(
                    Revocation(
                        bytes(args["digest"]),
                        RevocationReason(int(args["reason"])),
                        bytes(args["evidence"]),
                        int(args["approvedWeight"]),
                        int(args["totalWeight"]),
                        int(log["blockNumber"]),
                        "0x" + bytes(log["transactionHash"]).hex(),
                    )
                )
            start = end + 1
        return out

    def _logs(self, event: Any, start: int, end: int) -> list[Any]:
        return list(self.ledger.rpc(lambda: event.get_logs(from_block=start, to_block=end)))

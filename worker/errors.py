"""Errors of the worker package.

    MeshprovError
    └── WorkerError
        ├── NotMember                 the key lacks the on-chain role the worker was asked to play   [NOT_MEMBER]
        ├── InvalidJob (ValueError)   a broker message whose arguments fail validation (never retried)
        ├── UpdateRejected            an update failed a check (`meshprov worker check`)             [REJECTED]
        └── TransientFault            worth retrying: the store, the chain or the broker, not the update
            ├── StoreFault            the content store cannot give us the bytes (down, missing, corrupt)
            │   └── ContentMissing    the store does not hold the content (yet: members publish after the close)
            ├── ChainFault            the RPC endpoint failed or a transaction was not mined in time
            └── NotReady              the chain is not where the job needs it yet (e.g. finalize too early)

A ``TransientFault`` is never turned into a verdict: a validator that cannot fetch an honest member's update
reports a fault and retries, it does not score it as a reject.
"""

from __future__ import annotations

from ledger.errors import MeshprovError
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason


class WorkerError(MeshprovError):
    """Root of the worker's errors."""


class NotMember(WorkerError):
    exit_code = ExitCode.NOT_MEMBER

    def __init__(self, address: str, role: str) -> None:
        self.address = address
        self.role = role
        super().__init__(
            f"{address} does not hold the {role} role on the ledger",
            hint=f"ask the consortium admin to grant the {role} role to {address}, or use that member's key",
        )


class InvalidJob(WorkerError, ValueError):
    """A task argument from the broker that is not what the protocol allows: the message is dropped."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:80] + "…"
        super().__init__(f"invalid job argument {field}={shown}: expected {expected}")


class UpdateRejected(WorkerError):
    exit_code = ExitCode.REJECTED

    def __init__(self, path: str, reason: Reason, detail: str = "") -> None:
        self.path = path
        self.reason = reason
        self.detail = detail
        message = f"{path} rejected: {reason.slug} ({int(reason)}): {reason.help}"
        if detail:
            message += f" [{detail}]"
        super().__init__(message)


class TransientFault(WorkerError):
    """A failure of our infrastructure (not of the update): retried with backoff, then reported as a fault."""

    kind = "transient"

    def __init__(self, detail: str, *, hint: str | None = None) -> None:
        self.detail = detail
        super().__init__(f"{self.kind} fault: {detail}", hint=hint)


class StoreFault(TransientFault):
    kind = "store"


class ContentMissing(StoreFault):
    """The store does not hold the content: after the close a member's update may simply not be published yet
    (docs/protocol.md R1), so the validator waits for it, bounded by the commit window."""


class ChainFault(TransientFault):
    kind = "chain"


class NotReady(TransientFault):
    kind = "not-ready"

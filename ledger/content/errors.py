"""Errors raised by content addressing and the content stores.

Each error carries the fields that explain it and, where a validator's verdict follows from it, the stable
:class:`~ledger.reasons.Reason` code (``reason``), so a worker can turn any of them into a vote without parsing text.

    MeshprovError
    └── ContentError                          root of everything in ``ledger.content``
        ├── InvalidCID (ValueError)           a CID string or digest that does not parse, or names another codec/hash
        ├── ContentNotFound (NotFound)        the store does not hold the CID (or a block under it)
        ├── ContentTooLarge                   the content is larger than the caller's ``max_bytes``  [TOO_LARGE]
        ├── CorruptBlock (Mismatch)           a block whose bytes do not hash to its CID              [CID_MISMATCH]
        ├── CidMismatch (Mismatch)            content or a store's answer does not match the CID      [CID_MISMATCH]
        ├── MalformedDag                      a block is not a UnixFS file node meshprov can walk     [CID_MISMATCH]
        └── StoreError                        the store answered with an error we cannot retry
    ServiceUnavailable
    └── StoreUnavailable                      the store cannot be reached or did not answer (after retries)

``StoreUnavailable`` is not a ``ContentError``: it says nothing about the content, so a validator must not turn it
into a verdict (it retries later instead).
"""

from __future__ import annotations

from ledger.errors import MeshprovError, Mismatch, NotFound, ServiceUnavailable
from ledger.exit_codes import ExitCode
from ledger.reasons import Reason


def _short(text: str, limit: int = 120) -> str:
    """Quote untrusted input in a message without letting it flood the terminal."""
    shown = text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"
    return repr(shown)


class ContentError(MeshprovError):
    """Root of the content-addressing and store errors."""

    reason: Reason | None = None


class InvalidCID(ContentError, ValueError):
    """A CID string (or a ``bytes32`` digest) that meshprov cannot use."""

    exit_code = ExitCode.USAGE

    def __init__(self, value: object, problem: str, *, hint: str | None = None) -> None:
        self.value = value
        self.problem = problem
        shown = _short(value) if isinstance(value, str) else _short(repr(value))
        super().__init__(
            f"invalid CID {shown}: {problem}",
            hint=hint
            or "meshprov CIDs are CIDv0 ('Qm…', 46 characters) or CIDv1 dag-pb sha2-256 ('bafy…'), "
            "as `ipfs add --cid-version=0` prints them",
        )


class ContentNotFound(ContentError, NotFound):
    def __init__(self, cid: str, store: str, *, detail: str | None = None, hint: str | None = None) -> None:
        self.cid = cid
        self.store = store
        self.detail = detail
        message = f"{cid} is not in the {store} store"
        if detail:
            message += f" ({detail})"
        super().__init__(
            message, hint=hint or "check the CID, or put the file first (`meshprov store put FILE`)"
        )


class ContentTooLarge(ContentError):
    reason = Reason.TOO_LARGE

    def __init__(self, cid: str, limit: int, size: int | None = None) -> None:
        self.cid = cid
        self.limit = limit
        self.size = size
        got = f"{size} bytes" if size is not None else "more bytes"
        super().__init__(
            f"{cid} holds {got}, more than the limit of {limit} bytes",
            hint="raise the limit (`--max-bytes`, setting `max_update_bytes`) only if you trust the content",
        )


class CorruptBlock(ContentError, Mismatch):
    """A stored block whose bytes do not hash to the CID it is stored under: never returned to the caller."""

    reason = Reason.CID_MISMATCH

    def __init__(self, cid: str, actual_digest: bytes, *, where: str) -> None:
        self.cid = cid
        self.actual_digest = actual_digest
        self.where = where
        super().__init__(
            f"block {cid} in {where} is corrupt: its bytes hash to {actual_digest.hex()}",
            hint="delete the block file and put the content again, or fetch it from another store",
        )


class CidMismatch(ContentError, Mismatch):
    """Content, or a store's answer, that does not match the CID computed locally or asked for."""

    reason = Reason.CID_MISMATCH

    def __init__(self, expected: str, actual: str, *, context: str, hint: str | None = None) -> None:
        self.expected = expected
        self.actual = actual
        self.context = context
        super().__init__(f"{context}: expected {expected}, got {actual}", hint=hint)


class MalformedDag(ContentError):
    """A block that is not a dag-pb UnixFS file node of the shape Kubo's importer writes."""

    reason = Reason.CID_MISMATCH

    def __init__(self, cid: str, problem: str) -> None:
        self.cid = cid
        self.problem = problem
        super().__init__(
            f"block {cid} is not a UnixFS file node meshprov can read: {problem}",
            hint="meshprov reads files added with Kubo's defaults (`ipfs add --cid-version=0`)",
        )


class StoreUnavailable(ServiceUnavailable):
    def __init__(self, endpoint: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(
            "content store",
            endpoint,
            reason,
            hint=hint or "start the store (`ipfs daemon`, or `docker compose up kubo`) or fix `kubo_api_url`",
        )


class StoreError(ContentError):
    """The store answered, with an error that retrying will not fix."""

    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, endpoint: str, problem: str, *, hint: str | None = None) -> None:
        self.endpoint = endpoint
        self.problem = problem
        super().__init__(f"content store at {endpoint} refused: {problem}", hint=hint)

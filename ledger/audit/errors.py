"""The audit's errors (each with its exit code).

MeshprovError
├── InvalidAddress (USAGE)     an account that is not a 20-byte hex address
├── IndexEmpty (NOT_FOUND)     no index yet and --no-sync asked not to build one
└── (ledger.index and ledger.content errors pass through: NotAnchored, UnknownTask, InvalidCID, …)
"""

from __future__ import annotations

from ledger.errors import MeshprovError, NotFound
from ledger.exit_codes import ExitCode


class AuditError(MeshprovError):
    """Root of the audit's own errors."""


class InvalidAddress(AuditError, ValueError):
    exit_code = ExitCode.USAGE

    def __init__(self, text: str) -> None:
        self.text = text
        shown = text if len(text) <= 60 else text[:57] + "…"
        super().__init__(
            f"{shown!r} is not an Ethereum address",
            hint="an address is 0x followed by 40 hex digits, e.g. 0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        )


class IndexEmpty(AuditError, NotFound):
    def __init__(self, url: str) -> None:
        super().__init__(
            f"the index at {url} is empty",
            hint="build it with `meshprov index follow --once`, drop --no-sync, or use --trustless",
        )


def parse_address(text: str) -> str:
    """A checksummed address from user input (any case); InvalidAddress otherwise."""
    from eth_utils.address import is_hex_address, to_checksum_address

    candidate = text.strip()
    if not is_hex_address(candidate):
        raise InvalidAddress(text)
    return str(to_checksum_address(candidate))

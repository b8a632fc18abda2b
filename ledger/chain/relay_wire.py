"""The relay wire format: one member's EIP-712-signed submission as strict JSON, what a member hands a relayer as
a Redis queue message (``node.relay``) or an HTTP body (``worker.relay_http``). One parser for both, since both
relayers spend gas on what it accepts: the bytes are bounded before they are parsed, the field set is exact, and
every integer is range-checked against the contract's type (``IMeshLedger.SignedSubmission``).

    {"schema": 1, "task": uint256, "round": uint32, "contributor": "0x…40", "digest": "0x…64",
     "num_samples": uint64, "nonce": uint64, "deadline": uint64, "v": 27|28, "r": "0x…64", "s": "0x…64"}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ledger.chain.types import SignedSubmission, checksum

SCHEMA = 1
MAX_ITEM_BYTES = 2048
FIELDS = frozenset(
    {"schema", "task", "round", "contributor", "digest", "num_samples", "nonce", "deadline", "v", "r", "s"}
)
_UINT64 = 2**64 - 1


class MalformedItem(ValueError):
    """Bytes that are not one well-formed relay item; ``too_large`` when the size bound is what they broke."""

    def __init__(self, problem: str, *, too_large: bool = False) -> None:
        super().__init__(problem)
        self.too_large = too_large


@dataclass(frozen=True)
class RelayItem:
    """One member's signed submission to round ``round`` of task ``task``."""

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
    def parse(cls, raw: bytes | str) -> RelayItem:
        """Strictly parse an item (untrusted): :class:`MalformedItem` naming the first thing that is off."""
        if len(raw) > MAX_ITEM_BYTES:
            raise MalformedItem(f"{len(raw)} bytes, over {MAX_ITEM_BYTES}", too_large=True)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedItem(f"not JSON ({exc})") from None
        if not isinstance(data, dict) or set(data) != FIELDS:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise MalformedItem(f"expected the fields {sorted(FIELDS)}, got {keys}")
        if data["schema"] != SCHEMA:
            raise MalformedItem(f"unknown schema {data['schema']!r} (this side speaks {SCHEMA})")
        try:
            contributor = checksum(_str(data, "contributor"))
        except ValueError:
            raise MalformedItem("`contributor` is not an address") from None
        v = _int(data, "v", 2**8 - 1)
        if v not in (27, 28):
            raise MalformedItem(f"`v` must be 27 or 28, got {v}")
        sub = SignedSubmission(
            contributor=contributor,
            digest=_bytes32(data, "digest"),
            num_samples=_int(data, "num_samples", _UINT64),
            nonce=_int(data, "nonce", _UINT64),
            deadline=_int(data, "deadline", _UINT64),
            v=v,
            r=_bytes32(data, "r"),
            s=_bytes32(data, "s"),
        )
        return cls(task=_int(data, "task", 2**256 - 1), round=_int(data, "round", 2**32 - 1), sub=sub)


def _int(data: dict[str, Any], name: str, maximum: int) -> int:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise MalformedItem(f"`{name}` must be an integer in [0, {maximum}], got {value!r}")
    return value


def _str(data: dict[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise MalformedItem(f"`{name}` must be a string")
    return value


def _bytes32(data: dict[str, Any], name: str) -> bytes:
    text = _str(data, name)
    if not text.startswith("0x") or len(text) != 66:
        raise MalformedItem(f"`{name}` must be 0x and 64 hex digits")
    try:
        return bytes.fromhex(text[2:])
    except ValueError:
        raise MalformedItem(f"`{name}` is not hex") from None

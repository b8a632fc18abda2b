"""Validators' scores as the ledger takes them: fixed point, encoded in bytes, bound by a commitment.

A score is an integer in [-SCORE_ONE, SCORE_ONE] (10,000 = 1.0); a hard reject is ``REJECT`` (-10,000) with a
nonzero reason code (``ledger.reasons``), every other score carries reason 0. ``revealScores`` takes the scores as
2 bytes each (big-endian two's complement) and the reasons as 1 byte each, one per update of the round in index
order; ``commitScores`` takes :func:`score_commitment` of them, computed here exactly as the contract's
``scoreCommitment`` view (docs/protocol.md R3). Decoding is bounded: a ``ScoresRevealed`` log comes from a node we
do not trust, so its bytes are checked for length and range before they become scores.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from ledger.errors import ConfigError

SCORE_ONE = 10_000
"""Fixed point of a score: 10,000 = 1.0."""
REJECT = -SCORE_ONE
"""The score of a hard reject (with a nonzero reason)."""
MAX_UPDATES_PER_ROUND = 112
"""The contract's MAX_UPDATES_PER_ROUND: no reveal holds more scores."""
SALT_BYTES = 32


class InvalidScores(ConfigError):
    """Scores or reasons the contract would refuse: refused here first, naming the update."""

    def __init__(self, problem: str, *, index: int | None = None) -> None:
        self.problem = problem
        self.index = index
        where = f"update {index}: " if index is not None else ""
        super().__init__(
            f"invalid scores: {where}{problem}",
            hint=f"a score is an integer in [{REJECT}, {SCORE_ONE}] (ledger.chain.scores.to_fixed), a reason a "
            f"byte; a nonzero reason needs the score {REJECT}",
        )


def to_fixed(value: float) -> int:
    """``value`` (1.0 = full credit) as a fixed-point score: rounded half away from zero, clamped to
    [-SCORE_ONE, SCORE_ONE]. NaN is refused: no measurement is not a score of 0."""
    if math.isnan(value):
        raise InvalidScores("a score of NaN has no fixed-point value")
    if math.isinf(value):
        return SCORE_ONE if value > 0 else -SCORE_ONE
    scaled = abs(value) * SCORE_ONE
    magnitude = math.floor(scaled + 0.5)
    fixed = magnitude if value >= 0 else -magnitude
    return max(-SCORE_ONE, min(SCORE_ONE, fixed))


def from_fixed(score: int) -> float:
    return score / SCORE_ONE


def check_scores(scores: Sequence[int], reasons: Sequence[int] | None = None) -> None:
    """Refuse what ``revealScores`` would refuse: a score out of range, a reason that is not a byte, a nonzero
    reason on a score other than REJECT, more scores than a round holds, or lengths that differ."""
    if len(scores) > MAX_UPDATES_PER_ROUND:
        raise InvalidScores(
            f"{len(scores)} scores, but a round holds at most {MAX_UPDATES_PER_ROUND} updates"
        )
    for i, s in enumerate(scores):
        if isinstance(s, bool) or not isinstance(s, int) or not -SCORE_ONE <= s <= SCORE_ONE:
            raise InvalidScores(f"score {s!r} is outside [{-SCORE_ONE}, {SCORE_ONE}]", index=i)
    if reasons is None:
        return
    if len(reasons) != len(scores):
        raise InvalidScores(f"{len(reasons)} reasons for {len(scores)} scores: give one reason per update")
    for i, (s, r) in enumerate(zip(scores, reasons, strict=True)):
        if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= 255:
            raise InvalidScores(f"reason {r!r} is not a byte (0-255)", index=i)
        if r and s != REJECT:
            raise InvalidScores(
                f"reason {r} is a hard reject, so the score must be {REJECT}, not {s}", index=i
            )


def encode_scores(scores: Sequence[int]) -> bytes:
    """Scores as ``revealScores`` takes them: 2 bytes each, big-endian two's complement."""
    check_scores(scores)
    return b"".join(int(s).to_bytes(2, "big", signed=True) for s in scores)


def decode_scores(data: bytes) -> list[int]:
    """The scores of :func:`encode_scores`'s bytes (from a log: bounded and range-checked before use)."""
    if len(data) % 2:
        raise InvalidScores(f"{len(data)} bytes of scores: an odd length (2 bytes per score)")
    if len(data) > 2 * MAX_UPDATES_PER_ROUND:
        raise InvalidScores(f"{len(data)} bytes of scores: more than {MAX_UPDATES_PER_ROUND} updates")
    scores = [int.from_bytes(data[i : i + 2], "big", signed=True) for i in range(0, len(data), 2)]
    check_scores(scores)
    return scores


def encode_reasons(reasons: Sequence[int]) -> bytes:
    """Reasons as ``revealScores`` takes them: 1 byte each (0 = no hard reject)."""
    if len(reasons) > MAX_UPDATES_PER_ROUND:
        raise InvalidScores(
            f"{len(reasons)} reasons, but a round holds at most {MAX_UPDATES_PER_ROUND} updates"
        )
    for i, r in enumerate(reasons):
        if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= 255:
            raise InvalidScores(f"reason {r!r} is not a byte (0-255)", index=i)
    return bytes(int(r) for r in reasons)


def decode_reasons(data: bytes) -> list[int]:
    if len(data) > MAX_UPDATES_PER_ROUND:
        raise InvalidScores(f"{len(data)} reason bytes: more than {MAX_UPDATES_PER_ROUND} updates")
    return list(data)


def new_salt() -> bytes:
    """A fresh secret salt: 32 random bytes (guessing it would reveal the scores before their time)."""
    return os.urandom(SALT_BYTES)


def score_commitment(
    *,
    chain_id: int,
    ledger: str,
    task_id: int,
    round_: int,
    validator: str,
    scores: Sequence[int] | bytes,
    reasons: Sequence[int] | bytes,
    salt: bytes,
) -> bytes:
    """``keccak256(abi.encode(chainId, ledger, taskId, round, validator, keccak256(scores), keccak256(reasons),
    salt))``: what ``commitScores`` expects, the same bytes as the contract's ``scoreCommitment`` view. Scores and
    reasons may be given as lists (encoded here) or as their encoded bytes."""
    if len(salt) != SALT_BYTES:
        raise InvalidScores(f"the salt is {len(salt)} bytes, not {SALT_BYTES}")
    score_bytes = scores if isinstance(scores, bytes) else encode_scores(scores)
    reason_bytes = reasons if isinstance(reasons, bytes) else encode_reasons(reasons)
    encoded = abi_encode(
        ["uint256", "address", "uint256", "uint32", "address", "bytes32", "bytes32", "bytes32"],
        [
            chain_id,
            to_checksum_address(ledger),
            task_id,
            round_,
            to_checksum_address(validator),
            keccak(score_bytes),
            keccak(reason_bytes),
            salt,
        ],
    )
    return bytes(keccak(encoded))


@dataclass(frozen=True)
class ScoreSheet:
    """One validator's scores of one round with the salt that seals them: what it commits, then reveals.

    Keep it (a validator's worker writes it down) between the commit and the reveal: without the salt the
    commitment cannot be opened and the validator counts as absent."""

    scores: tuple[int, ...]
    reasons: tuple[int, ...]
    salt: bytes

    def __post_init__(self) -> None:
        check_scores(self.scores, self.reasons)
        if len(self.salt) != SALT_BYTES:
            raise InvalidScores(f"the salt is {len(self.salt)} bytes, not {SALT_BYTES}")

    @classmethod
    def new(cls, scores: Sequence[int], reasons: Sequence[int] | None = None) -> ScoreSheet:
        """Scores (reasons default to 0) sealed with a fresh random salt."""
        return cls(tuple(scores), tuple(reasons) if reasons is not None else (0,) * len(scores), new_salt())

    @property
    def score_bytes(self) -> bytes:
        return encode_scores(self.scores)

    @property
    def reason_bytes(self) -> bytes:
        return encode_reasons(self.reasons)

    def to_json(self) -> dict[str, Any]:
        """What a validator writes down between its commit and its reveal (the salt is secret until then)."""
        return {"scores": list(self.scores), "reasons": list(self.reasons), "salt": "0x" + self.salt.hex()}

    @classmethod
    def from_json(cls, data: object) -> ScoreSheet:
        """The sheet :meth:`to_json` wrote; anything else is :class:`InvalidScores` naming what is wrong."""
        if not isinstance(data, dict) or set(data) != {"scores", "reasons", "salt"}:
            raise InvalidScores("a score sheet is an object with exactly `scores`, `reasons` and `salt`")
        scores, reasons, salt = data["scores"], data["reasons"], data["salt"]
        if not isinstance(scores, list) or not isinstance(reasons, list):
            raise InvalidScores("`scores` and `reasons` must be lists of integers")
        if not isinstance(salt, str) or not salt.startswith("0x"):
            raise InvalidScores("`salt` must be 0x-hex")
        try:
            raw = bytes.fromhex(salt[2:])
        except ValueError:
            raise InvalidScores("`salt` is not hex") from None
        return cls(tuple(scores), tuple(reasons), raw)

    def commitment(self, *, chain_id: int, ledger: str, task_id: int, round_: int, validator: str) -> bytes:
        return score_commitment(
            chain_id=chain_id,
            ledger=ledger,
            task_id=task_id,
            round_=round_,
            validator=validator,
            scores=self.score_bytes,
            reasons=self.reason_bytes,
            salt=self.salt,
        )

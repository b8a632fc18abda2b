"""Typed values of the MeshLedger ABI (IMeshLedger.sol) as Python dataclasses, and bitmap helpers.

The one vocabulary of the contract: what :class:`~ledger.chain.client.LedgerClient` reads (views and logs) and
writes comes as these types, and the pure mirrors of the contract (``ledger.rewards``) use them too.

Digests are 32-byte ``bytes`` (the sha-256 inside a CIDv0), addresses are checksummed strings, amounts are ints.
Field names are the Solidity names in snake case.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Generic, TypeVar

from eth_utils.address import to_checksum_address

T = TypeVar("T")

MAX_UPDATES = 256
"""Bitmaps are uint256: a round holds at most 256 updates."""


class Phase(IntEnum):
    NONE = 0
    OPEN = 1
    VOTING = 2
    CLOSED = 3
    FINALIZED = 4


class Role(IntEnum):
    """Which of an account's two reputations (and reward kinds) a settlement is about (``IMeshLedger.Role``)."""

    CONTRIBUTOR = 0
    VALIDATOR = 1


def bits(bitmap: int) -> list[int]:
    """The indexes of the set bits of a uint256 bitmap, ascending."""
    out = []
    i = 0
    while bitmap:
        if bitmap & 1:
            out.append(i)
        bitmap >>= 1
        i += 1
    return out


def bitmap(indexes: Iterable[int]) -> int:
    """The uint256 bitmap with the given bits set."""
    value = 0
    for i in indexes:
        if not 0 <= i < MAX_UPDATES:
            raise ValueError(f"update index {i} is outside 0..{MAX_UPDATES - 1}")
        value |= 1 << i
    return value


def checksum(address: str) -> str:
    return str(to_checksum_address(address))


@dataclass(frozen=True)
class TaskParams:
    """A task's configuration (``IMeshLedger.TaskParams``)."""

    spec_digest: bytes
    genesis_digest: bytes
    rule: int
    rule_param: int
    quorum: int
    submission_window: int
    vote_window: int
    reward_per_round: int

    def to_abi(self) -> tuple[Any, ...]:
        return (
            self.spec_digest,
            self.genesis_digest,
            self.rule,
            self.rule_param,
            self.quorum,
            self.submission_window,
            self.vote_window,
            self.reward_per_round,
        )

    @classmethod
    def from_abi(cls, value: Sequence[Any]) -> TaskParams:
        return cls(bytes(value[0]), bytes(value[1]), *(int(v) for v in value[2:8]))


@dataclass(frozen=True)
class Task:
    task_id: int
    params: TaskParams
    current_round: int


@dataclass(frozen=True)
class RoundView:
    """``IMeshLedger.RoundView`` of round ``round`` of task ``task_id``: for a finalized round only phase, base
    and aggregate are kept on chain."""

    task_id: int
    round: int
    phase: Phase
    base_digest: bytes
    aggregate_digest: bytes
    opened_at: int
    submission_end: int
    vote_end: int
    submission_count: int
    finalizable: bool

    @property
    def all_indexes(self) -> int:
        """The bitmap with a bit for every update submitted so far."""
        return (1 << self.submission_count) - 1

    @classmethod
    def from_abi(cls, task_id: int, round_: int, value: Sequence[Any]) -> RoundView:
        return cls(
            task_id,
            round_,
            Phase(int(value[0])),
            bytes(value[1]),
            bytes(value[2]),
            int(value[3]),
            int(value[4]),
            int(value[5]),
            int(value[6]),
            bool(value[7]),
        )


@dataclass(frozen=True)
class SignedSubmission:
    """A contributor's EIP-712-signed submission, relayed by anyone (``IMeshLedger.SignedSubmission``)."""

    contributor: str
    digest: bytes
    num_samples: int
    nonce: int
    deadline: int
    v: int
    r: bytes
    s: bytes

    def to_abi(self) -> tuple[Any, ...]:
        return (
            self.contributor,
            self.digest,
            self.num_samples,
            self.nonce,
            self.deadline,
            self.v,
            self.r,
            self.s,
        )


@dataclass(frozen=True)
class AccountView:
    nonce: int
    contributor_reputation: int
    validator_reputation: int
    member_number: int
    contributor: bool
    validator: bool
    aggregator: bool

    def has_role(self, role: str) -> bool:
        """Whether the account holds ``role``: contributor, validator or aggregator."""
        if role not in ("contributor", "validator", "aggregator"):
            raise ValueError(f"unknown role {role!r}: use contributor, validator or aggregator")
        return bool(getattr(self, role))

    @classmethod
    def from_abi(cls, value: Sequence[Any]) -> AccountView:
        return cls(
            int(value[0]),
            int(value[1]),
            int(value[2]),
            int(value[3]),
            bool(value[4]),
            bool(value[5]),
            bool(value[6]),
        )


@dataclass(frozen=True)
class SubmissionInfo:
    """Update ``index`` of the live round (``submission(task, round, index)``): who submitted it and the samples
    it claims. The settlement mirror (``ledger.rewards``) takes a round's updates as these, in index order."""

    contributor: str
    num_samples: int


@dataclass(frozen=True)
class Submission:
    """An update as its ``UpdateSubmitted`` log records it: the content digest is only in the log."""

    task_id: int
    round: int
    index: int
    contributor: str
    digest: bytes
    num_samples: int
    relayer: str
    tx_hash: str
    block_number: int

    @property
    def info(self) -> SubmissionInfo:
        return SubmissionInfo(self.contributor, self.num_samples)


@dataclass(frozen=True)
class SubmissionStatus:
    submitted: bool
    index: int
    num_samples: int


@dataclass(frozen=True)
class Ballot:
    """A validator's verdicts on a round as bitmaps: the updates it voted on, and those it accepted.

    ``validator`` is whose ballot it is, when known: :meth:`LedgerClient.ballot` fills it in from its argument,
    and the settlement mirror (``ledger.rewards``) needs it to say who earned what."""

    indexes: int
    accepts: int
    validator: str | None = None

    @classmethod
    def unanimous(cls, validator: str, accepted: Iterable[bool]) -> Ballot:
        """A ballot on every update of the round: accept where ``accepted`` is true."""
        flags = list(accepted)
        return cls((1 << len(flags)) - 1, bitmap(i for i, ok in enumerate(flags) if ok), validator)

    @property
    def voted(self) -> list[int]:
        return bits(self.indexes)

    @property
    def accepted(self) -> list[int]:
        return bits(self.accepts)


@dataclass(frozen=True)
class Tally:
    """The quorum outcome of the live round's votes so far."""

    accepted_bitmap: int
    accept_votes: tuple[int, ...]

    @property
    def accepted(self) -> list[int]:
        return bits(self.accepted_bitmap)


@dataclass(frozen=True)
class Settlement:
    """``IMeshLedger.Settlement``: what finalizing a round did for one participant, its new ``role``
    reputation and the reward minted to it."""

    account: str
    role: Role
    reputation: int
    reward: int

    def to_event(self) -> dict[str, Any]:
        """As ``ledger.chain.events`` decodes the struct (the role as its integer)."""
        return {
            "account": self.account,
            "role": int(self.role),
            "reputation": self.reputation,
            "reward": self.reward,
        }

    @classmethod
    def from_event(cls, value: Mapping[str, Any]) -> Settlement:
        return cls(
            checksum(str(value["account"])),
            Role(int(value["role"])),
            int(value["reputation"]),
            int(value["reward"]),
        )


@dataclass(frozen=True)
class Finalization:
    """A round's ``RoundFinalized`` log: the aggregate, the accepted set and every settlement, in the event's
    order (contributors by update index, then validators in validator-list order)."""

    task_id: int
    round: int
    aggregator: str
    aggregate_digest: bytes
    accepted_bitmap: int
    rule: int
    rule_param: int
    settlements: tuple[Settlement, ...]
    tx_hash: str
    block_number: int

    @property
    def accepted(self) -> list[int]:
        return bits(self.accepted_bitmap)


@dataclass(frozen=True)
class Reputation:
    contributor: int
    validator: int


@dataclass(frozen=True)
class Eip712Domain:
    """The ledger's EIP-712 domain as ``eip712Domain()`` (ERC-5267) reports it."""

    fields: bytes
    name: str
    version: str
    chain_id: int
    verifying_contract: str
    salt: bytes
    extensions: tuple[int, ...]

    def as_typed_data(self) -> dict[str, Any]:
        """The ``domain`` of an EIP-712 typed-data message (only the fields the contract declares)."""
        present = int.from_bytes(self.fields or b"\x0f", "big")
        out: dict[str, Any] = {}
        for bit, key, value in (
            (0, "name", self.name),
            (1, "version", self.version),
            (2, "chainId", self.chain_id),
            (3, "verifyingContract", self.verifying_contract),
            (4, "salt", self.salt),
        ):
            if present & (1 << bit):
                out[key] = value
        return out


@dataclass(frozen=True)
class TxResult(Generic[T]):
    """A mined transaction: the value the function returned (decoded from its events), and where it landed."""

    value: T
    tx_hash: str
    block_number: int
    gas_used: int
    events: tuple[Any, ...] = field(default=(), repr=False)

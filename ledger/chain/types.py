"""Typed values of the MeshLedger ABI (IMeshLedger.sol) as Python dataclasses, and bitmap helpers.

The one vocabulary of the contract: what :class:`~ledger.chain.client.LedgerClient` reads (views and logs) and
writes comes as these types, and the pure mirror of the contract's consensus and settlement (``ledger.consensus``)
uses them too. Protocol v2 (docs/protocol.md): commit-reveal scores, validator sets frozen at round open, consensus
settlement, accrued rewards, carry-over, a pausable ledger clock, delayed role changes.

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
"""Bitmaps are uint256: at most 256 bits (a round holds at most MAX_UPDATES_PER_ROUND = 112 updates, a validator
set at most MAX_VALIDATORS = 32 members)."""


class Phase(IntEnum):
    """Where a round stands (``IMeshLedger.Phase``): Open (submissions) -> Commit (validators bind their scores)
    -> Reveal (they open them) -> Closed (waiting for the aggregator, or after the grace for anyone's carry-over)
    -> Finalized."""

    NONE = 0
    OPEN = 1
    COMMIT = 2
    REVEAL = 3
    CLOSED = 4
    FINALIZED = 5


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
    """A task's configuration (``IMeshLedger.TaskParams``). Windows and the grace are seconds of ledger time;
    ``max_samples`` bounds a submission's claimed sample count (recorded for the audit, it weighs nothing)."""

    spec_digest: bytes
    genesis_digest: bytes
    rule: int
    rule_param: int
    quorum: int
    submission_window: int
    commit_window: int
    reveal_window: int
    finalize_grace: int
    max_samples: int
    reward_per_round: int

    def to_abi(self) -> tuple[Any, ...]:
        return (
            self.spec_digest,
            self.genesis_digest,
            self.rule,
            self.rule_param,
            self.quorum,
            self.submission_window,
            self.commit_window,
            self.reveal_window,
            self.finalize_grace,
            self.max_samples,
            self.reward_per_round,
        )

    @classmethod
    def from_abi(cls, value: Sequence[Any]) -> TaskParams:
        return cls(bytes(value[0]), bytes(value[1]), *(int(v) for v in value[2:11]))

    @classmethod
    def from_event(cls, value: Mapping[str, Any]) -> TaskParams:
        """From a ``TaskCreated`` log's ``params`` (a dict by Solidity name, as ``ledger.chain.events`` decodes)."""
        return cls(
            bytes(value["specDigest"]),
            bytes(value["genesisDigest"]),
            int(value["rule"]),
            int(value["ruleParam"]),
            int(value["quorum"]),
            int(value["submissionWindow"]),
            int(value["commitWindow"]),
            int(value["revealWindow"]),
            int(value["finalizeGrace"]),
            int(value["maxSamples"]),
            int(value["rewardPerRound"]),
        )


@dataclass(frozen=True)
class Task:
    task_id: int
    params: TaskParams
    current_round: int


@dataclass(frozen=True)
class RoundView:
    """``IMeshLedger.RoundView`` of round ``round`` of task ``task_id``, every time in ledger time (wall time minus
    the time spent paused: compare with :attr:`Clock.ledger_now`, not with a block's timestamp). For a finalized
    round only phase, base and aggregate are kept on chain (the rest is zero)."""

    task_id: int
    round: int
    phase: Phase
    base_digest: bytes
    aggregate_digest: bytes
    opened_at: int
    submission_end: int
    commit_end: int
    reveal_end: int
    """The end of the reveal window (commit_end + revealWindow); ``finalizable`` may turn true earlier."""
    grace_end: int
    """reveal_end + finalizeGrace: from then on anyone may carry the round over."""
    submission_count: int
    validator_count: int
    commit_count: int
    reveal_count: int
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
            opened_at=int(value[3]),
            submission_end=int(value[4]),
            commit_end=int(value[5]),
            reveal_end=int(value[6]),
            grace_end=int(value[7]),
            submission_count=int(value[8]),
            validator_count=int(value[9]),
            commit_count=int(value[10]),
            reveal_count=int(value[11]),
            finalizable=bool(value[12]),
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
    """``IMeshLedger.AccountView``: nonce, both reputations, seat number, roles, and the rewards accrued and not
    yet claimed (``claimRewards`` mints them)."""

    nonce: int
    contributor_reputation: int
    validator_reputation: int
    member_number: int
    contributor: bool
    validator: bool
    aggregator: bool
    accrued: int

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
            int(value[7]),
        )


@dataclass(frozen=True)
class SubmissionInfo:
    """Update ``index`` of the live round (``submission(task, round, index)``): who submitted it and the samples
    it claims (audit only: in protocol v2 samples weigh nothing)."""

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
class ValidatorSet:
    """The live round's validator set (``validatorSet(task, round)``), frozen when the round opened: its members
    in set order, their weights (validator reputations at round open), and who has committed and revealed so far
    (bit k = member k)."""

    members: tuple[str, ...]
    weights: tuple[int, ...]
    committed: int
    revealed: int

    def index(self, validator: str) -> int:
        """The validator's place in the set (its bit in the masks); ValueError when it is not a member."""
        return self.members.index(checksum(validator))

    def __contains__(self, validator: object) -> bool:
        return isinstance(validator, str) and checksum(validator) in self.members

    def has_committed(self, validator: str) -> bool:
        return validator in self and bool(self.committed >> self.index(validator) & 1)

    def has_revealed(self, validator: str) -> bool:
        return validator in self and bool(self.revealed >> self.index(validator) & 1)

    def weight(self, validator: str) -> int:
        return self.weights[self.index(validator)]

    @property
    def total_weight(self) -> int:
        return sum(self.weights)

    @property
    def committers(self) -> list[str]:
        return [self.members[k] for k in bits(self.committed)]

    @property
    def revealers(self) -> list[str]:
        return [self.members[k] for k in bits(self.revealed)]


@dataclass(frozen=True)
class RevealedScores:
    """A validator's scores in the live round (``revealedScores``): none before it revealed."""

    validator: str
    revealed: bool
    scores: tuple[int, ...]


@dataclass(frozen=True)
class Tally:
    """The consensus of each update from the reveals so far (unrevealed members count as 0) and the updates it
    accepts (consensus > 0 and at least ``quorum`` reveals): what finalization will record once the reveals are
    over (``tally(task, round)``)."""

    consensus: tuple[int, ...]
    accepted_bitmap: int

    @property
    def accepted(self) -> list[int]:
        return bits(self.accepted_bitmap)


@dataclass(frozen=True)
class Settlement:
    """``IMeshLedger.Settlement``: what finalizing a round did for one participant: its new ``role`` reputation,
    the reward accrued to it (0 on a carry-over), and for a contributor the consensus ``score`` of its update, for
    a validator its ``distance`` to the consensus and whether it was ``absent`` (did not reveal)."""

    account: str
    role: Role
    reputation: int
    reward: int
    score: int = 0
    distance: int = 0
    absent: bool = False

    def to_event(self) -> dict[str, Any]:
        """As ``ledger.chain.events`` decodes the struct (the role as its integer)."""
        return {
            "account": self.account,
            "role": int(self.role),
            "reputation": self.reputation,
            "reward": self.reward,
            "score": self.score,
            "distance": self.distance,
            "absent": self.absent,
        }

    @classmethod
    def from_event(cls, value: Mapping[str, Any]) -> Settlement:
        return cls(
            checksum(str(value["account"])),
            Role(int(value["role"])),
            int(value["reputation"]),
            int(value["reward"]),
            int(value["score"]),
            int(value["distance"]),
            bool(value["absent"]),
        )


@dataclass(frozen=True)
class Finalization:
    """A round's ``RoundFinalized`` log: the aggregate, the accepted set and every settlement, in the event's
    order (contributors by update index, then every member of the round's validator set in set order).
    ``by`` is the aggregator, or whoever carried the round over (``carried_over``: the aggregate is the base
    and no reward accrued)."""

    task_id: int
    round: int
    by: str
    aggregate_digest: bytes
    accepted_bitmap: int
    rule: int
    rule_param: int
    carried_over: bool
    settlements: tuple[Settlement, ...]
    tx_hash: str
    block_number: int

    @property
    def accepted(self) -> list[int]:
        return bits(self.accepted_bitmap)

    @property
    def aggregator(self) -> str:
        """Who ended the round (v1's name for ``by``; after a carry-over it need not be an aggregator)."""
        return self.by

    @property
    def contributors(self) -> tuple[Settlement, ...]:
        return tuple(s for s in self.settlements if s.role is Role.CONTRIBUTOR)

    @property
    def validators(self) -> tuple[Settlement, ...]:
        return tuple(s for s in self.settlements if s.role is Role.VALIDATOR)

    @property
    def consensus(self) -> list[int]:
        """The consensus score of every update, in index order."""
        return [s.score for s in self.contributors]


RoundFinalized = Finalization


@dataclass(frozen=True)
class RoundOpened:
    """A ``RoundOpened`` log: the round's base, when it opened (ledger time), who opened it, and its validator
    set with the weights frozen then."""

    task_id: int
    round: int
    by: str
    base_digest: bytes
    opened_at: int
    validators: tuple[str, ...]
    weights: tuple[int, ...]
    tx_hash: str
    block_number: int


@dataclass(frozen=True)
class ScoresCommitted:
    """A ``ScoresCommitted`` log: ``validator`` bound its scores of the round with ``commitment``."""

    task_id: int
    round: int
    validator: str
    commitment: bytes
    tx_hash: str
    block_number: int


@dataclass(frozen=True)
class ScoresRevealed:
    """A ``ScoresRevealed`` log, its bytes decoded (and bounded) by ``ledger.chain.scores``: one score and one
    reason per update of the round, in index order."""

    task_id: int
    round: int
    validator: str
    scores: tuple[int, ...]
    reasons: tuple[int, ...]
    tx_hash: str
    block_number: int


@dataclass(frozen=True)
class RewardsClaimed:
    """A ``RewardsClaimed`` log: the ledger minted ``amount`` of ``account``'s accrued rewards to it."""

    account: str
    amount: int
    tx_hash: str
    block_number: int


@dataclass(frozen=True)
class RoleChangeScheduled:
    """A ``RoleChangeScheduled`` log: granting (``grant``) or revoking ``role`` for ``account``, executable by
    anyone from ``execute_after`` (wall time)."""

    role: bytes
    account: str
    grant: bool
    execute_after: int
    tx_hash: str
    block_number: int


@dataclass(frozen=True)
class Clock:
    """The ledger clock (``clock()``): ``ledger_now`` is wall time minus the time spent paused, the time every
    round deadline is in; ``paused_at`` the wall time the current pause began (0: not paused)."""

    ledger_now: int
    paused_at: int
    paused_total: int

    @property
    def paused(self) -> bool:
        return self.paused_at != 0


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

"""A pure-Python mirror of MeshLedger's finalization: the quorum outcome, reputations and rewards, integer-exact.

What ``MeshLedger.finalizeRound`` computes (contracts/src/MeshLedger.sol, ``_settle``), without a chain, so that
experiments can account rewards and reputation over thousands of simulated rounds and auditors can recompute a
``RoundFinalized`` event's settlements by hand. ``tests/ledger/chain/test_rewards_mirror.py`` drives rounds on the
real contracts and asserts that :meth:`RewardBook.settle` predicts every settlement, reputation and token balance.
It speaks the contract's vocabulary (:mod:`ledger.chain.types`): a round's updates as ``SubmissionInfo``, the
validators' ``Ballot`` s (naming their validator), and ``Settlement`` s out, as ``RoundFinalized`` lists them.

The rules, in the contract's integer arithmetic (``//`` is Solidity's rounding-down division):

* **Outcome.** Update ``i`` is accepted iff at least ``quorum`` current validators accepted it.
* **Budget.** ``validator_share = budget * 1000 // 10000``; contributors share ``budget - validator_share``.
* **Contributors**, in update-index order: reputation ``+500`` for an accepted update, ``-1500`` for a rejected one,
  clamped to [100, 10000]. Reward ``share * w_i // Σ w`` with ``w_i = num_samples_i * reputation_before_i`` for
  accepted updates, 0 otherwise.
* **Validators** that voted on at least one update, in validator-list order: ``+200`` if none of their votes
  disagreed with the outcome, else ``-1000``. Reward ``validator_share * w_v // Σ w`` with ``w_v`` the reputation
  before the round for a validator that voted on *every* update and agreed on all of them, 0 otherwise.
* Rounding dust and shares nobody earned are not minted.

A member starts at reputation 5000 when it is first granted a role (:meth:`RewardBook.grant`; an account the book
has never seen is granted on first sight, as the contract requires the role before anyone takes part).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.chain.types import Ballot, Role, Settlement, SubmissionInfo
from ledger.errors import ConfigError


@dataclass(frozen=True)
class RewardConstants:
    """The contract's public constants that settlement depends on (``LedgerClient.constants()`` names)."""

    reputation_min: int = 100
    reputation_max: int = 10_000
    reputation_start: int = 5_000
    contributor_gain: int = 500
    contributor_loss: int = 1_500
    validator_gain: int = 200
    validator_loss: int = 1_000
    validator_share_bps: int = 1_000
    max_updates_per_round: int = 112

    @classmethod
    def from_chain(cls, constants: Mapping[str, Any]) -> RewardConstants:
        """From ``LedgerClient.constants()`` (upper-case Solidity names)."""
        return cls(**{name: int(constants[name.upper()]) for name in cls.__dataclass_fields__})


DEFAULT_CONSTANTS = RewardConstants()


class SettlementError(ConfigError):
    """A round the contract could never settle: the mirror refuses it instead of inventing an answer."""

    def __init__(self, what: str, value: object, problem: str) -> None:
        self.what = what
        self.value = value
        self.problem = problem
        super().__init__(f"{what} = {value!r}: {problem}")


@dataclass(frozen=True)
class RoundSettlement:
    """What finalizing one round did: the accepted set and the settlements, in the event's order."""

    outcome: int
    settlements: tuple[Settlement, ...]

    @property
    def minted(self) -> int:
        return sum(s.reward for s in self.settlements)

    def rewards(self, role: Role | None = None) -> dict[str, int]:
        """Reward per account (optionally of one role only)."""
        out: dict[str, int] = {}
        for s in self.settlements:
            if role is None or s.role is role:
                out[s.account] = out.get(s.account, 0) + s.reward
        return out


def low_mask(n: int) -> int:
    """The bitmap of the first ``n`` updates (``Bits.lowMask``)."""
    return (1 << n) - 1


def quorum_outcome(accepts: Sequence[int], quorum: int, n: int) -> int:
    """Updates (of ``n``) that at least ``quorum`` of the ``accepts`` bitmaps accept (``Bits.atLeast`` & mask)."""
    if quorum <= 0:
        raise SettlementError("quorum", quorum, "must be at least 1 (createTask refuses 0)")
    outcome = 0
    for i in range(n):
        if sum((a >> i) & 1 for a in accepts) >= quorum:
            outcome |= 1 << i
    return outcome


def raise_reputation(rep: int, step: int, constants: RewardConstants = DEFAULT_CONSTANTS) -> int:
    return constants.reputation_max if rep + step >= constants.reputation_max else rep + step


def lower_reputation(rep: int, step: int, constants: RewardConstants = DEFAULT_CONSTANTS) -> int:
    return constants.reputation_min if rep <= constants.reputation_min + step else rep - step


@dataclass
class RewardBook:
    """Reputations as the contract keeps them, and the rewards paid so far, settled round after round."""

    constants: RewardConstants = DEFAULT_CONSTANTS
    reputations: dict[tuple[str, Role], int] = field(default_factory=dict)
    paid: dict[str, int] = field(default_factory=dict)
    """Total reward per account (lower-case address) over every settled round: its token balance."""

    @staticmethod
    def _key(account: str, role: Role) -> tuple[str, Role]:
        return (account.lower(), role)

    def grant(self, account: str, role: Role) -> None:
        """The first grant of a role starts the reputation; a re-grant keeps the one earned."""
        self.reputations.setdefault(self._key(account, role), self.constants.reputation_start)

    def reputation(self, account: str, role: Role = Role.CONTRIBUTOR) -> int:
        """The account's reputation (0 for a role it was never granted, as the contract's view answers)."""
        return self.reputations.get(self._key(account, role), 0)

    def balance(self, account: str) -> int:
        return self.paid.get(account.lower(), 0)

    def _bump(self, account: str, role: Role, up: bool) -> tuple[int, int]:
        self.grant(account, role)
        key = self._key(account, role)
        old = self.reputations[key]
        c = self.constants
        if role is Role.CONTRIBUTOR:
            new = (
                raise_reputation(old, c.contributor_gain, c)
                if up
                else lower_reputation(old, c.contributor_loss, c)
            )
        else:
            new = (
                raise_reputation(old, c.validator_gain, c)
                if up
                else lower_reputation(old, c.validator_loss, c)
            )
        self.reputations[key] = new
        return old, new

    def settle(
        self,
        submissions: Sequence[SubmissionInfo],
        ballots: Sequence[Ballot],
        *,
        quorum: int,
        budget: int,
    ) -> RoundSettlement:
        """Finalize a round: ``submissions`` in update-index order, ``ballots`` of the current validators in
        validator-list order, each naming its validator (one that cast none this round has ``indexes == 0`` or
        is left out)."""
        n = len(submissions)
        c = self.constants
        if n > c.max_updates_per_round:
            raise SettlementError("submissions", n, f"a round holds at most {c.max_updates_per_round}")
        if budget < 0 or budget >= 1 << 128:
            raise SettlementError("budget", budget, "rewardPerRound is a uint128")
        full = low_mask(n)
        for b in ballots:
            if b.validator is None:
                raise SettlementError(
                    "ballot", b, "settling needs to know whose ballot it is (its validator)"
                )
            if b.indexes & ~full or b.accepts & ~b.indexes:
                raise SettlementError(
                    "ballot", b, f"votes must be on updates 0..{n - 1} and accepts a subset of them"
                )
        for s in submissions:
            if s.num_samples <= 0 or s.num_samples >= 1 << 64:
                raise SettlementError("num_samples", s.num_samples, "must be in 1..2^64-1")
        outcome = quorum_outcome([b.accepts for b in ballots], quorum, n)
        validator_share = budget * c.validator_share_bps // 10_000
        out = self._settle_contributors(submissions, outcome, budget - validator_share)
        out += self._settle_validators(ballots, outcome, full, validator_share)
        for paid in out:
            if paid.reward:
                key = paid.account.lower()
                self.paid[key] = self.paid.get(key, 0) + paid.reward
        return RoundSettlement(outcome, tuple(out))

    def _settle_contributors(
        self, submissions: Sequence[SubmissionInfo], outcome: int, share: int
    ) -> list[Settlement]:
        weights: list[int] = []
        reps: list[int] = []
        for i, s in enumerate(submissions):
            accepted = (outcome >> i) & 1 == 1
            old, new = self._bump(s.contributor, Role.CONTRIBUTOR, accepted)
            weights.append(s.num_samples * old if accepted else 0)
            reps.append(new)
        total = sum(weights)
        return [
            Settlement(s.contributor, Role.CONTRIBUTOR, rep, share * w // total if w else 0)
            for s, rep, w in zip(submissions, reps, weights, strict=True)
        ]

    def _settle_validators(
        self, ballots: Sequence[Ballot], outcome: int, full: int, share: int
    ) -> list[Settlement]:
        voters: list[tuple[str, int, int]] = []
        for b in ballots:
            if b.indexes == 0:
                continue
            assert b.validator is not None  # settle() refuses anonymous ballots
            agreed = (b.accepts ^ outcome) & b.indexes == 0
            old, new = self._bump(b.validator, Role.VALIDATOR, agreed)
            voters.append((b.validator, new, old if agreed and b.indexes == full else 0))
        total = sum(w for _, _, w in voters)
        return [
            Settlement(validator, Role.VALIDATOR, rep, share * w // total if w else 0)
            for validator, rep, w in voters
        ]

"""A pure-Python mirror of MeshLedger's consensus and settlement (protocol v2), integer-exact.

What ``finalizeRound`` and ``finalizeCarryOver`` compute (contracts/src/MeshLedger.sol with
contracts/src/libraries/Consensus.sol; docs/protocol.md R4–R5), without a chain: experiments settle thousands of
simulated rounds with it, and auditors recompute a ``RoundFinalized`` event's settlements from the revealed scores.
``tests/ledger/chain/test_consensus_mirror.py`` drives random rounds on the real contract and asserts that
:meth:`ConsensusBook.settle` predicts every settlement, reputation and accrued reward exactly.

The rules, in the contract's integer arithmetic (``//`` rounds down, as Solidity's division of non-negatives):

* **Consensus** of update *i*: the :func:`lower_weighted_median` of the scores of the round's validator set, each
  weighted by the member's validator reputation frozen when the round opened; a member that did not reveal counts
  as score 0. Accepted iff consensus > 0 and at least ``quorum`` members revealed.
* **Budget.** ``validator_share = budget * 1000 // 10000``, contributors share the rest; a carry-over or a round
  below the quorum pays nothing; a carry-over records an empty accepted set (its consensus still settles the
  reputations).
* **Contributors** (update-index order): reward ``share * w_i // Σ w`` with ``w_i = c_i² * reputation`` for an
  accepted update, else 0. Reputation (only when the quorum was met): ``c > 0`` → ``+500 * c // 10000``;
  ``c < 0`` → ``-(1500 * |c| // 10000)``; clamped to [100, 10000].
* **Validators** (set order): a member that revealed has distance ``d = Σ min(|s_i - c_i|, 10000) // n`` (0 when
  the round had no update). The round's reference distance ``m`` is the *upper* weighted median of the revealed
  members' distances (weights frozen at opening), at least ``DISTANCE_FLOOR`` (200); the tolerance is
  ``r = DISTANCE_TOLERANCE * m`` (3m). Reputation ``+200`` if ``d ≤ r``, else ``-min(1000, 1000 * (d - r) // r)``.
  Pay (anti-lazy): the public record's distance ``d_p = Σ min(|p_i - c_i|, 10000) // n`` with ``p_i`` the
  contributor's last settled consensus (0 if none; :attr:`ConsensusBook.last_consensus`), the pay tolerance
  ``r_p = min(r, d_p)`` (``r`` when the round had no update), agreement ``A = 0`` if ``d ≥ r_p``, else
  ``(r_p - d) * 10000 // r_p``; reward ``validator_share * rep * A // Σ`` with ``rep`` its validator reputation
  before this round's step. A member that
  did not reveal is absent: ``-500``, no reward. Below the quorum (fewer reveals than ``quorum``, a carry-over
  too) nobody is paid and only absent members' reputations move. Paying only for landing closer than the public
  record keeps a lazy validator (one that copies the last consensus) from earning anything (docs/protocol.md R5).
* Every settled round (carry-overs and rounds below the quorum included) records each contributor's consensus as
  its last one.
* Rounding dust and shares nobody earned are not accrued. Rewards accrue (``accrued``) until claimed.

A member starts at reputation 5000 when it is first granted a role (:meth:`ConsensusBook.grant`; an account the
book has never seen is granted on first sight, as the contract requires the role before anyone takes part).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.chain.scores import SCORE_ONE, check_scores
from ledger.chain.types import Role, Settlement, bitmap, bits
from ledger.errors import ConfigError


@dataclass(frozen=True)
class ConsensusConstants:
    """The contract's public constants that settlement depends on (``LedgerClient.constants()`` names)."""

    reputation_min: int = 100
    reputation_max: int = 10_000
    reputation_start: int = 5_000
    contributor_gain: int = 500
    contributor_loss: int = 1_500
    validator_gain: int = 200
    validator_loss: int = 1_000
    absent_loss: int = 500
    distance_floor: int = 200
    distance_tolerance: int = 3
    validator_share_bps: int = 1_000
    max_updates_per_round: int = 112
    max_validators: int = 32

    @classmethod
    def from_chain(cls, constants: Mapping[str, Any]) -> ConsensusConstants:
        """From ``LedgerClient.constants()`` (upper-case Solidity names)."""
        missing = [name.upper() for name in cls.__dataclass_fields__ if name.upper() not in constants]
        if missing:
            raise SettlementError(
                "constants", ", ".join(missing), "the contract does not declare them: it follows other rules"
            )
        return cls(**{name: int(constants[name.upper()]) for name in cls.__dataclass_fields__})


DEFAULT_CONSTANTS = ConsensusConstants()


class SettlementError(ConfigError):
    """A round the contract could never settle: the mirror refuses it instead of inventing an answer."""

    def __init__(self, what: str, value: object, problem: str) -> None:
        self.what = what
        self.value = value
        self.problem = problem
        super().__init__(f"{what} = {value!r}: {problem}")


def lower_weighted_median(values: Sequence[int], weights: Sequence[int]) -> int:
    """The smallest value ``v`` such that the weight of the values ≤ ``v``, doubled, is at least the total weight
    (``Consensus.lowerWeightedMedian``); 0 when the total weight is 0.

    The Byzantine bound (docs/protocol.md R4): if the values of a weight B < W/2 are arbitrary, the result lies
    between the smallest and the largest of the other values."""
    if len(values) != len(weights):
        raise SettlementError("weights", list(weights), f"one weight per value ({len(values)} values)")
    if any(w < 0 for w in weights):
        raise SettlementError("weights", list(weights), "weights are reputations, never negative")
    total = sum(weights)
    if total == 0:
        return 0
    cumulative = 0
    for value, weight in sorted(zip(values, weights, strict=True), key=lambda vw: vw[0]):
        cumulative += weight
        if 2 * cumulative >= total:
            return value
    raise AssertionError("unreachable: the weights add up to the total")  # pragma: no cover


def upper_weighted_median(values: Sequence[int], weights: Sequence[int]) -> int:
    """The largest value ``v`` such that the weight of the values ≥ ``v``, doubled, is at least the total weight
    (``Consensus.tolerance``'s median); 0 when the total weight is 0 or there is no value."""
    if len(values) != len(weights):
        raise SettlementError("weights", list(weights), f"one weight per value ({len(values)} values)")
    total = sum(weights)
    if total == 0:
        return 0
    cumulative = 0
    for value, weight in sorted(zip(values, weights, strict=True), key=lambda vw: -vw[0]):
        cumulative += weight
        if 2 * cumulative >= total:
            return value
    raise AssertionError("unreachable: the weights add up to the total")  # pragma: no cover


def consensus_scores(scores: Sequence[Sequence[int] | None], weights: Sequence[int], n: int) -> list[int]:
    """Each update's consensus from the set members' scores (None: did not reveal, counts as 0)."""
    table = [list(s) if s is not None else [0] * n for s in scores]
    return [lower_weighted_median([row[i] for row in table], weights) for i in range(n)]


def capped_distance(score: int, consensus: int) -> int:
    return min(abs(score - consensus), SCORE_ONE)


def tolerance(
    distances: Sequence[int | None], weights: Sequence[int], constants: ConsensusConstants = DEFAULT_CONSTANTS
) -> int:
    """The round's tolerance ``r``: DISTANCE_TOLERANCE × the upper weighted median of the revealed members'
    distances (None: absent), floored at DISTANCE_FLOOR."""
    pairs = [(d, w) for d, w in zip(distances, weights, strict=True) if d is not None]
    m = upper_weighted_median([d for d, _ in pairs], [w for _, w in pairs])
    return constants.distance_tolerance * max(m, constants.distance_floor)


def agreement(distance: int, r: int) -> int:
    """A in basis points: ``max(0, 1 - d / r)``, rounded down."""
    return 0 if distance >= r else (r - distance) * SCORE_ONE // r


def raise_reputation(rep: int, step: int, constants: ConsensusConstants = DEFAULT_CONSTANTS) -> int:
    return constants.reputation_max if rep + step >= constants.reputation_max else rep + step


def lower_reputation(rep: int, step: int, constants: ConsensusConstants = DEFAULT_CONSTANTS) -> int:
    return constants.reputation_min if rep <= constants.reputation_min + step else rep - step


@dataclass(frozen=True)
class RoundSettlement:
    """What finalizing one round did: each update's consensus, the accepted set, and the settlements in the
    event's order (contributors by update index, then the validator set in set order)."""

    consensus: tuple[int, ...]
    accepted_bitmap: int
    settlements: tuple[Settlement, ...]
    carried_over: bool = False

    @property
    def accepted(self) -> list[int]:
        return bits(self.accepted_bitmap)

    @property
    def accrued(self) -> int:
        """Everything this round accrued."""
        return sum(s.reward for s in self.settlements)

    def rewards(self, role: Role | None = None) -> dict[str, int]:
        """Reward per account (optionally of one role only)."""
        out: dict[str, int] = {}
        for s in self.settlements:
            if role is None or s.role is role:
                out[s.account] = out.get(s.account, 0) + s.reward
        return out


@dataclass
class ConsensusBook:
    """Reputations as the contract keeps them, and the rewards accrued and claimed, settled round after round."""

    constants: ConsensusConstants = DEFAULT_CONSTANTS
    reputations: dict[tuple[str, Role], int] = field(default_factory=dict)
    accrued: dict[str, int] = field(default_factory=dict)
    """Rewards accrued and not claimed, per account (lower-case address): ``AccountView.accrued``."""
    claimed: dict[str, int] = field(default_factory=dict)
    """Rewards claimed so far, per account (lower-case address): its token balance, if it never transferred any."""
    last_consensus: dict[str, int] = field(default_factory=dict)
    """Each contributor's last settled consensus (lower-case address; absent: none yet, predicted as 0): the
    public record the validators' pay is measured against (``Account.lastConsensus``)."""

    def predicted(self, account: str) -> int:
        """The public record's prediction of ``account``'s next consensus: its last one, else 0."""
        return self.last_consensus.get(account.lower(), 0)

    @staticmethod
    def _key(account: str, role: Role) -> tuple[str, Role]:
        return (account.lower(), role)

    def grant(self, account: str, role: Role) -> None:
        """The first grant of a role starts the reputation; a re-grant keeps the one earned."""
        self.reputations.setdefault(self._key(account, role), self.constants.reputation_start)

    def reputation(self, account: str, role: Role = Role.CONTRIBUTOR) -> int:
        """The account's reputation (0 for a role it was never granted, as the contract's view answers)."""
        return self.reputations.get(self._key(account, role), 0)

    def accrued_of(self, account: str) -> int:
        return self.accrued.get(account.lower(), 0)

    def claim(self, account: str) -> int:
        """``claimRewards``: the accrued amount, now claimed (0 where the contract reverts NothingToClaim)."""
        amount = self.accrued.pop(account.lower(), 0)
        if amount:
            key = account.lower()
            self.claimed[key] = self.claimed.get(key, 0) + amount
        return amount

    def freeze(self, validators: Sequence[str]) -> list[int]:
        """The weights a round opening now freezes for ``validators``: their validator reputations now."""
        for v in validators:
            self.grant(v, Role.VALIDATOR)
        return [self.reputation(v, Role.VALIDATOR) for v in validators]

    def _set(self, account: str, role: Role, value: int) -> None:
        self.reputations[self._key(account, role)] = value

    def settle(
        self,
        contributors: Sequence[str],
        validators: Sequence[str],
        weights: Sequence[int],
        scores: Sequence[Sequence[int] | None],
        *,
        quorum: int,
        budget: int,
        carried_over: bool = False,
    ) -> RoundSettlement:
        """Finalize a round (``carried_over``: ``finalizeCarryOver``, which settles reputations and pays nothing).

        ``contributors`` in update-index order; ``validators`` the round's set in set order with ``weights``
        frozen at its opening (``RoundOpened``, or :meth:`freeze`); ``scores`` one entry per set member: its
        revealed scores (one per update), or None when it did not reveal."""
        n = len(contributors)
        c = self.constants
        if n > c.max_updates_per_round:
            raise SettlementError(
                "contributors", n, f"a round holds at most {c.max_updates_per_round} updates"
            )
        if not len(validators) == len(weights) == len(scores):
            raise SettlementError(
                "scores", len(scores), f"one weight and one score row per validator ({len(validators)})"
            )
        if len(validators) > c.max_validators:
            raise SettlementError("validators", len(validators), f"a set holds at most {c.max_validators}")
        if quorum <= 0:
            raise SettlementError("quorum", quorum, "must be at least 1 (createTask refuses 0)")
        if budget < 0 or budget >= 1 << 96:
            raise SettlementError("budget", budget, "rewardPerRound is below 2**96")
        for v, row in zip(validators, scores, strict=True):
            if row is not None:
                if len(row) != n:
                    raise SettlementError("scores", v, f"{len(row)} scores for {n} updates")
                check_scores(row)
        consensus = consensus_scores(scores, weights, n)
        quorate = sum(row is not None for row in scores) >= quorum
        accepted = bitmap(i for i, ci in enumerate(consensus) if quorate and ci > 0)
        # Below the quorum the validators failed: nobody is paid and only the absent ones lose reputation.
        pay = 0 if carried_over or not quorate else budget
        validator_share = pay * c.validator_share_bps // 10_000
        predictor = (
            sum(capped_distance(self.predicted(a), ci) for a, ci in zip(contributors, consensus, strict=True))
            // n
            if n
            else None
        )
        out = self._settle_contributors(contributors, consensus, accepted, quorate, pay - validator_share)
        out += self._settle_validators(
            validators,
            weights,
            scores,
            consensus,
            share=validator_share,
            quorate=quorate,
            predictor=predictor,
        )
        for account, ci in zip(contributors, consensus, strict=True):
            self.last_consensus[account.lower()] = ci
        for s in out:
            if s.reward:
                key = s.account.lower()
                self.accrued[key] = self.accrued.get(key, 0) + s.reward
        # A carry-over uses no update: the event records an empty accepted set (the base carries over).
        return RoundSettlement(tuple(consensus), 0 if carried_over else accepted, tuple(out), carried_over)

    def _settle_contributors(
        self, contributors: Sequence[str], consensus: Sequence[int], accepted: int, quorate: bool, share: int
    ) -> list[Settlement]:
        c = self.constants
        weights: list[int] = []
        reps: list[int] = []
        for i, (account, ci) in enumerate(zip(contributors, consensus, strict=True)):
            self.grant(account, Role.CONTRIBUTOR)
            old = self.reputation(account, Role.CONTRIBUTOR)
            new = old
            if quorate and ci > 0:
                new = raise_reputation(old, c.contributor_gain * ci // SCORE_ONE, c)
            elif quorate and ci < 0:
                new = lower_reputation(old, c.contributor_loss * -ci // SCORE_ONE, c)
            self._set(account, Role.CONTRIBUTOR, new)
            weights.append(ci * ci * old if (accepted >> i) & 1 else 0)
            reps.append(new)
        total = sum(weights)
        return [
            Settlement(account, Role.CONTRIBUTOR, rep, share * w // total if w else 0, ci, 0, False)
            for account, rep, w, ci in zip(contributors, reps, weights, consensus, strict=True)
        ]

    def _settle_validators(
        self,
        validators: Sequence[str],
        weights: Sequence[int],
        scores: Sequence[Sequence[int] | None],
        consensus: Sequence[int],
        *,
        share: int,
        quorate: bool,
        predictor: int | None = None,
    ) -> list[Settlement]:
        c = self.constants
        n = len(consensus)
        distances: list[int | None] = [
            None
            if row is None
            else (sum(capped_distance(s, ci) for s, ci in zip(row, consensus, strict=True)) // n if n else 0)
            for row in scores
        ]
        r = tolerance(distances, weights, c)
        pay_r = r if predictor is None else min(r, predictor)
        rows: list[tuple[str, int, int, bool]] = []  # account, new reputation, distance, absent
        pay_weights: list[int] = []
        for v, d in zip(validators, distances, strict=True):
            self.grant(v, Role.VALIDATOR)
            old = self.reputation(v, Role.VALIDATOR)
            if d is None:
                new = lower_reputation(old, c.absent_loss, c)
                rows.append((v, new, 0, True))
                pay_weights.append(0)
            else:
                if not quorate:
                    new = old
                elif d <= r:
                    new = raise_reputation(old, c.validator_gain, c)
                else:
                    new = lower_reputation(old, min(c.validator_loss, c.validator_loss * (d - r) // r), c)
                rows.append((v, new, d, False))
                # Paid by its reputation at settlement (before this round's step), not the frozen weight.
                pay_weights.append(old * agreement(d, pay_r))
            self._set(v, Role.VALIDATOR, new)
        total = sum(pay_weights)
        return [
            Settlement(v, Role.VALIDATOR, rep, share * w // total if w else 0, 0, d, absent)
            for (v, rep, d, absent), w in zip(rows, pay_weights, strict=True)
        ]

"""What the index's queries return: plain dataclasses with ``to_dict()`` for JSON.

Digests are ``0x``-hex (as stored); ``cid`` properties give the CIDv0 people paste. Amounts are ints.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ledger.reasons import Reason

ROLE_NAMES = {0: "contributor", 1: "validator"}


def cid_of(digest_hex: str | None) -> str | None:
    if not digest_hex:
        return None
    from ledger.content import digest_to_cid

    return digest_to_cid(digest_hex)


def reason_name(code: int) -> str:
    try:
        return Reason(code).slug
    except ValueError:
        return f"unknown-{code}"


class _Dict:
    """``to_dict()``: fields and properties, recursively, as JSON-ready values."""

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]
        for key in dir(type(self)):
            if isinstance(getattr(type(self), key, None), property):
                out[key] = _plain(getattr(self, key))
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, _Dict):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class TaskSpecInfo(_Dict):
    """What the task's specification (read from the content store, ledger/index/content.py) says made its models.

    ``status``: ``ok`` (schema 2: ``recipe`` {name, version, cid} and ``hyperparameters``), ``legacy`` (a spec from
    before recipes, naming none), ``invalid`` (``problem`` says why) or ``unread`` (the store has not given it)."""

    status: str = "unread"
    recipe: dict[str, str] | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    dataset: str | None = None
    problem: str | None = None

    @property
    def recipe_summary(self) -> str:
        if self.recipe is not None:
            return f"{self.recipe['name']} {self.recipe['version']} ({self.recipe['cid']})"
        return {
            "legacy": "none (legacy spec: written before recipes, it names no recipe)",
            "invalid": f"unknown (the specification is invalid: {self.problem})",
        }.get(self.status, "unknown (the specification was not read from the content store)")


@dataclass(frozen=True)
class TaskRecord(_Dict):
    task_id: int
    admin: str
    spec_digest: str
    genesis_digest: str
    rule: int
    rule_param: int
    quorum: int
    submission_window: int
    commit_window: int
    reveal_window: int
    finalize_grace: int
    max_samples: int
    reward_per_round: int
    block_number: int
    tx_hash: str
    spec: TaskSpecInfo = field(default_factory=TaskSpecInfo)

    @property
    def spec_cid(self) -> str | None:
        return cid_of(self.spec_digest)

    @property
    def genesis_cid(self) -> str | None:
        return cid_of(self.genesis_digest)

    @property
    def rule_description(self) -> str:
        try:
            from ledger.aggregation import AggregationSpec

            return str(AggregationSpec.decode(self.rule, self.rule_param))
        except Exception:
            return f"rule {self.rule} (param {self.rule_param})"


@dataclass(slots=True)
class Score(_Dict):
    """One validator's revealed score of one update (fixed point, 10,000 = 1.0) and its reason (0 unless the
    score is a hard reject, -10,000)."""

    validator: str
    index: int
    score: int
    reason: int
    block_number: int
    tx_hash: str

    @property
    def positive(self) -> bool:
        """The validator's say that the update should be accepted (a consensus > 0 accepts it)."""
        return self.score > 0

    @property
    def reason_name(self) -> str:
        return reason_name(self.reason)


@dataclass(slots=True)
class Update(_Dict):
    """One submitted update with every validator's revealed score and, once the round is finalized, its consensus
    and whether it was accepted."""

    task_id: int
    round: int
    index: int
    contributor: str
    digest: str
    num_samples: int
    relayer: str
    block_number: int
    tx_hash: str
    scores: list[Score] = field(default_factory=list)
    accepted: bool | None = None  # None while the round is not finalized
    consensus: int | None = None  # the lower weighted median of the scores, once the round is finalized
    carried_over: bool = False  # its round was carried over: not aggregated whatever its consensus
    # From the update file's metadata in the content store (None until read, or when the member named none):
    dataset: str | None = None  # the member's dataset commitment, sha-256 of the manifest it keeps
    frameworks: dict[str, str] | None = None  # versions of the software that made it
    privacy: dict[str, Any] | None = None  # its differential-privacy record (mechanism, σ, ε, δ, …), if any
    metadata: str = "unread"  # ok, invalid (the file's metadata did not parse) or unread

    @property
    def cid(self) -> str | None:
        return cid_of(self.digest)

    @property
    def positive_scores(self) -> int:
        return sum(1 for v in self.scores if v.positive)

    @property
    def other_scores(self) -> int:
        return sum(1 for v in self.scores if not v.positive)

    @property
    def verdict(self) -> str:
        """pending, accepted, rejected, or carried-over (no aggregate was made in its round: neither used nor
        rejected, whatever its consensus)."""
        if self.accepted is None:
            return "pending"
        if self.carried_over:
            return "carried-over"
        return "accepted" if self.accepted else "rejected"


@dataclass(frozen=True)
class ReputationChange(_Dict):
    """A reputation value: the starting value at a role grant (task and round 0), or a round's settlement."""

    account: str
    role: int
    reputation: int
    delta: int  # from the account's previous value in this role (the starting value for the first)
    reward: int  # tokens accrued to it by this settlement (claimed later)
    task_id: int
    round: int
    block_number: int
    timestamp: int | None = None
    score: int = 0  # a contributor's consensus score
    distance: int = 0  # a validator's distance to the consensus
    absent: bool = False  # a validator of the round's set that did not reveal

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self.role, str(self.role))


@dataclass(frozen=True)
class Reward(_Dict):
    account: str
    role: int
    amount: int
    task_id: int
    round: int
    block_number: int

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self.role, str(self.role))


@dataclass(frozen=True)
class ScheduledRoleChange(_Dict):
    """A role change the admin scheduled (executable by anyone from ``execute_after``, wall time) or cancelled:
    once a task exists the admin's powers over roles are delayed and visible (protocol R6)."""

    role: str  # admin, contributor, validator, aggregator (or the role id when unknown)
    account: str
    grant: bool
    cancelled: bool
    execute_after: int | None  # None for a cancellation
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class Claim(_Dict):
    """Accrued rewards minted to their owner (``claimRewards``)."""

    account: str
    amount: int
    block_number: int
    tx_hash: str


@dataclass
class RoundValidator(_Dict):
    """A member of a round's validator set (frozen at round open), what it did and, once the round is
    finalized, how it was settled."""

    validator: str
    position: int
    weight: int  # its validator reputation when the round opened
    committed: bool = False
    revealed: bool = False
    distance: int | None = None  # mean capped |score - consensus|, once finalized (0 when absent)
    absent: bool | None = None  # did not reveal, once finalized
    reputation: int | None = None  # after the settlement
    reward: int | None = None  # accrued by the settlement


@dataclass
class Round(_Dict):
    """A round as the logs record it: opening with its validator set, updates with their scores, finalization
    (or carry-over) with each update's consensus, settlement."""

    task_id: int
    round: int
    base_digest: str
    opened_by: str
    opened_at: int
    opened_block: int
    closed_at: int | None = None
    aggregate_digest: str | None = None
    finalized_by: str | None = None  # the aggregator, or whoever carried the round over
    carried_over: bool = False  # no aggregate was produced: the base carries over and no reward accrued
    accepted_indexes: list[int] = field(default_factory=list)
    accepted_count: int | None = None
    submission_count: int | None = None
    rule: int | None = None
    rule_param: int | None = None
    rewards_accrued: int | None = None
    finalized_block: int | None = None
    finalized_tx: str | None = None
    validators: list[RoundValidator] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    reputation: list[ReputationChange] = field(default_factory=list)
    rewards: list[Reward] = field(default_factory=list)

    @property
    def finalized(self) -> bool:
        return self.aggregate_digest is not None

    @property
    def base_cid(self) -> str | None:
        return cid_of(self.base_digest)

    @property
    def aggregate_cid(self) -> str | None:
        return cid_of(self.aggregate_digest)

    @property
    def accepted_updates(self) -> list[Update]:
        wanted = set(self.accepted_indexes)
        return [u for u in self.updates if u.index in wanted]


@dataclass
class Lineage(_Dict):
    """Where a model (or update) comes from, back to its task's genesis model.

    ``role`` is ``aggregate`` (a round's output), ``genesis`` (a task's initial model) or ``update`` (a member's
    submission; ``update`` is set and ``rounds`` holds the history of the model it was trained on). ``rounds``
    runs newest first. ``problems`` lists links that do not hold (a base that is not the previous aggregate, an
    accepted index with no submission, …): empty for any index built from an honest node.
    """

    digest: str
    role: str
    task: TaskRecord
    rounds: list[Round] = field(default_factory=list)
    update: Update | None = None
    used_in: Round | None = None  # for an accepted update: the round whose aggregate used it
    problems: list[str] = field(default_factory=list)

    @property
    def cid(self) -> str | None:
        return cid_of(self.digest)

    @property
    def depth(self) -> int:
        return len(self.rounds)

    @property
    def verified(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Anchor(_Dict):
    """One place a digest appears on chain."""

    role: str  # genesis | aggregate | update (a base is always a genesis or an earlier aggregate)
    task_id: int
    round: int | None
    block_number: int
    tx_hash: str
    contributor: str | None = None
    index: int | None = None
    verdict: str | None = None
    consensus: int | None = None
    positive_scores: int | None = None
    other_scores: int | None = None


@dataclass
class AccountHistory(_Dict):
    """A member's record: submissions with their scores and consensus, scores it revealed, reputation over time,
    rewards accrued and claimed."""

    address: str
    roles: list[str]
    submissions: list[Update] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    score_rounds: list[tuple[int, int]] = field(default_factory=list)  # (task, round) of each score, in order
    reputation: list[ReputationChange] = field(default_factory=list)
    rewards: list[Reward] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    role_changes_scheduled: list[ScheduledRoleChange] = field(default_factory=list)

    @property
    def contributor_reputation(self) -> int | None:
        values = [r.reputation for r in self.reputation if r.role == 0]
        return values[-1] if values else None

    @property
    def validator_reputation(self) -> int | None:
        values = [r.reputation for r in self.reputation if r.role == 1]
        return values[-1] if values else None

    @property
    def total_rewards(self) -> int:
        """Rewards accrued by every settlement (claimed or not)."""
        return sum(r.amount for r in self.rewards)

    @property
    def total_claimed(self) -> int:
        return sum(c.amount for c in self.claims)

    @property
    def unclaimed(self) -> int:
        return self.total_rewards - self.total_claimed

    @property
    def accepted_count(self) -> int:
        return sum(1 for s in self.submissions if s.accepted)

    @property
    def rejected_count(self) -> int:
        return sum(1 for s in self.submissions if s.verdict == "rejected")

    @property
    def carried_over_count(self) -> int:
        return sum(1 for s in self.submissions if s.verdict == "carried-over")

    @property
    def known(self) -> bool:
        return bool(
            self.roles
            or self.submissions
            or self.scores
            or self.reputation
            or self.rewards
            or self.role_changes_scheduled
        )


@dataclass(frozen=True)
class AccountSummary(_Dict):
    """One line of the leaderboard."""

    address: str
    contributor_reputation: int | None
    validator_reputation: int | None
    total_rewards: int
    submissions: int
    accepted: int
    scores: int


@dataclass(frozen=True)
class RoundSummary(_Dict):
    task_id: int
    round: int
    base_digest: str
    aggregate_digest: str | None
    opened_at: int
    submissions: int
    accepted: int | None
    rewards_accrued: int | None
    finalized_block: int | None
    closed_at: int | None = None  # when submissions closed early (every contributor submitted)
    finalized_at: int | None = None  # the finalization block's timestamp
    carried_over: bool = False

    @property
    def finalized(self) -> bool:
        return self.aggregate_digest is not None


@dataclass(frozen=True)
class TaskProgress(_Dict):
    """A task and how far it got."""

    task: TaskRecord
    rounds_opened: int
    rounds_finalized: int
    latest_aggregate: str | None  # the model the last finalized round produced (None before the first)


@dataclass(frozen=True, slots=True)
class ScoreCount(_Dict):
    """Revealed scores on one side of zero with one reason (a positive score's reason is 0)."""

    positive: bool
    reason: int
    count: int


@dataclass
class TaskOverview(_Dict):
    """A task at a glance: its rounds oldest first, who took part, its scores by sign and reason."""

    task: TaskRecord
    rounds: list[RoundSummary]
    rounds_finalized: int
    contributors: int  # distinct accounts that submitted to the task
    validators: int  # distinct accounts that revealed scores in the task
    scores: list[ScoreCount]
    live_round_scores: int  # scores revealed in the last opened round
    role_holders: dict[str, int]  # accounts holding each role now (roles are the ledger's, not the task's)


@dataclass
class RoundContext(_Dict):
    """A round in full with what its page shows around it."""

    round: Round
    task: TaskRecord
    finalized_at: int | None  # the finalization block's timestamp
    last_round: int  # the task's last opened round


@dataclass(frozen=True)
class ScoreTally(_Dict):
    """The scores an account revealed, counted rather than listed (a validator scores every update)."""

    counts: list[ScoreCount]
    rounds: int  # (task, round)s it revealed scores in


@dataclass
class MemberRecord(_Dict):
    """A member's record as a page shows it: an AccountHistory whose revealed scores are a tally, with the times
    of the blocks of its submissions, rewards and claims."""

    address: str
    roles: list[str]
    submissions: list[Update]  # oldest first, each with the scores on it
    reputation: list[ReputationChange]  # oldest first
    rewards: list[Reward]  # oldest first (accrued)
    block_times: dict[int, int]  # block number: timestamp, for the submissions, rewards and claims
    scores_revealed: ScoreTally | None  # None if it never revealed
    claims: list[Claim] = field(default_factory=list)  # oldest first
    role_changes_scheduled: list[ScheduledRoleChange] = field(default_factory=list)  # oldest first

    @property
    def total_rewards(self) -> int:
        return sum(r.amount for r in self.rewards)

    @property
    def total_claimed(self) -> int:
        return sum(c.amount for c in self.claims)

    @property
    def known(self) -> bool:
        return bool(self.roles or self.submissions or self.reputation or self.rewards or self.scores_revealed)


@dataclass
class Member(_Dict):
    """One member's figures on the leaderboard (counts within a task when the fold is for one)."""

    address: str
    roles: list[str] = field(default_factory=list)
    contributor_reputation: int | None = None
    validator_reputation: int | None = None
    rewards: int = 0  # accrued
    claimed: int = 0
    submissions: int = 0
    accepted: int = 0
    rejected: int = 0
    pending: int = 0
    carried_over: int = 0  # submitted to rounds that were carried over
    scores: int = 0

    def is_(self, role: str) -> bool:
        """Whether the member acts in ``role`` (contributor, validator; anything else: yes): it holds the role,
        or has a record in it."""
        if role == "contributor":
            return (
                "contributor" in self.roles or self.submissions > 0 or self.contributor_reputation is not None
            )
        if role == "validator":
            return "validator" in self.roles or self.scores > 0 or self.validator_reputation is not None
        return True


@dataclass(frozen=True, slots=True)
class FinalizedRound(_Dict):
    round: int
    opened_at: int
    finalized_at: int  # the finalization block's timestamp
    submissions: int
    rewards_accrued: int


@dataclass
class TaskActivity(_Dict):
    """What a task did, for the metrics."""

    task_id: int
    current_round: int = 0  # the last opened round
    finalized: list[FinalizedRound] = field(default_factory=list)  # in round order
    latencies: list[int] = field(default_factory=list)  # seconds, each update's submission to finalization
    scores: list[ScoreCount] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)  # updates by verdict (Update.verdict's names)
    recent: list[tuple[int, list[str]]] = field(
        default_factory=list
    )  # (round, its update digests), last rounds


@dataclass(frozen=True)
class IndexStatus(_Dict):
    chain_id: int
    ledger: str
    start_block: int
    block_number: int
    block_hash: str
    updated_at: float
    events: int
    tasks: int
    head: int | None = None

    @property
    def behind(self) -> int | None:
        return None if self.head is None else max(0, self.head - self.block_number)

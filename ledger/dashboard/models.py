"""The JSON API's response models (and so its OpenAPI schema); the HTML pages render the same objects.

Token amounts are decimal strings of base units (18 decimals: they overflow JavaScript numbers) with a float in
MESH beside them for display. CIDs are CIDv0. Times are Unix seconds from block timestamps.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Verdict = Literal["accepted", "rejected", "pending", "carried-over"]
"""carried-over: the update's round was carried over after the grace (no aggregate): neither used nor rejected."""
RoundState = Literal["submissions", "scoring", "finalized"]
"""submissions open; scoring: submissions closed, validators commit then reveal their scores; finalized (by the
aggregator, or carried over)."""


class ErrorDetail(BaseModel):
    status: int = Field(description="The HTTP status.")
    code: str = Field(description="not-found, invalid-input, unavailable or error.")
    message: str
    hint: str | None = None


class ErrorBody(BaseModel):
    """What every API error returns."""

    error: ErrorDetail


class IndexInfo(BaseModel):
    chain_id: int
    ledger: str
    start_block: int
    block_number: int = Field(description="Last block the index has read.")
    updated_at: float = Field(description="When the index last moved its checkpoint (Unix seconds).")
    events: int
    tasks: int
    head: int | None = Field(None, description="The chain's head, when the dashboard follows the chain.")
    behind: int | None = None


class Health(BaseModel):
    status: Literal["ok", "empty"]
    index: IndexInfo | None
    follower: str | None = Field(None, description="The background follower's last state, when following.")


class ReasonCount(BaseModel):
    code: int
    reason: str = Field(description="Stable slug of the reason code (ledger/reasons.py).")
    help: str
    count: int


class TaskSummary(BaseModel):
    task_id: int
    rule: str
    quorum: int
    submission_window: int
    commit_window: int
    reveal_window: int
    finalize_grace: int = Field(description="After the reveal window, when anyone may carry the round over.")
    max_samples: int
    reward_per_round: str
    reward_per_round_mesh: float
    genesis_cid: str
    rounds: int = Field(description="Rounds opened.")
    finalized: int = Field(description="Rounds finalized.")
    latest_model_cid: str = Field(description="The last finalized aggregate, or the genesis model.")


class RoundPoint(BaseModel):
    """One round on the overview's charts."""

    round: int
    state: RoundState
    opened_at: int
    finalized_at: int | None
    duration_s: int | None = Field(description="From opening to the finalization block.")
    submissions: int
    accepted: int | None
    rejected: int | None
    aggregate_cid: str | None
    carried_over: bool = Field(description="Carried over after the grace: no aggregate, no reward.")
    rewards_accrued: str | None
    rewards_accrued_mesh: float | None


class CurrentRound(BaseModel):
    round: int
    state: RoundState
    base_cid: str
    opened_at: int
    submission_deadline: int = Field(
        description="When submissions close (earlier if every contributor submitted)."
    )
    commit_deadline: int = Field(
        description="When the commit window ends (ledger time; later after a pause)."
    )
    reveal_deadline: int
    submissions: int
    contributors: int = Field(description="Accounts holding the contributor role now.")
    scores_revealed: int
    scores_expected: int = Field(description="Validators holding the role now × submissions.")
    aggregate_cid: str | None


class Totals(BaseModel):
    contributors: int = Field(description="Distinct contributors that submitted to the task.")
    validators: int = Field(description="Distinct validators that revealed scores in the task.")
    rounds_finalized: int
    updates: int
    accepted: int
    rejected: int
    pending: int
    rewards_accrued: str
    rewards_accrued_mesh: float


class Overview(BaseModel):
    index: IndexInfo
    tasks: list[TaskSummary]
    task: TaskSummary | None
    current_round: CurrentRound | None
    rounds: list[RoundPoint]
    totals: Totals | None
    verdicts: list[ReasonCount] = Field(
        description="The task's revealed scores by reason (code 0: a score that is not a hard reject)."
    )


class LeaderboardRow(BaseModel):
    rank: int
    address: str
    roles: list[str]
    contributor_reputation: int | None
    validator_reputation: int | None
    rewards: str = Field(description="Accrued by every settlement, claimed or not.")
    rewards_mesh: float
    claimed: str = Field(description="Minted to the member by its claims (0 on a task's board).")
    claimed_mesh: float
    submissions: int
    accepted: int
    rejected: int
    pending: int
    carried_over: int = Field(description="Submitted to rounds that were carried over (not aggregated).")
    scores: int = Field(description="Scores revealed (one per update of each round it revealed in).")


class Leaderboard(BaseModel):
    task_id: int | None
    role: Literal["contributor", "validator", "all"]
    sort: str
    total: int = Field(description="Rows before paging.")
    offset: int
    limit: int
    rows: list[LeaderboardRow]


class ScoreRow(BaseModel):
    validator: str
    score: int = Field(description="Fixed point, 10,000 = 1.0; -10,000 with a reason is a hard reject.")
    score_value: float = Field(description="The score as a number in [-1, 1].")
    reason_code: int
    reason: str
    reason_help: str
    distance: int = Field(description="|score - consensus|, capped at 10,000 (0 before finalization).")


class SubmissionRow(BaseModel):
    task_id: int
    round: int
    index: int
    cid: str
    num_samples: int
    verdict: Verdict
    consensus: int | None = Field(description="The update's consensus score, once its round is finalized.")
    positive_scores: int
    other_scores: int
    reasons: list[str] = Field(description="Slugs of the reasons of the hard rejects.")
    block_number: int
    timestamp: int | None


class ReputationPoint(BaseModel):
    task_id: int
    round: int = Field(description="0 for the starting value given with the role.")
    role: Literal["contributor", "validator"]
    reputation: int
    delta: int
    block_number: int
    timestamp: int | None
    score: int = Field(0, description="A contributor's consensus score in that round.")
    distance: int = Field(0, description="A validator's distance to the consensus in that round.")
    absent: bool = Field(False, description="A validator of the round's set that did not reveal.")


class RewardPoint(BaseModel):
    task_id: int
    round: int
    role: Literal["contributor", "validator"]
    amount: str
    amount_mesh: float
    cumulative_mesh: float
    block_number: int
    timestamp: int | None


class ClaimPoint(BaseModel):
    amount: str
    amount_mesh: float
    cumulative_mesh: float
    block_number: int
    timestamp: int | None


class RoleChangeRow(BaseModel):
    """A role change the admin scheduled for the member (anyone may execute it from ``execute_after``), or
    cancelled."""

    role: str
    grant: bool
    cancelled: bool
    execute_after: int | None = Field(description="Unix seconds (wall time); null for a cancellation.")
    block_number: int


class ScoreSummary(BaseModel):
    scores: int
    positive: int
    rejects: int = Field(description="Hard rejects (score -10,000 with a reason).")
    rounds: int
    by_reason: list[ReasonCount]


class Contributor(BaseModel):
    address: str
    roles: list[str]
    contributor_reputation: int | None
    validator_reputation: int | None
    rewards: str = Field(description="Accrued by every settlement, claimed or not.")
    rewards_mesh: float
    claimed: str = Field(description="Minted to the member by its claims.")
    claimed_mesh: float
    unclaimed: str = Field(description="Accrued and not claimed yet (the ledger's accrued balance).")
    unclaimed_mesh: float
    submitted: int
    accepted: int
    rejected: int
    pending: int
    carried_over: int = Field(description="Submitted to rounds that were carried over (not aggregated).")
    submissions: list[SubmissionRow] = Field(description="Newest first.")
    reputation: list[ReputationPoint] = Field(description="Oldest first.")
    rewards_history: list[RewardPoint] = Field(description="Oldest first (accrued).")
    claims: list[ClaimPoint] = Field(description="Oldest first.")
    role_changes_scheduled: list[RoleChangeRow] = Field(description="Oldest first.")
    scores: ScoreSummary | None


class UpdateRow(BaseModel):
    index: int
    contributor: str
    cid: str
    num_samples: int
    size_bytes: int | None = Field(
        description="From the content store; null when it does not hold the update."
    )
    verdict: Verdict
    consensus: int | None = Field(description="The lower weighted median of the scores, once finalized.")
    consensus_value: float | None
    positive_scores: int
    other_scores: int
    scores: list[ScoreRow] = Field(description="One per validator that revealed, in reveal order.")
    reasons: list[ReasonCount] = Field(description="Reasons of the hard rejects.")


class Settlement(BaseModel):
    account: str
    role: Literal["contributor", "validator"]
    reputation: int
    delta: int
    reward: str = Field(description="Accrued by this settlement (claimed later).")
    reward_mesh: float
    score: int = Field(description="A contributor's consensus score (0 for a validator).")
    distance: int = Field(description="A validator's distance to the consensus (0 for a contributor).")
    absent: bool


class ValidatorRow(BaseModel):
    """A member of the round's validator set (frozen when the round opened)."""

    validator: str
    weight: int = Field(description="Its validator reputation when the round opened.")
    committed: bool
    revealed: bool
    distance: int | None = Field(
        description="Mean capped |score - consensus| over the updates, once finalized."
    )
    absent: bool | None
    reputation: int | None
    reward: str | None
    reward_mesh: float | None


class RoundDetail(BaseModel):
    task_id: int
    round: int
    state: RoundState
    base_cid: str
    aggregate_cid: str | None
    carried_over: bool = Field(
        description="Carried over after the grace (finalizeCarryOver): the aggregate is the base, no reward."
    )
    opened_by: str
    opened_at: int
    closed_at: int | None
    finalized_at: int | None
    finalized_block: int | None
    finalized_tx: str | None
    finalized_by: str | None = Field(description="The aggregator, or whoever carried the round over.")
    rule: str | None
    submissions: int
    accepted: int | None
    rewards_accrued: str | None
    rewards_accrued_mesh: float | None
    update_bytes: int | None = Field(
        description="Total size of the updates, when the store knows all of them."
    )
    validators: list[ValidatorRow]
    updates: list[UpdateRow]
    settlements: list[Settlement]
    previous_round: int | None
    next_round: int | None


class LineageUpdate(BaseModel):
    index: int
    contributor: str
    cid: str
    verdict: Verdict
    consensus: int | None
    reasons: list[str]
    dataset: str | None = Field(
        None,
        description="The member's dataset commitment (sha-256 of the manifest it keeps, 0x + 64 hex) from the "
        "update's metadata; null when it names none or the file was not read (see metadata).",
    )
    frameworks: dict[str, str] | None = Field(
        None, description="Software versions the update's metadata names."
    )
    metadata: Literal["ok", "invalid", "unread"] = Field(
        "unread",
        description="ok: read from the content store; invalid: the file's metadata does not parse; unread: the "
        "store has not given the file.",
    )


class RecipeView(BaseModel):
    """What the task's specification (read from the content store) says made its models."""

    status: Literal["ok", "legacy", "invalid", "unread"] = Field(
        description="ok: a schema-2 spec; legacy: written before recipes, it names none; invalid: it does not "
        "parse; unread: the store has not given it."
    )
    name: str | None = None
    version: str | None = None
    cid: str | None = Field(None, description="CID of the recipe's deterministic archive (its content hash).")
    summary: str = Field(description="One line for people, e.g. `digits 1 (Qm…)` or `none (legacy spec…)`.")
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    spec_cid: str | None = Field(None, description="CID of the task specification the chain anchors.")


class LineageRound(BaseModel):
    round: int
    base_cid: str
    aggregate_cid: str | None
    submitted: int
    accepted: int
    updates: list[LineageUpdate]


class LineageView(BaseModel):
    role: Literal["aggregate", "genesis", "update"]
    task_id: int
    rule: str
    recipe: RecipeView
    genesis_cid: str
    verified: bool
    problems: list[str]
    depth: int
    rounds: list[LineageRound] = Field(description="Newest first, down to round 1.")
    update: LineageUpdate | None = Field(None, description="For an update: the update itself.")
    update_round: int | None = None
    used_in_round: int | None = Field(
        None, description="For an accepted update: the round whose aggregate used it."
    )


class Lineage(BaseModel):
    cid: str
    digest: str
    lineages: list[LineageView]

"""The JSON API's response models (and so its OpenAPI schema); the HTML pages render the same objects.

Token amounts are decimal strings of base units (18 decimals: they overflow JavaScript numbers) with a float in
MESH beside them for display. CIDs are CIDv0. Times are Unix seconds from block timestamps.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Verdict = Literal["accepted", "rejected", "pending"]
RoundState = Literal["submissions", "voting", "finalized"]


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
    vote_window: int
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
    rewards_minted: str | None
    rewards_minted_mesh: float | None


class CurrentRound(BaseModel):
    round: int
    state: RoundState
    base_cid: str
    opened_at: int
    submission_deadline: int = Field(
        description="When submissions close (earlier if every contributor submitted)."
    )
    vote_deadline: int
    submissions: int
    contributors: int = Field(description="Accounts holding the contributor role now.")
    votes_cast: int
    votes_expected: int = Field(description="Validators holding the role now × submissions.")
    aggregate_cid: str | None


class Totals(BaseModel):
    contributors: int = Field(description="Distinct contributors that submitted to the task.")
    validators: int = Field(description="Distinct validators that voted in the task.")
    rounds_finalized: int
    updates: int
    accepted: int
    rejected: int
    pending: int
    rewards_minted: str
    rewards_minted_mesh: float


class Overview(BaseModel):
    index: IndexInfo
    tasks: list[TaskSummary]
    task: TaskSummary | None
    current_round: CurrentRound | None
    rounds: list[RoundPoint]
    totals: Totals | None
    verdicts: list[ReasonCount] = Field(description="The task's votes by reason (code 0: accepted).")


class LeaderboardRow(BaseModel):
    rank: int
    address: str
    roles: list[str]
    contributor_reputation: int | None
    validator_reputation: int | None
    rewards: str
    rewards_mesh: float
    submissions: int
    accepted: int
    rejected: int
    pending: int
    votes: int


class Leaderboard(BaseModel):
    task_id: int | None
    role: Literal["contributor", "validator", "all"]
    sort: str
    total: int = Field(description="Rows before paging.")
    offset: int
    limit: int
    rows: list[LeaderboardRow]


class VoteRow(BaseModel):
    validator: str
    accept: bool
    reason_code: int
    reason: str
    reason_help: str


class SubmissionRow(BaseModel):
    task_id: int
    round: int
    index: int
    cid: str
    num_samples: int
    verdict: Verdict
    accept_votes: int
    reject_votes: int
    reasons: list[str] = Field(description="Slugs of the reasons given by rejecting validators.")
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


class RewardPoint(BaseModel):
    task_id: int
    round: int
    role: Literal["contributor", "validator"]
    amount: str
    amount_mesh: float
    cumulative_mesh: float
    block_number: int
    timestamp: int | None


class VoteSummary(BaseModel):
    votes: int
    accepts: int
    rejects: int
    rounds: int
    by_reason: list[ReasonCount]


class Contributor(BaseModel):
    address: str
    roles: list[str]
    contributor_reputation: int | None
    validator_reputation: int | None
    rewards: str
    rewards_mesh: float
    submitted: int
    accepted: int
    rejected: int
    pending: int
    submissions: list[SubmissionRow] = Field(description="Newest first.")
    reputation: list[ReputationPoint] = Field(description="Oldest first.")
    rewards_history: list[RewardPoint] = Field(description="Oldest first.")
    votes: VoteSummary | None


class UpdateRow(BaseModel):
    index: int
    contributor: str
    cid: str
    num_samples: int
    size_bytes: int | None = Field(
        description="From the content store; null when it does not hold the update."
    )
    verdict: Verdict
    accept_votes: int
    reject_votes: int
    votes: list[VoteRow]
    reasons: list[ReasonCount] = Field(description="Reasons of the rejecting votes.")


class Settlement(BaseModel):
    account: str
    role: Literal["contributor", "validator"]
    reputation: int
    delta: int
    reward: str
    reward_mesh: float


class RoundDetail(BaseModel):
    task_id: int
    round: int
    state: RoundState
    base_cid: str
    aggregate_cid: str | None
    carried_over: bool = Field(description="Nothing was accepted: the aggregate is the base.")
    opened_by: str
    opened_at: int
    closed_at: int | None
    finalized_at: int | None
    finalized_block: int | None
    finalized_tx: str | None
    aggregator: str | None
    rule: str | None
    submissions: int
    accepted: int | None
    rewards_minted: str | None
    rewards_minted_mesh: float | None
    update_bytes: int | None = Field(
        description="Total size of the updates, when the store knows all of them."
    )
    updates: list[UpdateRow]
    settlements: list[Settlement]
    previous_round: int | None
    next_round: int | None


class LineageUpdate(BaseModel):
    index: int
    contributor: str
    cid: str
    verdict: Verdict
    reasons: list[str]


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

"""The index's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Three kinds of table:

* ``checkpoint`` (one row): which chain and ledger the index is for, where it started, and the last block it
  indexed (number and hash, for the reorg check).
* ``blocks`` and ``events``: the blocks that hold indexed events (the reorg walk-back compares their hashes with the
  chain's; the checkpoint row holds the last indexed block's hash) and every decoded
  event, unique on (block hash, log index), so re-reading a range inserts nothing twice.
* projections, insert-only, one row per fact: tasks, rounds opened with their frozen validator sets (one row per
  member and its weight), submissions, closures, score commitments, scores (one per validator and update, decoded
  from a ScoresRevealed log's bytes), finalizations, the consensus of each update (from the contributors'
  settlements) and the accepted updates (expanded from the accepted bitmap), reputation values (the starting value
  at a role grant, then one per settlement with its score, distance and absence: task and round 0 for the
  former), rewards accrued (the nonzero settlements), rewards claimed, role changes and scheduled or cancelled
  role changes. Every row carries its ``block_number`` and
  ``log_index``: a reorg rewinds by deleting the rows above the common ancestor, and "current" values (latest
  reputation, totals) are computed by queries instead of being updated in place.

* content facts, keyed by digest, read from the content store rather than the chain (:mod:`ledger.index.content`):
  ``task_specs`` (a task specification's recipe name, version and CID, hyperparameters, seed; or that it is a
  legacy spec naming no recipe) and ``update_meta`` (an update's dataset commitment and framework versions). Content
  never changes, so these rows are never rewound; a row is written only once its file was read.

Digests and hashes are ``0x``-hex text, addresses checksummed text, uint256 amounts and bitmaps decimal or hex
text (they overflow every SQL integer type).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

SCHEMA_VERSION = 3
"""3: adds the content tables (``task_specs``, ``update_meta``); 2: protocol v2 (commit-reveal scores, consensus,
accrued and claimed rewards); 1 was v1's votes. A version-2 index is upgraded in place (the new tables are created
empty and filled from the content store: :mod:`ledger.index.content`); version 1 must be rebuilt."""

MIGRATES_FROM = frozenset({2})
"""Older versions :meth:`ledger.index.db.IndexDB.create` upgrades in place (their rows stay valid)."""

metadata = MetaData()

HASH = String(66)
ADDRESS = String(42)


def _id() -> Column[int]:
    return Column("id", Integer, primary_key=True, autoincrement=True)


def _position() -> list[Column[int]]:
    return [
        Column("block_number", BigInteger, nullable=False, index=True),
        Column("log_index", Integer, nullable=False),
    ]


checkpoint = Table(
    "checkpoint",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("schema_version", Integer, nullable=False),
    Column("chain_id", BigInteger, nullable=False),
    Column("ledger", ADDRESS, nullable=False),
    Column("start_block", BigInteger, nullable=False),
    Column("block_number", BigInteger, nullable=False),
    Column("block_hash", HASH, nullable=False),
    Column("updated_at", Float, nullable=False),
)

blocks = Table(
    "blocks",
    metadata,
    Column("number", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", HASH, nullable=False),
    Column("parent_hash", HASH, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
)

events = Table(
    "events",
    metadata,
    _id(),
    *_position(),
    Column("block_hash", HASH, nullable=False),
    Column("tx_hash", HASH, nullable=False),
    Column("tx_index", Integer, nullable=False),
    Column("name", String(64), nullable=False),
    Column("task_id", BigInteger),
    Column("round", BigInteger),
    Column("args", Text, nullable=False),
    UniqueConstraint("block_hash", "log_index", name="events_block_log"),
)

tasks = Table(
    "tasks",
    metadata,
    _id(),
    *_position(),
    Column("tx_hash", HASH, nullable=False),
    Column("task_id", BigInteger, nullable=False, index=True),
    Column("admin", ADDRESS, nullable=False),
    Column("spec_digest", HASH, nullable=False),
    Column("genesis_digest", HASH, nullable=False, index=True),
    Column("rule", Integer, nullable=False),
    Column("rule_param", BigInteger, nullable=False),
    Column("quorum", Integer, nullable=False),
    Column("submission_window", BigInteger, nullable=False),
    Column("commit_window", BigInteger, nullable=False),
    Column("reveal_window", BigInteger, nullable=False),
    Column("finalize_grace", BigInteger, nullable=False),
    Column("max_samples", BigInteger, nullable=False),
    Column("reward_per_round", String(80), nullable=False),
)

rounds = Table(
    "rounds",
    metadata,
    _id(),
    *_position(),
    Column("tx_hash", HASH, nullable=False),
    Column("task_id", BigInteger, nullable=False),
    Column("round", BigInteger, nullable=False),
    Column("opened_by", ADDRESS, nullable=False),
    Column("base_digest", HASH, nullable=False, index=True),
    Column("opened_at", BigInteger, nullable=False),
    Index("rounds_task_round", "task_id", "round"),
)

submissions = Table(
    "submissions",
    metadata,
    _id(),
    *_position(),
    Column("tx_hash", HASH, nullable=False),
    Column("task_id", BigInteger, nullable=False),
    Column("round", BigInteger, nullable=False),
    Column("idx", Integer, nullable=False),
    Column("contributor", ADDRESS, nullable=False, index=True),
    Column("digest", HASH, nullable=False, index=True),
    Column("num_samples", BigInteger, nullable=False),
    Column("relayer", ADDRESS, nullable=False),
    Index("submissions_task_round", "task_id", "round", "idx"),
)

closures = Table(
    "closures",
    metadata,
    _id(),
    *_position(),
    Column("task_id", BigInteger, nullable=False),
    Column("round", BigInteger, nullable=False),
    Column("last_contributor", ADDRESS, nullable=False),
    Column("submission_count", Integer, nullable=False),
    Column("closed_at", BigInteger, nullable=False),
    Index("closures_task_round", "task_id", "round"),
)

round_validators = Table(
    "round_validators",
    metadata,
    _id(),
    *_position(),
    Column("task_id", BigInteger, nullable=False),
    Column("round", BigInteger, nullable=False),
    Column("position", Integer, nullable=False),
    Column("validator", ADDRESS, nullable=False, index=True),
    Column("weight", Integer, nullable=False),
    Index("round_validators_task_round", "task_id", "round", "position"),
)

commitments = Table(
    "commitments",
    metadata,
    _id(),
    *_position(),
    Column("tx_hash", HASH, nullable=False),
    Column("task_id", BigInteger, nullable=False),
    Column("round", BigInteger, nullable=False),
    Column("validator", ADDRESS, nullable=False, index=True),
    Column("commitment", HASH, nullable=False),
    Index("commitments_task_round", "task_id", "round"),
)

scores = Table(
    "scores",
    metadata,
    _id(),
    *_position(),
    Column("tx_hash", HASH, nullable=False),
    Column("task_id", BigInteger, nullable=False),
    Column("round", BigInteger, nullable=False),
    Column("idx", Integer, nullable=False),
    Column("validator", ADDRESS, nullable=False, index=True),
    Column("score", Integer, nullable=False),
    # Stored rather than computed so counts by (positive, reason) group on plain columns on both databases.
    Column("positive", Boolean, nullable=False),
    Column("reason", Integer, nullable=False),
    Index("scores_task_round", "task_id", "round", "idx"),
)

finalizations = Table(
    "finalizations",
    metadata,
    _id(),
    *_position(),
    Column("tx_hash", HASH, nullable=False),
    Column("task_id", BigInteger, nullable=False),
    Column("round", BigInteger, nullable=False),
    Column("finalized_by", ADDRESS, nullable=False),
    Column("carried_over", Boolean, nullable=False),
    Column("aggregate_digest", HASH, nullable=False, index=True),
    Column("accepted_bitmap", String(80), nullable=False),
    Column("accepted_count", Integer, nullable=False),
    Column("submission_count", Integer, nullable=False),
    Column("rule", Integer, nullable=False),
    Column("rule_param", BigInteger, nullable=False),
    Column("rewards_accrued", String(80), nullable=False),
    Index("finalizations_task_round", "task_id", "round"),
)

accepted = Table(
    "accepted",
    metadata,
    _id(),
    *_position(),
    Column("task_id", BigInteger, nullable=False),
    Column("round", BigInteger, nullable=False),
    Column("idx", Integer, nullable=False),
    Index("accepted_task_round", "task_id", "round", "idx"),
)

consensus = Table(
    "consensus",
    metadata,
    _id(),
    *_position(),
    Column("task_id", BigInteger, nullable=False),
    Column("round", BigInteger, nullable=False),
    Column("idx", Integer, nullable=False),
    Column("score", Integer, nullable=False),
    Index("consensus_task_round", "task_id", "round", "idx"),
)

reputation_changes = Table(
    "reputation_changes",
    metadata,
    _id(),
    *_position(),
    Column("task_id", BigInteger, nullable=False),
    Column("round", BigInteger, nullable=False),
    Column("account", ADDRESS, nullable=False, index=True),
    Column("role", Integer, nullable=False),
    Column("reputation", BigInteger, nullable=False),
    Column("reward", String(80), nullable=False),
    # The settlement's say: a contributor's consensus score; a validator's distance to the consensus and whether
    # it was absent (0 and false for a starting value).
    Column("score", Integer, nullable=False),
    Column("distance", Integer, nullable=False),
    Column("absent", Boolean, nullable=False),
)

rewards = Table(
    "rewards",
    metadata,
    _id(),
    *_position(),
    Column("task_id", BigInteger, nullable=False),
    Column("round", BigInteger, nullable=False),
    Column("account", ADDRESS, nullable=False, index=True),
    Column("role", Integer, nullable=False),
    Column("amount", String(80), nullable=False),
    Index("rewards_task_round", "task_id", "round"),
)

role_changes = Table(
    "role_changes",
    metadata,
    _id(),
    *_position(),
    Column("role", HASH, nullable=False),
    Column("account", ADDRESS, nullable=False, index=True),
    Column("granted", Boolean, nullable=False),
    Column("sender", ADDRESS, nullable=False),
)

claims = Table(
    "claims",
    metadata,
    _id(),
    *_position(),
    Column("tx_hash", HASH, nullable=False),
    Column("account", ADDRESS, nullable=False, index=True),
    Column("amount", String(80), nullable=False),
)

scheduled_role_changes = Table(
    "scheduled_role_changes",
    metadata,
    _id(),
    *_position(),
    Column("tx_hash", HASH, nullable=False),
    Column("role", HASH, nullable=False),
    Column("account", ADDRESS, nullable=False, index=True),
    Column("granted", Boolean, nullable=False),
    Column("cancelled", Boolean, nullable=False),
    Column("execute_after", BigInteger),  # None for a cancellation
)

task_specs = Table(
    "task_specs",
    metadata,
    Column("digest", HASH, primary_key=True),
    Column("status", String(16), nullable=False),  # ok, legacy (no recipe: a pre-recipe spec) or invalid
    Column("recipe_name", String(128)),
    Column("recipe_version", String(64)),
    Column("recipe_cid", String(128)),
    Column("hyperparameters", Text, nullable=False),  # canonical JSON object ("{}" when none)
    Column("seed", BigInteger),
    Column("dataset", Text),  # the spec's own words on the data it expects
    Column("problem", Text),  # why an invalid spec was not read
)

update_meta = Table(
    "update_meta",
    metadata,
    Column("digest", HASH, primary_key=True),
    Column("status", String(16), nullable=False),  # ok or invalid
    Column("dataset", HASH),  # the member's dataset commitment, 0x + 64 hex
    Column("frameworks", Text),  # JSON object of versions, or NULL when the update names none
    Column("privacy", Text),  # JSON object: the update's differential-privacy record, or NULL (none)
    Column("problem", Text),
)

CONTENT = (task_specs, update_meta)
"""Facts read from the content store, keyed by digest: not rewound, not part of the chain's record."""

PROJECTIONS = (
    tasks,
    rounds,
    round_validators,
    submissions,
    closures,
    commitments,
    scores,
    finalizations,
    accepted,
    consensus,
    reputation_changes,
    rewards,
    claims,
    role_changes,
    scheduled_role_changes,
)
"""Tables rebuilt from events; each row carries the block number it came from."""

REWINDABLE = (*PROJECTIONS, events, blocks)

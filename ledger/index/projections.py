"""From decoded events to index rows: the ``events`` row of every event, and the projection rows it implies.

Pure functions of one event: the follower calls them for events it has not stored yet, inside the transaction
that stores the event, so an event and its projections appear (or are rewound) together.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Table

from ledger.chain.events import LedgerEvent
from ledger.chain.scores import InvalidScores, decode_reasons, decode_scores
from ledger.chain.types import bits
from ledger.index import schema

log = logging.getLogger(__name__)


def hex32(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    raise TypeError(f"cannot store {type(value).__name__} in an event row")


def event_row(event: LedgerEvent) -> dict[str, Any]:
    args = event.args
    task_id = args.get("taskId")
    round_ = args.get("round")
    return {
        "block_number": event.block_number,
        "log_index": event.log_index,
        "block_hash": event.block_hash,
        "tx_hash": event.tx_hash,
        "tx_index": event.tx_index,
        "name": event.name,
        "task_id": int(task_id) if task_id is not None else None,
        "round": int(round_) if round_ is not None else None,
        "args": json.dumps(args, default=_json_default, sort_keys=True, separators=(",", ":")),
    }


def _base(event: LedgerEvent, *, tx: bool = True) -> dict[str, Any]:
    row: dict[str, Any] = {"block_number": event.block_number, "log_index": event.log_index}
    if tx:
        row["tx_hash"] = event.tx_hash
    return row


def projection_rows(event: LedgerEvent) -> Iterator[tuple[Table, dict[str, Any]]]:
    """The (table, row) pairs one event adds to the projections (none for events no projection covers)."""
    a = event.args
    name = event.name
    if name == "TaskCreated":
        p = a["params"]
        yield (
            schema.tasks,
            {
                **_base(event),
                "task_id": int(a["taskId"]),
                "admin": a["admin"],
                "spec_digest": hex32(p["specDigest"]),
                "genesis_digest": hex32(p["genesisDigest"]),
                "rule": int(p["rule"]),
                "rule_param": int(p["ruleParam"]),
                "quorum": int(p["quorum"]),
                "submission_window": int(p["submissionWindow"]),
                "commit_window": int(p["commitWindow"]),
                "reveal_window": int(p["revealWindow"]),
                "finalize_grace": int(p["finalizeGrace"]),
                "max_samples": int(p["maxSamples"]),
                "reward_per_round": str(int(p["rewardPerRound"])),
            },
        )
    elif name == "RoundOpened":
        yield (
            schema.rounds,
            {
                **_base(event),
                "task_id": int(a["taskId"]),
                "round": int(a["round"]),
                "opened_by": a["by"],
                "base_digest": hex32(a["baseDigest"]),
                "opened_at": int(a["openedAt"]),
            },
        )
        for position, (validator, weight) in enumerate(zip(a["validators"], a["weights"], strict=True)):
            yield (
                schema.round_validators,
                {
                    **_base(event, tx=False),
                    "task_id": int(a["taskId"]),
                    "round": int(a["round"]),
                    "position": position,
                    "validator": validator,
                    "weight": int(weight),
                },
            )
    elif name == "UpdateSubmitted":
        yield (
            schema.submissions,
            {
                **_base(event),
                "task_id": int(a["taskId"]),
                "round": int(a["round"]),
                "idx": int(a["index"]),
                "contributor": a["contributor"],
                "digest": hex32(a["digest"]),
                "num_samples": int(a["numSamples"]),
                "relayer": a["relayer"],
            },
        )
    elif name == "SubmissionsClosed":
        yield (
            schema.closures,
            {
                **_base(event, tx=False),
                "task_id": int(a["taskId"]),
                "round": int(a["round"]),
                "last_contributor": a["lastContributor"],
                "submission_count": int(a["submissionCount"]),
                "closed_at": int(a["closedAt"]),
            },
        )
    elif name == "ScoresCommitted":
        yield (
            schema.commitments,
            {
                **_base(event),
                "task_id": int(a["taskId"]),
                "round": int(a["round"]),
                "validator": a["validator"],
                "commitment": hex32(a["commitment"]),
            },
        )
    elif name == "ScoresRevealed":
        yield from _score_rows(event)
    elif name == "RoundFinalized":
        task_id, round_ = int(a["taskId"]), int(a["round"])
        bitmap = int(a["acceptedBitmap"])
        settlements = list(a["settlements"])
        yield (
            schema.finalizations,
            {
                **_base(event),
                "task_id": task_id,
                "round": round_,
                "finalized_by": a["by"],
                "carried_over": bool(a["carriedOver"]),
                "aggregate_digest": hex32(a["aggregateDigest"]),
                "accepted_bitmap": hex(bitmap),
                "accepted_count": len(bits(bitmap)),
                # Settlements list every contributor with an update in the round, so they count the updates.
                "submission_count": sum(1 for s in settlements if int(s["role"]) == 0),
                "rule": int(a["rule"]),
                "rule_param": int(a["ruleParam"]),
                "rewards_accrued": str(sum(int(s["reward"]) for s in settlements)),
            },
        )
        for index in bits(bitmap):
            yield (
                schema.accepted,
                {**_base(event, tx=False), "task_id": task_id, "round": round_, "idx": index},
            )
        # Contributors' settlements come first, one per update in index order: their score is its consensus.
        contributors = [s for s in settlements if int(s["role"]) == 0]
        for index, s in enumerate(contributors):
            yield (
                schema.consensus,
                {
                    **_base(event, tx=False),
                    "task_id": task_id,
                    "round": round_,
                    "idx": index,
                    "score": int(s["score"]),
                },
            )
        for s in settlements:
            yield (
                schema.reputation_changes,
                {
                    **_base(event, tx=False),
                    "task_id": task_id,
                    "round": round_,
                    "account": s["account"],
                    "role": int(s["role"]),
                    "reputation": int(s["reputation"]),
                    "reward": str(int(s["reward"])),
                    "score": int(s["score"]),
                    "distance": int(s["distance"]),
                    "absent": bool(s["absent"]),
                },
            )
            if int(s["reward"]):
                yield (
                    schema.rewards,
                    {
                        **_base(event, tx=False),
                        "task_id": task_id,
                        "round": round_,
                        "account": s["account"],
                        "role": int(s["role"]),
                        "amount": str(int(s["reward"])),
                    },
                )
    elif name == "ReputationInitialized":
        yield (
            schema.reputation_changes,
            {
                **_base(event, tx=False),
                "task_id": 0,
                "round": 0,
                "account": a["account"],
                "role": int(a["role"]),
                "reputation": int(a["reputation"]),
                "reward": "0",
                "score": 0,
                "distance": 0,
                "absent": False,
            },
        )
    elif name in ("RoleGranted", "RoleRevoked"):
        yield (
            schema.role_changes,
            {
                **_base(event, tx=False),
                "role": hex32(a["role"]),
                "account": a["account"],
                "granted": name == "RoleGranted",
                "sender": a["sender"],
            },
        )
    elif name == "RewardsClaimed":
        yield (
            schema.claims,
            {**_base(event), "account": a["account"], "amount": str(int(a["amount"]))},
        )
    elif name in ("RoleChangeScheduled", "RoleChangeCancelled"):
        scheduled = name == "RoleChangeScheduled"
        yield (
            schema.scheduled_role_changes,
            {
                **_base(event),
                "role": hex32(a["role"]),
                "account": a["account"],
                "granted": bool(a["grant"]),
                "cancelled": not scheduled,
                "execute_after": int(a["executeAfter"]) if scheduled else None,
            },
        )


def _score_rows(event: LedgerEvent) -> Iterator[tuple[Table, dict[str, Any]]]:
    """One row per update of a reveal. The bytes come from a log anyone could have emitted through a buggy or
    hostile contract at this address, so they are bounded and range-checked by ``ledger.chain.scores`` first; a
    reveal that does not decode is kept in ``events`` and projects no score (the contract never accepts one)."""
    a = event.args
    try:
        scores = decode_scores(bytes(a["scores"]))
        reasons = decode_reasons(bytes(a["reasons"]))
    except InvalidScores as exc:
        log.warning(
            "ScoresRevealed at block %d log %d does not decode: %s", event.block_number, event.log_index, exc
        )
        return
    for index, score in enumerate(scores):
        # The contract checks one reason per score; a short list (never seen) reads as 255.
        reason = reasons[index] if index < len(reasons) else 255
        yield (
            schema.scores,
            {
                **_base(event),
                "task_id": int(a["taskId"]),
                "round": int(a["round"]),
                "idx": index,
                "validator": a["validator"],
                "score": score,
                "positive": score > 0,
                "reason": reason,
            },
        )

"""From decoded events to index rows: the ``events`` row of every event, and the projection rows it implies.

Pure functions of one event: the follower calls them for events it has not stored yet, inside the transaction
that stores the event, so an event and its projections appear (or are rewound) together.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Table

from ledger.chain.events import LedgerEvent
from ledger.chain.types import bits
from ledger.index import schema


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
                "vote_window": int(p["voteWindow"]),
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
    elif name == "VotesCast":
        reasons = bytes(a["reasons"])
        accepts = int(a["accepts"])
        for k, index in enumerate(bits(int(a["indexes"]))):
            yield (
                schema.votes,
                {
                    **_base(event),
                    "task_id": int(a["taskId"]),
                    "round": int(a["round"]),
                    "idx": index,
                    "validator": a["validator"],
                    "accept": bool(accepts >> index & 1),
                    # The contract checks one reason per voted update; a short list (never seen) reads as 255.
                    "reason": reasons[k] if k < len(reasons) else 255,
                },
            )
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
                "aggregator": a["aggregator"],
                "aggregate_digest": hex32(a["aggregateDigest"]),
                "accepted_bitmap": hex(bitmap),
                "accepted_count": len(bits(bitmap)),
                # Settlements list every contributor with an update in the round, so they count the updates.
                "submission_count": sum(1 for s in settlements if int(s["role"]) == 0),
                "rule": int(a["rule"]),
                "rule_param": int(a["ruleParam"]),
                "rewards_minted": str(sum(int(s["reward"]) for s in settlements)),
            },
        )
        for index in bits(bitmap):
            yield (
                schema.accepted,
                {**_base(event, tx=False), "task_id": task_id, "round": round_, "idx": index},
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

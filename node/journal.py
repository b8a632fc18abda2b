"""The node's own record of its rounds, kept beside its update files so it loses nothing it trained.

    <data_dir>/node/<address>/updates/task-<T>-round-<R>.safetensors   the update file, kept for good
    <data_dir>/node/<address>/updates/task-<T>-round-<R>.json          its record (this module)
    <data_dir>/node/<address>/models/<cid>.safetensors                 cached base models

A record moves through ``trained`` → ``submitted`` (the digest is on chain; ``published`` turns true once the
content is put in the store, after submissions close) → ``accepted`` | ``rejected``, or ends ``missed`` when the
round closed before the update reached the chain. A node restarted at any point reuses what the record
says it has: it never retrains a round whose file exists and never submits twice (the chain refuses that anyway).
Records are written atomically (temp file and rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("trained", "stored", "submitted", "missed", "accepted", "rejected")


@dataclass
class RoundRecord:
    task: int
    round: int
    status: str
    file: str
    cid: str
    base: str
    num_samples: int
    behaviour: str = "honest"
    train_loss: float | None = None
    norm: float | None = None
    privacy: dict[str, Any] | None = None
    relayed: bool = False
    index: int | None = None
    tx_hash: str | None = None
    reasons: list[str] = field(default_factory=list)
    reward: int | None = None
    reputation: int | None = None
    aggregate: str | None = None
    detail: str = ""
    published: bool = False
    """The content is in the store (put only after submissions closed: docs/protocol.md R1)."""
    score: int | None = None
    """The consensus score of the update (the lower weighted median of the validators' scores)."""
    dataset: str | None = None
    """The dataset commitment in the update's metadata (``datasets/<sha256>.json`` holds the manifest)."""
    recipe: str | None = None
    """The recipe that trained the update (``name version (cid)``), None for an SDK script."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Journal:
    """The records of one member (one address) in one data directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.updates = root / "updates"
        self.models = root / "models"

    @classmethod
    def for_member(cls, data_dir: Path, address: str) -> Journal:
        return cls(data_dir / "node" / address)

    def update_path(self, task: int, round_: int) -> Path:
        return self.updates / f"task-{task}-round-{round_}.safetensors"

    def _record_path(self, task: int, round_: int) -> Path:
        return self.updates / f"task-{task}-round-{round_}.json"

    def load(self, task: int, round_: int) -> RoundRecord | None:
        try:
            data = json.loads(self._record_path(task, round_).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return RoundRecord.from_dict(data) if isinstance(data, dict) else None

    def save(self, record: RoundRecord) -> None:
        self.updates.mkdir(parents=True, exist_ok=True)
        target = self._record_path(record.task, record.round)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=self.updates)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(record.to_dict(), out, indent=2, sort_keys=True)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def records(self, task: int | None = None) -> list[RoundRecord]:
        """Every record (of ``task``), by task and round."""
        out = []
        for path in self.updates.glob("task-*-round-*.json"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                record = RoundRecord.from_dict(data)
                if task is None or record.task == task:
                    out.append(record)
        return sorted(out, key=lambda r: (r.task, r.round))

    def dp_releases(self, task: int, before_round: int) -> int:
        """How many privatized updates of ``task`` left this node before ``before_round`` (for ε).

        Conservative: an update put in the store counts even if the round closed before it reached the chain."""
        return sum(
            1
            for r in self.records(task)
            if r.round < before_round and r.privacy is not None and r.status != "trained"
        )

"""The updates a validator keeps from its recent rounds, for the near-copy check (docs/protocol.md R1).

A copy of another member's update from an earlier round (with noise added or slightly scaled) passes every
per-update check; only a comparison over the whole vectors finds it. So a validator keeps the update files that
passed its hard checks in the last ``KEEP_ROUNDS`` rounds, named by the contributor the chain recorded:

    <cache>/history/<task>/<round>/<index>-<contributor>.safetensors

Files, not vectors in memory: a worker restart must not forget them, and a pool child must see its parent's.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KEEP_ROUNDS = 3
"""Rounds of history compared with (R1: the last 3 rounds)."""


@dataclass(frozen=True)
class PastUpdate:
    round: int
    index: int
    contributor: str
    path: Path


def history_dir(cache_dir: Path, task_id: int) -> Path:
    return cache_dir / "history" / str(task_id)


def remember(cache_dir: Path, task_id: int, round_: int, *, index: int, contributor: str, file: Path) -> None:
    """Keep a copy of an update that passed the hard checks (hard-linked when the file system allows)."""
    directory = history_dir(cache_dir, task_id) / str(round_)
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / f"{index}-{contributor.lower()}.safetensors"
    if dest.exists():
        return
    tmp = dest.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    try:
        tmp.hardlink_to(file)
    except OSError:
        shutil.copyfile(file, tmp)
    tmp.replace(dest)


def recent(cache_dir: Path, task_id: int, round_: int) -> list[PastUpdate]:
    """The kept updates of the ``KEEP_ROUNDS`` rounds before ``round_`` (older rounds are removed here)."""
    root = history_dir(cache_dir, task_id)
    out: list[PastUpdate] = []
    if not root.is_dir():
        return out
    for directory in sorted(root.iterdir()):
        try:
            past = int(directory.name)
        except ValueError:
            continue
        if past < round_ - KEEP_ROUNDS:
            shutil.rmtree(directory, ignore_errors=True)
            continue
        if past >= round_:
            continue
        for path in sorted(directory.glob("*.safetensors")):
            index, _, contributor = path.stem.partition("-")
            if index.isdigit() and contributor:
                out.append(PastUpdate(past, int(index), contributor, path))
    return out


def vector(path: Path) -> np.ndarray:
    """An update file's tensors as one float64 vector (keys in sorted order, the same for every update)."""
    from ledger.updatefile import UpdateFile

    with UpdateFile.open(path) as update:
        parts = [np.asarray(update.tensor(k), dtype=np.float64).ravel() for k in sorted(update)]
    return np.concatenate(parts) if parts else np.zeros(0)

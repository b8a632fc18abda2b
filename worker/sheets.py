"""A validator's score sheets on its own disk: the scores, reasons and salt of a commitment, kept until the reveal.

The salt is the only way to open a commitment: a validator that loses it between its commit and its reveal counts
as absent (docs/protocol.md R3) and loses reputation. So a sheet is written (temporary file, fsync, rename, fsync
of the directory) *before* the commit transaction is sent, and read back by whichever run of the job reveals,
after a crash or a restart too. Redis is not a place for it: losing Redis must never cost a reveal.

    <cache>/sheets/<task>-<round>.json   {"scores": [...], "reasons": [...], "salt": "0x...", "commitment": "0x..."}

A sheet is read back as untrusted bytes (bounded, shape-checked): the disk may hold a torn or foreign file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ledger.chain.scores import InvalidScores, ScoreSheet

MAX_SHEET_BYTES = 64 * 1024
"""112 scores and reasons with a salt and a commitment fit in a few kilobytes."""
KEEP_ROUNDS = 8
"""Sheets of a task's rounds older than this many rounds behind the newest are removed."""


class SheetUnreadable(Exception):
    """The sheet file exists but is not a sheet (torn, edited, foreign): the commitment cannot be opened."""


def sheet_path(cache_dir: Path, task_id: int, round_: int) -> Path:
    return cache_dir / "sheets" / f"{task_id}-{round_}.json"


def save_sheet(
    cache_dir: Path, task_id: int, round_: int, sheet: ScoreSheet, commitment: bytes
) -> tuple[ScoreSheet, bytes]:
    """Write the sheet durably (fsynced, then linked into place) unless one is there already, and return the sheet
    on disk with its commitment: the first writer wins, so two runs of the job that scored at the same time (a
    lease that ran out, a redelivery) commit the same sheet, and a sheet that may have been committed is never
    replaced by another. Use the returned sheet, not the argument."""
    path = sheet_path(cache_dir, task_id, round_)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(
        {
            "scores": list(sheet.scores),
            "reasons": list(sheet.reasons),
            "salt": "0x" + sheet.salt.hex(),
            "commitment": "0x" + commitment.hex(),
        },
        sort_keys=True,
    ).encode()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as out:
        out.write(body)
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(tmp, path)  # fails if a sheet is there: never replace one
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        kept = load_sheet(cache_dir, task_id, round_)
        if kept is None:  # pragma: no cover - removed between the link and the read
            raise SheetUnreadable(f"{path} vanished while it was being written") from None
        return kept
    tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    _prune(path.parent, task_id, round_)
    return sheet, commitment


def discard_sheet(cache_dir: Path, task_id: int, round_: int) -> None:
    """Remove a sheet that was never committed and cannot be used (unreadable, or for another update count)."""
    sheet_path(cache_dir, task_id, round_).unlink(missing_ok=True)


def load_sheet(cache_dir: Path, task_id: int, round_: int) -> tuple[ScoreSheet, bytes] | None:
    """The sheet and the commitment it was committed with, or None when this validator never wrote one."""
    path = sheet_path(cache_dir, task_id, round_)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SHEET_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(raw) > MAX_SHEET_BYTES:
        raise SheetUnreadable(f"{path} is larger than {MAX_SHEET_BYTES} bytes")
    try:
        data = json.loads(raw)
        sheet = ScoreSheet(
            tuple(int(s) for s in data["scores"]),
            tuple(int(r) for r in data["reasons"]),
            bytes.fromhex(str(data["salt"]).removeprefix("0x")),
        )
        commitment = bytes.fromhex(str(data["commitment"]).removeprefix("0x"))
    except (ValueError, KeyError, TypeError, InvalidScores) as exc:
        raise SheetUnreadable(f"{path} is not a score sheet: {exc}") from None
    return sheet, commitment


def _prune(directory: Path, task_id: int, newest: int) -> None:
    for old in directory.glob(f"{task_id}-*.json"):
        try:
            round_ = int(old.stem.split("-", 1)[1])
        except ValueError:
            continue
        if round_ < newest - KEEP_ROUNDS:
            old.unlink(missing_ok=True)

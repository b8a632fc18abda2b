"""Score sheets on the validator's disk: durable, first writer wins, read back as untrusted bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.chain.scores import ScoreSheet
from worker.sheets import MAX_SHEET_BYTES, SheetUnreadable, load_sheet, save_sheet, sheet_path


def test_a_saved_sheet_reads_back_with_its_salt_and_commitment(tmp_path: Path) -> None:
    sheet = ScoreSheet.new([5000, -10000], [0, 14])
    assert save_sheet(tmp_path, 1, 3, sheet, b"\x01" * 32) == (sheet, b"\x01" * 32)
    assert load_sheet(tmp_path, 1, 3) == (sheet, b"\x01" * 32)
    assert load_sheet(tmp_path, 1, 4) is None
    assert list(sheet_path(tmp_path, 1, 3).parent.glob("*.tmp")) == []


def test_the_first_sheet_wins_so_concurrent_runs_commit_the_same_one(tmp_path: Path) -> None:
    first = ScoreSheet.new([100])
    second = ScoreSheet.new([100])
    assert first.salt != second.salt
    save_sheet(tmp_path, 1, 1, first, b"\x01" * 32)
    got, commitment = save_sheet(tmp_path, 1, 1, second, b"\x02" * 32)
    assert (got, commitment) == (first, b"\x01" * 32)
    assert load_sheet(tmp_path, 1, 1) == (first, b"\x01" * 32)


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'{"scores": [1], "reasons": [0], "salt": "0x00"}',
        b'{"scores": [20000], "reasons": [0]}',
        b"x" * (MAX_SHEET_BYTES + 1),
    ],
)
def test_a_damaged_sheet_is_refused_by_name(tmp_path: Path, body: bytes) -> None:
    path = sheet_path(tmp_path, 1, 1)
    path.parent.mkdir(parents=True)
    path.write_bytes(body)
    with pytest.raises(SheetUnreadable, match=r"1-1\.json"):
        load_sheet(tmp_path, 1, 1)


def test_old_rounds_sheets_are_pruned(tmp_path: Path) -> None:
    for r in range(1, 12):
        save_sheet(tmp_path, 1, r, ScoreSheet.new([1]), b"\x01" * 32)
    assert load_sheet(tmp_path, 1, 1) is None
    assert load_sheet(tmp_path, 1, 11) is not None

"""The privacy-budget check (``ledger.checks.privacy_budget``): which updates count, the bound, an unbounded member,
no budget, and reading records from the store's copy of the headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.checks.privacy_budget import (
    NOT_PUBLISHED,
    Budget,
    BudgetJudge,
    Released,
    Submitted,
    budget_of,
    check_budget,
    compose,
    read_released,
)
from ledger.content.local_store import LocalStore
from ledger.errors import ConfigError
from ledger.privacy import DEFAULT_DELTA, Release, epsilon
from ledger.reasons import Reason
from ledger.updatefile import UpdateMeta, write_update

SIGMA2: dict[str, Any] = {"mechanism": "gaussian", "clip": 1.0, "noise_multiplier": 2.0, "delta": 1e-5}
BUDGET = Budget(4.5, 1e-5)  # σ = 2: 2.17, 3.19, 4.01, then 4.73 at the 4th update
MEMBER, OTHER = "0x" + "a" * 40, "0x" + "b" * 40


def test_the_budget_comes_from_the_specification_checks() -> None:
    assert budget_of({}) is None
    assert budget_of({"zscore": 3.5}) is None
    assert budget_of({"privacy_epsilon": 8}) == Budget(8.0, DEFAULT_DELTA)
    assert budget_of({"privacy_epsilon": 8, "privacy_delta": 1e-6}) == Budget(8.0, 1e-6)
    with pytest.raises(ConfigError, match="privacy_epsilon"):
        budget_of({"privacy_epsilon": "8"})
    with pytest.raises(ConfigError, match="privacy_delta"):
        budget_of({"privacy_epsilon": 8, "privacy_delta": 2})


def test_the_update_that_takes_the_spend_over_the_budget_is_rejected_and_not_before() -> None:
    updates = [Released(f"u{k}", SIGMA2) for k in range(6)]
    verdicts = [check_budget(BUDGET, updates[: k + 1]) for k in range(6)]
    assert verdicts[:3] == [None, None, None]
    for v in verdicts[3:]:
        assert v is not None
        assert v.reason is Reason.PRIVACY_BUDGET_EXCEEDED
    assert "ε = 4.729" in (verdicts[3].detail if verdicts[3] else "")
    # exactly the accountant's composition, and what the audit composes
    assert compose(updates[:4], 1e-5).epsilon == epsilon([Release(2.0)] * 4, 1e-5)[0]
    # at a budget equal to the spend the update passes (≤)
    spent = epsilon([Release(2.0)] * 3, 1e-5)[0]
    assert check_budget(Budget(spent, 1e-5), updates[:3]) is None


def test_an_update_without_a_record_under_a_budget_is_unbounded() -> None:
    bare = Released("round 1 update 0 (Qm…)", None)
    v = check_budget(BUDGET, [bare, Released("u", SIGMA2)])
    assert v is not None
    assert v.reason is Reason.PRIVACY_BUDGET_EXCEEDED
    assert "unbounded" in v.detail
    assert "round 1 update 0" in v.detail
    laplace = Released("x", {"mechanism": "laplace", "noise_multiplier": 1.0})
    v = check_budget(BUDGET, [laplace])
    assert v is not None
    assert "laplace" in v.detail
    unreadable = Released("y", None, "its metadata is unreadable (no `meshprov` metadata)")
    v = check_budget(BUDGET, [unreadable])
    assert v is not None
    assert "unreadable" in v.detail


def test_without_a_budget_nothing_is_checked() -> None:
    assert check_budget(None, [Released("u", None)] * 3) is None
    judge = BudgetJudge(None, [Submitted(1, 0, MEMBER, "a")], lambda cid, label: pytest.fail("read"))
    assert judge.judge(MEMBER, 1, 0) is None


def test_the_judge_counts_the_members_submissions_so_far_and_skips_unpublished_ones() -> None:
    records = {"r1": SIGMA2, "r2": SIGMA2, "r3": SIGMA2, "r4": SIGMA2, "late": SIGMA2, "other": None}
    submitted = [
        Submitted(1, 0, MEMBER, "r1"),
        Submitted(1, 1, OTHER, "other"),  # another member's unbounded update: not this member's spend
        Submitted(2, 1, MEMBER, "gone"),  # never published: spends nothing
        Submitted(2, 0, OTHER, "other"),
        Submitted(3, 2, MEMBER, "r2"),
        Submitted(4, 0, MEMBER, "r3"),
        Submitted(5, 3, MEMBER, "r4"),
        Submitted(6, 0, MEMBER, "late"),
    ]
    reads: list[str] = []

    def read(cid: str, label: str) -> Released:
        reads.append(cid)
        return NOT_PUBLISHED if cid == "gone" else Released(label, records[cid])

    judge = BudgetJudge(BUDGET, submitted, read)
    assert judge.judge(MEMBER, 4, 0) is None  # three releases: 4.01
    over = judge.judge(MEMBER, 5, 3)  # the fourth: 4.73
    assert over is not None
    assert over.reason is Reason.PRIVACY_BUDGET_EXCEEDED
    assert judge.judge(MEMBER.upper().replace("0X", "0x"), 5, 3) is not None  # addresses compare case-blind
    assert judge.judge(MEMBER, 2, 1) is None
    assert "other" not in reads
    assert reads.count("r1") == 1  # each header read once
    v = judge.judge(OTHER, 1, 1)
    assert v is not None
    assert "unbounded" in v.detail


def test_records_are_read_from_the_stores_copy_of_the_header(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blocks")
    base_cid = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
    tensors = {"w": np.zeros((2, 2), np.float32)}
    cids = []
    for i, privacy in enumerate((SIGMA2, None)):
        path = tmp_path / f"{i}.safetensors"
        meta = UpdateMeta(task=1, round=1, base=base_cid, contributor=MEMBER, num_samples=1, privacy=privacy)
        write_update(path, tensors, meta)
        cids.append(store.put_file(path))
    garbage = store.put_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    with_record = read_released(store, cids[0], "a")
    assert with_record.record is not None
    assert with_record.record["noise_multiplier"] == 2.0
    assert read_released(store, cids[1], "b") == Released("b", None)
    bad = read_released(store, garbage, "c")
    assert bad.record is None
    assert bad.problem is not None
    assert "unreadable" in bad.problem
    absent = LocalStore(tmp_path / "empty")
    assert read_released(absent, cids[0], "d") is NOT_PUBLISHED

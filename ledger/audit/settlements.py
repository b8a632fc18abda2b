"""`audit settlements`: recompute every finalized round's consensus, accepted set, reputations and rewards from the
record, and compare them with what ``RoundFinalized`` says the contract did.

The inputs are the round's own logs as the index (or, with ``--trustless``, the chain's logs) holds them: the
validator set and its weights frozen in ``RoundOpened``, the contributors in update-index order, every revealed
score sheet (a member that did not reveal is absent), the task's quorum and reward. ``ledger.consensus`` settles them
with the contract's integer arithmetic, round after round in chain order across every task (reputations are the
account's, shared by tasks), so a contract that paid, promoted or accepted anything other than what its published
rules give is caught without trusting its code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.chain.types import Role, Settlement, bitmap
from ledger.exit_codes import ExitCode

if TYPE_CHECKING:
    from ledger.audit.source import Source, SourceInfo
    from ledger.consensus import ConsensusConstants
    from ledger.index.models import Round, TaskRecord

SETTLEMENT_FIELDS = ("account", "role", "reputation", "reward", "score", "distance", "absent")


@dataclass
class RoundCheck:
    """One finalized round: whether the recorded outcome is the one the rules give, and where it is not."""

    task_id: int
    round: int
    carried_over: bool
    finalized_block: int
    accepted: list[int]
    differences: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "round": self.round,
            "carried_over": self.carried_over,
            "finalized_block": self.finalized_block,
            "accepted": self.accepted,
            "matches": self.matches,
            "differences": self.differences,
        }


@dataclass
class SettlementsReport:
    checks: list[RoundCheck]
    source: SourceInfo
    constants_from: str  # "chain" (the contract's public constants) or "defaults" (protocol v2's, no chain)
    task_id: int | None = None

    @property
    def mismatches(self) -> list[RoundCheck]:
        return [c for c in self.checks if not c.matches]

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.MISMATCH if self.mismatches else ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "rounds": [c.to_dict() for c in self.checks],
            "checked": len(self.checks),
            "mismatches": len(self.mismatches),
            "constants_from": self.constants_from,
            "source": self.source.to_dict(),
        }


def check_settlements(
    source: Source, task_id: int | None = None, *, constants: ConsensusConstants | None = None
) -> SettlementsReport:
    """Every finalized round settled again from its inputs (all tasks, in chain order); the report keeps the
    rounds of ``task_id`` only when given. UnknownTask when the index has no such task."""
    from ledger.consensus import ConsensusBook

    constants_from = "given"
    if constants is None:
        constants, constants_from = _constants(source)
    if task_id is not None:
        source.queries.task(task_id)  # UnknownTask names the tasks there are
    tasks = {t.task_id: t for t in source.queries.tasks()}
    finalized: list[tuple[int, TaskRecord, Round]] = []
    for t in tasks.values():
        for r in source.queries.task_rounds(t.task_id):
            if r.finalized and r.finalized_block is not None:
                finalized.append((r.finalized_block, t, r))
    # Chain order: one finalization per transaction, and a block orders its transactions; two tasks finalized in
    # one block would need the log index, which only matters if they share accounts (then both are reported).
    finalized.sort(key=lambda item: (item[0], item[1].task_id, item[2].round))
    book = ConsensusBook(constants)
    checks = []
    for block, t, r in finalized:
        check = _check_round(book, t, r, block)
        if task_id is None or t.task_id == task_id:
            checks.append(check)
    return SettlementsReport(checks, source.info, constants_from, task_id)


def _constants(source: Source) -> tuple[ConsensusConstants, str]:
    from ledger.consensus import DEFAULT_CONSTANTS, ConsensusConstants

    if source.client is None:
        return DEFAULT_CONSTANTS, "defaults"
    return ConsensusConstants.from_chain(source.client.constants()), "chain"


def _check_round(book: Any, task: TaskRecord, r: Round, block: int) -> RoundCheck:
    updates = sorted(r.updates, key=lambda u: u.index)
    sheets: dict[str, list[int]] = {}
    for u in updates:
        for s in u.scores:
            sheets.setdefault(s.validator, [0] * len(updates))[u.index] = s.score
    validators = [m.validator for m in r.validators]
    predicted = book.settle(
        [u.contributor for u in updates],
        validators,
        [m.weight for m in r.validators],
        [sheets.get(v) for v in validators],
        quorum=task.quorum,
        budget=task.reward_per_round,
        carried_over=r.carried_over,
    )
    check = RoundCheck(task.task_id, r.round, r.carried_over, block, list(r.accepted_indexes))
    if predicted.accepted_bitmap != bitmap(r.accepted_indexes):
        check.differences.append(
            f"accepted updates {sorted(r.accepted_indexes)}, the rules give {predicted.accepted}"
        )
    recorded = [
        Settlement(c.account, Role(c.role), c.reputation, c.reward, c.score, c.distance, c.absent)
        for c in r.reputation
    ]
    if len(recorded) != len(predicted.settlements):
        check.differences.append(
            f"{len(recorded)} settlements recorded, the rules give {len(predicted.settlements)}"
        )
    for got, want in zip(recorded, predicted.settlements, strict=False):
        for name in SETTLEMENT_FIELDS:
            if getattr(got, name) != getattr(want, name):
                who = f"{Role(want.role).name.lower()} {want.account}"
                check.differences.append(
                    f"{who}: {name} {getattr(got, name)!r} recorded, the rules give {getattr(want, name)!r}"
                )
    # Later rounds start from the reputations the chain recorded (what the contract goes on with), so each round
    # is judged on its own inputs and one wrong settlement is reported once, not in every round after it.
    for got in recorded:
        book.reputations[(got.account.lower(), got.role)] = got.reputation
    return check

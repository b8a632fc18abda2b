"""What the queries raise when the index has no record of what was asked for (exit code NOT_FOUND, HTTP 404)."""

from __future__ import annotations

from ledger.errors import NotFound


class UnknownTask(NotFound):
    def __init__(self, task_id: int, known: list[int]) -> None:
        self.task_id = task_id
        shown = ", ".join(map(str, known[:10])) if known else "none"
        super().__init__(f"task {task_id} is not in the index (tasks indexed: {shown})")


class UnknownRound(NotFound):
    def __init__(self, task_id: int, round_: int, last: int) -> None:
        self.task_id = task_id
        self.round = round_
        super().__init__(
            f"task {task_id} has no round {round_} in the index (rounds 1..{last} were opened)",
            hint="rounds are numbered from 1; the live round is the last opened",
        )


class NotAnchored(NotFound):
    def __init__(self, digest: str) -> None:
        from ledger.index.models import cid_of

        self.digest = digest
        super().__init__(
            f"{cid_of(digest)} is not anchored: no task, round or submission of this ledger names it",
            hint="check the CID, or that the index is up to date (`meshprov index follow --once`)",
        )

"""`audit privacy`: each member's cumulative privacy loss (ε at δ) over a task, composed by ``ledger.privacy``.

Every update a member *submitted* counts (privacy is spent when an update is published, accepted or not), read
from the index's copy of each update's metadata (schema 3: the content store's header, bounded). A member with an
update that carries no privacy record, or one the accountant cannot compose, has no bound (``epsilon`` null,
``unbounded`` true); an update whose metadata was not read yet is listed as ``unread``. The task's budget, when
its specification anchors one (``checks.privacy_epsilon`` and ``checks.privacy_delta``), is compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.exit_codes import ExitCode

if TYPE_CHECKING:
    from ledger.audit.source import Source, SourceInfo
    from ledger.settings import Settings


@dataclass
class MemberPrivacy:
    member: str
    updates: int = 0
    accounted: int = 0
    epsilon: float | None = None
    order: float | None = None
    unbounded: bool = False
    unread: int = 0
    claimed_epsilon: list[float] = field(default_factory=list)  # what each record said of itself
    problems: list[str] = field(default_factory=list)
    over_budget: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PrivacyReport:
    task_id: int
    delta: float
    budget: float | None
    source: SourceInfo
    members: list[MemberPrivacy] = field(default_factory=list)
    rule: str = (
        "RDP composition over every submitted update (sampled Gaussian, q = 1 unless recorded), "
        "converted as Balle et al. 2020 / Opacus get_privacy_spent"
    )
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.MISMATCH if any(m.over_budget for m in self.members) else ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "delta": self.delta,
            "budget": self.budget,
            "rule": self.rule,
            "members": [m.to_dict() for m in self.members],
            "notes": self.notes,
            "source": self.source.to_dict(),
        }


def task_budget(source: Source, settings: Settings, task_id: int) -> tuple[float | None, float | None]:
    """(ε budget, δ) the task's specification anchors in ``checks``; (None, None) when it anchors none."""
    from ledger.audit.source import configured_store
    from ledger.checks.privacy_budget import budget_of
    from ledger.content import read_bytes
    from ledger.content.errors import ContentError
    from ledger.index.models import cid_of
    from ledger.recipe import MAX_SPEC_BYTES, LegacyTaskSpec, parse_task_spec

    store = configured_store(settings)
    if store is None:
        return None, None
    try:
        raw = read_bytes(
            store, cid_of(source.queries.task(task_id).spec_digest) or "", max_bytes=MAX_SPEC_BYTES
        )
        spec = parse_task_spec(raw)
    except (ContentError, OSError, LegacyTaskSpec):
        return None, None
    finally:
        store.close()
    budget = budget_of(spec.checks)
    if budget is None:
        return None, None
    delta = spec.checks.get("privacy_delta")
    return budget.epsilon, (float(delta) if isinstance(delta, int | float) else None)


def privacy(
    source: Source, settings: Settings, task_id: int, *, member: str | None = None, delta: float | None = None
) -> PrivacyReport:
    """Each member's composition (``ledger.checks.privacy_budget.compose``: the rule validators bound with
    ``PRIVACY_BUDGET_EXCEEDED``) over every update it submitted whose metadata the index has read."""
    from ledger.checks.privacy_budget import Released, compose
    from ledger.privacy import DEFAULT_DELTA

    budget, spec_delta = task_budget(source, settings, task_id)
    at = delta if delta is not None else spec_delta if spec_delta is not None else DEFAULT_DELTA
    report = PrivacyReport(task_id, at, budget, source.info)
    if budget is None:
        report.notes.append("the task's specification anchors no privacy budget (checks.privacy_epsilon)")
    released: dict[str, list[Released]] = {}
    rows: dict[str, MemberPrivacy] = {}
    for rd in source.queries.task_rounds(task_id, settlement=False):
        for u in rd.updates:
            if member is not None and u.contributor.lower() != member.lower():
                continue
            row = rows.setdefault(u.contributor, MemberPrivacy(u.contributor))
            row.updates += 1
            if u.metadata == "unread":
                row.unread += 1
                continue
            released.setdefault(u.contributor, []).append(Released(f"round {u.round}: {u.cid}", u.privacy))
    for who, row in sorted(rows.items()):
        spend = compose(released.get(who, []), at)
        row.accounted, row.unbounded = spend.accounted, spend.unbounded
        row.epsilon, row.order = spend.epsilon, spend.order
        row.problems, row.claimed_epsilon = spend.problems, spend.claimed_epsilon
        if budget is not None and (row.unbounded or (row.epsilon is not None and row.epsilon > budget)):
            row.over_budget = True
        report.members.append(row)
    if any(r.unread for r in rows.values()):
        report.notes.append("some updates' metadata is not in the index yet (content store unreachable?)")
    return report

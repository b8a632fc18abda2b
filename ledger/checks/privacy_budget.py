"""The task's privacy budget as a validator check (``PRIVACY_BUDGET_EXCEEDED``), and the composition rule it shares
with `meshprov audit privacy`.

The rule (docs/audit-questions.md, "Is any member over the privacy budget?"):

* **the budget** is the specification's ``checks.privacy_epsilon`` at ``checks.privacy_delta`` (default
  :data:`ledger.privacy.DEFAULT_DELTA`); a task that anchors no ``privacy_epsilon`` has no budget and no check;
* **what counts**: every update the member *submitted* to the task up to and including the one judged — the
  earlier rounds' and, in the judged round, those with a lower index — accepted or not: an update spends budget
  when it is published, whatever the votes said. An earlier update whose content the store does not hold was never
  published and spends nothing;
* **each update's record** is its metadata's ``privacy`` object (``ledger.privacy``), read from the content store's
  copy of its safetensors header (``ledger.index.content.read_update_facts``: a bounded read of the header only):
  the digests come from the chain's ``UpdateSubmitted`` logs, and the local store and the trustless gateways hash
  every block they hand over against the DAG from that digest, so nothing the operator says is trusted. (A Kubo
  client checks a stream's CID only at its end: with ``store = kubo`` the header is taken from the validator's
  own node unverified.) An update with no record, an unparsable header or a record the accountant cannot
  compose makes the member's loss **unbounded**: under a budget every later update of that member (and that one)
  is rejected, and said so in the detail;
* **the bound**: the RDP composition of those releases (:func:`ledger.privacy.epsilon`), converted at the budget's
  δ, must be at most the budget's ε, or the update is rejected.

`meshprov audit privacy` composes the same records with :func:`compose` over every update the member submitted, so
a member it shows over the budget has at least one update this check rejects, and a member whose every update this
check passes is within the budget there. The check is deterministic given the chain and the store:
`meshprov audit rejudge` recomputes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.checks.verdict import Verdict
from ledger.errors import ConfigError
from ledger.reasons import Reason

if TYPE_CHECKING:
    from ledger.content import ContentStore

Record = Mapping[str, Any]


@dataclass(frozen=True)
class Budget:
    """A task's privacy budget: cumulative ε per member at δ."""

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ConfigError(f"checks.privacy_epsilon = {self.epsilon!r} must be a positive number")
        if not 0 < self.delta < 1:
            raise ConfigError(f"checks.privacy_delta = {self.delta!r} must be in (0, 1)")


def budget_of(checks: Mapping[str, Any]) -> Budget | None:
    """The budget a specification's ``checks`` anchor; None when it anchors no ``privacy_epsilon``."""
    from ledger.privacy import DEFAULT_DELTA

    eps, delta = checks.get("privacy_epsilon"), checks.get("privacy_delta")
    if eps is None:
        return None
    for key, value in (("privacy_epsilon", eps), ("privacy_delta", delta)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(
                f"checks.{key} = {value!r} is not a number", hint="fix the task's specification"
            )
    return Budget(float(eps), float(delta) if delta is not None else DEFAULT_DELTA)


@dataclass(frozen=True)
class Released:
    """One submitted update as the rule sees it: ``record`` is its privacy record (None: it carries none),
    ``problem`` says why it has no usable record when its header could not be read as an update's."""

    label: str
    record: Record | None
    problem: str | None = None


@dataclass
class Spend:
    """A member's composed loss over some updates: ``epsilon`` None when unbounded (or nothing accounted)."""

    epsilon: float | None = None
    order: float | None = None
    accounted: int = 0
    unbounded: bool = False
    problems: list[str] = field(default_factory=list)
    claimed_epsilon: list[float] = field(default_factory=list)

    def over(self, budget: Budget) -> bool:
        return self.unbounded or (self.epsilon is not None and self.epsilon > budget.epsilon)


def compose(updates: Iterable[Released], delta: float) -> Spend:
    """The composed loss of ``updates`` at ``delta`` (what `audit privacy` shows and the check bounds)."""
    from ledger.privacy import Release, UnaccountableRecord, epsilon

    spend = Spend()
    releases: list[Release] = []
    for u in updates:
        if u.record is None:
            spend.unbounded = True
            spend.problems.append(f"{u.label}: {u.problem or 'carries no privacy record'}")
            continue
        try:
            releases.append(Release.from_record(u.record))
        except UnaccountableRecord as exc:
            spend.unbounded = True
            spend.problems.append(f"{u.label}: {exc.message}")
            continue
        spend.accounted += 1
        claimed = u.record.get("epsilon")
        if isinstance(claimed, int | float) and not isinstance(claimed, bool):
            spend.claimed_epsilon.append(float(claimed))
    if not spend.unbounded and releases:
        spend.epsilon, spend.order = epsilon(releases, delta)
    return spend


def check_budget(budget: Budget | None, updates: Sequence[Released]) -> Verdict | None:
    """``PRIVACY_BUDGET_EXCEEDED`` when the member's updates up to and including the judged one (the last of
    ``updates``) are unbounded or compose to more than the budget; None when within it or there is no budget."""
    if budget is None or not updates:
        return None
    spend = compose(updates, budget.delta)
    if spend.unbounded:
        return Verdict(
            Reason.PRIVACY_BUDGET_EXCEEDED,
            f"the member's privacy loss is unbounded under the task's budget ε = {budget.epsilon:g} at "
            f"δ = {budget.delta:g}: " + "; ".join(spend.problems),
        )
    assert spend.epsilon is not None
    if spend.epsilon > budget.epsilon:
        return Verdict(
            Reason.PRIVACY_BUDGET_EXCEEDED,
            f"the member's {len(updates)} updates compose to ε = {spend.epsilon:.4g} at δ = {budget.delta:g}, "
            f"over the task's budget {budget.epsilon:g}",
        )
    return None


NOT_PUBLISHED = Released("", None, "not published")
"""What :func:`read_released` returns for content the store does not hold: it spends nothing."""


def read_released(store: ContentStore, cid: str, label: str) -> Released:
    """The update's record from the store's copy of its header (bounded, header only). :data:`NOT_PUBLISHED`
    when the store does not hold it; a store failure other than "not found" propagates."""
    from ledger.content.errors import ContentNotFound
    from ledger.index.content import META_OK, read_update_facts

    try:
        facts = read_update_facts(store, cid)
    except ContentNotFound:
        return NOT_PUBLISHED
    if facts.status != META_OK:
        return Released(label, None, f"its metadata is unreadable ({facts.problem})")
    return Released(label, facts.privacy)


@dataclass(frozen=True)
class Submitted:
    """One submission as the chain's logs record it."""

    round: int
    index: int
    contributor: str
    cid: str


def member_updates(submitted: Iterable[Submitted], member: str, round_: int, index: int) -> list[Submitted]:
    """The member's submissions that count for its update ``index`` of ``round_``: every earlier round's and the
    judged round's up to that index, in (round, index) order."""
    return sorted(
        (
            s
            for s in submitted
            if s.contributor.lower() == member.lower() and (s.round, s.index) <= (round_, index)
        ),
        key=lambda s: (s.round, s.index),
    )


class BudgetJudge:
    """The check over one round: ``submitted`` is every submission of the task up to the judged round (the chain's
    logs), ``read`` reads one update's record (``read_released`` with the store; cached per CID)."""

    def __init__(
        self,
        budget: Budget | None,
        submitted: Iterable[Submitted],
        read: Callable[[str, str], Released],
    ) -> None:
        self.budget = budget
        self.submitted = list(submitted)
        self._read = read
        self._cache: dict[str, Released] = {}

    def released(self, s: Submitted) -> Released:
        if s.cid not in self._cache:
            self._cache[s.cid] = self._read(s.cid, f"round {s.round} update {s.index} ({s.cid})")
        return self._cache[s.cid]

    def judge(self, member: str, round_: int, index: int) -> Verdict | None:
        """The verdict on the member's update ``index`` of ``round_`` (None: within the budget, or no budget)."""
        if self.budget is None:
            return None
        counted = [self.released(s) for s in member_updates(self.submitted, member, round_, index)]
        return check_budget(self.budget, [r for r in counted if r is not NOT_PUBLISHED])

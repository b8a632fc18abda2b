"""`audit taint`: every model that descends from an update (or from any of a member's updates), and how deep.

An accepted update of round r is an input of round r's aggregate, and each later round of the task starts from
the round before it (its base is that aggregate; a carried-over round's model is its base), so the models of
rounds r, r + 1, … all carry it, ``depth`` rounds after it went in (0: the aggregate it was an input of). The
walk checks the chain of bases as it goes: where a round's base is not the model before it, the lineage is broken
and what follows is not counted as carrying it. ``latest_carries`` says whether the task's newest finalized model
still does. A rejected or still-pending update taints nothing. Revocations (protocol R8) are read from the
Revocations contract's logs when a chain is configured: each tainting update says whether it is revoked, why, and
with which evidence. How much an update changed a model is `audit influence`'s question.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.errors import ConfigError, NotFound

if TYPE_CHECKING:
    from ledger.audit.source import Source, SourceInfo
    from ledger.chain.revocations import Revocation
    from ledger.index.models import Round, Update


class NothingToTaint(NotFound):
    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} is not a submitted update nor a member with submissions",
            hint="give an update's CID (see `meshprov audit lineage MODEL`) or a contributor's address",
        )


@dataclass
class Tainted:
    task_id: int
    round: int
    model_cid: str
    depth: int
    via: list[str]  # the tainting updates' CIDs this model carries

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TaintingUpdate:
    cid: str
    task_id: int
    round: int
    index: int
    contributor: str
    verdict: str
    revocation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TaintReport:
    query: str
    kind: str  # update | member | revoked
    source: SourceInfo
    updates: list[TaintingUpdate] = field(default_factory=list)
    models: list[Tainted] = field(default_factory=list)
    latest: dict[int, dict[str, Any]] = field(default_factory=dict)  # task -> latest model, carries?
    revocations_checked: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "kind": self.kind,
            "updates": [u.to_dict() for u in self.updates],
            "models": [m.to_dict() for m in self.models],
            "latest": [{"task_id": t, **v} for t, v in sorted(self.latest.items())],
            "revocations_checked": self.revocations_checked,
            "notes": self.notes,
            "source": self.source.to_dict(),
        }


def taint(source: Source, what: str | None, *, revoked: bool = False) -> TaintReport:
    """The taint of an update (CID or 0x digest), of a member's accepted updates (an address), or with
    ``revoked`` of every revoked update."""
    from eth_utils.address import is_hex_address

    revocations, checked, note = _revocations(source)
    if revoked:
        report = TaintReport("revoked", "revoked", source.info, revocations_checked=checked)
        if not checked:
            raise ConfigError(note or "revocations cannot be read", hint="configure the chain (--rpc-url)")
        updates = [u for r in revocations.values() for u in source.queries.updates(_hex(r.digest))]
    elif what is not None and is_hex_address(what) and len(what) == 42:
        report = TaintReport(what, "member", source.info, revocations_checked=checked)
        updates = list(source.queries.account(what).submissions)
        if not updates:
            raise NothingToTaint(what)
    elif what is not None:
        report = TaintReport(what, "update", source.info, revocations_checked=checked)
        updates = source.queries.updates(_digest_hex(what))
        if not updates:
            raise NothingToTaint(what)
    else:
        raise ConfigError("give an update's CID, a member's address or --revoked")
    if note:
        report.notes.append(note)
    for u in updates:
        rev = revocations.get(bytes.fromhex(u.digest.removeprefix("0x")))
        report.updates.append(
            TaintingUpdate(
                u.cid or "",
                u.task_id,
                u.round,
                u.index,
                u.contributor,
                u.verdict,
                None if rev is None else rev.to_dict(),
            )
        )
    by_task: dict[int, list[Update]] = {}
    for u in updates:
        if u.verdict == "accepted":
            by_task.setdefault(u.task_id, []).append(u)
    for task_id, accepted in sorted(by_task.items()):
        _walk(report, source.queries.task_rounds(task_id, settlement=False), accepted)
    if not by_task:
        report.notes.append("no accepted update: nothing descends from it")
    return report


def _walk(report: TaintReport, rounds: list[Round], accepted: list[Update]) -> None:
    """Forward from each update's round, along the chain of bases, to the task's newest finalized model."""
    entering: dict[int, list[str]] = {}
    for u in accepted:
        entering.setdefault(u.round, []).append(u.cid or "")
    carried: list[str] = []
    first: int | None = None
    previous: str | None = None
    latest: Round | None = None
    for r in rounds:
        if not r.finalized:
            continue
        latest = r
        if carried and previous is not None and r.base_digest.lower() != previous:
            report.notes.append(
                f"task {r.task_id} round {r.round}: its base is not round {r.round - 1}'s model; the lineage "
                "breaks here and later models are not counted"
            )
            carried = []
            first = None
        if r.round in entering and not r.carried_over:
            carried = carried + entering[r.round]
            first = r.round if first is None else first
        previous = (r.aggregate_digest or "").lower()
        if carried and first is not None:
            report.models.append(
                Tainted(r.task_id, r.round, r.aggregate_cid or "", r.round - first, list(carried))
            )
    if latest is not None:
        report.latest[latest.task_id] = {
            "round": latest.round,
            "model_cid": latest.aggregate_cid,
            "carries": bool(carried),
        }


def _revocations(source: Source) -> tuple[dict[bytes, Revocation], bool, str | None]:
    from ledger.chain.revocations import NoRevocations, RevocationsClient

    client = source.client
    if client is None or client.deployment is None:
        return {}, False, "no chain configured: revocations (protocol R8) were not checked"
    try:
        found = RevocationsClient.of(client).revoked()
    except NoRevocations as exc:
        return {}, False, exc.message
    return {r.digest: r for r in found}, True, None


def _hex(digest: bytes) -> str:
    return "0x" + digest.hex()


def _digest_hex(text: str) -> str:
    from ledger.content import cid_to_digest

    if text.startswith("0x") and len(text) == 66:
        return text.lower()
    try:
        return _hex(cid_to_digest(text))
    except ValueError:
        raise ConfigError(f"{text!r} is neither a CID, a 0x digest nor an address") from None

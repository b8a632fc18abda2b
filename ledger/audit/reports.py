"""The audit questions as functions of a :class:`~ledger.audit.source.Source`: each returns a report object with
``to_dict()`` (for ``--json``) and ``exit_code`` (0 when everything checked holds).

    lineage(source, cid)            the model's history back to genesis, with every link checked
    verify(source, path, ...)       a file's CID and where it is anchored (or not)
    round_detail(source, task, r)   one round: validator set, updates with scores, consensus, outcome, settlement
    account(source, address)        a member's submissions with consensus, scores revealed, reputation, rewards
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.errors import NotFound
from ledger.exit_codes import ExitCode

if TYPE_CHECKING:
    from ledger.audit.source import Source, SourceInfo
    from ledger.index.models import AccountHistory, Anchor, Lineage, Round


def parse_digest(text: str) -> str:
    """``0x``-hex digest from a CID (v0 or v1) or a ``0x`` bytes32; InvalidCID (exit USAGE) otherwise."""
    from ledger.chain.client import as_digest

    return "0x" + as_digest(text).hex()


@dataclass
class LineageReport:
    cid: str
    digest: str
    lineages: list[Lineage]
    source: SourceInfo

    @property
    def verified(self) -> bool:
        return all(lineage.verified for lineage in self.lineages)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.verified else ExitCode.MISMATCH

    def to_dict(self) -> dict[str, Any]:
        return {
            "cid": self.cid,
            "digest": self.digest,
            "verified": self.verified,
            "lineages": [lineage.to_dict() for lineage in self.lineages],
            "source": self.source.to_dict(),
        }


def lineage(source: Source, cid_text: str) -> LineageReport:
    """The lineage of a model or update CID (NotAnchored when the ledger never names it)."""
    from ledger.index.models import cid_of

    digest = parse_digest(cid_text)
    found = source.queries.lineage(digest)
    return LineageReport(cid_of(digest) or cid_text, digest, found, source.info)


@dataclass
class VerifyReport:
    file: str
    size: int
    cid: str
    digest: str
    anchors: list[Anchor]
    source: SourceInfo
    expected: str | None = None  # the CID the file was expected to have
    expected_from: str | None = None  # where that expectation came from
    metadata: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def status(self) -> str:
        if self.expected is not None and self.expected != self.cid:
            return "mismatch"
        return "anchored" if self.anchors else "not-anchored"

    @property
    def exit_code(self) -> ExitCode:
        return {"anchored": ExitCode.OK, "mismatch": ExitCode.MISMATCH}.get(self.status, ExitCode.NOT_FOUND)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "size": self.size,
            "cid": self.cid,
            "digest": self.digest,
            "status": self.status,
            "expected": self.expected,
            "expected_from": self.expected_from,
            "anchors": [a.to_dict() for a in self.anchors],
            "metadata": self.metadata,
            "hash_seconds": round(self.seconds, 3),
            "source": self.source.to_dict(),
        }


def file_cid(path: Path) -> tuple[str, int, float]:
    """(CIDv0, size, seconds) of a file, streamed in constant memory; NotFound for a missing file."""
    import time

    from ledger.content import import_file

    if not path.is_file():
        raise NotFound(f"no such file: {path}", hint="check the path")
    started = time.perf_counter()
    result = import_file(path)
    return result.cid, result.size, time.perf_counter() - started


def _metadata(path: Path) -> dict[str, Any] | None:
    """The file's meshprov metadata when it is an update, aggregate or genesis file (else None)."""
    try:
        from ledger.updatefile import UpdateFile

        with UpdateFile.open(path) as f:
            return dict(f.metadata.to_dict())
    except Exception:  # any other file can be verified too: it just has no metadata to show
        return None


def verify(
    source: Source,
    path: Path,
    *,
    expect_cid: str | None = None,
    task_id: int | None = None,
    round_: int | None = None,
) -> VerifyReport:
    """Compute a file's CID and report where the ledger anchors it.

    With ``expect_cid``, or ``task_id`` and ``round_`` (the round's aggregate; round 0: the task's genesis model),
    a different CID is a mismatch.
    """
    from ledger.index.models import cid_of

    cid, size, seconds = file_cid(path)
    digest = parse_digest(cid)
    report = VerifyReport(
        str(path), size, cid, digest, source.queries.anchors(digest), source.info, seconds=seconds
    )
    if expect_cid is not None:
        report.expected = cid_of(parse_digest(expect_cid))
        report.expected_from = "--expect"
    elif task_id is not None and round_ is not None:
        if round_ == 0:
            report.expected = cid_of(source.queries.task(task_id).genesis_digest)
            report.expected_from = f"task {task_id} genesis model"
        else:
            detail = source.queries.round(task_id, round_)
            if detail.aggregate_digest is None:
                raise NotFound(
                    f"round {round_} of task {task_id} is not finalized: it has no aggregate to compare with",
                    hint="verify against an earlier round, or wait for the aggregator",
                )
            report.expected = cid_of(detail.aggregate_digest)
            report.expected_from = f"task {task_id} round {round_} aggregate"
    report.metadata = _metadata(path)
    return report


@dataclass
class RoundReport:
    round: Round
    source: SourceInfo

    exit_code = ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round.to_dict(), "source": self.source.to_dict()}


def round_detail(source: Source, task_id: int, round_: int) -> RoundReport:
    return RoundReport(source.queries.round(task_id, round_), source.info)


class UnknownAccount(NotFound):
    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(
            f"{address} has no record on this ledger: no role, submission, score or reward",
            hint="check the address, or that the index is up to date",
        )


@dataclass
class AccountReport:
    history: AccountHistory
    source: SourceInfo
    balance: int | None = None  # token balance on chain, when the chain was reachable
    accrued: int | None = None  # rewards accrued and not claimed yet, on chain, when reachable
    privacy: list[dict[str, Any]] = field(default_factory=list)
    """Per task the member submitted to: its cumulative ε (`audit privacy`'s composition) and the task's budget."""

    exit_code = ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.history.to_dict(),
            "token_balance": self.balance,
            "accrued_on_chain": self.accrued,
            "privacy": self.privacy,
            "source": self.source.to_dict(),
        }


def account(source: Source, address_text: str) -> AccountReport:
    from ledger.audit.errors import parse_address

    address = parse_address(address_text)
    history = source.queries.account(address)
    if not history.known:
        raise UnknownAccount(address)
    balance = accrued = None
    if source.client is not None and source.client.token_abi:
        try:
            balance = source.client.token_client().balance_of(address)
            accrued = source.client.accrued(address)
        except Exception:  # the chain's figures are a convenience; the history stands without them
            balance = accrued = None
    return AccountReport(history, source.info, balance, accrued)

"""The auditor's Python API: every `meshprov audit` question as a typed method with a stable name.

    from ledger.audit.api import Auditor

    with Auditor.open(data_dir=".meshprov/demo", rpc_url="http://127.0.0.1:8545") as audit:
        for lin in audit.lineage(model_cid).lineages: ...
        report = audit.replay(1, 3)                       # report.status == "match"
        for row in audit.influence(1, 3).rows: ...        # leave-one-out CIDs and distances
        bad = audit.rejudge(1, 3).disagreements           # ballots against the anchored checks
        audit.taint(update_cid).models                    # every later model that carries it
        audit.privacy(1).members                          # cumulative ε per member

Each method returns the report the command prints (``to_dict()`` is the command's ``--json``) and raises the
command's errors (``ledger.errors.MeshprovError`` subclasses: ``NotFound``, ``Mismatch``, ``ConfigError``, …,
each with ``exit_code``). Nothing here imports torch: ``influence`` evaluates only with the evaluator you pass (a
function of the model's weights, e.g. your recipe's ``evaluate`` on your data).

``Auditor.open`` takes the same settings as the CLI (a data directory, a chain endpoint, an index URL, a settings
file; the environment's ``MESHPROV_*`` otherwise) and never starts a service: give the chain's endpoint to sync
the index or to ask the chain itself (``trustless=True``). One ``Auditor`` holds one index connection; close it
(or use it as a context manager).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

    from ledger.audit.export import TaskExport
    from ledger.audit.influence import Evaluator, InfluenceReport
    from ledger.audit.privacy_report import PrivacyReport
    from ledger.audit.rejudge import RejudgeReport
    from ledger.audit.replay import ReplayReport
    from ledger.audit.reports import AccountReport, LineageReport, RoundReport, VerifyReport
    from ledger.audit.source import Source
    from ledger.audit.taint import TaintReport
    from ledger.settings import Settings

__all__ = ["Auditor"]


class Auditor:
    """One audit session over a deployment's record: the index (synced first when a chain is given) or the
    chain's logs alone (``trustless``)."""

    def __init__(self, settings: Settings, source: Source) -> None:
        self.settings = settings
        self.source = source

    @classmethod
    def open(
        cls,
        *,
        data_dir: str | Path | None = None,
        rpc_url: str | None = None,
        index_url: str | None = None,
        config: str | Path | None = None,
        trustless: bool = False,
        sync: bool = True,
    ) -> Auditor:
        from ledger.audit.source import open_source
        from ledger.settings import load_settings

        settings = load_settings(
            Path(config) if config is not None else None,
            data_dir=Path(data_dir) if data_dir is not None else None,
            chain_rpc_url=rpc_url,
            index_url=index_url,
        )
        return cls(settings, open_source(settings, trustless=trustless, sync=sync))

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> Auditor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ─── the record ─────────────────────────────────────────────────────────────────────────────────────────
    def lineage(self, cid: str) -> LineageReport:
        """A model's (or update's) history back to genesis, checked link by link."""
        from ledger.audit import reports

        return reports.lineage(self.source, cid)

    def verify(self, path: str | Path, *, expect_cid: str | None = None) -> VerifyReport:
        """A file's CID and where the ledger anchors it."""
        from ledger.audit import reports

        return reports.verify(self.source, Path(path), expect_cid=expect_cid)

    def round(self, task: int, round_: int) -> RoundReport:
        """One round in full: updates, scores, consensus, settlement."""
        from ledger.audit import reports

        return reports.round_detail(self.source, task, round_)

    def contributor(self, address: str) -> AccountReport:
        """A member's submissions, scores, reputation and rewards."""
        from ledger.audit import reports

        return reports.account(self.source, address)

    def export(self, task: int) -> TaskExport:
        """Every round of a task (what `audit export` renders as JSON, CSV or HTML)."""
        from ledger.audit.export import collect

        return collect(self.source, task)

    def intoto(self, model_cid: str, *, recipe: str | Path | None = None) -> dict[str, Any]:
        """A model's in-toto Statement with its SLSA provenance predicate."""
        from ledger.audit import provenance, reports
        from ledger.content import open_store

        store = open_store(self.settings)
        try:
            return provenance.gather(
                self.source,
                store,
                reports.parse_digest(model_cid),
                recipe_path=Path(recipe) if recipe is not None else None,
            ).document
        finally:
            store.close()

    # ─── recomputing it ─────────────────────────────────────────────────────────────────────────────────────
    def replay(self, task: int, round_: int, *, keep: str | Path | None = None) -> ReplayReport:
        """The round's aggregate recomputed from the store; ``status`` is match, mismatch or carried-over."""
        from ledger.audit.replay import replay

        return replay(self.source, self.settings, task, round_, keep=Path(keep) if keep is not None else None)

    def influence(
        self, task: int, round_: int, *, update: str | None = None, evaluator: Evaluator | None = None
    ) -> InfluenceReport:
        """Leave-one-out replay of the round: each accepted update's CID without it, distance, metrics change."""
        from ledger.audit.influence import influence

        return influence(self.source, self.settings, task, round_, update=update, evaluator=evaluator)

    def rejudge(self, task: int, round_: int) -> RejudgeReport:
        """The deterministic checks recomputed with the anchored limits; ballots that disagree."""
        from ledger.audit.rejudge import rejudge

        return rejudge(self.source, self.settings, task, round_)

    def taint(self, what: str | None = None, *, revoked: bool = False) -> TaintReport:
        """Every later model carrying an update (CID), a member's updates (address), or every revoked update."""
        from ledger.audit.taint import taint

        return taint(self.source, what, revoked=revoked)

    def privacy(self, task: int, *, member: str | None = None, delta: float | None = None) -> PrivacyReport:
        """Each member's cumulative ε over the task, against the anchored budget."""
        from ledger.audit.privacy_report import privacy

        return privacy(self.source, self.settings, task, member=member, delta=delta)

"""The dashboard's read model: every page's data, as the API's response models, from the index's queries.

Read-only, and without SQL of its own: every read is a question to ``Queries`` (ledger/index/queries), whose
answers views.py and accounts.py shape into the response models. Answers are memoized per version of the index's
data (``memo.py``), so a page costs one cheap query (the newest block) per request once computed; every member's
figures are folded incrementally (``Queries.members``), so after a round only that round's rows are read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from ledger.audit.errors import parse_address
from ledger.dashboard import accounts, views
from ledger.dashboard.errors import BadParameter, NoSettings, NothingIndexed, UnknownAddress
from ledger.dashboard.memo import Version, VersionedMemo
from ledger.dashboard.models import (
    Contributor,
    IndexInfo,
    Leaderboard,
    Lineage,
    Overview,
    RoundDetail,
    TaskSummary,
)
from ledger.dashboard.sizes import SizeLookup
from ledger.errors import MeshprovError
from ledger.index.db import IndexDB, redact
from ledger.index.models import Member
from ledger.index.queries import Queries
from ledger.index.queries.members import MemberFold

if TYPE_CHECKING:
    from ledger.settings import Settings

log = logging.getLogger(__name__)


def parse_cid(text: str) -> str:
    """The ``0x`` digest of a CIDv0, CIDv1 or ``0x`` bytes32; InvalidCID (→ 422) otherwise."""
    from ledger.content import cid_to_digest, digest_to_cid

    value = text.strip()
    if value[:2] in ("0x", "0X"):
        value = digest_to_cid(value)
    return "0x" + cid_to_digest(value).hex()


class ReadModel:
    def __init__(
        self,
        db: IndexDB,
        *,
        sizes: SizeLookup | None = None,
        head: Callable[[], int | None] | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.db = db
        self.settings = settings  # the privacy report reads the task's budget from the configured store
        self.queries = Queries(db)
        self.sizes = sizes or SizeLookup(None)
        self.head = head or (lambda: None)
        self.memo = VersionedMemo()
        self._tables = False
        self._folds: dict[int | None, MemberFold] = {}
        self._fold_lock = threading.Lock()
        self._client: Any = None
        self._client_lock = threading.Lock()

    def _ensure_tables(self) -> None:
        """Create the index's (empty) tables if the database has none yet, so that a dashboard started before
        its indexer shows an empty index rather than failing; idempotent, and it touches no index data. Raises
        IndexUnavailable (→ 503) while the database cannot be reached."""
        if not self._tables:
            self.db.create()
            self._tables = True

    # ─── versions and status ────────────────────────────────────────────────────────────────────────────────
    def version(self) -> Version:
        self._ensure_tables()
        newest = self.queries.newest_block()
        return (newest[0], newest[1]) if newest else None

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        return self.memo.get(self.version(), key, compute)

    def status(self) -> IndexInfo | None:
        self._ensure_tables()
        cp = self.db.checkpoint()
        if cp is None:
            return None
        events, tasks = self.cached(("counts",), self.queries.counts)
        head = self.head()
        return IndexInfo(
            chain_id=cp.chain_id,
            ledger=cp.ledger,
            start_block=cp.start_block,
            block_number=cp.block_number,
            updated_at=cp.updated_at,
            events=events,
            tasks=tasks,
            head=head,
            behind=None if head is None else max(0, head - cp.block_number),
        )

    def require_status(self) -> IndexInfo:
        info = self.status()
        if info is None:
            raise NothingIndexed(redact(self.db.url))
        return info

    def now(self) -> float:
        """The later of the wall clock and the newest indexed block (a dev chain may run ahead of the clock)."""
        self._ensure_tables()
        newest = self.queries.newest_block()
        return max(time.time(), float(newest[2]) if newest else 0.0)

    # ─── tasks and the overview ─────────────────────────────────────────────────────────────────────────────
    def tasks(self) -> list[TaskSummary]:
        return list(
            self.cached(("tasks",), lambda: [views.task_summary(p) for p in self.queries.task_progress()])
        )

    def overview(self, task_id: int | None = None) -> Overview:
        info = self.require_status()
        tasks = self.tasks()
        if task_id is None and tasks:
            task_id = tasks[-1].task_id
        if task_id is not None and not any(t.task_id == task_id for t in tasks):
            self.queries.task(task_id)  # raises UnknownTask with the known ids
        body = self.cached(("overview", task_id), lambda: self._overview(task_id, tasks))
        return Overview(index=info, tasks=tasks, **body)

    def _overview(self, task_id: int | None, tasks: list[TaskSummary]) -> dict[str, Any]:
        if task_id is None:
            return {"task": None, "current_round": None, "rounds": [], "totals": None, "verdicts": []}
        task = next(t for t in tasks if t.task_id == task_id)
        now = self.now()
        return views.overview(self.queries.task_overview(task_id), task, now)

    def warm_up(self) -> None:
        """Compute the costly answers once (the full member fold, the overview) so that later requests only fold
        in what is new; failures are left for the requests to report."""
        try:
            if self.status() is not None:
                self.leaderboard()
                self.overview()
        except Exception as exc:  # a warm-up must never take the server down; requests will say what is wrong
            log.debug("warm-up skipped: %s", exc)

    # ─── members ────────────────────────────────────────────────────────────────────────────────────────────
    def members(self, task_id: int | None) -> dict[str, Member]:
        """Every member's figures (within a task if given) at the index's current version."""

        def compute() -> dict[str, Member]:
            with self._fold_lock:
                fold = self.queries.members(task_id, self._folds.get(task_id))
                if fold is None:
                    return {}
                self._folds[task_id] = fold
                return fold.snapshot()

        return dict(self.cached(("members", task_id), compute))

    def leaderboard(
        self,
        *,
        task_id: int | None = None,
        role: Literal["contributor", "validator", "all"] = "contributor",
        sort: str = "rewards",
        offset: int = 0,
        limit: int = 100,
    ) -> Leaderboard:
        self.require_status()
        if sort not in accounts.SORTS:
            raise BadParameter("sort", sort, "one of " + ", ".join(accounts.SORTS))
        if task_id is not None:
            self.queries.task(task_id)
        ordered: list[Member] = self.cached(
            ("ranked", task_id, role, sort), lambda: accounts.ranked(self.members(task_id), role, sort)
        )
        page = ordered[offset : offset + limit]
        return Leaderboard(
            task_id=task_id,
            role=role,
            sort=sort,
            total=len(ordered),
            offset=offset,
            limit=limit,
            rows=[accounts.row(offset + i + 1, m) for i, m in enumerate(page)],
        )

    def contributor(self, address: str) -> Contributor:
        who = parse_address(address)
        self.require_status()

        def compute() -> Contributor | None:
            record = self.queries.member(who)
            return accounts.contributor(record) if record.known else None

        found: Contributor | None = self.cached(("contributor", who), compute)
        if found is None:
            raise UnknownAddress(who)
        return found

    # ─── rounds ─────────────────────────────────────────────────────────────────────────────────────────────
    def round(self, task_id: int, round_: int) -> RoundDetail:
        self.require_status()
        detail: RoundDetail = self.cached(("round", task_id, round_), lambda: self._round(task_id, round_))
        if detail.update_bytes is None and self.sizes.available:
            detail = self._with_sizes(detail)
        return detail

    def _round(self, task_id: int, round_: int) -> RoundDetail:
        detail = views.round_detail(self.queries.round_context(task_id, round_), self.now())
        return self._with_sizes(detail) if self.sizes.available else detail

    def _with_sizes(self, detail: RoundDetail) -> RoundDetail:
        return views.with_sizes(detail, self.sizes.sizes([u.cid for u in detail.updates]))

    def _source(self) -> Any:
        from ledger.audit.source import Source, SourceInfo

        info = self.require_status()
        return Source(
            self.queries,
            SourceInfo("index", info.chain_id, info.ledger, info.block_number, None),
            None,
            self.db,
        )

    def privacy(self, task_id: int) -> Any:
        """`audit privacy`'s report (ledger/audit/privacy_report.py): each member's cumulative ε for the task."""
        from ledger.audit.privacy_report import privacy

        if self.settings is None:
            raise NoSettings()
        self.queries.task(task_id)  # UnknownTask (404) first
        source = self._source()
        settings = self.settings
        return self.cached(("privacy", task_id), lambda: privacy(source, settings, task_id))

    # ─── taint (issue 16) ───────────────────────────────────────────────────────────────────────────────────
    def taint(self, what: str) -> Any:
        """`audit taint`'s report (ledger/audit/taint.py) for an update's CID or a member's address, from this
        index. Revocations (R8) are read from the chain when the settings name one (``chain_rpc_url`` and the
        deployment record); without a chain, or when it cannot be reached, the report says they were not checked."""
        from ledger.audit.taint import taint

        source = self._source()
        client = self._chain_client()
        if client is not None:
            chained = replace(source, client=client)
            try:
                return self.cached(("taint", what.lower(), "chain"), lambda: taint(chained, what))
            except (MeshprovError, OSError) as exc:  # an unreachable node must not take the page down
                log.warning("taint page: revocations not read from the chain: %s", exc)
        return self.cached(("taint", what.lower()), lambda: taint(source, what))

    def _chain_client(self) -> Any:
        """One read-only client for the dashboard's life (made on the first taint page that needs it; a failure
        to make it is retried on the next page, not remembered)."""
        if self.settings is None or self.settings.chain_rpc_url is None:
            return None
        from ledger.chain.client import LedgerClient

        with self._client_lock:
            if self._client is None:
                try:
                    self._client = LedgerClient.from_settings(self.settings, read_only=True)
                except (MeshprovError, OSError) as exc:
                    log.warning("taint page: no chain client (%s): revocations not checked", exc)
            return self._client

    # ─── lineage ────────────────────────────────────────────────────────────────────────────────────────────
    def lineage(self, cid_text: str) -> Lineage:
        digest = parse_cid(cid_text)
        self.require_status()
        return self.cached(  # type: ignore[no-any-return]
            ("lineage", digest), lambda: views.lineage(digest, self.queries.lineage(digest))
        )

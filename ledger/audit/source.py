"""Where an audit's answers come from: the index (brought up to date in-process first when a chain is configured,
unless told not to) or, with ``--trustless``, a throwaway index built from the chain's logs alone. Both are read by
the same queries. Reading the index needs no chain.

Trust: the index is only as good as whoever filled it; a trustless answer depends on the chain endpoint alone
(see docs/audit.md). Every report carries its :class:`Source` so a reader knows which it got and how fresh.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.errors import ServiceUnavailable

if TYPE_CHECKING:
    from ledger.chain.client import LedgerClient
    from ledger.content import ContentStore
    from ledger.index.db import IndexDB
    from ledger.index.queries import Queries
    from ledger.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SourceInfo:
    """How an answer was obtained."""

    mode: str  # "index" or "trustless"
    chain_id: int
    ledger: str
    indexed_to: int
    head: int | None  # None when the chain could not be reached (--no-sync)
    synced_events: int = 0
    seconds: float = 0.0
    content_read: int = 0  # specs and updates read from the content store by this call (index schema v3)
    warnings: list[str] = field(default_factory=list)

    @property
    def behind(self) -> int | None:
        return None if self.head is None else max(0, self.head - self.indexed_to)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "behind": self.behind}


@dataclass
class Source:
    queries: Queries
    info: SourceInfo
    client: LedgerClient | None
    db: IndexDB

    def close(self) -> None:
        self.db.dispose()


def open_source(settings: Settings, *, trustless: bool = False, sync: bool = True) -> Source:
    """The queries an audit command runs on, with where they come from.

    The chain is ``settings.chain_rpc_url``; nothing is started here. ``trustless``: build an in-memory index from
    ``eth_getLogs`` (needs the chain). Otherwise the configured index, updated in-process to the chain's confirmed
    head when ``sync`` and a chain is configured. Without a sync (``sync`` False, or no chain configured) the
    answer is the index's, as of its checkpoint: a configured but unreachable chain is tolerated and the lag, or
    the absence of a chain to measure it against, is reported as a warning.
    """
    from ledger.chain.client import LedgerClient

    started = time.perf_counter()
    if trustless:
        from ledger.index import service
        from ledger.index.queries import Queries

        client = LedgerClient.from_settings(settings, read_only=True)
        memory, result = service.trustless(client, confirmations=settings.confirmations)
        info = SourceInfo(
            "trustless",
            client.w3.eth.chain_id,
            client.address,
            result.to_block,
            result.head,
            synced_events=result.events,
        )
        source = Source(Queries(memory), info, client, memory)
        read_content(source, settings)
        info.seconds = time.perf_counter() - started
        return source

    from ledger.index import service

    db = service.open_index(settings)
    try:
        source = _indexed(db, settings, sync=sync and settings.chain_rpc_url is not None)
    except BaseException:
        db.dispose()
        raise
    read_content(source, settings)
    source.info.seconds = time.perf_counter() - started
    return source


def configured_store(settings: Settings) -> ContentStore | None:
    """The configured content store, unless it is a local store that does not exist yet (nothing to read, and
    an audit must not create one)."""
    from ledger.content import open_store

    if settings.store == "local" and not settings.resolved_store_dir.is_dir() and not settings.gateways:
        return None
    return open_store(settings)


def read_content(source: Source, settings: Settings) -> None:
    """Record in the index what the content store says of the specs and updates it has not read yet (recipe,
    hyperparameters, dataset commitments: ledger/index/content.py). The chain's record does not depend on it: a
    store that fails is a warning, and what it does not hold stays "unread"."""
    from ledger.errors import MeshprovError
    from ledger.index.content import enrich

    store = configured_store(settings)
    if store is None:
        return
    try:
        result = enrich(source.db, store)
    except MeshprovError as exc:
        source.info.warnings.append(
            f"the content store could not be read ({exc.message}): recipes and dataset commitments not read yet "
            "are shown as unknown"
        )
        return
    finally:
        store.close()
    source.info.content_read = result.specs + result.updates
    if result.missing:
        log.debug(
            "the content store lacks %d file(s) the chain names: %s", len(result.missing), result.missing
        )


def _indexed(db: IndexDB, settings: Settings, *, sync: bool) -> Source:
    from ledger.audit.errors import IndexEmpty
    from ledger.chain.client import LedgerClient
    from ledger.chain.deploy import DeploymentRecord
    from ledger.index import service
    from ledger.index.db import redact
    from ledger.index.queries import Queries

    client: LedgerClient | None = None
    if sync:
        client = LedgerClient.from_settings(settings, read_only=True)
        result = service.update(db, client, confirmations=settings.confirmations)
        info = SourceInfo(
            "index", client.w3.eth.chain_id, client.address, result.to_block, result.head, result.events
        )
        return Source(Queries(db), info, client, db)

    deployment = DeploymentRecord.read(settings.resolved_deployment_file)
    cp = db.check_identity(deployment.chain_id, deployment.ledger)
    if cp is None:
        raise IndexEmpty(redact(db.url))
    head: int | None = None
    if settings.chain_rpc_url is not None:
        try:
            client = LedgerClient.from_settings(settings, read_only=True)
            head = client.block_number()
        except ServiceUnavailable as exc:
            client = None
            log.debug("chain unreachable: %s", exc)
    info = SourceInfo("index", cp.chain_id, cp.ledger, cp.block_number, head)
    if settings.chain_rpc_url is None:
        info.warnings.append(
            f"no chain configured: answering from the index as of block {cp.block_number}; it may be behind "
            "(pass --rpc-url or set MESHPROV_CHAIN_RPC_URL to check it against the chain and bring it up to date)"
        )
    elif head is None:
        info.warnings.append(
            f"the chain is unreachable: answering from the index as of block {cp.block_number}; "
            "it may be behind"
        )
    elif info.behind:
        info.warnings.append(
            f"the index is {info.behind} blocks behind the chain (block {cp.block_number} of {head}): "
            "run `meshprov index follow --once`, or drop --no-sync to update it first"
        )
    return Source(Queries(db), info, client, db)

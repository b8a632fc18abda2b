"""Wiring the index to settings and a ledger client: open it, bring it up to date, or build a trustless one.

open_index(settings)             the configured index (SQLite file by default, or MESHPROV_INDEX_URL)
follower(db, client, ...)        a Follower for that ledger, starting at its deployment block (with content=
                                 content_reader(settings): also reading specs and update metadata)
update(db, client, ...)          one sync to the chain's confirmed head
trustless(client, ...)           a throwaway in-memory index filled from eth_getLogs alone
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.index.content import ContentReader
from ledger.index.db import IndexDB
from ledger.index.follower import ChainReader, Follower, Progress, SyncResult

if TYPE_CHECKING:
    from ledger.chain.client import LedgerClient
    from ledger.settings import Settings


def open_index(settings: Settings, *, schema_name: str | None = None) -> IndexDB:
    return IndexDB(settings.resolved_index_url, schema_name=schema_name)


def content_reader(settings: Settings) -> ContentReader | None:
    """What reads specs and update headers from the configured content store for a long-lived follower (None:
    a local store that does not exist, so there is nothing to read and nothing is created)."""
    from ledger.content import open_store

    if settings.store == "local" and not settings.resolved_store_dir.is_dir() and not settings.gateways:
        return None
    return ContentReader(open_store(settings))


def follower(
    db: IndexDB,
    client: LedgerClient,
    *,
    confirmations: int = 0,
    start_block: int | None = None,
    batch_blocks: int = 2000,
    content: ContentReader | None = None,
) -> Follower:
    if start_block is None:
        start_block = client.deployment.deploy_block if client.deployment is not None else 0
    return Follower(
        db,
        ChainReader(client.w3, client.address, client.endpoint),
        client.events_decoder,
        start_block=start_block,
        confirmations=confirmations,
        batch_blocks=batch_blocks,
        content=content,
    )


def update(
    db: IndexDB,
    client: LedgerClient,
    *,
    confirmations: int = 0,
    start_block: int | None = None,
    progress: Progress | None = None,
) -> SyncResult:
    """Index what the chain holds beyond the checkpoint (refusing an index of another chain or ledger)."""
    return follower(db, client, confirmations=confirmations, start_block=start_block).sync(progress=progress)


def trustless(
    client: LedgerClient,
    *,
    confirmations: int = 0,
    start_block: int | None = None,
    progress: Progress | None = None,
) -> tuple[IndexDB, SyncResult]:
    """An in-memory index built from the chain's logs alone: the same queries then answer without trusting any
    stored index."""
    db = IndexDB.memory()
    result = update(db, client, confirmations=confirmations, start_block=start_block, progress=progress)
    return db, result

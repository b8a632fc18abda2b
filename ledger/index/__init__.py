"""The event index: the ledger's events in SQL (SQLite or PostgreSQL), and the questions auditors ask of them.

    schema.py       tables: checkpoint, blocks, events, insert-only projections (schema version 2: protocol v2)
    db.py           IndexDB (one SQLAlchemy URL), identity checks, rewinds; the index's errors
    projections.py  event -> rows (a reveal's score bytes decoded and bounded first)
    follower.py     Follower: reorg-safe, resumable, idempotent sync from eth_getLogs
    queries/        Queries, every read of the index: lineage, rounds, accounts, the member fold, metrics
    models.py       the dataclasses queries return
    service.py      open_index / update / trustless, from settings and a LedgerClient

docs/audit.md describes how it works and its trust model.
"""

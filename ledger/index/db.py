"""Opening the index database (one SQLAlchemy URL: SQLite or PostgreSQL), its identity and checkpoint, rewinds.

An index belongs to one chain id and one ledger address, recorded in its checkpoint row at creation; opening it
for another chain or ledger is refused (answers from it would be about another history).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from ledger.errors import ConfigError, MeshprovError, ServiceUnavailable
from ledger.index import schema


class LedgerIndexError(MeshprovError):
    """Root of the index's errors."""


class IndexUnavailable(LedgerIndexError, ServiceUnavailable):
    def __init__(self, url: str, reason: str) -> None:
        ServiceUnavailable.__init__(
            self,
            "index database",
            redact(url),
            reason,
            hint="check MESHPROV_INDEX_URL (SQLite file path, or a reachable PostgreSQL)",
        )


class InvalidIndexUrl(LedgerIndexError, ConfigError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(
            f"MESHPROV_INDEX_URL {redact(url)!r} is not a usable SQLAlchemy URL: {reason}",
            hint="use sqlite:///path/to/index.sqlite or postgresql+psycopg://user@host:5432/db",
        )


class IndexForAnotherLedger(LedgerIndexError, ConfigError):
    """The index was built from another chain or another ledger contract."""

    def __init__(self, url: str, have: tuple[int, str], want: tuple[int, str]) -> None:
        self.have = have
        self.want = want
        what = "chain id" if have[0] != want[0] else "ledger"
        super().__init__(
            f"the index at {redact(url)} was built for chain id {have[0]}, ledger {have[1]}; "
            f"the configured chain is chain id {want[0]}, ledger {want[1]} (different {what})",
            hint="point MESHPROV_INDEX_URL at another database, or delete this index and run "
            "`meshprov index follow --once` to rebuild it",
        )


class IndexSchemaTooNew(LedgerIndexError, ConfigError):
    def __init__(self, url: str, version: int) -> None:
        super().__init__(
            f"the index at {redact(url)} has schema version {version}; this meshprov reads {schema.SCHEMA_VERSION}",
            hint="upgrade meshprov, or rebuild the index with this version",
        )


class IndexSchemaTooOld(LedgerIndexError, ConfigError):
    def __init__(self, url: str, version: int) -> None:
        super().__init__(
            f"the index at {redact(url)} has schema version {version} (an older protocol's record); this "
            f"meshprov reads {schema.SCHEMA_VERSION}",
            hint="delete this index (or point MESHPROV_INDEX_URL at a new database) and run "
            "`meshprov index follow --once` to rebuild it",
        )


def redact(url: str) -> str:
    """The URL with any password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


@dataclass(frozen=True)
class Checkpoint:
    chain_id: int
    ledger: str
    start_block: int
    block_number: int
    block_hash: str
    updated_at: float
    schema_version: int = schema.SCHEMA_VERSION


class IndexDB:
    """A connection pool on the index database, its tables created on first use.

    ``schema`` (PostgreSQL) puts every table in that schema instead of the default one; tests use one per run.
    """

    def __init__(self, url: str, *, schema_name: str | None = None, create: bool = True) -> None:
        self.url = url
        self.schema_name = schema_name
        self.engine = _engine(url, schema_name)
        if create:
            self.create()

    @classmethod
    def memory(cls) -> IndexDB:
        """A throwaway in-memory SQLite index (``--trustless``)."""
        return cls("sqlite://")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def create(self) -> None:
        try:
            with self.engine.begin() as conn:
                if self.schema_name and self.dialect == "postgresql":
                    conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema_name}"'))
                schema.metadata.create_all(conn)
                # The upgrade from an older schema whose rows stay valid: create_all just added the new
                # (empty) tables, so saying so in the checkpoint is the whole migration.
                conn.execute(
                    update(schema.checkpoint)
                    .where(schema.checkpoint.c.schema_version.in_(sorted(schema.MIGRATES_FROM)))
                    .values(schema_version=schema.SCHEMA_VERSION)
                )
        except OperationalError as exc:
            raise IndexUnavailable(self.url, _short(exc)) from None

    def content(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of the content tables (specs and update metadata read from the store), sorted."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        with self.connect() as conn:
            for table in schema.CONTENT:
                out[table.name] = sorted((tuple(r) for r in conn.execute(select(table)).all()), key=repr)
        return out

    def drop(self) -> None:
        """Delete every table (and the PostgreSQL schema, if one was given)."""
        with self.engine.begin() as conn:
            schema.metadata.drop_all(conn)
            if self.schema_name and self.dialect == "postgresql":
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema_name}" CASCADE'))

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction; database failures become IndexUnavailable."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise IndexUnavailable(self.url, _short(exc)) from None

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except OperationalError as exc:
            raise IndexUnavailable(self.url, _short(exc)) from None

    # ─── identity and checkpoint ────────────────────────────────────────────────────────────────────────────
    def checkpoint(self, conn: Connection | None = None) -> Checkpoint | None:
        if conn is None:
            with self.connect() as own:
                return self.checkpoint(own)
        row = conn.execute(select(schema.checkpoint).where(schema.checkpoint.c.id == 1)).mappings().first()
        if row is None:
            return None
        return Checkpoint(
            chain_id=int(row["chain_id"]),
            ledger=str(row["ledger"]),
            start_block=int(row["start_block"]),
            block_number=int(row["block_number"]),
            block_hash=str(row["block_hash"]),
            updated_at=float(row["updated_at"]),
            schema_version=int(row["schema_version"]),
        )

    def check_identity(self, chain_id: int, ledger: str, conn: Connection | None = None) -> Checkpoint | None:
        """The checkpoint, after checking the index is for this chain and ledger (None: a new, empty index)."""
        cp = self.checkpoint(conn)
        if cp is None:
            return None
        if cp.schema_version > schema.SCHEMA_VERSION:
            raise IndexSchemaTooNew(self.url, cp.schema_version)
        if cp.schema_version < schema.SCHEMA_VERSION:
            raise IndexSchemaTooOld(self.url, cp.schema_version)
        if cp.chain_id != chain_id or cp.ledger.lower() != ledger.lower():
            raise IndexForAnotherLedger(self.url, (cp.chain_id, cp.ledger), (chain_id, ledger))
        return cp

    def initialise(
        self, conn: Connection, *, chain_id: int, ledger: str, start_block: int, block_hash: str
    ) -> Checkpoint:
        """Record the index's identity; it starts after ``start_block - 1`` (whose hash is ``block_hash``)."""
        cp = Checkpoint(chain_id, ledger, start_block, start_block - 1, block_hash, time.time())
        conn.execute(
            insert(schema.checkpoint).values(
                id=1,
                schema_version=schema.SCHEMA_VERSION,
                chain_id=chain_id,
                ledger=ledger,
                start_block=start_block,
                block_number=cp.block_number,
                block_hash=block_hash,
                updated_at=cp.updated_at,
            )
        )
        return cp

    def set_checkpoint(self, conn: Connection, block_number: int, block_hash: str) -> None:
        conn.execute(
            update(schema.checkpoint)
            .where(schema.checkpoint.c.id == 1)
            .values(block_number=block_number, block_hash=block_hash, updated_at=time.time())
        )

    def rewind(self, conn: Connection, block_number: int, block_hash: str) -> int:
        """Delete everything indexed above ``block_number`` and move the checkpoint there; returns rows deleted."""
        deleted = 0
        for table in (*schema.PROJECTIONS, schema.events):
            deleted += conn.execute(delete(table).where(table.c.block_number > block_number)).rowcount or 0
        conn.execute(delete(schema.blocks).where(schema.blocks.c.number > block_number))
        self.set_checkpoint(conn, block_number, block_hash)
        return deleted

    def stored_blocks(self, conn: Connection, below: int, limit: int) -> list[tuple[int, str]]:
        """Stored (number, hash) pairs at or below ``below``, newest first."""
        rows = conn.execute(
            select(schema.blocks.c.number, schema.blocks.c.hash)
            .where(schema.blocks.c.number <= below)
            .order_by(schema.blocks.c.number.desc())
            .limit(limit)
        ).all()
        return [(int(n), str(h)) for n, h in rows]

    def count(self, table_name: str) -> int:
        table = schema.metadata.tables[table_name]
        with self.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table but the checkpoint, without ids, sorted: for comparing two indexes."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        with self.connect() as conn:
            for table in schema.REWINDABLE:
                columns = [c for c in table.columns if c.name != "id"]
                rows = conn.execute(select(*columns)).all()
                out[table.name] = sorted((tuple(r) for r in rows), key=repr)
        return out


def _short(exc: SQLAlchemyError) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text_[0] if text_ else type(exc).__name__


def _engine(url: str, schema_name: str | None) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidIndexUrl(url, str(exc)) from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs["poolclass"] = StaticPool
            kwargs["connect_args"] = {"check_same_thread": False}
    elif parsed.get_backend_name() == "postgresql":
        # A host that drops packets must not hang a command for the OS's TCP timeout (minutes).
        kwargs["connect_args"] = {"connect_timeout": 10}
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise InvalidIndexUrl(url, str(exc)) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if schema_name:
        engine = engine.execution_options(schema_translate_map={None: schema_name})
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the dashboard read while the follower writes; NORMAL sync is safe with WAL (a crash loses at most
    # the last transactions, which the follower re-indexes from its checkpoint).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()

"""What the content store adds to the chain's record: a task's specification (recipe, hyperparameters) and each
update's metadata (the member's dataset commitment, framework versions).

The chain anchors only digests; these facts live in the files those digests name. Content is immutable, so a fact
read once is true for good: the index keeps them in tables keyed by digest (``task_specs``, ``update_meta``) that a
reorg never rewinds. :func:`enrich` fills them for every spec and submission the index has not read yet; content
the store does not hold is tried again on the next call.

Every read is bounded before parsing: a specification is read whole up to :data:`~ledger.recipe.MAX_SPEC_BYTES`; an
update only up to the end of its safetensors header (the metadata lives there, the tensors are not read), at most
:data:`MAX_HEADER_BYTES`. :func:`file_facts` streams a whole file once for its sha-256 and, on the way, its metadata.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select

from ledger.content import ContentError, ContentNotFound, digest_to_cid, open_stream, read_bytes
from ledger.index import schema
from ledger.recipe import MAX_SPEC_BYTES, LegacyTaskSpec, TaskSpecRejected, parse_task_spec
from ledger.updatefile.errors import MetadataRejected
from ledger.updatefile.metadata import METADATA_KEY, UpdateMeta, parse_metadata

if TYPE_CHECKING:
    from ledger.content import ContentStore
    from ledger.index.db import IndexDB

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024 * 1024
"""The update files' own header bound (ledger.updatefile.header's default)."""

SPEC_OK = "ok"
SPEC_LEGACY = "legacy"
SPEC_INVALID = "invalid"
META_OK = "ok"
META_INVALID = "invalid"
_READ = 1 << 20


@dataclass(frozen=True)
class SpecFacts:
    """What a task's specification says about how its models are made. ``status`` is ``ok`` (schema 2: recipe
    and hyperparameters), ``legacy`` (a specification from before recipes: it names no recipe) or ``invalid``
    (``problem`` says why)."""

    status: str
    recipe: dict[str, str] | None = None  # {"name", "version", "cid"}
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    dataset: str | None = None  # the task's own words on the data it expects
    problem: str | None = None


@dataclass(frozen=True)
class UpdateFacts:
    """What an update file's metadata says about the data and software that made it (``status`` ``ok`` or
    ``invalid``, then ``problem`` says why)."""

    status: str
    dataset: str | None = None  # the member's dataset commitment, "0x" + 64 hex
    frameworks: dict[str, str] | None = None
    problem: str | None = None
    privacy: dict[str, Any] | None = None  # the differential-privacy record (mechanism, σ, ε, δ, …), if any


def spec_facts(raw: bytes) -> SpecFacts:
    """Parse a specification's bytes (strictly, bounded) into :class:`SpecFacts`; never raises on bad bytes."""
    try:
        spec = parse_task_spec(raw)
    except LegacyTaskSpec:
        return SpecFacts(SPEC_LEGACY)
    except TaskSpecRejected as exc:
        return SpecFacts(SPEC_INVALID, problem=exc.problem)
    return SpecFacts(
        SPEC_OK,
        recipe=spec.recipe.to_dict(),
        hyperparameters=dict(spec.hyperparameters),
        seed=spec.seed,
        dataset=spec.dataset,
    )


def read_spec(store: ContentStore, spec_cid: str) -> SpecFacts:
    """The specification from the store. Raises :class:`ContentNotFound` when the store does not hold it; a
    file larger than any specification is ``invalid`` without being read further."""
    try:
        raw = read_bytes(store, spec_cid, max_bytes=MAX_SPEC_BYTES + 1)
    except ContentError as exc:
        if isinstance(exc, ContentNotFound):
            raise
        return SpecFacts(SPEC_INVALID, problem=str(exc))
    return spec_facts(raw)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def metadata_of_header(header: bytes) -> UpdateFacts:
    """The update metadata in a safetensors header's JSON (the bytes after the 8-byte length)."""
    try:
        data = json.loads(header.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return UpdateFacts(META_INVALID, problem=f"header is not JSON ({exc})")
    meta = data.get("__metadata__") if isinstance(data, dict) else None
    text = meta.get(METADATA_KEY) if isinstance(meta, dict) else None
    if not isinstance(text, str):
        return UpdateFacts(META_INVALID, problem=f"no `{METADATA_KEY}` metadata")
    try:
        parsed = parse_metadata(text, kind="update")
    except MetadataRejected as exc:
        return UpdateFacts(META_INVALID, problem=str(exc))
    assert isinstance(parsed, UpdateMeta)
    return UpdateFacts(
        META_OK,
        dataset=parsed.dataset,
        frameworks=dict(parsed.frameworks) if parsed.frameworks is not None else None,
        privacy=dict(parsed.privacy) if parsed.privacy is not None else None,
    )


class _HeaderScan:
    """Collects a safetensors header from a byte stream as it passes, reading nothing beyond it."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.length: int | None = None
        self.facts: UpdateFacts | None = None

    @property
    def wanted(self) -> int:
        return 8 if self.length is None else 8 + self.length

    def feed(self, chunk: bytes | memoryview) -> None:
        if self.facts is not None:
            return
        need = self.wanted - len(self.buffer)
        self.buffer += chunk[:need]
        if self.length is None and len(self.buffer) >= 8:
            self.length = int.from_bytes(self.buffer[:8], "little")
            if self.length > MAX_HEADER_BYTES:
                self.facts = UpdateFacts(
                    META_INVALID, problem=f"header of {self.length} bytes, limit {MAX_HEADER_BYTES}"
                )
                return
            self.feed(chunk[need:])
            return
        if self.length is not None and len(self.buffer) >= self.wanted:
            self.facts = metadata_of_header(bytes(self.buffer[8 : self.wanted]))
            self.buffer = bytearray()

    def finish(self) -> UpdateFacts:
        if self.facts is None:
            self.facts = UpdateFacts(META_INVALID, problem="the file ends inside its header")
        return self.facts


def read_update_facts(store: ContentStore, cid: str) -> UpdateFacts:
    """An update's metadata, reading only its header from the store (ContentNotFound when it is absent)."""
    scan = _HeaderScan()
    with open_stream(store, cid) as stream:
        while scan.facts is None:
            chunk = stream.read(scan.wanted - len(scan.buffer))
            if not chunk:
                break
            scan.feed(chunk)
    return scan.finish()


def file_facts(store: ContentStore, cid: str) -> tuple[str, int, UpdateFacts]:
    """(sha-256 hex, size, metadata facts) of a whole file, streamed from the store once."""
    digest = hashlib.sha256()
    scan = _HeaderScan()
    size = 0
    for chunk in store.get(cid):
        digest.update(chunk)
        scan.feed(chunk)
        size += len(chunk)
    return digest.hexdigest(), size, scan.finish()


# ─── the index's content tables ───────────────────────────────────────────────────────────────────────────────
@dataclass
class EnrichResult:
    specs: int = 0
    updates: int = 0
    missing: list[str] = field(default_factory=list)  # CIDs the store did not hold (tried again next time)

    def to_dict(self) -> dict[str, Any]:
        return {"specs": self.specs, "updates": self.updates, "missing": list(self.missing)}


def _unread(conn: Connection, digests: Iterable[str], table: Any) -> list[str]:
    """Those of ``digests`` with no row in ``table`` yet."""
    wanted = sorted({d.lower() for d in digests})
    have: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        have.update(conn.execute(select(table.c.digest).where(table.c.digest.in_(chunk))).scalars())
    return [d for d in wanted if d not in have]


def _never_read(conn: Connection, digest: Any, table: Any) -> list[str]:
    """Digests of ``digest``'s table with no row in the content ``table`` (one outer join, however big)."""
    stmt = (
        select(digest)
        .distinct()
        .select_from(digest.table.outerjoin(table, table.c.digest == digest))
        .where(table.c.digest.is_(None))
    )
    return sorted(str(d).lower() for d in conn.execute(stmt).scalars())


def enrich(
    db: IndexDB,
    store: ContentStore,
    *,
    on_missing: Callable[[str, str], None] | None = None,
    skip: Callable[[str], bool] | None = None,
) -> EnrichResult:
    """Read, from ``store``, every task specification and update the index names but has not read yet, and
    record their facts. A store failure other than "not found" propagates (the caller decides whether the
    audit may go on without these facts)."""
    result = EnrichResult()
    with db.connect() as conn:
        specs = _never_read(conn, schema.tasks.c.spec_digest, schema.task_specs)
        updates = _never_read(conn, schema.submissions.c.digest, schema.update_meta)
    if skip is not None:
        specs = [d for d in specs if not skip(d)]
        updates = [d for d in updates if not skip(d)]
    # A Kubo node asked for content it lacks searches the network until its timeout: ask it offline first.
    offline_first = getattr(store, "name", "") == "kubo"

    def absent(cid: str) -> bool:
        return offline_first and not store.has(cid)

    spec_rows = []
    for digest in specs:
        cid = digest_to_cid(digest)
        try:
            if absent(cid):
                raise ContentNotFound(cid, "kubo")
            facts = read_spec(store, cid)
        except ContentNotFound:
            result.missing.append(cid)
            if on_missing is not None:
                on_missing("specification", cid)
            continue
        spec_rows.append(spec_row(digest, facts))
    update_rows = []
    for digest in updates:
        cid = digest_to_cid(digest)
        try:
            if absent(cid):
                raise ContentNotFound(cid, "kubo")
            ufacts = read_update_facts(store, cid)
        except ContentNotFound:
            result.missing.append(cid)
            if on_missing is not None:
                on_missing("update", cid)
            continue
        update_rows.append(update_row(digest, ufacts))
    with db.begin() as conn:
        # Another process may have recorded some meanwhile: insert only what is still absent.
        absent_specs = set(_unread(conn, [r["digest"] for r in spec_rows], schema.task_specs))
        absent_updates = set(_unread(conn, [r["digest"] for r in update_rows], schema.update_meta))
        spec_rows = [r for r in spec_rows if r["digest"] in absent_specs]
        update_rows = [r for r in update_rows if r["digest"] in absent_updates]
        if spec_rows:
            conn.execute(insert(schema.task_specs), spec_rows)
        if update_rows:
            conn.execute(insert(schema.update_meta), update_rows)
    result.specs = len(spec_rows)
    result.updates = len(update_rows)
    return result


class ContentReader:
    """:func:`enrich` for a long-lived follower: content the store lacked is not asked for again before
    ``retry_after`` seconds (a Kubo node may search the network for it), and a store that fails is logged, not
    raised: the chain's record is indexed either way."""

    def __init__(self, store: ContentStore, *, retry_after: float = 60.0) -> None:
        self.store = store
        self.retry_after = retry_after
        self._missing: dict[str, float] = {}

    def _skip(self, digest: str) -> bool:
        since = self._missing.get(digest)
        return since is not None and time.monotonic() - since < self.retry_after

    def _note(self, _what: str, cid: str) -> None:
        from ledger.content import cid_to_digest

        self._missing["0x" + cid_to_digest(cid).hex()] = time.monotonic()

    def read(self, db: IndexDB) -> EnrichResult:
        from ledger.errors import MeshprovError

        try:
            return enrich(db, self.store, on_missing=self._note, skip=self._skip)
        except MeshprovError as exc:
            log.warning("content store: %s (recipes and dataset commitments not read this time)", exc.message)
            return EnrichResult()

    def close(self) -> None:
        self.store.close()


def spec_row(digest: str, facts: SpecFacts) -> dict[str, Any]:
    recipe = facts.recipe or {}
    return {
        "digest": digest.lower(),
        "status": facts.status,
        "recipe_name": recipe.get("name"),
        "recipe_version": recipe.get("version"),
        "recipe_cid": recipe.get("cid"),
        "hyperparameters": json.dumps(facts.hyperparameters, sort_keys=True),
        "seed": facts.seed,
        "dataset": facts.dataset,
        "problem": facts.problem,
    }


def update_row(digest: str, facts: UpdateFacts) -> dict[str, Any]:
    return {
        "digest": digest.lower(),
        "status": facts.status,
        "dataset": facts.dataset,
        "frameworks": json.dumps(facts.frameworks, sort_keys=True) if facts.frameworks is not None else None,
        "privacy": json.dumps(facts.privacy, sort_keys=True) if facts.privacy is not None else None,
        "problem": facts.problem,
    }


def spec_from_row(row: Any) -> SpecFacts:
    recipe = (
        {"name": row["recipe_name"], "version": row["recipe_version"], "cid": row["recipe_cid"]}
        if row["recipe_name"] is not None
        else None
    )
    return SpecFacts(
        str(row["status"]),
        recipe=recipe,
        hyperparameters=json.loads(row["hyperparameters"]),
        seed=None if row["seed"] is None else int(row["seed"]),
        dataset=row["dataset"],
        problem=row["problem"],
    )


def update_from_row(row: Any) -> UpdateFacts:
    return UpdateFacts(
        str(row["status"]),
        dataset=row["dataset"],
        frameworks=json.loads(row["frameworks"]) if row["frameworks"] is not None else None,
        problem=row["problem"],
        privacy=json.loads(row["privacy"]) if row["privacy"] is not None else None,
    )

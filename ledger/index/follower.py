"""The follower: reads the ledger's logs in bounded block ranges and writes them, with their projections, to the
index; reorg-safe, resumable from its checkpoint, idempotent.

One batch, in order:

1. reorg check: the chain's hash of the checkpoint block must equal the stored one; if not, walk back over the
   stored blocks to the newest one the chain still has (the common ancestor), delete every row above it, and
   continue from there;
2. read the end block's header, then ``eth_getLogs`` for [checkpoint + 1, end], then the headers of the blocks
   holding logs (one JSON-RPC batch); every log's block hash must equal its header's, the first block's parent
   must be the checkpoint block and the end header must not have changed, or the batch is dropped and the chain
   re-read (it reorganised under us);
3. one transaction: the blocks holding events, events not stored yet (unique on block hash and log index), their projection rows,
   and the new checkpoint (end block number and hash).

Only blocks at least ``confirmations`` deep are read, so on a chain with finality the index never rewinds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, tuple_

from ledger.chain.events import EventDecoder, LedgerEvent, iter_log_ranges
from ledger.errors import ServiceUnavailable
from ledger.index import schema
from ledger.index.content import ContentReader
from ledger.index.db import Checkpoint, IndexDB
from ledger.index.projections import event_row, projection_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Header:
    number: int
    hash: str
    parent_hash: str
    timestamp: int


class ChainReorganised(Exception):
    """The chain changed while a batch was read; the follower re-reads (never escapes :meth:`Follower.sync`)."""


class ChainReader:
    """The few JSON-RPC calls the follower makes, on raw JSON (no web3.py formatting), turning a node that does
    not answer into ServiceUnavailable."""

    def __init__(self, w3: Any, address: str, endpoint: str = "") -> None:
        self.w3 = w3
        self.address = address
        self.endpoint = endpoint or str(getattr(w3.provider, "endpoint_uri", "") or "the chain")

    def _unavailable(self, exc: BaseException) -> ServiceUnavailable:
        return ServiceUnavailable(
            "chain RPC",
            self.endpoint,
            str(exc) or type(exc).__name__,
            hint="start it (`meshprov dev up`) or point MESHPROV_CHAIN_RPC_URL at a running node",
        )

    def _request(self, method: str, params: list[Any]) -> Any:
        try:
            reply = self.w3.provider.make_request(method, params)
        except OSError as exc:
            raise self._unavailable(exc) from None
        if "error" in reply:
            raise ServiceUnavailable("chain RPC", self.endpoint, f"{method} failed: {reply['error']}")
        return reply["result"]

    def chain_id(self) -> int:
        return int(self._request("eth_chainId", []), 16)

    def block_number(self) -> int:
        return int(self._request("eth_blockNumber", []), 16)

    def header(self, number: int) -> Header:
        block = self._request("eth_getBlockByNumber", [hex(number), False])
        if block is None:
            raise ChainReorganised(f"block {number} is gone")
        return _header(block)

    def headers(self, numbers: Iterable[int]) -> dict[int, Header]:
        """Headers of the given blocks (ChainReorganised if one no longer exists)."""
        found = self.maybe_headers(numbers)
        missing = [n for n, h in found.items() if h is None]
        if missing:
            raise ChainReorganised(f"block {missing[0]} is gone")
        return {n: h for n, h in found.items() if h is not None}

    def maybe_headers(self, numbers: Iterable[int]) -> dict[int, Header | None]:
        """Headers of the given blocks, None for blocks beyond the chain's head (one JSON-RPC batch per 200)."""
        wanted = sorted(set(numbers))
        out: dict[int, Header | None] = {}
        for start in range(0, len(wanted), 200):
            chunk = wanted[start : start + 200]
            requests = [("eth_getBlockByNumber", [hex(n), False]) for n in chunk]
            try:
                replies = self.w3.provider.make_batch_request(requests)
            except OSError as exc:
                raise self._unavailable(exc) from None
            except (AttributeError, NotImplementedError):  # a provider without batches: one by one
                for n in chunk:
                    block = self._request("eth_getBlockByNumber", [hex(n), False])
                    out[n] = _header(block) if block is not None else None
                continue
            if not isinstance(replies, list):
                raise ServiceUnavailable("chain RPC", self.endpoint, f"batch request failed: {replies}")
            for n, reply in zip(chunk, replies, strict=True):
                if "error" in reply:
                    raise ServiceUnavailable(
                        "chain RPC", self.endpoint, f"eth_getBlockByNumber failed: {reply['error']}"
                    )
                block = reply.get("result")
                out[n] = _header(block) if block is not None else None
        return out

    def logs(self, from_block: int, to_block: int, max_range: int) -> list[dict[str, Any]]:
        try:
            return [
                entry
                for _, _, entries in iter_log_ranges(
                    self.w3, self.address, from_block, to_block, max_range=max_range
                )
                for entry in entries
            ]
        except OSError as exc:
            raise self._unavailable(exc) from None


def _header(block: Mapping[str, Any]) -> Header:
    return Header(
        number=int(block["number"], 16),
        hash=str(block["hash"]).lower(),
        parent_hash=str(block["parentHash"]).lower(),
        timestamp=int(block["timestamp"], 16),
    )


@dataclass
class SyncResult:
    """What one :meth:`Follower.sync` did."""

    from_block: int
    to_block: int
    head: int
    events: int = 0
    batches: int = 0
    reorgs: int = 0
    rewound_rows: int = 0
    seconds: float = 0.0
    content_read: int = 0  # specs and updates read from the content store (schema v3's content tables)

    @property
    def behind(self) -> int:
        return max(0, self.head - self.to_block)


Progress = Callable[[int, int, int], None]  # (indexed up to block, target block, events so far)


class Follower:
    """Indexes one ledger's events from one chain into one IndexDB."""

    def __init__(
        self,
        db: IndexDB,
        reader: ChainReader,
        decoder: EventDecoder,
        *,
        start_block: int = 0,
        confirmations: int = 0,
        batch_blocks: int = 2000,
        max_reorg_retries: int = 5,
        content: ContentReader | None = None,
    ) -> None:
        self.db = db
        self.content = content
        self.reader = reader
        self.decoder = decoder
        self.start_block = max(0, start_block)
        self.confirmations = confirmations
        self.batch_blocks = batch_blocks
        self.max_reorg_retries = max_reorg_retries
        self._chain_id: int | None = None

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self.reader.chain_id()
        return self._chain_id

    def open(self) -> Checkpoint:
        """The checkpoint, creating the index's identity on first use; refuses an index of another ledger."""
        with self.db.begin() as conn:
            cp = self.db.check_identity(self.chain_id, self.reader.address, conn)
            if cp is not None:
                return cp
            before = self.start_block - 1
            block_hash = self.reader.header(before).hash if before >= 0 else "0x" + "00" * 32
            return self.db.initialise(
                conn,
                chain_id=self.chain_id,
                ledger=self.reader.address,
                start_block=self.start_block,
                block_hash=block_hash,
            )

    def target(self) -> tuple[int, int]:
        """(head, last block deep enough to index)."""
        head = self.reader.block_number()
        return head, head - self.confirmations

    def sync(self, *, to_block: int | None = None, progress: Progress | None = None) -> SyncResult:
        """Index every confirmed block not indexed yet (up to ``to_block`` if given)."""
        started = time.perf_counter()
        cp = self.open()
        result = SyncResult(from_block=cp.block_number + 1, to_block=cp.block_number, head=cp.block_number)
        retries = 0
        while True:
            try:
                result.head, target = self.target()
                if to_block is not None:
                    target = min(target, to_block)
                cp = self._check_reorg(cp, result)
                while cp.block_number < target:
                    end = min(target, cp.block_number + self.batch_blocks)
                    cp = self._batch(cp, end, result)
                    result.batches += 1
                    if progress is not None:
                        progress(cp.block_number, target, result.events)
                break
            except ChainReorganised as exc:
                retries += 1
                log.info("the chain reorganised while indexing (%s); re-reading", exc)
                if retries > self.max_reorg_retries:
                    raise ServiceUnavailable(
                        "chain RPC",
                        self.reader.endpoint,
                        f"the chain kept reorganising ({retries} times in one sync)",
                        hint="raise MESHPROV_CONFIRMATIONS so only settled blocks are indexed",
                    ) from None
                cp = self.db.checkpoint() or cp
        result.to_block = cp.block_number
        if self.content is not None:
            done = self.content.read(self.db)
            result.content_read = done.specs + done.updates
        result.seconds = time.perf_counter() - started
        return result

    def follow(
        self,
        *,
        poll: float = 2.0,
        stop: Callable[[], bool] = lambda: False,
        on_sync: Callable[[SyncResult], None] | None = None,
    ) -> None:
        """Sync, sleep ``poll`` seconds, repeat until ``stop()``."""
        while not stop():
            result = self.sync()
            if on_sync is not None:
                on_sync(result)
            deadline = time.monotonic() + poll
            while time.monotonic() < deadline and not stop():
                time.sleep(min(0.2, poll))

    # ─── reorgs ─────────────────────────────────────────────────────────────────────────────────────────────
    def _check_reorg(self, cp: Checkpoint, result: SyncResult) -> Checkpoint:
        if cp.block_number < 0:
            return cp
        current = self.reader.maybe_headers([cp.block_number])[cp.block_number]
        if current is not None and current.hash == cp.block_hash:
            return cp
        ancestor, ancestor_hash = self._common_ancestor(cp)
        log.warning(
            "chain reorganisation: block %d changed; rewinding the index to block %d",
            cp.block_number,
            ancestor,
        )
        with self.db.begin() as conn:
            result.rewound_rows += self.db.rewind(conn, ancestor, ancestor_hash)
            new = self.db.checkpoint(conn)
        result.reorgs += 1
        assert new is not None
        return new

    def _common_ancestor(self, cp: Checkpoint) -> tuple[int, str]:
        """The newest stored block the chain still has (else the block before the start)."""
        below = cp.block_number
        while True:
            with self.db.connect() as conn:
                stored = self.db.stored_blocks(conn, below, 64)
            if not stored:
                break
            chain = self.reader.maybe_headers(n for n, _ in stored)
            for number, block_hash in stored:
                header = chain[number]
                if header is not None and header.hash == block_hash:
                    return number, block_hash
            below = stored[-1][0] - 1
        before = self.start_block - 1
        return before, (self.reader.header(before).hash if before >= 0 else "0x" + "00" * 32)

    # ─── one batch ──────────────────────────────────────────────────────────────────────────────────────────
    def _batch(self, cp: Checkpoint, end: int, result: SyncResult) -> Checkpoint:
        first = cp.block_number + 1
        end_header = self.reader.header(end)
        raw = self.reader.logs(first, end, self.batch_blocks)
        events = self.decoder.decode_all(raw)
        numbers = {e.block_number for e in events} | {first, end}
        headers = self.reader.headers(numbers)
        if headers[end].hash != end_header.hash:
            raise ChainReorganised(f"block {end} changed during the batch")
        if cp.block_number >= 0 and headers[first].parent_hash != cp.block_hash:
            raise ChainReorganised(f"block {first} does not follow the checkpoint block {cp.block_number}")
        for e in events:
            if headers[e.block_number].hash != e.block_hash:
                raise ChainReorganised(f"a log of block {e.block_number} is from another fork")
        with self.db.begin() as conn:
            current = self.db.checkpoint(conn)
            if (
                current is None
                or current.block_number != cp.block_number
                or current.block_hash != cp.block_hash
            ):
                # Another follower moved the checkpoint: start over from the stored state.
                raise ChainReorganised("the checkpoint moved under this follower")
            holding = sorted({e.block_number for e in events})
            result.events += write_events(conn, events, [headers[n] for n in holding])
            self.db.set_checkpoint(conn, end, end_header.hash)
        return Checkpoint(cp.chain_id, cp.ledger, cp.start_block, end, end_header.hash, time.time())


def write_events(conn: Connection, events: Sequence[LedgerEvent], headers: Sequence[Header]) -> int:
    """Insert blocks, the events not stored yet and their projections; returns the number of new events."""
    if headers:
        numbers = [h.number for h in headers]
        have = set(
            conn.execute(select(schema.blocks.c.number).where(schema.blocks.c.number.in_(numbers))).scalars()
        )
        fresh_blocks = [
            {"number": h.number, "hash": h.hash, "parent_hash": h.parent_hash, "timestamp": h.timestamp}
            for h in headers
            if h.number not in have
        ]
        if fresh_blocks:
            conn.execute(insert(schema.blocks), fresh_blocks)
    if not events:
        return 0
    keys = [(e.block_hash, e.log_index) for e in events]
    stored: set[tuple[str, int]] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        stored.update(
            (str(h), int(i))
            for h, i in conn.execute(
                select(schema.events.c.block_hash, schema.events.c.log_index).where(
                    tuple_(schema.events.c.block_hash, schema.events.c.log_index).in_(chunk)
                )
            )
        )
    new = [e for e in events if e.key not in stored]
    if not new:
        return 0
    conn.execute(insert(schema.events), [event_row(e) for e in new])
    by_table: dict[str, list[dict[str, Any]]] = {}
    for e in new:
        for table, row in projection_rows(e):
            by_table.setdefault(table.name, []).append(row)
    for name, rows in by_table.items():
        conn.execute(insert(schema.metadata.tables[name]), rows)
    return len(new)

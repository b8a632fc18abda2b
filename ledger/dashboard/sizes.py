"""Sizes of update files, which the index does not hold (the chain records a digest, not a length).

The content store knows them: ``stat`` reads only the root block of a file's DAG (its UnixFS ``filesize``). Content
is immutable, so a size found is kept for good; "not in the store" is remembered for a minute (the file may
arrive later) and a store failure is not remembered at all. No store configured: every size is unknown.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ledger.content import ContentStore

log = logging.getLogger(__name__)

MISSING_TTL_S = 60.0


class SizeLookup:
    def __init__(self, store: ContentStore | None, *, budget_s: float = 2.0) -> None:
        self.store = store
        self.budget_s = budget_s
        self._known: dict[str, int] = {}
        self._missing: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.store is not None

    def size(self, cid: str) -> int | None:
        if self.store is None:
            return None
        with self._lock:
            if cid in self._known:
                return self._known[cid]
            if self._missing.get(cid, 0.0) > time.monotonic():
                return None
        from ledger.content import ContentNotFound

        try:
            size = self.store.stat(cid).size
        except ContentNotFound:
            with self._lock:
                self._missing[cid] = time.monotonic() + MISSING_TTL_S
            return None
        except Exception as exc:  # a store that is down must not break a page: the size is just unknown
            log.debug("content store stat %s failed: %s", cid, exc)
            return None
        with self._lock:
            self._known[cid] = size
        return size

    def sizes(self, cids: list[str]) -> dict[str, int | None]:
        """Sizes of several files, giving up (unknown) on the rest once ``budget_s`` is spent."""
        deadline = time.monotonic() + self.budget_s
        out: dict[str, int | None] = {}
        for cid in cids:
            with self._lock:
                cached = self._known.get(cid)
            if cached is not None or time.monotonic() < deadline:
                out[cid] = cached if cached is not None else self.size(cid)
            else:
                out[cid] = None
        return out

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

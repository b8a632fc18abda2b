"""Answers memoized per version of the index's data.

The index is insert-only and the follower commits a batch's rows together with the blocks that hold them, and a
rewind deletes rows and blocks together, so the newest stored block (number and hash) changes whenever any
answer can: it is an exact cache key, not a time-to-live. A checkpoint that moves over empty blocks leaves it
alone, so answers stay cached while the chain produces blocks without ledger events.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

Version = tuple[int, str] | None


class VersionedMemo:
    """A small LRU of answers keyed by (data version, question); one computation per key at a time."""

    def __init__(self, size: int = 128) -> None:
        self.size = size
        self._data: OrderedDict[tuple[Version, Hashable], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[tuple[Version, Hashable], threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def get(self, version: Version, key: Hashable, compute: Callable[[], T]) -> T:
        full = (version, key)
        with self._lock:
            if full in self._data:
                self._data.move_to_end(full)
                self.hits += 1
                return self._data[full]  # type: ignore[no-any-return]
            gate = self._computing.setdefault(full, threading.Lock())
        with gate:
            with self._lock:
                if full in self._data:
                    self.hits += 1
                    return self._data[full]  # type: ignore[no-any-return]
                self.misses += 1
            try:
                value = compute()
                with self._lock:
                    self._data[full] = value
                    while len(self._data) > self.size:
                        self._data.popitem(last=False)
            finally:
                with self._lock:
                    self._computing.pop(full, None)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

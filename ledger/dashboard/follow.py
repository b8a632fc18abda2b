"""Keeping the index current while the dashboard serves: a daemon thread that syncs the index from the chain
every ``poll`` seconds (the index's own reorg-safe follower; the dashboard still only reads the chain).

Failures (chain down, a reorg storm) are logged and retried on the next poll; ``state`` says what happened last
and ``/healthz`` shows it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ledger.errors import MeshprovError

if TYPE_CHECKING:
    from ledger.index.follower import Follower

log = logging.getLogger(__name__)


class BackgroundFollower:
    def __init__(self, make_follower: Callable[[], Follower], *, poll: float = 2.0) -> None:
        self.make_follower = make_follower
        self.poll = poll
        self.state = "starting"
        self.head: int | None = None
        self.syncs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="meshprov-dashboard-follower", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        follower: Follower | None = None
        while not self._stop.is_set():
            try:
                if follower is None:
                    follower = self.make_follower()
                result = follower.sync()
                self.head = result.head
                self.syncs += 1
                self.state = f"ok: indexed up to block {result.to_block} (head {result.head}) at {time.strftime('%H:%M:%S')}"
                if result.events or result.reorgs:
                    log.info(
                        "index: %d new events, %d reorgs, up to block %d",
                        result.events,
                        result.reorgs,
                        result.to_block,
                    )
            except MeshprovError as exc:
                self.state = f"error: {exc.message}"
                log.warning("index follower: %s", exc.message)
                follower = None  # reconnect on the next poll
            except Exception as exc:  # the thread must outlive any one failure; it is reported, not hidden
                self.state = f"error: {type(exc).__name__}: {exc}"
                log.exception("index follower failed")
                follower = None
            self._stop.wait(self.poll)

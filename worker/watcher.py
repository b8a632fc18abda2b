"""The watcher: reads the chain and (re-)enqueues whatever the chain says is still to do.

Celery's delivery is the transport, not the record. Every poll, for each watched task's live round:

* submissions closed, votes open (phase Voting): for every validator on chain whose ballot misses an update,
  ``verify_round(task, round)`` on that validator's queue (``validator.<address>``);
* finalizable and not finalized: ``aggregate_round(task, round)`` on ``aggregator``.

Each job is enqueued at most once per ``job_ttl_s`` (a Redis key with that TTL), so a job lost with a Redis restart
(key and message gone together), or held by a worker that died (the key expires), is enqueued again, while a job
that is merely queued or running is not duplicated on every poll. A duplicate that does slip through is harmless:
every task checks the chain first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.chain.types import Phase
from worker.state import job_key
from worker.tasks import AGGREGATE, AGGREGATOR_QUEUE, VERIFY, validator_queue

if TYPE_CHECKING:
    from celery import Celery

    from worker.chain import WorkerChain
    from worker.config import WorkerConfig
    from worker.state import WorkerState

log = logging.getLogger(__name__)


@dataclass
class Watcher:
    chain: WorkerChain
    app: Celery
    state: WorkerState
    config: WorkerConfig
    task_ids: Sequence[int]
    stop: threading.Event = field(default_factory=threading.Event)
    polls: int = 0

    def poll_once(self) -> list[dict[str, Any]]:
        """One look at the chain; returns the jobs enqueued."""
        enqueued: list[dict[str, Any]] = []
        for task_id in self.task_ids:
            round_ = self.chain.task(task_id).current_round
            view = self.chain.round_view(task_id, round_)
            if view.phase is Phase.VOTING and view.submission_count:
                for validator in self.chain.validators():
                    ballot = self.chain.ballot(task_id, round_, validator)
                    if view.all_indexes & ~ballot.indexes:
                        queue = validator_queue(validator)
                        self._enqueue(
                            enqueued,
                            VERIFY,
                            queue,
                            kind="verify",
                            who=validator,
                            task_id=task_id,
                            round_=round_,
                        )
            if view.finalizable and view.phase in (Phase.VOTING, Phase.CLOSED):
                self._enqueue(
                    enqueued,
                    AGGREGATE,
                    AGGREGATOR_QUEUE,
                    kind="aggregate",
                    who="-",
                    task_id=task_id,
                    round_=round_,
                )
        self.polls += 1
        return enqueued

    def _enqueue(
        self,
        out: list[dict[str, Any]],
        name: str,
        queue: str,
        *,
        kind: str,
        who: str,
        task_id: int,
        round_: int,
    ) -> None:
        key = job_key(kind, who, task_id, round_)
        if not self.state.claim_job(key, self.config.job_ttl_s):
            return
        try:
            self.app.send_task(name, args=[task_id, round_], queue=queue)
        except BaseException:
            self.state.release_job(key)  # not sent: let the next poll try again
            raise
        log.info("enqueued %s(%d, %d) on %s", name, task_id, round_, queue)
        self.state.incr(f"jobs_enqueued_{kind}_total")
        out.append({"job": name, "queue": queue, "task": task_id, "round": round_})

    def run(self) -> None:
        """Poll until :attr:`stop` is set. Failures of the chain or Redis are logged and polled through."""
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.poll_once()
                self._beat(ok=True)
            except Exception as exc:
                log.warning("watcher poll failed (will poll again): %s: %s", type(exc).__name__, exc)
                self._beat(ok=False, error=f"{type(exc).__name__}: {exc}")
            self.stop.wait(max(0.0, self.config.poll_interval_s - (time.monotonic() - started)))

    def _beat(self, *, ok: bool, error: str | None = None) -> None:
        try:
            ttl = max(3, int(3 * max(self.config.poll_interval_s, self.config.heartbeat_s)))
            self.state.heartbeat(ttl, "watcher", ok=ok, error=error, polls=self.polls)
        except Exception as exc:
            log.debug("watcher heartbeat failed: %s", exc)

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="meshprov-watcher", daemon=True)
        thread.start()
        return thread

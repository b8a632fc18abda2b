"""The watcher: reads the chain and (re-)enqueues whatever the chain says is still to do.

Celery's delivery is the transport, not the record. Every poll, for each watched task's live round:

* submissions closed (phase Commit): for every member of the round's validator set that has not committed,
  ``verify_round(task, round)`` on that validator's queue (``validator.<address>``), to score and commit;
* phase Reveal: for every member that committed and has not revealed, ``verify_round`` again, to reveal;
* finalizable and not finalized: ``aggregate_round(task, round)`` on ``aggregator``;
* with ``carry_over`` (a watcher with a key: anyone's fallback), past the round's grace and still not finalized:
  ``finalizeCarryOver`` itself, so a round whose aggregator is down still ends (docs/protocol.md R6).

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
    carry_over: bool = False
    """Carry a round over once its grace is over (needs a signing key on :attr:`chain`)."""

    def poll_once(self) -> list[dict[str, Any]]:
        """One look at the chain; returns the jobs enqueued."""
        enqueued: list[dict[str, Any]] = []
        for task_id in self.task_ids:
            round_ = self.chain.task(task_id).current_round
            view = self.chain.round_view(task_id, round_)
            if view.phase in (Phase.COMMIT, Phase.REVEAL) and view.submission_count:
                self._score_jobs(enqueued, task_id, round_, view.phase)
            if view.finalizable and view.phase in (Phase.REVEAL, Phase.CLOSED):
                self._enqueue(
                    enqueued,
                    AGGREGATE,
                    AGGREGATOR_QUEUE,
                    kind="aggregate",
                    who="-",
                    task_id=task_id,
                    round_=round_,
                )
            if self.carry_over and view.phase in (Phase.REVEAL, Phase.CLOSED):
                done = self._carry_over(task_id, round_, view.grace_end)
                if done is not None:
                    enqueued.append(done)
        self.polls += 1
        return enqueued

    def _score_jobs(self, out: list[dict[str, Any]], task_id: int, round_: int, phase: Phase) -> None:
        """A commit job for each set member that has not committed; a reveal job for each that has and has not
        revealed (distinct job keys: a commit enqueued moments before the phase changed must not hold off the
        reveal for a whole job TTL)."""
        vset = self.chain.validator_set(task_id, round_)
        for validator in vset.members:
            if phase is Phase.COMMIT and not vset.has_committed(validator):
                kind = "commit"
            elif phase is Phase.REVEAL and vset.has_committed(validator) and not vset.has_revealed(validator):
                kind = "reveal"
            else:
                continue
            self._enqueue(
                out,
                VERIFY,
                validator_queue(validator),
                kind=kind,
                who=validator,
                task_id=task_id,
                round_=round_,
            )

    def _carry_over(self, task_id: int, round_: int, grace_end: int) -> dict[str, Any] | None:
        from ledger.chain.errors import GraceNotOver, RoundNotLive, WrongRound

        if self.chain.clock().ledger_now < grace_end:
            return None
        try:
            tx = self.chain.finalize_carry_over(task_id, round_).tx_hash
        except (GraceNotOver, WrongRound, RoundNotLive) as exc:
            log.info("carry-over of round %d not done: %s", round_, type(exc).__name__)
            return None
        log.warning(
            "round %d of task %d carried over: the aggregator did not finalize within the grace",
            round_,
            task_id,
        )
        self.state.incr("rounds_carried_over_total")
        return {"job": "finalizeCarryOver", "queue": "-", "task": task_id, "round": round_, "tx": tx}

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

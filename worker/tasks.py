"""The Celery tasks: thin shells that validate the message, then call :mod:`worker.verify` / :mod:`worker.aggregate`.

    meshprov.verify_round(task_id, round)      queue validator.<address>   one validator's scores of a round (commit, reveal)
    meshprov.aggregate_round(task_id, round)   queue aggregator            the round's aggregate and finalize

Retry policy: a :class:`~worker.errors.TransientFault` (store, chain RPC, transaction timeout, the chain not
ready yet) or a soft time limit is retried with exponential backoff and full jitter, at most ``max_retries``
times; every retry and the final give-up are recorded as the worker's fault state (``meshprov worker status``).
Anything else — a deterministic reject is not an exception at all, it is a score — is not retried. A job given up
is not lost: the watcher re-enqueues it after its TTL while the chain says it is still to do.

Broker messages are untrusted: arguments are checked (types, ranges) before anything else, and a bad message is
dropped with :class:`~worker.errors.InvalidJob`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from worker import runtime
from worker.errors import InvalidJob, TransientFault

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

VERIFY = "meshprov.verify_round"
AGGREGATE = "meshprov.aggregate_round"
AGGREGATOR_QUEUE = "aggregator"
_FAULT_KINDS = ("store", "chain", "not-ready", "timeout", "job")


def validator_queue(address: str) -> str:
    return f"validator.{address.lower()}"


def validate_job(task_id: object, round_: object) -> tuple[int, int]:
    """The (task, round) of a message, or InvalidJob: positive integers in the contract's ranges."""
    if not isinstance(task_id, int) or isinstance(task_id, bool) or not 1 <= task_id < 2**256:
        raise InvalidJob("task_id", task_id, "an integer in 1..2**256-1")
    if not isinstance(round_, int) or isinstance(round_, bool) or not 1 <= round_ < 2**32:
        raise InvalidJob("round", round_, "an integer in 1..2**32-1")
    return task_id, round_


def _record(kind: str, detail: str, **fields: Any) -> None:
    try:
        runtime.current().state().record_fault(kind, detail, **fields)
    except Exception as exc:  # Redis down too: the log is all we have
        log.warning("could not record fault %s (%s): %s", kind, detail, exc)


def _fault_kind(exc: BaseException) -> str:
    if isinstance(exc, TransientFault):
        return exc.kind
    if type(exc).__name__ in ("SoftTimeLimitExceeded", "TimeLimitExceeded"):
        return "timeout"
    return "job"


def register(app: Celery) -> None:
    """Define the tasks on ``app`` with the retry policy of the configured runtime."""
    from billiard.exceptions import SoftTimeLimitExceeded
    from celery import Task

    rt = runtime.current()
    cfg = rt.config

    class MeshprovTask(Task[Any, Any]):
        """Records faults on retry and on failure; clears them when a job of this worker succeeds."""

        def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
            attempt = int(self.request.retries) + 1
            log.warning("%s%s: attempt %d failed, retrying: %s", self.name, tuple(args), attempt, exc)
            _record(
                _fault_kind(exc), str(exc), job=self.name, args=list(args), attempt=attempt, gave_up=False
            )

        def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
            if isinstance(exc, InvalidJob):
                log.error("dropped an invalid message for %s: %s", self.name, exc)
                return
            log.error("%s%s failed: %s", self.name, tuple(args), exc)
            _record(
                _fault_kind(exc),
                str(exc),
                job=self.name,
                args=list(args),
                attempt=int(self.request.retries) + 1,
                gave_up=True,
            )

        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            try:
                state = runtime.current().state()
                for kind in _FAULT_KINDS:
                    state.clear_fault(kind)
            except Exception as exc:
                log.warning("could not clear the fault state: %s", exc)

    options: dict[str, Any] = {
        "bind": True,
        "base": MeshprovTask,
        "autoretry_for": (TransientFault, SoftTimeLimitExceeded),
        "dont_autoretry_for": (InvalidJob,),
        "retry_backoff": cfg.retry_backoff_s,
        "retry_backoff_max": cfg.retry_backoff_max_s,
        "retry_jitter": True,
        "max_retries": cfg.max_retries,
        "acks_late": True,
        "reject_on_worker_lost": True,
        "soft_time_limit": cfg.soft_time_limit_s,
        "time_limit": cfg.time_limit_s,
    }

    @app.task(name=VERIFY, **options)
    def verify_round(self: Task[Any, Any], task_id: object, round_: object) -> dict[str, Any]:
        t, r = validate_job(task_id, round_)
        rt = runtime.current()
        if rt.role != "validator":
            raise InvalidJob("queue", rt.role, "a validator worker (this message reached another role)")
        from worker.verify import verify_round as run

        result = run(rt, t, r)
        log.info("verify %d/%d: %s", t, r, result["status"])
        return result

    @app.task(name=AGGREGATE, **options)
    def aggregate_round(self: Task[Any, Any], task_id: object, round_: object) -> dict[str, Any]:
        t, r = validate_job(task_id, round_)
        rt = runtime.current()
        if rt.role != "aggregator":
            raise InvalidJob("queue", rt.role, "an aggregator worker (this message reached another role)")
        from worker.aggregate import aggregate_round as run

        result = run(rt, t, r)
        log.info("aggregate %d/%d: %s", t, r, result["status"])
        return result

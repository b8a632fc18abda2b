"""What workers share in Redis besides the Celery queues: job claims, round locks, faults, health, metrics.

Keys (all under ``meshprov:``)::

    job:<kind>:<who>:<task>:<round>   the watcher enqueued this job; expires after the job TTL (dedupe)
    lock:<kind>:<who>:<task>:<round>  one worker at a time on a round (a lease, renewed while it progresses)
    fault:<worker>:<kind>             JSON: a transient fault (store, chain) the worker is retrying or gave up on
    health:<worker>:<component>:<pid> JSON heartbeat of a running worker or watcher; expires when it stops beating
    progress:<kind>:<task>:<round>:<worker>  JSON: the stage a verification or aggregation has reached
    metrics                           hash of counters (commits, reveals, rejects by reason, finalizations, faults)

None of this is a source of truth (the chain is): losing all of it (a Redis restart without its append-only file)
costs at most one job TTL of delay, never a commit, a reveal or a finalization. ``<worker>`` is ``<role>:<address>``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.lock import Lock

log = logging.getLogger(__name__)

PREFIX = "meshprov:"
FAULT_TTL_S = 7 * 24 * 3600
PROGRESS_TTL_S = 24 * 3600


def worker_id(role: str, address: str) -> str:
    return f"{role}:{address.lower()}"


def job_key(kind: str, who: str, task_id: int, round_: int) -> str:
    return f"{PREFIX}job:{kind}:{who.lower()}:{task_id}:{round_}"


class WorkerState:
    """Shared worker state in one Redis database (see the module docstring for the keys)."""

    def __init__(self, client: redis.Redis[bytes], worker: str | None = None) -> None:
        self.redis = client
        self.worker = worker

    @classmethod
    def from_url(cls, url: str, worker: str | None = None) -> WorkerState:
        client = redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
        )
        return cls(client, worker)

    # --- job claims (watcher dedupe) --------------------------------------------------------------------
    def claim_job(self, key: str, ttl_s: int) -> bool:
        """True when nobody enqueued this job within the TTL (and now we have)."""
        return bool(self.redis.set(key, self._stamp(), nx=True, ex=ttl_s))

    def release_job(self, key: str) -> None:
        self.redis.delete(key)

    # --- round locks ------------------------------------------------------------------------------------
    @contextmanager
    def round_lock(
        self, kind: str, who: str, task_id: int, round_: int, lease_s: int
    ) -> Iterator[Lock | None]:
        """Yield the held lock, or None when another worker holds it. Released on exit (if still ours)."""
        lock = self.redis.lock(
            f"{PREFIX}lock:{kind}:{who.lower()}:{task_id}:{round_}", timeout=lease_s, blocking=False
        )
        if not lock.acquire(blocking=False):
            yield None
            return
        try:
            yield lock
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                pass  # the lease ran out and someone else may hold it now: theirs to release
            except redis.exceptions.ConnectionError:
                pass  # Redis went away: the lease expires on its own

    # --- faults -----------------------------------------------------------------------------------------
    def record_fault(self, kind: str, detail: str, **fields: Any) -> None:
        key = f"{PREFIX}fault:{self.worker}:{kind}"
        previous = self._json(key) or {}
        record = {
            "worker": self.worker,
            "kind": kind,
            "detail": detail[:500],
            "since": previous.get("since", time.time()),
            "updated": time.time(),
            "count": int(previous.get("count", 0)) + 1,
            **fields,
        }
        pipe = self.redis.pipeline()
        pipe.set(key, json.dumps(record, sort_keys=True), ex=FAULT_TTL_S)
        pipe.hincrby(f"{PREFIX}metrics", f"faults_{kind}_total", 1)
        pipe.execute()

    def clear_fault(self, kind: str) -> bool:
        return bool(self.redis.delete(f"{PREFIX}fault:{self.worker}:{kind}"))

    def faults(self) -> list[dict[str, Any]]:
        return self._scan_json(f"{PREFIX}fault:*")

    # --- health -----------------------------------------------------------------------------------------
    def heartbeat(self, ttl_s: int, component: str = "worker", **fields: Any) -> None:
        record = {
            "worker": self.worker,
            "component": component,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "at": time.time(),
            **fields,
        }
        key = f"{PREFIX}health:{self.worker}:{component}:{os.getpid()}"
        self.redis.set(key, json.dumps(record, sort_keys=True), ex=ttl_s)

    def workers(self) -> list[dict[str, Any]]:
        return self._scan_json(f"{PREFIX}health:*")

    # --- progress ---------------------------------------------------------------------------------------
    def set_progress(self, kind: str, task_id: int, round_: int, stage: str, **fields: Any) -> None:
        record = {"worker": self.worker, "pid": os.getpid(), "stage": stage, "at": time.time(), **fields}
        self.redis.set(
            f"{PREFIX}progress:{kind}:{task_id}:{round_}:{self.worker}",
            json.dumps(record, sort_keys=True),
            ex=PROGRESS_TTL_S,
        )

    def progress(
        self, kind: str, task_id: int, round_: int, worker: str | None = None
    ) -> dict[str, Any] | None:
        return self._json(f"{PREFIX}progress:{kind}:{task_id}:{round_}:{worker or self.worker}")

    def all_progress(self) -> list[dict[str, Any]]:
        out = []
        for key in sorted(self.redis.scan_iter(match=f"{PREFIX}progress:*", count=500)):
            record = self._json(key)
            if record is not None:
                _, kind, task_id, round_, _who = _text(key)[len(PREFIX) :].split(":", 4)
                out.append({"job": kind, "task": int(task_id), "round": int(round_), **record})
        return out

    # --- metrics ----------------------------------------------------------------------------------------
    def incr(self, metric: str, amount: int = 1) -> None:
        self.redis.hincrby(f"{PREFIX}metrics", metric, amount)

    def incr_many(self, counts: dict[str, int]) -> None:
        pipe = self.redis.pipeline()
        for metric, amount in counts.items():
            pipe.hincrby(f"{PREFIX}metrics", metric, amount)
        pipe.execute()

    def metrics(self) -> dict[str, int]:
        raw = self.redis.hgetall(f"{PREFIX}metrics")
        return {_text(k): int(v) for k, v in sorted(raw.items())}

    def queue_lengths(self, queues: list[str]) -> dict[str, int]:
        pipe = self.redis.pipeline()
        for q in queues:
            pipe.llen(q)
        return dict(zip(queues, (int(n) for n in pipe.execute()), strict=True))

    def known_queues(self) -> list[str]:
        """Queues Celery created in this Redis (its kombu bindings), ours only."""
        names = set()
        for key in self.redis.scan_iter(match="_kombu.binding.*", count=500):
            name = _text(key)[len("_kombu.binding.") :]
            if name == "aggregator" or name.startswith("validator."):
                names.add(name)
        return sorted(names)

    # --- helpers ----------------------------------------------------------------------------------------
    def _stamp(self) -> str:
        return json.dumps({"by": self.worker, "pid": os.getpid(), "at": time.time()})

    def _json(self, key: str | bytes) -> dict[str, Any] | None:
        raw = self.redis.get(key)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _scan_json(self, pattern: str) -> list[dict[str, Any]]:
        out = []
        for key in sorted(self.redis.scan_iter(match=pattern, count=500)):
            record = self._json(key)
            if record is not None:
                out.append(record)
        return out


def renew(lock: Lock) -> None:
    """Extend a round lock's lease while its job makes progress. A lost lease is logged, not fatal: commits and
    finalizations are idempotent on chain, the lock only saves duplicate work."""
    try:
        lock.reacquire()
    except (redis.exceptions.LockError, redis.exceptions.ConnectionError) as exc:
        log.warning("could not renew the round lock %s: %s", lock.name, exc)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value

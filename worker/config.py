"""The worker's own tuning: time limits, retries, polling, leases, caches, failpoints.

The values come from the same sources as every other setting (:class:`ledger.settings.Settings`, fields
``worker_*``): `meshprov worker run|watch` flags > ``MESHPROV_WORKER_*`` environment variables > the TOML file >
defaults. :meth:`WorkerConfig.from_settings` fills in the derived defaults and checks the relations between them,
which no single field can. Failpoints (fault-injection tests only) come from the hidden ``--failpoint`` flag.

The relations the reliability argument rests on are checked here (docs/worker.md, "Idempotency"):

    soft time limit < hard time limit < broker visibility timeout
    lock lease < visibility timeout      (a redelivered job can take the lock a dead worker held)
    job TTL >= poll interval             (the watcher does not re-enqueue on every poll)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from ledger.errors import ConfigError

if TYPE_CHECKING:
    from ledger.settings import Settings

ROLES = ("validator", "aggregator")

# Stages at which a failpoint can hold a job (for fault-injection tests; docs/worker.md "Failpoints").
FAILPOINTS = (
    "verify.fetched",
    "verify.before_commit",
    "verify.committed",
    "aggregate.fetched",
    "aggregate.stored",
    "aggregate.finalized",
)


@dataclass(frozen=True)
class WorkerConfig:
    soft_time_limit_s: int = 540
    """A task gets SoftTimeLimitExceeded after this long (and is retried: a slow store is a fault)."""

    time_limit_s: int = 600
    """The pool kills a task's process after this long."""

    visibility_timeout_s: int = 1800
    """Redis redelivers a job not acknowledged within this long (the worker that held it is presumed dead)."""

    max_retries: int = 6
    """Retries of a transient fault before the job is given up (the watcher re-enqueues it after `job_ttl_s`)."""

    retry_backoff_s: int = 2
    """First retry waits up to this (full jitter); each retry doubles it, up to `retry_backoff_max_s`."""

    retry_backoff_max_s: int = 120

    poll_interval_s: float = 2.0
    """How often the watcher reads the chain."""

    job_ttl_s: int = 120
    """The watcher enqueues a job at most once per this long while the chain says it is still to do."""

    lock_lease_s: int = 300
    """Lease of the per-round Redis lock (renewed while the job makes progress)."""

    heartbeat_s: float = 5.0
    """How often a running worker refreshes its health record (which expires after three periods)."""

    cache_dir: Path | None = None
    """Downloaded bases and updates. Unset: `<data_dir>/worker`."""

    failpoints: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    """Stage -> seconds to pause there (tests kill a worker while it is held). Empty in production."""

    def __post_init__(self) -> None:
        checks = [
            (self.soft_time_limit_s >= 1, "soft_time_limit_s", "at least 1"),
            (self.time_limit_s > self.soft_time_limit_s, "time_limit_s", "greater than soft_time_limit_s"),
            (
                self.visibility_timeout_s > self.time_limit_s,
                "visibility_timeout_s",
                "greater than time_limit_s (else Redis redelivers a job that is still running)",
            ),
            (self.max_retries >= 0, "max_retries", "0 or more"),
            (self.retry_backoff_s >= 1, "retry_backoff_s", "at least 1"),
            (self.retry_backoff_max_s >= self.retry_backoff_s, "retry_backoff_max_s", ">= retry_backoff_s"),
            (self.poll_interval_s > 0, "poll_interval_s", "positive"),
            (self.job_ttl_s >= self.poll_interval_s, "job_ttl_s", ">= poll_interval_s"),
            (
                0 < self.lock_lease_s < self.visibility_timeout_s,
                "lock_lease_s",
                "positive and less than visibility_timeout_s",
            ),
            (self.heartbeat_s > 0, "heartbeat_s", "positive"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(
                    f"invalid worker setting worker_{name}={getattr(self, name)!r}: must be {expected}",
                    hint=f"set it with its `meshprov worker run` option, MESHPROV_WORKER_{name.upper()} or "
                    f"`worker_{name}` in the config file (docs/worker.md)",
                )
        for stage, seconds in self.failpoints.items():
            if stage not in FAILPOINTS or not 0 <= seconds <= 3600:
                raise ConfigError(
                    f"invalid failpoint {stage}={seconds}",
                    hint=f"stages: {', '.join(FAILPOINTS)}; seconds 0..3600",
                )
        object.__setattr__(self, "failpoints", MappingProxyType(dict(self.failpoints)))

    @classmethod
    def from_settings(
        cls, settings: Settings, *, failpoints: Mapping[str, float] | None = None
    ) -> WorkerConfig:
        """The tuning the settings' ``worker_*`` fields give, unset ones derived from the hard time limit."""
        time_limit = settings.worker_time_limit_s

        def or_default(value: int | None, default: int) -> int:
            return default if value is None else value

        return cls(
            soft_time_limit_s=or_default(settings.worker_soft_time_limit_s, max(1, time_limit * 9 // 10)),
            time_limit_s=time_limit,
            visibility_timeout_s=or_default(settings.worker_visibility_timeout_s, 3 * time_limit),
            max_retries=settings.worker_max_retries,
            retry_backoff_s=settings.worker_retry_backoff_s,
            retry_backoff_max_s=settings.worker_retry_backoff_max_s,
            poll_interval_s=settings.worker_poll_interval_s,
            job_ttl_s=settings.worker_job_ttl_s,
            lock_lease_s=or_default(settings.worker_lock_lease_s, time_limit),
            heartbeat_s=settings.worker_heartbeat_s,
            cache_dir=settings.worker_cache_dir,
            failpoints=failpoints or {},
        )

    def resolved_cache_dir(self, data_dir: Path) -> Path:
        return self.cache_dir if self.cache_dir is not None else data_dir / "worker"


def parse_failpoints(specs: list[str] | None) -> dict[str, float]:
    """``["aggregate.stored=30"]`` -> ``{"aggregate.stored": 30.0}``."""
    out: dict[str, float] = {}
    for spec in specs or []:
        stage, sep, seconds = spec.partition("=")
        try:
            value = float(seconds) if sep else math.nan
        except ValueError:
            value = math.nan
        if math.isnan(value):  # missing or unparsable
            raise ConfigError(
                f"invalid failpoint {spec!r}", hint="write STAGE=SECONDS, e.g. aggregate.stored=30"
            )
        out[stage.strip()] = value
    return out

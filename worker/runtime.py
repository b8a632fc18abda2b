"""The per-process context of a worker: settings, tuning, and lazily opened chain, store and Redis handles.

A Celery prefork pool forks its children from the main process; connections (an HTTP session to the RPC node, a
Redis socket) must not be shared across a fork, so every handle is opened on first use in the process that uses
it, and :meth:`Runtime.after_fork` forgets the parent's.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.checks import CheckLimits
from ledger.checks.anchored import DEFAULT_REFERENCE_STEPS
from worker.config import WorkerConfig
from worker.errors import WorkerError
from worker.state import WorkerState, worker_id

if TYPE_CHECKING:
    from ledger.checks import LossFn
    from ledger.checks.privacy_budget import Budget
    from ledger.content import ContentStore
    from ledger.recipe import RecipeRef
    from ledger.settings import Settings
    from worker.chain import WorkerChain
    from worker.reference import ReferenceTrainer

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    config: WorkerConfig
    role: str
    redis_url: str
    private_key: str | None = None
    limits: CheckLimits = field(default_factory=CheckLimits)
    evaluate: LossFn | None = None
    """Held-out loss of full weights, for LOSS_REGRESSION (None: the loss check is off)."""
    reference_trainer: ReferenceTrainer | None = None
    """Trains this validator's reference update (worker.reference); None: the round's other updates are the
    reference (worker.verify._scorer)."""
    reference_steps: int = DEFAULT_REFERENCE_STEPS
    """Optimiser steps of the reference update: the task specification's ``checks.reference_steps`` when it
    anchors one (read with the recipe), else the default (docs/scoring.md, "How many steps")."""
    lie: bool = False
    """Lab only (``worker run --lie``): accept with the highest score every update the checks reject, so that
    `meshprov audit rejudge` has a dishonest validator to find on a demo's record."""
    recipe: RecipeRef | None = None
    """The task's recipe this validator judges with (``--recipe``; worker.recipe), checked against the spec."""
    privacy_budget: Budget | None = None
    """The privacy budget the task's specification anchors (``checks.privacy_epsilon``; set with the recipe):
    updates over it are rejected (``PRIVACY_BUDGET_EXCEEDED``, ``ledger.checks.privacy_budget``); None: no check."""

    _chain: WorkerChain | None = field(default=None, init=False, repr=False)
    _store: ContentStore | None = field(default=None, init=False, repr=False)
    _state: WorkerState | None = field(default=None, init=False, repr=False)
    _address: str | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __repr__(self) -> str:  # never show the key
        return f"Runtime(role={self.role!r}, address={self.address!r})"

    # --- identity ---------------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        if self._address is None:
            if self.private_key is None:
                self._address = "0x" + "0" * 40
            else:
                from eth_account import Account

                self._address = str(Account.from_key(self.private_key).address)
        return self._address

    @property
    def worker(self) -> str:
        return worker_id(self.role, self.address)

    # --- handles ----------------------------------------------------------------------------------------
    def chain(self) -> WorkerChain:
        with self._lock:
            if self._chain is None:
                from worker.chain import WorkerChain

                self._chain = WorkerChain.from_settings(self.settings, key=self.private_key)
            return self._chain

    def store(self) -> ContentStore:
        with self._lock:
            if self._store is None:
                self._store = open_store(self.settings)
            return self._store

    def state(self) -> WorkerState:
        with self._lock:
            if self._state is None:
                self._state = WorkerState.from_url(self.redis_url, self.worker)
            return self._state

    def after_fork(self) -> None:
        """Forget the parent's connections (called in each pool child)."""
        self._chain = None
        self._store = None
        self._state = None
        self._lock = threading.Lock()

    # --- files ------------------------------------------------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        root = self.config.resolved_cache_dir(self.settings.data_dir)
        path = root / f"{self.role}-{self.address.lower()}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- failpoints -------------------------------------------------------------------------------------
    def failpoint(self, stage: str) -> None:
        """Pause at ``stage`` if a failpoint is set there (tests kill the worker while it waits)."""
        seconds = self.config.failpoints.get(stage)
        if seconds:
            log.warning("failpoint %s: pausing %.1f s", stage, seconds)
            time.sleep(seconds)


def open_store(settings: Settings) -> ContentStore:
    """The configured store; a Kubo client retries only once itself, since Celery retries the whole job."""
    if settings.store == "kubo":
        from ledger.content.kubo_store import KuboStore, RetryPolicy

        return KuboStore(settings.kubo_api_url, retry=RetryPolicy(attempts=2, base_delay_s=0.2))
    from ledger.content import open_store as ledger_open_store

    return ledger_open_store(settings)


_current: Runtime | None = None


def configure(runtime: Runtime) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise WorkerError(
            "the worker runtime is not configured in this process",
            hint="start workers with `meshprov worker run`",
        )
    return _current

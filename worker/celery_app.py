"""The Celery application of the validator and aggregator workers.

Redis is the broker and the result backend. Delivery is at least once and the chain is the source of truth, so
the configuration favours redelivery over loss:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a job is acknowledged only when it finished; a worker
  killed mid-job (``kill -9``, OOM) leaves it to be delivered again.
* ``worker_prefetch_multiplier = 1``: a worker holds one job beyond those running, not a batch a crash would
  strand until the visibility timeout.
* ``visibility_timeout`` longer than the hard time limit: Redis never redelivers a job that is still running.
* ``worker_cancel_long_running_tasks_on_connection_loss``: when the broker connection drops, late-acked jobs in
  flight are cancelled (they are redelivered) instead of finishing against a broker that forgot them.
* JSON only, in and out: a message is data, never code (no pickle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from worker.config import WorkerConfig


def celery_config(broker_url: str, config: WorkerConfig) -> dict[str, Any]:
    transport = {"visibility_timeout": config.visibility_timeout_s}
    return {
        "broker_url": broker_url,
        "result_backend": broker_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "task_soft_time_limit": config.soft_time_limit_s,
        "task_time_limit": config.time_limit_s,
        "task_default_queue": "meshprov",
        "task_create_missing_queues": True,
        "result_expires": 24 * 3600,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "enable_utc": True,
    }


def make_app(broker_url: str, config: WorkerConfig, *, with_tasks: bool = True) -> Celery:
    """A Celery app on ``broker_url``; ``with_tasks`` registers the tasks (needs :func:`worker.runtime.configure`
    first). The watcher sends by task name and needs no tasks registered."""
    from celery import Celery

    app = Celery("meshprov", set_as_current=False)
    app.conf.update(celery_config(broker_url, config))
    if with_tasks:
        from worker.tasks import register

        register(app)
    return app

"""Prometheus metrics of deferred work, each served by the one process that knows it.

- The Celery worker: task runs by name and outcome, and their run times. Tasks run in the
  worker's prefork children, so every child writes its samples to files in the worker's
  `PROMETHEUS_MULTIPROC_DIR`, and the worker's main process serves their sum on
  `CELERY_METRICS_PORT` (config/celery.py prepares the directory and handles exiting children;
  tasks/apps.py starts the server on `worker_init`).
- The outbox relay (`manage.py outbox_relay`): the backlog, unsent outbox rows and the age of
  the oldest, read from the primary at each scrape and served on `OUTBOX_METRICS_PORT`. The
  relay rather than the workers: it is one or two processes where workers are many (N identical
  copies of one gauge and N queries per scrape), and its job is that backlog. When the relay
  itself is down its endpoint goes with it, so the alert on the backlog has a companion on the
  relay's `up` (docs/deferred-work.md "Metrics").
"""

from __future__ import annotations

import logging
import time
from wsgiref.simple_server import WSGIServer

from celery.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    task_rejected,
    task_retry,
    task_success,
    task_unknown,
)
from celery.worker.request import Request
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from config.tracing import untraced
from todos import selectors

logger = logging.getLogger(__name__)

TASKS = Counter(
    "todo_scale_celery_tasks",
    "Task runs in the worker by task name and outcome: succeeded, failed (for good), retried, "
    "rejected (the message was handed back to the broker or dropped without a run)",
    ["task", "outcome"],
)
TASK_DURATION = Histogram(
    "todo_scale_celery_task_duration_seconds",
    "Run time of one task execution (a retry counts as an execution of its own), by task name",
    ["task"],
    # From the bookkeeping tasks (milliseconds) to the export's soft limit (240 s): most tasks
    # take well under a second, exports seconds to minutes (about 6 s per 100,000 todos).
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 240),
)

_started: dict[str, float] = {}


def _record_start(task_id: str, **kwargs) -> None:
    _started[task_id] = time.monotonic()


def _record_run_time(sender, task_id: str, **kwargs) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        TASK_DURATION.labels(task=sender.name).observe(time.monotonic() - started)


def _count_succeeded(sender, **kwargs) -> None:
    TASKS.labels(task=sender.name, outcome="succeeded").inc()


def _count_failed(sender, **kwargs) -> None:
    TASKS.labels(task=sender.name, outcome="failed").inc()


def _count_retried(sender, **kwargs) -> None:
    TASKS.labels(task=sender.name, outcome="retried").inc()


def _count_unknown(sender, name: str, **kwargs) -> None:
    # No worker of this build knows the task (a deploy's version skew): the message is dropped.
    TASKS.labels(task=name, outcome="rejected").inc()


def _count_malformed(sender, message, **kwargs) -> None:
    name = (message.headers or {}).get("task") or "unknown"
    TASKS.labels(task=name, outcome="rejected").inc()


class MeteredRequest(Request):
    """A task request that counts the messages it hands back to the broker.

    The worker requeues a message without any signal when the child running it died (acks_late
    with reject_on_worker_lost: an OOM kill, a crash); those runs end here and are counted as
    `rejected`. Rejects without requeue are not counted: Celery reports them as failures.
    Tasks use it through `ReliableTask.Request` (tasks/base.py).
    """

    def reject(self, requeue: bool = False) -> None:
        first = not self.acknowledged
        super().reject(requeue=requeue)
        if requeue and first:
            TASKS.labels(task=self.task_name, outcome="rejected").inc()


def task_metrics_connect() -> None:
    """Count task outcomes and time task runs in this process and the pool children it forks.

    Each outcome has one signal, sent once per run, in whichever process decides it: success,
    failure and retry in the child that ran the task (a failure in the main process when the
    child was lost for good or hit the hard time limit); unknown and malformed messages in the
    main process, which drops them.
    """
    receivers = (
        (task_prerun, _record_start),
        (task_postrun, _record_run_time),
        (task_success, _count_succeeded),
        (task_failure, _count_failed),
        (task_retry, _count_retried),
        (task_unknown, _count_unknown),
        (task_rejected, _count_malformed),
    )
    for signal, receiver in receivers:
        signal.connect(receiver, weak=False, dispatch_uid=f"tasks.metrics.{receiver.__name__}")


def worker_metrics_serve(*, port: int) -> WSGIServer:
    """Serve the sum of every process's samples in `PROMETHEUS_MULTIPROC_DIR` on `port`.

    A registry of its own: the default one would add this process's in-memory metrics, which in
    multiprocess mode are stale or empty.
    """
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    server, _thread = start_http_server(port, registry=registry)
    return server


class OutboxBacklogCollector:
    """Unsent outbox rows and the age of the oldest, from the primary at each scrape.

    Two queries, both on the partial index `outbox_unsent` (todos/models.py), which holds only
    the unsent rows: the count, and the first row in id order (ids and `created_at` grow
    together). Read from the primary: a lagging replica would show a backlog already published.
    """

    def collect(self):
        # Each scrape runs in a thread of its own (the HTTP server's), with its own database
        # connection: closed at the end, or every scrape would leave one open.
        try:
            # A scrape is no request's work: no trace for its two queries.
            with untraced():
                unsent = selectors.outbox_unsent().using(DEFAULT_DB_ALIAS)
                count = unsent.count()
                oldest = unsent.values_list("created_at", flat=True).first()
        except DatabaseError as exc:
            # No sample rather than a wrong one; `absent()` on the series notices.
            logger.warning("outbox metrics: database unavailable: %s", exc)
            return
        finally:
            connections[DEFAULT_DB_ALIAS].close()
        yield GaugeMetricFamily(
            "todo_scale_outbox_unsent", "Outbox rows not yet published to the broker", value=count
        )
        age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "todo_scale_outbox_oldest_unsent_age_seconds",
            "Seconds since the oldest unsent outbox row was written (0 with none): grows while "
            "the broker or the relay is down",
            value=max(age, 0.0),
        )


def relay_metrics_serve(*, port: int) -> WSGIServer:
    """Serve the outbox backlog on `port`; the caller shuts the server down when it stops."""
    registry = CollectorRegistry()
    registry.register(OutboxBacklogCollector())
    server, _thread = start_http_server(port, registry=registry)
    return server

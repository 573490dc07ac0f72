"""The outbox relay: publishes committed outbox rows to the broker, then marks them sent.

Services write an `OutboxMessage` in the same transaction as their data
(todos/services/outbox.py, `outbox_enqueue`). One function, `outbox_relay`, publishes unsent
rows; three things call it:

- The fast path, in the process that committed the rows (`publish_after_commit`, on the
  `outbox_committed` signal): the task is usually on the broker milliseconds after the commit.
  `OUTBOX_PUBLISH_ON_COMMIT=false` turns it off where the relay process runs.
  A broker that is down fails the publish at once (a short connect timeout, one reconnect);
  the request has already succeeded, the rows stay unsent, and the fast path pauses for a few
  seconds so that requests do not each pay for the dead broker.
- `manage.py outbox_relay`, a process of its own that polls every second and drains whatever
  the fast path left: the backlog from while the broker was down is published as soon as it is
  back. It is a process rather than only a periodic task because, while the broker is down,
  beat cannot dispatch anything either; and rather than a thread in the worker because the
  worker's consumer and pool are the wrong place for a database poller that must outlive them.
- `outbox_relay_task`, from beat every minute: a safety net for a deployment run without the
  relay process.

Rows are published under `SELECT ... FOR UPDATE SKIP LOCKED`, so any number of relays run side by
side without publishing a row twice at once, and a row is marked sent only after the broker
confirmed it (RabbitMQ publisher confirms). A crash between the confirm and the mark publishes the
row again later, with the same task id: delivery is at least once, and every task is idempotent.

Each message carries the id of the request that wrote its row and, with tracing on, the row's
trace context (`traceparent`, `tracestate`), made current while it is published: the publish
and the task's run are spans in the trace of that request, whichever path publishes it
(config/tracing.py).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from amqp.exceptions import MessageNacked
from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, transaction
from django.dispatch import receiver
from kombu.exceptions import OperationalError as BrokerOperationalError

from config.celery import app
from config.replicas.health import format_lsn, primary_write_location, replica_aliases
from config.request_id import TASK_HEADER
from config.tracing import TRACEPARENT, TRACESTATE, trace_context_attached, untraced
from tasks.base import WAL_POSITION_HEADER, ReliableTask
from todos import selectors, services
from todos.models import OutboxMessage
from todos.outbox import outbox_committed

logger = logging.getLogger(__name__)

# What a publish raises when the broker is down or refuses the message.
BROKER_ERRORS = (BrokerOperationalError, MessageNacked, ConnectionError)
# Rows per transaction: their locks are held while they are published, ~1 ms each with confirms.
RELAY_BATCH = 100
# One reconnect, at once: it replaces a pooled connection the broker closed (a broker restart)
# without waiting; a broker that is really down fails the publish in about a millisecond (a
# refused port) or the connect timeout (CELERY_BROKER_CONNECTION_TIMEOUT).
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0,
    "interval_max": 0,
}
# After a failed fast-path publish, the process leaves new rows to the relay for this long.
FAST_PATH_PAUSE = 5.0
# The relay process polls this often when idle; after a failed publish it waits longer each
# time, up to the maximum, so a long broker outage costs one attempt every half minute.
POLL_INTERVAL = 1.0
MAX_BACKOFF = 30.0


@dataclass
class RelayResult:
    sent: int = 0
    error: str | None = None


def outbox_relay(
    *, ids: list[int] | None = None, progress: Callable[[int], None] | None = None
) -> RelayResult:
    """Publish unsent outbox rows (only `ids`, if given), oldest first, until none is left or
    the broker fails; returns how many were published and the broker's error, if any.
    `progress(sent)` is called after each batch's commit with the rows it published."""
    result = RelayResult()
    while True:
        sent, error, full = _relay_batch(ids=ids)
        result.sent += sent
        if progress and sent:
            progress(sent)
        if error is not None:
            result.error = error
            return result
        if not full:
            return result


def _relay_batch(*, ids: list[int] | None) -> tuple[int, str | None, bool]:
    with transaction.atomic():
        messages = list(
            selectors.outbox_unsent(ids=ids).select_for_update(skip_locked=True)[:RELAY_BATCH]
        )
        headers = _position_headers() if messages else {}
        published: list[int] = []
        error = None
        for message in messages:
            try:
                _publish(message, headers)
            except BROKER_ERRORS as exc:
                error = f"{type(exc).__name__}: {exc}"
                services.outbox_mark_failed(ids=[message.pk], error=error)
                break
            published.append(message.pk)
        services.outbox_mark_sent(ids=published)
    if error is not None:
        logger.warning("outbox: broker unavailable, rows left unsent for later: %s", error)
    return len(published), error, len(messages) == RELAY_BATCH


def _position_headers() -> dict[str, str]:
    """The primary's WAL position now, for the tasks about to be published (tasks/base.py reads
    from a standby only once it has replayed this far); none without replicas.

    Read here, once per batch, rather than stored in each row when it is written: the rows were
    committed before this transaction could select them, so any position read now is at least
    their commit's, with no extra write and no column. It may be a little newer than needed,
    which at worst sends a task's reads to the primary.
    """
    if not replica_aliases():
        return {}
    return {WAL_POSITION_HEADER: format_lsn(primary_write_location())}


def _trace_headers(message: OutboxMessage) -> dict[str, str]:
    """The row's trace context as message headers; none for a row written outside a span."""
    stored = {TRACEPARENT: message.traceparent, TRACESTATE: message.tracestate}
    return {name: value for name, value in stored.items() if value}


def _publish(message: OutboxMessage, headers: dict[str, str] | None = None) -> None:
    # The id of the request that wrote the row, for the task's log lines (config/celery.py),
    # and its trace context, for the task's span.
    headers = {**(headers or {}), TASK_HEADER: message.request_id, **_trace_headers(message)}
    if app.conf.task_always_eager:
        # No broker (the embedded default): run the task in this process once the row is marked
        # sent, as if a worker had received it.
        transaction.on_commit(
            functools.partial(
                _run_eagerly, message.task_name, message.kwargs, str(message.task_id), headers
            )
        )
        return
    # With tracing on, the publish span is a child of the span that wrote the row, and the
    # Celery instrumentation replaces the traceparent header with the publish span's own.
    with trace_context_attached(headers):
        app.send_task(
            message.task_name,
            kwargs=message.kwargs,
            task_id=str(message.task_id),
            headers=headers,
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )


def _run_eagerly(
    task_name: str, kwargs: dict, task_id: str, headers: dict[str, str] | None
) -> None:
    with trace_context_attached(headers or {}):
        result = app.tasks[task_name].apply(
            kwargs=kwargs, task_id=task_id, headers=headers, throw=False
        )
    if result.failed():
        logger.error("task %s[%s] failed: %r", task_name, task_id, result.result)


_fast_path = {"paused_until": 0.0}


@receiver(outbox_committed, dispatch_uid="tasks.outbox.publish_after_commit")
def publish_after_commit(sender, ids: list[int], **kwargs) -> None:
    """The fast path: publish the rows a transaction just committed."""
    if not settings.OUTBOX_PUBLISH_ON_COMMIT or time.monotonic() < _fast_path["paused_until"]:
        return
    if outbox_relay(ids=ids).error is not None:
        _fast_path["paused_until"] = time.monotonic() + FAST_PATH_PAUSE


def fast_path_reset() -> None:
    """Let the next commit try the broker at once (after a pause started by a failed publish)."""
    _fast_path["paused_until"] = 0.0


def outbox_relay_forever(*, stop: threading.Event, poll_interval: float = POLL_INTERVAL) -> None:
    """Relay until `stop` is set: the loop of `manage.py outbox_relay`."""
    wait = poll_interval
    while not stop.is_set():
        # As at the start of a request: drop a connection the database closed (a restart), so
        # one outage does not break every later iteration.
        close_old_connections()
        try:
            # Only the publishes are traced, in the trace of the request that wrote each row.
            with untraced():
                result = outbox_relay()
        except (OperationalError, InterfaceError) as exc:
            logger.warning("outbox: database unavailable: %s", exc)
            result = RelayResult(error=str(exc))
        if result.sent:
            logger.info("outbox: published %d row(s)", result.sent)
        wait = min(wait * 2, MAX_BACKOFF) if result.error else poll_interval
        stop.wait(wait)


@shared_task(base=ReliableTask)
def outbox_relay_task() -> int:
    """Beat's safety net: publish whatever the fast path and the relay process left."""
    return outbox_relay().sent

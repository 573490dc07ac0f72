"""The base of every task: bounded retries with exponential backoff and jitter, a cap on
redeliveries so that a poison message cannot loop forever, and reads routed after the position
of the write that enqueued the task."""

import logging
import random

from celery import Task
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError

from config.replicas.health import parse_lsn
from config.replicas.read_routing import reads_after
from tasks.deliveries import task_delivery_count

logger = logging.getLogger(__name__)

# The message header holding the primary's WAL position (pg_lsn text) after the enqueueing
# write committed; tasks/outbox.py sets it.
WAL_POSITION_HEADER = "wal_position"


def message_position(request) -> int | None:
    """The WAL position a task message carries, or None (an older message, no replicas).

    A worker puts a message's own headers on the request; `apply()` (eager runs) keeps them
    in `request.headers`.
    """
    value = request.get(WAL_POSITION_HEADER) or (request.headers or {}).get(WAL_POSITION_HEADER)
    if not value:
        return None
    try:
        return parse_lsn(value)
    except (TypeError, ValueError):
        logger.warning("ignoring a malformed %s header: %r", WAL_POSITION_HEADER, value)
        return None


class DeliveryLimitExceeded(Exception):
    """A message was started more often than its task's `max_deliveries`."""


class ReliableTask(Task):
    """Retry passing failures with backoff; record a message that keeps killing workers as failed.

    Settings give every task acks_late and reject_on_worker_lost: a message is acknowledged only
    after its task ran, and requeued when the process running it dies. A message that itself
    kills the process (out of memory on a huge input, a crash in a C extension) would then be
    redelivered forever; RabbitMQ's classic queues and Redis keep no delivery count, so the
    task counts its own starts in Postgres (`TaskDelivery`) and gives up after
    `max_deliveries`, recording the failure like any other.

    The body runs inside `reads_after(position)`, the position the message carries: it reads
    what the request that enqueued it wrote, from a standby when one has replayed it.
    """

    # Worth retrying: the database or the broker was unreachable for a moment. Anything else is
    # a bug or bad data, and retrying would only repeat it.
    retry_on = (OperationalError, InterfaceError, BrokerOperationalError)
    # Five retries waiting about 2, 4, 8, 16 and 32 s (doubling, with jitter): an outage of a
    # minute or so is ridden out; after that the task is recorded as failed.
    max_retries = 5
    retry_backoff = 2.0
    # No single wait longer than five minutes, however many retries a task allows.
    retry_backoff_max = 300.0
    # Counts the messages a worker hands back to the broker (tasks/metrics.py). Named by its
    # path, as Celery names its own default: it is loaded only where a worker consumes tasks.
    Request = "tasks.metrics:MeteredRequest"
    # Starts of one message: a worker lost once (a deploy, a node drained) is normal, and a
    # twice-published message is normal; a third loss in a row means the message is the cause.
    max_deliveries = 3

    def __call__(self, *args, **kwargs):
        if not self.request.is_eager and self.request.id:
            self._count_delivery()
        try:
            # The body's reads go to a standby that has replayed the enqueueing write, else to
            # the primary (config/replicas/read_routing.py); its writes go to the primary. The
            # delivery count above is a write of the task's own, outside: it must not send the
            # body's reads to the primary.
            with reads_after(message_position(self.request)):
                return super().__call__(*args, **kwargs)
        except self.retry_on as exc:
            raise self.retry(exc=exc, countdown=self.retry_countdown()) from exc

    def retry_countdown(self) -> float:
        """Seconds before the next try: exponential, capped, with "equal jitter" (half fixed,
        half random), so workers that failed together do not all come back together."""
        ceiling = min(self.retry_backoff_max, self.retry_backoff * 2**self.request.retries)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (spreading, not secrecy)

    def _count_delivery(self) -> None:
        request = self.request
        try:
            deliveries = task_delivery_count(task_id=request.id, retries=request.retries)
        except (OperationalError, InterfaceError) as exc:
            raise self.retry(exc=exc, countdown=self.retry_countdown()) from exc
        if deliveries > self.max_deliveries:
            logger.error(
                "%s[%s] started %d times: giving up on it", self.name, request.id, deliveries
            )
            raise DeliveryLimitExceeded(
                f"{self.name}[{request.id}] was started {deliveries} times "
                f"(at most {self.max_deliveries})"
            )

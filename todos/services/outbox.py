"""Writes of the transactional outbox: enqueue a task with the data it is about, and record
whether its publish succeeded (tasks/outbox.py publishes)."""

from collections.abc import Iterable

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from config.request_id import current_request_id
from config.tracing import TRACEPARENT, TRACESTATE, trace_context
from todos.models import OutboxMessage
from todos.outbox import outbox_committed


def outbox_enqueue(*, task: str, kwargs: dict) -> OutboxMessage:
    """Record that `task` must run with `kwargs` once the current transaction commits.

    Precondition: called inside the transaction (`transaction.atomic`) that writes the data the
    task is about, so that both commit or neither does. After the commit, `outbox_committed` is
    sent, and tasks/outbox.py publishes the row at once if the broker answers (later if not).
    The row keeps the current request's id, which the task's log lines then carry, and with
    tracing on the active span's trace context, which the task's span then continues.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_enqueue must run inside the transaction that writes the data")
    context = trace_context()
    message = OutboxMessage.objects.create(
        task_name=task,
        kwargs=kwargs,
        request_id=current_request_id(),
        traceparent=context.get(TRACEPARENT),
        tracestate=context.get(TRACESTATE),
    )
    # robust: a failing publish is logged and left to the relay; it must never fail a request
    # whose data has already committed.
    transaction.on_commit(
        lambda: outbox_committed.send(OutboxMessage, ids=[message.pk]), robust=True
    )
    return message


@transaction.atomic
def outbox_mark_sent(*, ids: Iterable[int]) -> int:
    """Mark outbox rows published (the broker confirmed them); returns how many were marked."""
    now = timezone.now()
    return OutboxMessage.objects.filter(pk__in=list(ids), sent_at__isnull=True).update(
        sent_at=now, updated_at=now
    )


@transaction.atomic
def outbox_mark_failed(*, ids: Iterable[int], error: str) -> int:
    """Count a failed publish of outbox rows (they stay unsent and are tried again)."""
    return OutboxMessage.objects.filter(pk__in=list(ids)).update(
        attempts=F("attempts") + 1, last_error=error[:2000], updated_at=timezone.now()
    )

"""Housekeeping: delete the rows of deferred work and the API tokens once they expire, and fail
stuck exports."""

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet

from todos.models import ApiToken, Export, IdempotencyKey, OutboxMessage
from todos.services.idempotency import IDEMPOTENCY_KEY_TTL

# Exports are kept a week; idempotency keys for their TTL (todos/services/idempotency.py). Sent
# outbox rows only explain recent history, so they go after a week too.
EXPORT_RETENTION = timedelta(days=7)
OUTBOX_RETENTION = timedelta(days=7)
# An export still running after an hour lost its worker past what the task's time limits catch
# (they stop it after minutes): it is failed so the client stops waiting and asks again.
EXPORT_STUCK_AFTER = timedelta(hours=1)
# Rows deleted per statement: short transactions that never hold many locks, even when a week
# of backlog is purged at once.
PURGE_BATCH = 500


def housekeeping_purge(*, now: datetime) -> dict[str, int]:
    """Delete expired idempotency keys and API tokens, old exports and sent outbox rows, and fail
    exports stuck running; returns the counts. Idempotent: a second run finds nothing."""
    purged = {
        "idempotency_keys": rows_delete_in_batches(
            queryset=IdempotencyKey.objects.filter(created_at__lt=now - IDEMPOTENCY_KEY_TTL)
        ),
        "exports": rows_delete_in_batches(
            queryset=Export.objects.filter(created_at__lt=now - EXPORT_RETENTION)
        ),
        "outbox_messages": rows_delete_in_batches(
            queryset=OutboxMessage.objects.filter(sent_at__lt=now - OUTBOX_RETENTION)
        ),
        # Refused since they expired; gone so that a login per script run does not pile up.
        "api_tokens": rows_delete_in_batches(queryset=ApiToken.objects.filter(expires_at__lt=now)),
    }
    purged["stuck_exports_failed"] = Export.objects.filter(
        status=Export.Status.RUNNING, started_at__lt=now - EXPORT_STUCK_AFTER
    ).update(status=Export.Status.FAILED, error="lost its worker", finished_at=now, updated_at=now)
    return purged


def rows_delete_in_batches(*, queryset: QuerySet) -> int:
    """Delete the rows of `queryset`, `PURGE_BATCH` per transaction; returns how many."""
    deleted = 0
    while ids := list(queryset.values_list("pk", flat=True)[:PURGE_BATCH]):
        with transaction.atomic():
            queryset.model.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
    return deleted

"""Delivery counts of task messages: one more start counted, and old counts purged."""

from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from tasks.models import TaskDelivery
from todos import services

# Delivery counts only explain recent history: after a week they go, like sent outbox rows.
TASK_DELIVERY_RETENTION = timedelta(days=7)


def task_delivery_count(*, task_id: str, retries: int) -> int:
    """Count one more start of the message (`task_id`, `retries`); returns the count so far.

    One INSERT ... ON CONFLICT DO UPDATE ... RETURNING (Postgres, and SQLite since 3.35), so
    concurrent deliveries of one message each get their own number, committed at once: the
    count survives the worker being killed right after.
    """
    table = connection.ops.quote_name(TaskDelivery._meta.db_table)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (task_id, retries, deliveries, created_at, updated_at)"  # noqa: S608 (the table name is ours, the values are parameters)
            " VALUES (%s, %s, 1, %s, %s)"
            " ON CONFLICT (task_id, retries)"
            f" DO UPDATE SET deliveries = {table}.deliveries + 1, updated_at = EXCLUDED.updated_at"
            " RETURNING deliveries",
            [task_id, retries, now, now],
        )
        return cursor.fetchone()[0]


def task_deliveries_purge(*, now: datetime) -> int:
    """Delete delivery counts older than `TASK_DELIVERY_RETENTION`; returns how many."""
    return services.rows_delete_in_batches(
        queryset=TaskDelivery.objects.filter(created_at__lt=now - TASK_DELIVERY_RETENTION)
    )

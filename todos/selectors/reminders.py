"""Reads for due-date reminders: the todos a scan should remind."""

from datetime import datetime, timedelta

from todos.models import Todo


def todo_ids_due_for_reminder(
    *, now: datetime, lead: timedelta, grace: timedelta, limit: int
) -> list[int]:
    """Ids of open todos coming due by `now + lead` and not reminded yet, earliest first.

    Todos overdue by more than `grace` are left alone: a reminder that late is noise. Served by
    the partial index `todo_reminder_due`, which holds only todos still waiting for a reminder.
    """
    return list(
        Todo.objects.filter(
            completed=False,
            reminded_at__isnull=True,
            due_at__isnull=False,
            due_at__lte=now + lead,
            due_at__gt=now - grace,
        )
        .order_by("due_at")
        .values_list("pk", flat=True)[:limit]
    )

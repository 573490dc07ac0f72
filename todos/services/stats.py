"""Completion statistics: the `todo.completed` hook that asks for a recount, and the recount."""

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Count, Q
from django.utils import timezone

from todos.models import Todo, UserStats
from todos.outbox import STATS_RECOMPUTE_TASK
from todos.services.outbox import outbox_enqueue


def todo_completion_changed(*, owner_ids: Iterable[int]) -> None:
    """The `todo.completed` hook: recompute the owners' statistics once the write commits.

    Precondition: called inside the transaction that completed (or reopened) their todos.
    """
    for owner_id in sorted(set(owner_ids)):
        outbox_enqueue(task=STATS_RECOMPUTE_TASK, kwargs={"owner_id": owner_id})


def stats_recompute(*, owner_id: int) -> UserStats | None:
    """Count `owner_id`'s todos afresh and store the result; None if the user no longer exists.

    Recomputed, never incremented: running it twice, or for a stale event, stores the truth.
    Counts come from the primary, so they include the write that asked for them and every later
    one: a standby past this task's WAL position could still miss a newer completion, and a
    recount that ran last would then store a stale count.
    """
    if not get_user_model().objects.using(DEFAULT_DB_ALIAS).filter(pk=owner_id).exists():
        return None
    counts = (
        Todo.objects.using(DEFAULT_DB_ALIAS)
        .filter(owner_id=owner_id)
        .aggregate(total=Count("id"), completed=Count("id", filter=Q(completed=True)))
    )
    stats = UserStats(owner_id=owner_id, computed_at=timezone.now(), **counts)
    # One INSERT ... ON CONFLICT: two concurrent recomputations cannot both insert.
    UserStats.objects.bulk_create(
        [stats],
        update_conflicts=True,
        unique_fields=["owner"],
        update_fields=["total", "completed", "computed_at", "updated_at"],
    )
    return stats

"""The `todo.completed` hook: a user's completion statistics are recomputed after a completion."""

from celery import shared_task

from tasks.base import ReliableTask
from todos import services


@shared_task(base=ReliableTask)
def stats_recompute_task(owner_id: int) -> None:
    """Recount the user's todos. Idempotent: it stores the current truth, however often it runs."""
    services.stats_recompute(owner_id=owner_id)

"""Reads of completion statistics: an owner's last computed counts."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q
from django.utils import timezone

from todos.models import Todo, UserStats


def user_stats_get(*, owner: AbstractBaseUser) -> UserStats:
    """`owner`'s last computed statistics; before the first computation, counted now (unsaved)."""
    stats = UserStats.objects.filter(owner=owner).first()
    if stats is None:
        counts = Todo.objects.filter(owner=owner).aggregate(
            total=Count("id"), completed=Count("id", filter=Q(completed=True))
        )
        stats = UserStats(owner=owner, computed_at=timezone.now(), **counts)
    return stats

"""Reads of todos and of the rows deferred work keeps. Every selector of user data returns rows of
one owner only."""

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from todos.models import Export, ExportChunk, OutboxMessage, Todo, UserStats
from todos.representation import todo_rows


def todo_list(*, owner: AbstractBaseUser) -> QuerySet[Todo]:
    """All todos of `owner`, unordered: the caller (pagination) decides the order."""
    return Todo.objects.filter(owner=owner)


def todo_get(*, owner: AbstractBaseUser, todo_id: int) -> Todo:
    """The todo `todo_id` of `owner`; raises `Todo.DoesNotExist` for a missing or foreign id."""
    return Todo.objects.get(owner=owner, pk=todo_id)


def outbox_unsent(*, ids: Iterable[int] | None = None) -> QuerySet[OutboxMessage]:
    """Outbox rows not yet published, oldest first; only those in `ids` when given."""
    messages = OutboxMessage.objects.filter(sent_at__isnull=True).order_by("id")
    return messages if ids is None else messages.filter(pk__in=list(ids))


def export_get(*, owner: AbstractBaseUser, export_id: int, using: str | None = None) -> Export:
    """The export `export_id` of `owner` (from the database `using`, if given); raises
    `Export.DoesNotExist` for a missing or foreign id."""
    return Export.objects.using(using).get(owner=owner, pk=export_id)


def export_chunk_ids(*, export: Export) -> list[int]:
    """The primary keys of `export`'s chunks in file order, read where `export` was read."""
    return list(
        ExportChunk.objects.using(export._state.db)
        .filter(export=export)
        .order_by("index")
        .values_list("pk", flat=True)
    )


def export_chunk_data(*, chunk_id: int) -> bytes:
    """One chunk's bytes, from the primary (the download reads a finished export there)."""
    data = (
        ExportChunk.objects.using(DEFAULT_DB_ALIAS).values_list("data", flat=True).get(pk=chunk_id)
    )
    return bytes(data)


def todo_export_batches(*, owner_id: int, batch_size: int) -> Iterator[list[dict]]:
    """All todos of `owner_id` in the API's default order (created_at, id), `batch_size` at a time,
    as rows of the represented columns (todos/representation.py).

    Keyset-paged on the (owner, created_at, id) index, so memory stays at one batch and no
    server-side cursor is held open. Read from the primary: a task carries no read-your-writes
    position yet (config/read_routing.py routes web requests only), and an export must include
    the todo created just before it was asked for.
    """
    todos = todo_rows(
        Todo.objects.using(DEFAULT_DB_ALIAS).filter(owner_id=owner_id).order_by("created_at", "id")
    )
    last = None
    while True:
        page = todos
        if last is not None:
            page = todos.filter(
                Q(created_at__gt=last["created_at"])
                | Q(created_at=last["created_at"], id__gt=last["id"])
            )
        batch = list(page[:batch_size])
        if batch:
            yield batch
        if len(batch) < batch_size:
            return
        last = batch[-1]


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


def user_stats_get(*, owner: AbstractBaseUser) -> UserStats:
    """`owner`'s last computed statistics; before the first computation, counted now (unsaved)."""
    stats = UserStats.objects.filter(owner=owner).first()
    if stats is None:
        counts = Todo.objects.filter(owner=owner).aggregate(
            total=Count("id"), completed=Count("id", filter=Q(completed=True))
        )
        stats = UserStats(owner=owner, computed_at=timezone.now(), **counts)
    return stats

"""Reads of the transactional outbox: the rows still waiting to be published."""

from collections.abc import Iterable

from django.db.models import QuerySet

from todos.models import OutboxMessage


def outbox_unsent(*, ids: Iterable[int] | None = None) -> QuerySet[OutboxMessage]:
    """Outbox rows not yet published, oldest first; only those in `ids` when given."""
    messages = OutboxMessage.objects.filter(sent_at__isnull=True).order_by("id")
    return messages if ids is None else messages.filter(pk__in=list(ids))

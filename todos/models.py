"""The Todo model: one row per item, always owned by one user."""

from django.conf import settings
from django.db import models

TITLE_MAX_LENGTH = 500


class Todo(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="todos"
    )
    title = models.CharField(max_length=TITLE_MAX_LENGTH)
    completed = models.BooleanField(default=False)
    order = models.IntegerField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    # Set once the due-date reminder is sent, so that a todo is reminded only once.
    reminded_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("created_at", "id")
        indexes = [
            # Every list query is owner-scoped and keyset-paged on (sort key, id): one index per
            # `?ordering=` key that users page through, so no page sorts the owner's whole list.
            models.Index(fields=["owner", "created_at", "id"], name="todo_owner_created"),
            models.Index(fields=["owner", "order", "id"], name="todo_owner_order"),
            models.Index(fields=["owner", "due_at", "id"], name="todo_owner_due"),
            models.Index(fields=["owner", "title", "id"], name="todo_owner_title"),
            # The reminder scan: todos coming due that were not reminded yet. Partial, so it
            # holds only the few rows that still need a reminder, not the whole table.
            models.Index(
                fields=["due_at"],
                name="todo_reminder_due",
                condition=models.Q(due_at__isnull=False, reminded_at__isnull=True, completed=False),
            ),
        ]

    def __str__(self) -> str:
        return self.title


class IdempotencyKey(models.Model):
    """The first answer to a `POST /api/todos` sent with an `Idempotency-Key` header.

    Written in the same transaction as the todo it created, and unique per (owner, key), so a
    retry on any web replica, two racing copies of one request, and a retry while Redis is down
    all find it and get the first answer instead of a second todo.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idempotency_keys"
    )
    key = models.CharField(max_length=255)
    # SHA-256 of the canonical JSON body: the same key with another body is a client bug (422).
    fingerprint = models.CharField(max_length=64)
    todo = models.ForeignKey(Todo, null=True, on_delete=models.SET_NULL, related_name="+")
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("created_at", "id")
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="idempotency_key_per_owner")
        ]
        indexes = [
            # Housekeeping deletes keys older than 24 h, oldest first.
            models.Index(fields=["created_at"], name="idempotency_key_created"),
        ]

    def __str__(self) -> str:
        return f"{self.owner_id}:{self.key}"

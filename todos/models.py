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
        ]

    def __str__(self) -> str:
        return self.title

"""The Todo model: one row per item, always owned by one user; the rows of deferred work
(outbox, exports, statistics) that hang off it; and the API tokens users authenticate with."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from config.edge.response_cache import token_digest
from config.request_id import MAX_LENGTH as REQUEST_ID_MAX_LENGTH
from config.tracing import TRACEPARENT_MAX_LENGTH, TRACESTATE_MAX_LENGTH

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
    # Unlinked by the services that delete todos, by owner (todos/services/todos.py), before the
    # todos go: Django's SET_NULL would update the keys by todo id alone, and Citus refuses
    # ON DELETE SET NULL on a key that holds the distribution column (docs/scaling.md). The
    # constraint is checked at commit, so a todo deleted without unlinking its key is refused.
    todo = models.ForeignKey(Todo, null=True, on_delete=models.DO_NOTHING, related_name="+")
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


class OutboxMessage(models.Model):
    """A task to publish once the transaction that wrote this row has committed.

    A service writes it in the same transaction as the data the task is about, so the task
    exists exactly when the data does; tasks/outbox.py publishes unsent rows to the broker and
    only then marks them sent.
    """

    # A dotted task name, never an import: the domain does not depend on Celery.
    task_name = models.CharField(max_length=200)
    kwargs = models.JSONField(default=dict)
    # The published task's id, the same each time the row is published: a row the broker took
    # but that was not marked sent (a crash in between) goes out again as the same task.
    task_id = models.UUIDField(default=uuid.uuid4, editable=False)
    # The id of the request that wrote the row (config/request_id.py), published with the task
    # so that its log lines can be found from the request's. NULL when no request did (a command,
    # a task), as the rows written before the column existed have it: "" would be an id sent.
    request_id = models.CharField(  # noqa: DJ001
        max_length=REQUEST_ID_MAX_LENGTH, null=True, blank=True
    )
    # The W3C trace context of the span that wrote the row (config/tracing.py), published with
    # the task so that its span continues the request's trace. NULL with tracing off or no span.
    traceparent = models.CharField(  # noqa: DJ001
        max_length=TRACEPARENT_MAX_LENGTH, null=True, blank=True
    )
    tracestate = models.CharField(  # noqa: DJ001
        max_length=TRACESTATE_MAX_LENGTH, null=True, blank=True
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    # Failed publishes (broker down), and the last error, for operators.
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("id",)
        indexes = [
            # The relay's scan: unsent rows, oldest first. Partial, so it holds only the backlog
            # (usually empty), not every row ever sent.
            models.Index(
                fields=["id"], name="outbox_unsent", condition=models.Q(sent_at__isnull=True)
            ),
            # Housekeeping deletes rows sent more than a week ago.
            models.Index(
                fields=["sent_at"], name="outbox_sent", condition=models.Q(sent_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} {self.task_id}"


class Export(models.Model):
    """A user's todos written to one file (JSON or CSV) by a worker, stored in `ExportChunk`s.

    The file lives in Postgres, not on a worker's disk, so any web replica can serve it.
    """

    class Format(models.TextChoices):
        JSON = "json"
        CSV = "csv"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="exports"
    )
    format = models.CharField(max_length=8, choices=Format.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    # The absolute URL prefix of todos as the requesting client saw them (host, scheme), so the
    # file's `url` fields are those the API gave that client.
    todo_url_prefix = models.CharField(max_length=2048)
    todo_count = models.PositiveIntegerField(null=True, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("created_at", "id")
        indexes = [
            # Housekeeping deletes exports older than a week, and fails ones stuck running.
            # A user's export is always fetched by primary key (then checked for its owner).
            models.Index(fields=["created_at"], name="export_created"),
        ]

    def __str__(self) -> str:
        return f"export {self.pk} ({self.format}, {self.status})"


class ExportChunk(models.Model):
    """One piece of an export's file; the file is the chunks' `data` concatenated by `index`."""

    export = models.ForeignKey(Export, on_delete=models.CASCADE, related_name="chunks")
    # The export's owner, copied when the chunk is written: what every statement on the chunks
    # is filtered by, so that they stay on one owner's rows (docs/scaling.md). No index of its
    # own: the unique constraint below starts with it.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    index = models.PositiveIntegerField()
    data = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("export", "index")
        constraints = [
            # Also the index the download reads an export's chunks in order with.
            models.UniqueConstraint(
                fields=["owner", "export", "index"], name="export_chunk_owner_index"
            )
        ]

    def __str__(self) -> str:
        return f"export {self.export_id} chunk {self.index}"


class UserStats(models.Model):
    """A user's completion statistics, recomputed from their todos by a task (`GET /api/stats`)."""

    # The primary key: one row per owner, and the owner's id is the key a table distributed by
    # owner (docs/scaling.md) must have in it.
    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="todo_stats",
        primary_key=True,
    )
    total = models.PositiveIntegerField(default=0)
    completed = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("owner_id",)
        # `GET /api/stats` reads by owner: the primary key serves it.
        verbose_name_plural = "user stats"

    def __str__(self) -> str:
        return f"stats of {self.owner_id}"


class ApiToken(models.Model):
    """An API token, kept only as the SHA-256 digest of its key (`token_digest`).

    The key itself (`secrets.token_hex(32)`, `Authorization: Token <key>`) is shown once, in the
    answer that issued it, and stored nowhere: a database dump authenticates nobody. Lookup is
    by digest, one indexed query, and the gateway's Redis mapping is keyed by the same digest
    (config/edge/response_cache.py). A user has one token per login, each refused from
    `expires_at` on (`API_TOKEN_TTL` after issue) or once deleted (logout, logout-all, the
    admin); todos/cache.py tells the gateways of a delete at once.

    A model of its own rather than django-rest-knox (README "Accounts and tokens"): knox looks a
    token up by a prefix of the key kept in plain text, then compares a digest made by the hash
    its own settings name (SHA-512), and deletes expired tokens inside authentication; the
    gateway, which imports no app and resolves a token with one Redis GET, would have to copy
    that scheme, and PrimaryTokenAuthentication (primary reads, trusting the gateway) would
    replace knox's authentication class anyway. What is left of knox here is a model and two
    views. No `last_used` either: the gateway answers most requests without Django, so it
    would be wrong, or a write per request.
    """

    digest = models.CharField(max_length=64, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    # What the client called it, for operators ("create_api_user", "migrated"); may be empty.
    name = models.CharField(max_length=100, blank=True)
    created = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()

    # The plain key, on the instance that issued it only (`for_key`): never a column.
    key: str | None = None

    class Meta:
        ordering = ("-created", "-id")
        indexes = [
            # Housekeeping deletes tokens that have expired. Logout-all finds a user's tokens
            # by the foreign key's own index.
            models.Index(fields=["expires_at"], name="api_token_expires"),
        ]

    def __str__(self) -> str:
        return f"token {self.pk} of user {self.user_id}"

    @classmethod
    def for_key(cls, key: str, **fields) -> "ApiToken":
        """An unsaved token for `key`: its digest, and the key kept on this instance only."""
        token = cls(digest=token_digest(key), **fields)
        token.key = key
        return token

    def expired(self, now=None) -> bool:
        return self.expires_at <= (now or timezone.now())

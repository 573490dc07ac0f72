"""Writes of todos and accounts. Each service is one transaction and takes keyword arguments."""

import random
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import send_mail
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone
from rest_framework.authtoken.models import Token

from todos import conditional, export_files, selectors
from todos.cache import todos_changed
from todos.models import (
    Export,
    ExportChunk,
    IdempotencyKey,
    OutboxMessage,
    TaskDelivery,
    Todo,
    UserStats,
)
from todos.outbox import EXPORT_RUN_TASK, STATS_RECOMPUTE_TASK, outbox_committed

# Fields a client may change; everything else (owner, id, timestamps) is set by the server.
TODO_WRITABLE_FIELDS = ("title", "completed", "order", "due_at")


class UsernameTaken(Exception):
    """Raised by `user_register` when the username already exists."""


@transaction.atomic
def todo_create(
    *,
    owner: AbstractBaseUser,
    title: str,
    completed: bool = False,
    order: int | None = None,
    due_at: datetime | None = None,
) -> Todo:
    todo = Todo.objects.create(
        owner=owner, title=title, completed=completed, order=order, due_at=due_at
    )
    todos_changed(owner_ids=[owner.pk])
    return todo


@transaction.atomic
def todo_update(*, todo: Todo, changes: dict) -> Todo:
    """Apply `changes` (a subset of `TODO_WRITABLE_FIELDS`) to `todo` and save only those."""
    unknown = set(changes) - set(TODO_WRITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not writable: {sorted(unknown)}")
    for field, value in changes.items():
        setattr(todo, field, value)
    todo.save(update_fields=[*changes, "updated_at"])
    todos_changed(owner_ids=[todo.owner_id])
    if "completed" in changes:
        todo_completion_changed(owner_ids=[todo.owner_id])
    return todo


@transaction.atomic
def todo_delete(*, todo: Todo) -> None:
    todo.delete()
    todos_changed(owner_ids=[todo.owner_id])


class PreconditionFailed(Exception):
    """Raised when `If-Match` names a version of the todo that is no longer current."""


class IdempotencyKeyReused(Exception):
    """Raised when an `Idempotency-Key` comes back with a different request body."""


# A client retries within minutes; a day covers a retry after an outage without keeping keys
# forever (housekeeping deletes older ones).
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)


@transaction.atomic
def todo_update_checked(
    *, owner: AbstractBaseUser, todo_id: int, changes: dict, if_match: str | None
) -> Todo:
    """`todo_update` under a row lock, refused when `if_match` names a stale version.

    The lock makes check-and-write atomic: of two clients that send the same `If-Match`
    together, the second waits for the first, then sees a new version and gets
    `PreconditionFailed`. Raises `Todo.DoesNotExist` for a missing or foreign id.
    """
    todo = Todo.objects.select_for_update().get(owner=owner, pk=todo_id)
    if not conditional.match(if_match, conditional.todo_etag(todo)):
        raise PreconditionFailed
    return todo_update(todo=todo, changes=changes)


@transaction.atomic
def todo_delete_checked(*, owner: AbstractBaseUser, todo_id: int, if_match: str | None) -> None:
    """`todo_delete` under a row lock, refused when `if_match` names a stale version."""
    todo = Todo.objects.select_for_update().get(owner=owner, pk=todo_id)
    if not conditional.match(if_match, conditional.todo_etag(todo)):
        raise PreconditionFailed
    todo_delete(todo=todo)


@transaction.atomic
def todo_create_idempotent(
    *,
    owner: AbstractBaseUser,
    key: str,
    fingerprint: str,
    fields: dict,
    render: Callable[[Todo], dict],
) -> tuple[IdempotencyKey, bool]:
    """Create a todo once per (owner, key); returns the key's record and whether it was replayed.

    The key row is inserted first, in the todo's transaction. A concurrent request with the same
    key blocks on the unique index until this transaction ends, then finds the row and replays
    its answer. Raises `IdempotencyKeyReused` when the stored request had another body.
    """
    IdempotencyKey.objects.filter(
        owner=owner, key=key, created_at__lt=timezone.now() - IDEMPOTENCY_KEY_TTL
    ).delete()
    try:
        with transaction.atomic():
            record = IdempotencyKey.objects.create(
                owner=owner, key=key, fingerprint=fingerprint, response_status=0, response_body={}
            )
    except IntegrityError:
        record = IdempotencyKey.objects.get(owner=owner, key=key)
        if record.fingerprint != fingerprint:
            raise IdempotencyKeyReused(key) from None
        return record, True
    todo = todo_create(owner=owner, **fields)
    record.todo = todo
    record.response_status = 201
    record.response_body = render(todo)
    record.save(update_fields=["todo", "response_status", "response_body", "updated_at"])
    return record, False


@transaction.atomic
def todo_delete_all(*, owner: AbstractBaseUser) -> int:
    """Delete every todo of `owner`; returns how many were deleted."""
    deleted, _ = Todo.objects.filter(owner=owner).delete()
    todos_changed(owner_ids=[owner.pk])
    return deleted


@transaction.atomic
def todos_set_completed(*, todos: QuerySet[Todo], completed: bool) -> int:
    """Mark every todo in `todos` completed (or not) in one UPDATE; returns the row count."""
    owner_ids = list(todos.values_list("owner_id", flat=True).distinct())
    todos_changed(owner_ids=owner_ids)
    todo_completion_changed(owner_ids=owner_ids)
    return todos.update(completed=completed, updated_at=timezone.now())


@transaction.atomic
def user_register(*, username: str, password: str) -> Token:
    """Create a user with `password` (already validated) and return their API token."""
    user_model = get_user_model()
    try:
        # A savepoint, so that a lost race on the unique username leaves the outer
        # transaction usable.
        with transaction.atomic():
            user = user_model.objects.create_user(username=username, password=password)
    except IntegrityError as exc:
        raise UsernameTaken(username) from exc
    return Token.objects.create(user=user)


@transaction.atomic
def user_token_issue(*, user: AbstractBaseUser) -> Token:
    """Return the user's API token, creating it on first use."""
    token, _ = Token.objects.get_or_create(user=user)
    return token


SEED_USERNAME_PREFIX = "seed-user-"
SEED_WORDS = (
    "buy milk", "call mom", "write report", "water plants", "book flights", "pay rent",
    "fix bike", "read book", "clean desk", "plan sprint", "walk dog", "renew passport",
)  # fmt: skip


def todos_seed(
    *,
    users: int,
    per_user: int,
    seed: int = 0,
    batch_size: int = 5000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Make sure `users` seed users exist with `per_user` todos each; returns todos created.

    Idempotent: users are found by name and only the missing todos are added, so running it
    twice leaves the same data. Rows go in with `bulk_create` in batches of `batch_size`
    (5,000 rows keep one INSERT under a few MB while amortising the round trip).
    """
    user_model = get_user_model()
    names = [f"{SEED_USERNAME_PREFIX}{index:06d}" for index in range(users)]
    existing = set(user_model.objects.filter(username__in=names).values_list("username", flat=True))
    user_model.objects.bulk_create(
        [
            user_model(username=name, password=make_password(None))
            for name in names
            if name not in existing
        ],
        batch_size=batch_size,
    )
    owners = dict(user_model.objects.filter(username__in=names).values_list("username", "id"))
    have = dict(
        Todo.objects.filter(owner_id__in=owners.values())
        .values("owner_id")
        .annotate(n=Count("id"))
        .values_list("owner_id", "n")
    )
    wanted = sum(max(per_user - have.get(owner_id, 0), 0) for owner_id in owners.values())
    created = 0
    batch: list[Todo] = []
    now = timezone.now()
    for name in names:
        owner_id = owners[name]
        rng = random.Random(f"{seed}:{name}")
        for index in range(have.get(owner_id, 0), per_user):
            batch.append(
                Todo(
                    owner_id=owner_id,
                    title=f"{rng.choice(SEED_WORDS)} #{index + 1}",
                    completed=rng.random() < 0.3,
                    order=index,
                    due_at=now + timedelta(hours=rng.randint(1, 24 * 30))
                    if rng.random() < 0.2
                    else None,
                )
            )
            if len(batch) >= batch_size:
                created += _bulk_insert(batch)
                batch = []
                if progress:
                    progress(created, wanted)
    if batch:
        created += _bulk_insert(batch)
        if progress:
            progress(created, wanted)
    return created


def _bulk_insert(todos: list[Todo]) -> int:
    with transaction.atomic():
        Todo.objects.bulk_create(todos)
        todos_changed(owner_ids=[todo.owner_id for todo in todos])
    return len(todos)


# --- Deferred work: the outbox and what tasks do ----------------------------------------------


def outbox_enqueue(*, task: str, kwargs: dict) -> OutboxMessage:
    """Record that `task` must run with `kwargs` once the current transaction commits.

    Precondition: called inside the transaction (`transaction.atomic`) that writes the data the
    task is about, so that both commit or neither does. After the commit, `outbox_committed` is
    sent, and tasks/outbox.py publishes the row at once if the broker answers (later if not).
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_enqueue must run inside the transaction that writes the data")
    message = OutboxMessage.objects.create(task_name=task, kwargs=kwargs)
    # robust: a failing publish is logged and left to the relay; it must never fail a request
    # whose data has already committed.
    transaction.on_commit(
        lambda: outbox_committed.send(OutboxMessage, ids=[message.pk]), robust=True
    )
    return message


@transaction.atomic
def outbox_mark_sent(*, ids: Iterable[int]) -> int:
    """Mark outbox rows published (the broker confirmed them); returns how many were marked."""
    now = timezone.now()
    return OutboxMessage.objects.filter(pk__in=list(ids), sent_at__isnull=True).update(
        sent_at=now, updated_at=now
    )


@transaction.atomic
def outbox_mark_failed(*, ids: Iterable[int], error: str) -> int:
    """Count a failed publish of outbox rows (they stay unsent and are tried again)."""
    return OutboxMessage.objects.filter(pk__in=list(ids)).update(
        attempts=F("attempts") + 1, last_error=error[:2000], updated_at=timezone.now()
    )


def todo_completion_changed(*, owner_ids: Iterable[int]) -> None:
    """The `todo.completed` hook: recompute the owners' statistics once the write commits.

    Precondition: called inside the transaction that completed (or reopened) their todos.
    """
    for owner_id in sorted(set(owner_ids)):
        outbox_enqueue(task=STATS_RECOMPUTE_TASK, kwargs={"owner_id": owner_id})


def stats_recompute(*, owner_id: int) -> UserStats | None:
    """Count `owner_id`'s todos afresh and store the result; None if the user no longer exists.

    Recomputed, never incremented: running it twice, or for a stale event, stores the truth.
    Counts come from the primary, so they include the write that asked for them.
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


@transaction.atomic
def export_create(*, owner: AbstractBaseUser, export_format: str, todo_url_prefix: str) -> Export:
    """Ask for an export of `owner`'s todos; a worker writes it (`export_build`)."""
    export = Export.objects.create(
        owner=owner, format=export_format, todo_url_prefix=todo_url_prefix
    )
    outbox_enqueue(task=EXPORT_RUN_TASK, kwargs={"export_id": export.pk})
    return export


def export_start(*, export_id: int) -> bool:
    """Move an export to `running`; False if it is already done or failed (a duplicate task).

    A conditional UPDATE: it waits for a copy of the task that is building the export (and holds
    its row lock), then finds it done and claims nothing.
    """
    now = timezone.now()
    return bool(
        Export.objects.filter(
            pk=export_id, status__in=(Export.Status.PENDING, Export.Status.RUNNING)
        ).update(status=Export.Status.RUNNING, started_at=now, updated_at=now)
    )


# 2,000 todos make about 0.5 MB of JSON: one chunk row (one INSERT) per half megabyte keeps the
# round trips few and the worker's memory flat whatever the export's size.
EXPORT_BATCH_ROWS = 2000


@transaction.atomic
def export_build(*, export_id: int, batch_rows: int = EXPORT_BATCH_ROWS) -> Export | None:
    """Write a running export's file as chunks and mark it done; None if it is not running.

    Precondition: `export_start` returned True. One transaction holding the export's row lock:
    a second copy of the task waits for it and then finds the export done; a worker killed
    midway leaves no chunk behind (the transaction rolls back), so the redelivered task starts
    from a clean slate. Either way the export has exactly one file.
    """
    export = Export.objects.select_for_update().get(pk=export_id)
    if export.status != Export.Status.RUNNING:
        return None
    ExportChunk.objects.filter(export=export).delete()
    exported = {"todos": 0}

    def batches():
        for batch in selectors.todo_export_batches(owner_id=export.owner_id, batch_size=batch_rows):
            exported["todos"] += len(batch)
            yield batch

    pieces = export_files.render(
        export_format=export.format, batches=batches(), todo_url_prefix=export.todo_url_prefix
    )
    size = 0
    for index, data in enumerate(pieces):
        ExportChunk.objects.create(export=export, index=index, data=data)
        size += len(data)
    export.todo_count = exported["todos"]
    export.size_bytes = size
    export.status = Export.Status.DONE
    export.finished_at = timezone.now()
    export.save(update_fields=["todo_count", "size_bytes", "status", "finished_at", "updated_at"])
    return export


def export_fail(*, export_id: int, error: str) -> bool:
    """Mark an export failed unless it already finished; True if this call marked it."""
    now = timezone.now()
    return bool(
        Export.objects.filter(
            pk=export_id, status__in=(Export.Status.PENDING, Export.Status.RUNNING)
        ).update(status=Export.Status.FAILED, error=error[:2000], finished_at=now, updated_at=now)
    )


# Reminders are sent for todos overdue by at most this much (after beat or the workers were
# down); later than a day, a reminder is noise.
REMINDER_GRACE = timedelta(hours=24)


def todo_remind(*, todo_id: int, now: datetime) -> bool:
    """Email `todo_id`'s owner that it comes due, once; True if this call sent the reminder.

    The claim (`reminded_at` set by a conditional UPDATE) and the send share one transaction:
    of two scans racing for a todo, the second waits on the row lock and then claims nothing;
    if the send fails, the claim rolls back and the next scan tries again. The one window for
    a second mail is a crash after the mail server accepted it and before the commit: at least
    once, never lost, chosen over at most once.
    """
    with transaction.atomic():
        claimed = Todo.objects.filter(pk=todo_id, reminded_at__isnull=True, completed=False).update(
            reminded_at=now
        )
        if not claimed:
            return False
        todo = Todo.objects.select_related("owner").get(pk=todo_id)
        if todo.owner.email:
            send_mail(
                subject=f"Reminder: {todo.title[:100]}",
                message=f"Your todo “{todo.title}” is due at {todo.due_at:%Y-%m-%d %H:%M} UTC.",
                from_email=None,
                recipient_list=[todo.owner.email],
            )
    return True


# Exports are kept a week; idempotency keys for their TTL (above). Sent outbox rows and delivery
# counts only explain recent history, so they go after a week too.
EXPORT_RETENTION = timedelta(days=7)
OUTBOX_RETENTION = timedelta(days=7)
TASK_DELIVERY_RETENTION = timedelta(days=7)
# An export still running after an hour lost its worker past what the task's time limits catch
# (they stop it after minutes): it is failed so the client stops waiting and asks again.
EXPORT_STUCK_AFTER = timedelta(hours=1)
# Rows deleted per statement: short transactions that never hold many locks, even when a week
# of backlog is purged at once.
PURGE_BATCH = 500


def housekeeping_purge(*, now: datetime) -> dict[str, int]:
    """Delete expired idempotency keys, old exports, sent outbox rows and delivery counts, and
    fail exports stuck running; returns the counts. Idempotent: a second run finds nothing."""
    purged = {
        "idempotency_keys": _delete_in_batches(
            IdempotencyKey.objects.filter(created_at__lt=now - IDEMPOTENCY_KEY_TTL)
        ),
        "exports": _delete_in_batches(Export.objects.filter(created_at__lt=now - EXPORT_RETENTION)),
        "outbox_messages": _delete_in_batches(
            OutboxMessage.objects.filter(sent_at__lt=now - OUTBOX_RETENTION)
        ),
        "task_deliveries": _delete_in_batches(
            TaskDelivery.objects.filter(created_at__lt=now - TASK_DELIVERY_RETENTION)
        ),
    }
    purged["stuck_exports_failed"] = Export.objects.filter(
        status=Export.Status.RUNNING, started_at__lt=now - EXPORT_STUCK_AFTER
    ).update(status=Export.Status.FAILED, error="lost its worker", finished_at=now, updated_at=now)
    return purged


def _delete_in_batches(queryset: QuerySet) -> int:
    deleted = 0
    while ids := list(queryset.values_list("pk", flat=True)[:PURGE_BATCH]):
        with transaction.atomic():
            queryset.model.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
    return deleted


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

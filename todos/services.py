"""Writes of todos and accounts. Each service is one transaction and takes keyword arguments."""

import random
from collections.abc import Callable
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone
from rest_framework.authtoken.models import Token

from todos.cache import todos_changed
from todos.models import Todo

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
    return todo


@transaction.atomic
def todo_delete(*, todo: Todo) -> None:
    todo.delete()
    todos_changed(owner_ids=[todo.owner_id])


@transaction.atomic
def todo_delete_all(*, owner: AbstractBaseUser) -> int:
    """Delete every todo of `owner`; returns how many were deleted."""
    deleted, _ = Todo.objects.filter(owner=owner).delete()
    todos_changed(owner_ids=[owner.pk])
    return deleted


@transaction.atomic
def todos_set_completed(*, todos: QuerySet[Todo], completed: bool) -> int:
    """Mark every todo in `todos` completed (or not) in one UPDATE; returns the row count."""
    todos_changed(owner_ids=todos.values_list("owner_id", flat=True).distinct())
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

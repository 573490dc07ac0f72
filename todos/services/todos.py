"""Writes of todos: create, update and delete, checked against `If-Match`, one by one or in bulk.

Each write moves the owners' cache generations (`todos_changed`) and, when completion changes,
asks for their statistics (`todo_completion_changed`).
"""

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from todos import conditional
from todos.cache import todos_changed
from todos.models import Todo
from todos.services.stats import todo_completion_changed

# Fields a client may change; everything else (owner, id, timestamps) is set by the server.
TODO_WRITABLE_FIELDS = ("title", "completed", "order", "due_at")


class PreconditionFailed(Exception):
    """Raised when `If-Match` names a version of the todo that is no longer current."""


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

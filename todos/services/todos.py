"""Writes of todos: create, update and delete, checked against `If-Match`, one by one or in bulk.

Every path that writes todos, the API's and the admin's alike, goes through here, so each write
moves the owners' cache generations (`todos_changed`) and, when completion changes, asks for
their statistics (`todo_completion_changed`).
"""

import functools
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import QuerySet
from django.utils import timezone

from config.edge.http_cache import match
from config.replicas import sticking
from todos.cache import todos_changed
from todos.conditional import todo_etag
from todos.models import IdempotencyKey, Todo
from todos.services.stats import todo_completion_changed

# Fields a client may change; everything else (owner, id, timestamps) is set by the server.
TODO_WRITABLE_FIELDS = ("title", "completed", "order", "due_at")
# An operator (the admin) may also move a todo to another owner.
TODO_OPERATOR_FIELDS = (*TODO_WRITABLE_FIELDS, "owner")


class PreconditionFailed(Exception):
    """Raised when `If-Match` names a version of the todo that is no longer current."""


def todo_create(
    *,
    owner: AbstractBaseUser,
    title: str,
    completed: bool = False,
    order: int | None = None,
    due_at: datetime | None = None,
) -> Todo:
    """One INSERT, so no transaction of its own: on its own it commits as it runs (and
    `todos_changed` then acts at once), inside a caller's transaction it is part of that one.
    An atomic block here cost a create two more round trips to Postgres (BEGIN and COMMIT, or
    a SAVEPOINT and its RELEASE inside the idempotent create).

    The INSERT ... RETURNING is built once (`_insert_statement`), not by the ORM's `save()` for
    each request (model signals, field pre-saves, the insert compiler): see `_insert_returning`.
    Both timestamps are the same instant, so a todo never changed has `updated_at ==
    created_at`."""
    now = timezone.now()
    values = {
        "owner": owner.pk,
        "title": title,
        "completed": completed,
        "order": order,
        "due_at": due_at,
        "reminded_at": None,
        "created_at": now,
        "updated_at": now,
    }
    todo, position = _insert_returning(values=values)
    todos_changed(owner_ids=[owner.pk], position=position)
    return todo


@transaction.atomic
def todo_update(*, todo: Todo, changes: dict) -> Todo:
    """Apply `changes` (a subset of `TODO_WRITABLE_FIELDS`) to `todo` and save only those."""
    return _todo_apply(todo=todo, changes=changes, writable=TODO_WRITABLE_FIELDS)


@transaction.atomic
def todo_operator_update(*, todo_id: int, changes: dict) -> Todo:
    """An operator's edit: `todo_update` of the todo `todo_id` (any owner's, under a row lock),
    where `changes` may also hold a new `owner` (see `TODO_OPERATOR_FIELDS`).

    A moved todo leaves one owner's list and counts and joins another's: both owners' cache
    generations move and both owners' statistics are recomputed. Raises `Todo.DoesNotExist`
    for a missing id.
    """
    todo = Todo.objects.select_for_update().get(pk=todo_id)
    return _todo_apply(todo=todo, changes=changes, writable=TODO_OPERATOR_FIELDS)


def _check_writable(changes: dict, writable: Iterable[str]) -> None:
    unknown = set(changes) - set(writable)
    if unknown:
        raise ValueError(f"not writable: {sorted(unknown)}")


def _todo_apply(*, todo: Todo, changes: dict, writable: Iterable[str]) -> Todo:
    _check_writable(changes, writable)
    owner_id = todo.owner_id
    for field, value in changes.items():
        setattr(todo, field, value)
    todo.updated_at = timezone.now()
    owner_ids = {owner_id, todo.owner_id}
    # The UPDATE names the owner as well as the id (`save()` names the id alone), so it stays
    # on one owner's rows, as a table distributed by owner needs (docs/scaling.md).
    updated = Todo.objects.filter(owner_id=owner_id, pk=todo.pk).update(
        **{field: getattr(todo, field) for field in changes}, updated_at=todo.updated_at
    )
    if not updated:
        raise Todo.DoesNotExist(f"todo {todo.pk} of owner {owner_id} is gone")
    todos_changed(owner_ids=owner_ids)
    if "completed" in changes or len(owner_ids) > 1:
        todo_completion_changed(owner_ids=owner_ids)
    return todo


@transaction.atomic
def todo_delete(*, todo: Todo) -> None:
    _todo_remove(todo=todo)


def _todo_remove(*, todo: Todo) -> None:
    _owner_todos_delete(owner_id=todo.owner_id, todo_ids=[todo.pk])
    todos_changed(owner_ids=[todo.owner_id])


def _owner_todos_delete(*, owner_id: int, todo_ids: list[int] | None = None) -> int:
    """Delete the todos `todo_ids` of `owner_id` (all of them with None); returns how many.

    Every statement names the owner, so it stays on one owner's rows, as a table distributed by
    owner needs (docs/scaling.md): the owner's idempotency keys are unlinked from the todos
    first (the key's foreign key is DO_NOTHING for this), then the todos go in one DELETE,
    which Django sends as it is because no related row is left for it to visit.
    """
    keys = IdempotencyKey.objects.filter(owner_id=owner_id, todo__isnull=False)
    todos = Todo.objects.filter(owner_id=owner_id)
    if todo_ids is not None:
        keys, todos = keys.filter(todo_id__in=todo_ids), todos.filter(pk__in=todo_ids)
    keys.update(todo=None)
    deleted, _ = todos.delete()
    return deleted


@transaction.atomic
def todo_update_checked(
    *,
    owner: AbstractBaseUser,
    todo_id: int,
    changes: dict | Callable[[Todo], dict],
    if_match: str | None,
) -> Todo:
    """`todo_update` under a row lock, refused when `if_match` names a stale version.

    The lock makes check-and-write atomic: of two clients that send the same `If-Match`
    together, the second waits for the first, then sees a new version and gets
    `PreconditionFailed`. Raises `Todo.DoesNotExist` for a missing or foreign id.

    `changes` may be a function of the locked todo that returns them: the caller's validation
    of a request against the current row, so that one locked read serves both (whatever it
    raises rolls the transaction back and reaches the caller).
    """
    todo = Todo.objects.select_for_update().get(owner=owner, pk=todo_id)
    if callable(changes):
        changes = changes(todo)
    if not match(if_match, todo_etag(todo)):
        raise PreconditionFailed
    # Not `todo_update`: its nested atomic block would cost a SAVEPOINT and a RELEASE.
    return _todo_apply(todo=todo, changes=changes, writable=TODO_WRITABLE_FIELDS)


def todo_update_owned(*, owner_id: int, todo_id: int, changes: dict) -> Todo:
    """`todo_update` of `owner_id`'s todo `todo_id` when no version is to be checked (no
    `If-Match`): one UPDATE ... RETURNING of the whole row, with no lock taken before it.

    Nothing is read before the write, so `changes` must already be validated without the row
    (TodoSerializer's checks are all per field). A completion change also asks for the owner's
    statistics in the outbox, so only then is there a transaction around the two writes.
    Raises `Todo.DoesNotExist` for a missing or foreign id, with nothing written.

    Before (`todo_update_checked` with no `If-Match`): BEGIN, SELECT ... FOR UPDATE, UPDATE
    and COMMIT, four round trips to the primary and the ORM's work for each.
    """
    _check_writable(changes, TODO_WRITABLE_FIELDS)
    values = {**changes, "updated_at": timezone.now()}
    with transaction.atomic() if "completed" in changes else nullcontext():
        todo, position = _update_returning(owner_id=owner_id, todo_id=todo_id, values=values)
        if todo is None:
            raise Todo.DoesNotExist(f"todo {todo_id} of owner {owner_id} is gone")
        todos_changed(owner_ids=[owner_id], position=position)
        if "completed" in changes:
            todo_completion_changed(owner_ids=[owner_id])
    return todo


def _update_returning(
    *, owner_id: int, todo_id: int, values: dict
) -> tuple[Todo | None, int | None]:
    """UPDATE `owner_id`'s todo `todo_id` with `values` (field name: value) and return the
    row as it is now, through the fields' own conversions as the ORM would load it (None when
    no row matched), with the position `_returned_todo` read. Django's `QuerySet.update`
    returns a count only."""
    connection = connections[DEFAULT_DB_ALIAS]
    sql, fields = _update_statement(connection.vendor, tuple(values))
    params = [field.get_db_prep_save(values[field.name], connection) for field in fields]
    return _returned_todo(connection, sql, [*params, owner_id, todo_id])


def _insert_returning(*, values: dict) -> tuple[Todo, int | None]:
    """INSERT a todo of `values` (every concrete field but the id, by name; the owner as its
    id) and return it as the ORM would load it: `Todo.objects.create` without the per-request
    work of `save()`: some 3-5 % of a create's CPU in process (docs/benchmarks.md). With it
    the position `_returned_todo` read."""
    connection = connections[DEFAULT_DB_ALIAS]
    sql, fields = _insert_statement(connection.vendor)
    params = [field.get_db_prep_save(values[field.name], connection) for field in fields]
    return _returned_todo(connection, sql, params)


def _returned_todo(connection, sql: str, params: list) -> tuple[Todo | None, int | None]:
    """Run `sql`, a statement RETURNING every column of the todo (`_returned_columns`), and load
    the row through each field's own conversions; None when no row came back. When the
    statement commits on its own and read replicas are configured, the primary's position
    after its commit comes back from the same round trip (`sticking.execute_committing`), for
    the writer's mark; otherwise None, and the mark reads it after the commit."""
    with connection.cursor() as cursor:
        if sticking.commits_alone(connection):
            row, position = sticking.execute_committing(cursor, sql, params)
        else:
            cursor.execute(sql, params)
            row, position = cursor.fetchone(), None
    if row is None:
        return None, position
    loaded = []
    for value, (column, converters) in zip(row, _row_loaders(connection.vendor), strict=True):
        for convert in converters:
            value = convert(value, column, connection)
        loaded.append(value)
    return Todo.from_db(DEFAULT_DB_ALIAS, RETURNED_ATTNAMES, loaded), position


RETURNED_ATTNAMES = [field.attname for field in Todo._meta.concrete_fields]


def _returned_columns(connection) -> str:
    quote = connection.ops.quote_name
    return ", ".join(quote(field.column) for field in Todo._meta.concrete_fields)


@functools.cache
def _row_loaders(vendor: str) -> list:
    """Each returned column with its converters, on the default database (of `vendor`, the
    cache's key)."""
    connection = connections[DEFAULT_DB_ALIAS]
    table = Todo._meta.db_table
    loaders = []
    for field in Todo._meta.concrete_fields:
        column = field.get_col(table)
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        loaders.append((column, converters))
    return loaders


@functools.cache
def _insert_statement(vendor: str) -> tuple[str, list]:
    """The INSERT ... RETURNING of a todo on the default database (of `vendor`) and the fields
    it sets: every concrete one but the id."""
    connection = connections[DEFAULT_DB_ALIAS]
    meta = Todo._meta
    quote = connection.ops.quote_name
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    # Names are the model's own, quoted; every value is a parameter.
    names = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({names}) "  # noqa: S608
        f"VALUES ({placeholders}) RETURNING {_returned_columns(connection)}"
    )
    return sql, fields


@functools.lru_cache(maxsize=64)
def _update_statement(vendor: str, names: tuple[str, ...]) -> tuple[str, list]:
    """The UPDATE ... RETURNING of the fields `names` on the default database (of `vendor`, the
    cache's key) and the fields: built once per set of fields, not once per request."""
    connection = connections[DEFAULT_DB_ALIAS]
    meta = Todo._meta
    quote = connection.ops.quote_name
    fields = [meta.get_field(name) for name in names]
    # Names are the model's own, quoted; every value is a parameter.
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    owner, pk = quote(meta.get_field("owner").column), quote(meta.pk.column)
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {assignments} "  # noqa: S608
        f"WHERE {owner} = %s AND {pk} = %s RETURNING {_returned_columns(connection)}"
    )
    return sql, fields


@transaction.atomic
def todo_delete_checked(*, owner: AbstractBaseUser, todo_id: int, if_match: str | None) -> None:
    """`todo_delete` under a row lock, refused when `if_match` names a stale version."""
    todo = Todo.objects.select_for_update().get(owner=owner, pk=todo_id)
    if not match(if_match, todo_etag(todo)):
        raise PreconditionFailed
    _todo_remove(todo=todo)


@transaction.atomic
def todo_delete_all(*, owner: AbstractBaseUser) -> int:
    """Delete every todo of `owner`; returns how many were deleted."""
    deleted = _owner_todos_delete(owner_id=owner.pk)
    todos_changed(owner_ids=[owner.pk])
    return deleted


@transaction.atomic
def todos_delete(*, todos: QuerySet[Todo]) -> int:
    """Delete every todo in `todos`, whoever owns them; returns how many were deleted.

    Owner by owner (an operator's selection, a page of the admin at most), so that each
    statement stays on one owner's rows like the API's own deletes.
    """
    ids_by_owner: dict[int, list[int]] = {}
    for owner_id, todo_id in todos.order_by().values_list("owner_id", "pk"):
        ids_by_owner.setdefault(owner_id, []).append(todo_id)
    deleted = sum(
        _owner_todos_delete(owner_id=owner_id, todo_ids=todo_ids)
        for owner_id, todo_ids in sorted(ids_by_owner.items())
    )
    todos_changed(owner_ids=list(ids_by_owner))
    return deleted


@transaction.atomic
def todos_set_completed(*, todos: QuerySet[Todo], completed: bool) -> int:
    """Mark every todo in `todos` completed (or not) in one UPDATE; returns the row count."""
    owner_ids = list(todos.values_list("owner_id", flat=True).distinct())
    todos_changed(owner_ids=owner_ids)
    todo_completion_changed(owner_ids=owner_ids)
    return todos.update(completed=completed, updated_at=timezone.now())

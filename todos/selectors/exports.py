"""Reads of exports: an owner's export and its file's chunks, and the todos a worker writes."""

from collections.abc import Iterator

from django.contrib.auth.models import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Q

from todos.models import Export, ExportChunk, Todo
from todos.representation import todo_rows


def export_get(*, owner: AbstractBaseUser, export_id: int, using: str | None = None) -> Export:
    """The export `export_id` of `owner` (from the database `using`, if given); raises
    `Export.DoesNotExist` for a missing or foreign id."""
    return Export.objects.using(using).get(owner=owner, pk=export_id)


def export_chunk_ids(*, export: Export) -> list[int]:
    """The primary keys of `export`'s chunks in file order, read where `export` was read."""
    return list(
        ExportChunk.objects.using(export._state.db)
        .filter(owner_id=export.owner_id, export=export)
        .order_by("index")
        .values_list("pk", flat=True)
    )


def export_chunk_data(*, owner_id: int, chunk_id: int) -> bytes:
    """One chunk's bytes, from the primary (the download reads a finished export there); by
    owner as well as id, like every read of the chunks (docs/scaling.md)."""
    data = (
        ExportChunk.objects.using(DEFAULT_DB_ALIAS)
        .values_list("data", flat=True)
        .get(owner_id=owner_id, pk=chunk_id)
    )
    return bytes(data)


def todo_export_batches(*, owner_id: int, batch_size: int, using: str) -> Iterator[list[dict]]:
    """All todos of `owner_id` in the API's default order (created_at, id), `batch_size` at a time,
    as rows of the represented columns (todos/representation.py), read from the database `using`.

    Keyset-paged on the (owner, created_at, id) index, so memory stays at one batch and no
    server-side cursor is held open. The caller picks the database: the export's task reads
    from a standby that has replayed the request that asked for it (todos/services/exports.py).
    """
    todos = todo_rows(
        Todo.objects.using(using).filter(owner_id=owner_id).order_by("created_at", "id")
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


def todo_export_count(*, owner_id: int, using: str) -> int:
    """How many todos `owner_id` has, read from the database `using`: the total an export's
    progress lines count towards (a count on one of the owner's indexes)."""
    return Todo.objects.using(using).filter(owner_id=owner_id).count()

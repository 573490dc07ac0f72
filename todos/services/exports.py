"""Exports: ask for a file of a user's todos, and the worker's steps that write it.

A worker has no terminal to draw a bar on, so a long export logs its progress instead
(`export 7: exported 50,000/100,000 todos`, every `EXPORT_LOG_EVERY` todos) through the
standard logging module: the worker's JSON log lines carry it, with the request id of the
request that asked for the export and the counts as fields of their own.
"""

import logging
import time

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from config.replicas.read_routing import committed_read_alias
from todos import export_files, selectors
from todos.models import Export, ExportChunk
from todos.outbox import EXPORT_RUN_TASK
from todos.services.outbox import outbox_enqueue

logger = logging.getLogger(__name__)


@transaction.atomic
def export_create(*, owner: AbstractBaseUser, export_format: str, todo_url_prefix: str) -> Export:
    """Ask for an export of `owner`'s todos; a worker writes it (`export_build`)."""
    export = Export.objects.create(
        owner=owner, format=export_format, todo_url_prefix=todo_url_prefix
    )
    # The owner goes with the export's id, so that the worker's statements name the owner
    # (`_export_rows`).
    outbox_enqueue(task=EXPORT_RUN_TASK, kwargs={"export_id": export.pk, "owner_id": owner.pk})
    return export


def _export_rows(*, export_id: int, owner_id: int | None):
    """The export `export_id`, as a queryset: filtered by its owner too when the task knows it,
    so the statement stays on one owner's rows (docs/scaling.md); a message enqueued before
    the owner was sent with it has only the id."""
    rows = Export.objects.filter(pk=export_id)
    return rows if owner_id is None else rows.filter(owner_id=owner_id)


def export_start(*, export_id: int, owner_id: int | None = None) -> bool:
    """Move an export to `running`; False if it is already done or failed (a duplicate task).

    A conditional UPDATE: it waits for a copy of the task that is building the export (and holds
    its row lock), then finds it done and claims nothing.
    """
    now = timezone.now()
    return bool(
        _export_rows(export_id=export_id, owner_id=owner_id)
        .filter(status__in=(Export.Status.PENDING, Export.Status.RUNNING))
        .update(status=Export.Status.RUNNING, started_at=now, updated_at=now)
    )


# 2,000 todos make about 0.5 MB of JSON: one chunk row (one INSERT) per half megabyte keeps the
# round trips few and the worker's memory flat whatever the export's size.
EXPORT_BATCH_ROWS = 2000
# A progress line every 50,000 todos: one every ~3 s at ~17,000 todos a second
# (docs/deferred-work.md, "Throughput"); an export smaller than that (most of them) logs none
# and counts nothing.
EXPORT_LOG_EVERY = 50_000


@transaction.atomic
def export_build(
    *,
    export_id: int,
    owner_id: int | None = None,
    batch_rows: int = EXPORT_BATCH_ROWS,
    log_every: int = EXPORT_LOG_EVERY,
) -> Export | None:
    """Write a running export's file as chunks and mark it done; None if it is not running.

    Precondition: `export_start` returned True. One transaction holding the export's row lock:
    a second copy of the task waits for it and then finds the export done; a worker killed
    midway leaves no chunk behind (the transaction rolls back), so the redelivered task starts
    from a clean slate. Either way the export has exactly one file.

    The todos are not read in that transaction: it only locks the export and writes its chunks,
    and the file must hold what was committed before the export was asked for. So they come
    from where the task's routing sends reads of committed data (`committed_read_alias`): a
    standby that has replayed the request's commit, else the primary. That is the heavy read;
    the chunk writes stay on the primary, in the transaction. A batch whose query fails on the
    standby is answered by the primary (config/replicas/read_routing.py); a standby that can no
    longer be connected to fails this try, and the retry reads from the primary while it cools
    down.

    Every `log_every` todos written, a progress line is logged; the owner's todos are counted
    for its total when the first is due, on the same database as the todos.
    """
    export = _export_rows(export_id=export_id, owner_id=owner_id).select_for_update().get()
    if export.status != Export.Status.RUNNING:
        return None
    ExportChunk.objects.filter(owner_id=export.owner_id, export=export).delete()
    exported = {"todos": 0}
    todos_from = committed_read_alias()

    progress = _ExportProgress(
        export_id=export.pk, owner_id=export.owner_id, using=todos_from, every=log_every
    )

    def batches():
        for batch in selectors.todo_export_batches(
            owner_id=export.owner_id, batch_size=batch_rows, using=todos_from
        ):
            exported["todos"] += len(batch)
            yield batch
            # The consumer asked for the next batch: this one's chunk is written.
            progress.written(exported["todos"])

    pieces = export_files.render(
        export_format=export.format, batches=batches(), todo_url_prefix=export.todo_url_prefix
    )
    size = 0
    for index, data in enumerate(pieces):
        ExportChunk.objects.create(owner_id=export.owner_id, export=export, index=index, data=data)
        size += len(data)
    export.todo_count = exported["todos"]
    export.size_bytes = size
    export.status = Export.Status.DONE
    export.finished_at = export.updated_at = timezone.now()
    # By owner and id, not `save()` (the id alone).
    Export.objects.filter(owner_id=export.owner_id, pk=export.pk).update(
        todo_count=export.todo_count,
        size_bytes=export.size_bytes,
        status=export.status,
        finished_at=export.finished_at,
        updated_at=export.updated_at,
    )
    progress.finished(exported["todos"])
    return export


class _ExportProgress:
    """The progress lines of one export: one each time another `every` todos are written, and
    a last one with the final count if any was logged."""

    def __init__(self, *, export_id: int, owner_id: int, using: str, every: int):
        self.export_id = export_id
        self.owner_id = owner_id
        self.using = using
        self.every = every
        self.next_line = every
        self.total: int | None = None
        self.logged = 0
        self.started = time.monotonic()

    def written(self, todos: int) -> None:
        if todos < self.next_line:
            return
        if self.total is None:
            self.total = selectors.todo_export_count(owner_id=self.owner_id, using=self.using)
        self._log(todos)
        self.next_line = (todos // self.every + 1) * self.every

    def finished(self, todos: int) -> None:
        if self.logged and self.logged != todos:
            # The todos may have changed since the count: the final line has the exact one.
            self.total = todos
            self._log(todos)

    def _log(self, todos: int) -> None:
        total = max(self.total or 0, todos)
        elapsed = time.monotonic() - self.started
        logger.info(
            "export %d: exported %s/%s todos",
            self.export_id,
            f"{todos:,}",
            f"{total:,}",
            extra={
                "export_id": self.export_id,
                "exported": todos,
                "total": total,
                "elapsed_ms": round(elapsed * 1000),
            },
        )
        self.logged = todos


def export_fail(*, export_id: int, error: str, owner_id: int | None = None) -> bool:
    """Mark an export failed unless it already finished; True if this call marked it."""
    now = timezone.now()
    return bool(
        _export_rows(export_id=export_id, owner_id=owner_id)
        .filter(status__in=(Export.Status.PENDING, Export.Status.RUNNING))
        .update(status=Export.Status.FAILED, error=error[:2000], finished_at=now, updated_at=now)
    )

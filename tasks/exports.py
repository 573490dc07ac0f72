"""Exports: a worker writes the user's todos to a file stored in Postgres."""

from celery import shared_task

from tasks.base import ReliableTask
from todos import services

# Seconds. An export of 100,000 todos takes about 6 s (bench/results/exports.md); four minutes
# allow for millions and still end within the worker's 300 s shutdown grace. The soft limit
# raises in the task, which records the export as failed; the hard one kills a process that
# ignored it.
EXPORT_SOFT_TIME_LIMIT = 240
EXPORT_TIME_LIMIT = 270


class ExportTask(ReliableTask):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        # The last word on a task that will not run again (retries spent, redelivery cap, time
        # limit): the client polling the export sees `failed` instead of waiting forever.
        services.export_fail(
            export_id=kwargs["export_id"],
            owner_id=kwargs.get("owner_id"),
            error=f"{type(exc).__name__}: {exc}",
        )


@shared_task(base=ExportTask, soft_time_limit=EXPORT_SOFT_TIME_LIMIT, time_limit=EXPORT_TIME_LIMIT)
def export_run_task(export_id: int, owner_id: int | None = None) -> None:
    """Build the export's file. Idempotent: a duplicate finds it done (or building) and stops.

    `owner_id` is the export's owner, for statements that name it; None in a message enqueued
    before it was sent (the export is then found by its id alone)."""
    if services.export_start(export_id=export_id, owner_id=owner_id):
        services.export_build(export_id=export_id, owner_id=owner_id)

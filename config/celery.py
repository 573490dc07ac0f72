"""The Celery application: `celery -A config worker` / `celery -A config beat`.

Settings come from Django's settings under the `CELERY_` prefix (config/settings.py, "Celery").
The task modules are listed there in `CELERY_IMPORTS` and imported explicitly in every process
(tasks/apps.py): autodiscovery would look only for `<app>.tasks` modules. With no
`CELERY_BROKER_URL`, tasks run eagerly in the calling process (the embedded default).

With `CELERY_METRICS_PORT` set, a worker serves its task metrics on that port, summed over its
prefork children as deploy/gunicorn.conf.py does for a web replica. This module wires the
process: the metrics directory, before anything loads prometheus_client (the loader's
`init_worker`), its removal (`worker_shutdown`) and each pool child's exit
(`worker_process_shutdown`). The metrics themselves and the server that sums them are the
tasks app's (tasks/metrics.py), which starts them on `worker_init` (tasks/apps.py).

It also keeps Celery's hands off logging (`setup_logging`): the worker and beat log with Django's
`LOGGING` (config/log_format.py), like every other process, not in Celery's own format; and while
a task runs, the id of the request that caused it is current (`task_prerun`, `task_postrun`),
so the task's log lines carry it.

With `OTEL_EXPORTER_OTLP_ENDPOINT` set, each pool child starts tracing as it starts
(`worker_process_init`: the export thread would not survive the fork) and flushes its spans as
it exits (`worker_process_shutdown`: a child exits without running `atexit`); config/tracing.py.
"""

import glob
import logging.config
import os
import shutil
import sys
import tempfile

from celery import Celery
from celery.loaders.app import AppLoader
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from config import request_id, tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

_MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Set when the worker created its metrics directory itself, so it deletes it again on exit.
_OWNED_MULTIPROC_DIR_ENV = "CELERY_OWNS_PROMETHEUS_MULTIPROC_DIR"


def _metrics_port() -> int:
    from django.conf import settings

    return settings.CELERY_METRICS_PORT


def worker_metrics_dir_prepare() -> None:
    """Give this worker an empty metrics directory of its own before prometheus_client loads.

    prometheus_client decides at import whether samples live in the process's memory or in
    files that every pool child shares, and the children inherit that decision with the module
    from this process. `django.setup()` imports it, and the worker runs that before any signal
    it sends (even `celeryd_init`), hence the loader below. Without a directory given, each
    worker makes one, so two workers on one machine never sum each other's counts; a given one
    (an emptyDir that outlives a container restart) is emptied of a previous run's files.
    """
    if not _metrics_port():
        return
    if not os.environ.get(_MULTIPROC_DIR_ENV):
        if "prometheus_client" in sys.modules:
            raise RuntimeError("prometheus_client was loaded before the worker's metrics directory")
        os.environ[_MULTIPROC_DIR_ENV] = tempfile.mkdtemp(prefix="todo-scale-worker-metrics-")
        os.environ[_OWNED_MULTIPROC_DIR_ENV] = "1"
    for path in glob.glob(os.path.join(os.environ[_MULTIPROC_DIR_ENV], "*.db")):
        os.remove(path)


class WorkerLoader(AppLoader):
    """Celery's default loader, preparing the worker's metrics directory first: `init_worker`
    is the first thing a worker does, before it imports Django and the task modules."""

    def init_worker(self) -> None:
        if not self.worker_initialized:
            worker_metrics_dir_prepare()
        super().init_worker()


app = Celery("config", loader="config.celery:WorkerLoader")
app.config_from_object("django.conf:settings", namespace="CELERY")


@worker_process_init.connect
def worker_tracing_start(**kwargs) -> None:
    tracing.tracing_start()


@worker_process_shutdown.connect
def worker_tracing_stop(**kwargs) -> None:
    tracing.tracing_stop()


@worker_process_shutdown.connect
def worker_metrics_child_exit(pid: int, **kwargs) -> None:
    """Drop an exiting child's live gauges; its counters stay, so totals never go backwards.

    Runs in the child itself (billiard calls it as the child exits, also when it is recycled
    after `worker_max_tasks_per_child`); a child killed outright skips it, which leaves nothing
    stale, because the worker's metrics are counters and histograms only.
    """
    if os.environ.get(_MULTIPROC_DIR_ENV) and "prometheus_client" in sys.modules:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


@worker_shutdown.connect
def worker_metrics_dir_remove(**kwargs) -> None:
    if os.environ.get(_OWNED_MULTIPROC_DIR_ENV):
        shutil.rmtree(os.environ[_MULTIPROC_DIR_ENV], ignore_errors=True)


@setup_logging.connect
def logging_from_settings(**kwargs) -> None:
    """Configure the worker's and beat's logging from Django's `LOGGING` instead of Celery's
    (a receiver of this signal is what stops Celery from configuring it); `LOG_LEVEL` sets the
    level, not `--loglevel`."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


# The request id each running task made current, by task id, to be reset after the run.
_bound_request_ids: dict[str, object] = {}


@task_prerun.connect
def request_id_bind(task_id: str, task, **kwargs) -> None:
    """Make the id of the request that caused the task current while it runs (None if none)."""
    headers = task.request.headers or {}
    sent = getattr(task.request, request_id.TASK_HEADER, None) or headers.get(
        request_id.TASK_HEADER
    )
    _bound_request_ids[task_id] = request_id.bind(sent)


@task_postrun.connect
def request_id_unbind(task_id: str, **kwargs) -> None:
    token = _bound_request_ids.pop(task_id, None)
    if token is not None:
        request_id.unbind(token)

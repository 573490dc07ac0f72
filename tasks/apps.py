"""The `tasks` app: registers every task module and, with them, the outbox's after-commit relay;
in a Celery worker it also starts the worker's metrics."""

from importlib import import_module

from celery.signals import worker_init
from django.apps import AppConfig
from django.conf import settings


def worker_metrics_start(**kwargs) -> None:
    """Serve the worker's task metrics from its main process, before the pool forks its
    children (the children inherit the signal receivers that count their tasks).

    Sent by the worker once Django is set up (its loader imports the task modules first, and
    with them Django). A port already taken is logged (Celery logs what a signal receiver
    raises) and the worker runs its tasks without metrics; Prometheus then shows the target down.
    """
    port = settings.CELERY_METRICS_PORT
    if not port:
        return
    # Imported here, not at the top: only a worker serves these metrics, and web processes
    # would otherwise register the worker's counters too.
    from tasks import metrics

    metrics.task_metrics_connect()
    metrics.worker_metrics_serve(port=port)


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Deferred work"

    def ready(self) -> None:
        # Every process that loads Django (web, worker, relay, manage.py) imports the same task
        # modules, explicitly: a task run eagerly or relayed by name is then known everywhere,
        # and tasks/outbox.py connects its receiver for committed outbox rows.
        for module in settings.CELERY_IMPORTS:
            import_module(module)
        worker_init.connect(
            worker_metrics_start, weak=False, dispatch_uid="tasks.apps.worker_metrics_start"
        )

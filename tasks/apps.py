"""The `tasks` app: registers every task module and, with them, the outbox's after-commit relay."""

from importlib import import_module

from django.apps import AppConfig
from django.conf import settings


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Deferred work"

    def ready(self) -> None:
        # Every process that loads Django (web, worker, relay, manage.py) imports the same task
        # modules, explicitly: a task run eagerly or relayed by name is then known everywhere,
        # and tasks/outbox.py connects its receiver for committed outbox rows.
        for module in settings.CELERY_IMPORTS:
            import_module(module)

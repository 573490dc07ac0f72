"""App configuration for the Todo resource."""

from django.apps import AppConfig


class TodosConfig(AppConfig):
    name = "todos"
    verbose_name = "Todos"

    def ready(self) -> None:
        from todos import receivers  # noqa: F401  (connects the signal receivers)

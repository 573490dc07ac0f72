"""App configuration for the Todo resource."""

from django.apps import AppConfig


class TodosConfig(AppConfig):
    name = "todos"
    verbose_name = "Todos"

    def ready(self) -> None:
        from config.edge import cacheable_routes
        from todos import cache  # noqa: F401  (connects the token receivers)

        # The list and one todo: reads the gateway may answer from the response cache.
        cacheable_routes.register("todo-list", "todo-detail")

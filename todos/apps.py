"""App configuration for the Todo resource."""

from django.apps import AppConfig


class TodosConfig(AppConfig):
    name = "todos"
    verbose_name = "Todos"

    def ready(self) -> None:
        from config import postgres_loaders
        from config.edge import cacheable_routes, direct_reads, direct_writes
        from todos import (
            cache,  # noqa: F401  (connects the token receivers)
            reads,
            writes,
        )

        postgres_loaders.connect()
        # The list and one todo: reads the gateway may answer from the response cache, and
        # render itself on a miss.
        cacheable_routes.register("todo-list", "todo-detail")
        direct_reads.register("todo-list", reads.direct_list)
        direct_reads.register("todo-detail", reads.direct_item)
        # The create and the updates, performed by the gateway for a body that parses and
        # validates.
        direct_writes.register("todo-list", "POST", writes.direct_create)
        direct_writes.register("todo-detail", "PATCH", writes.direct_update)
        direct_writes.register("todo-detail", "PUT", writes.direct_update)

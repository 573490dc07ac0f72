"""A guard that turns a query sent to the wrong database into an error (Saleor's writer guard).

Inside `routing_guard()`, every database alias's execute is wrapped: a statement other than a
read reaching a replica, or a read reaching the primary while the request's (or task's) router
choice is a replica (no write yet, no transaction open), raises `WrongDatabase`. The test suite
installs it (the `routing_guard` fixture); a developer can wrap any code in it while hunting a
stray query.
"""

import contextlib
from collections.abc import Iterator

from django.db import DEFAULT_DB_ALIAS, connections

from config.replicas.health import REPLICA_PREFIX
from config.replicas.read_routing import current_routing, is_read


class WrongDatabase(AssertionError):
    """A query reached a database the routing rules say it must not reach."""


def routing_problem(alias: str, sql: str) -> str | None:
    """Why `sql` must not run on `alias` now, or None if it may."""
    if alias.startswith(REPLICA_PREFIX):
        if not is_read(sql):
            return f"a write reached the replica {alias}: {sql}"
        return None
    if alias != DEFAULT_DB_ALIAS or not is_read(sql):
        return None
    routing = current_routing()
    if (
        routing is not None
        and routing.alias is not None
        and routing.alias.startswith(REPLICA_PREFIX)
        and not routing.wrote
        and not connections[DEFAULT_DB_ALIAS].in_atomic_block
    ):
        return f"a read reached the primary, the router had chosen {routing.alias}: {sql}"
    return None


@contextlib.contextmanager
def routing_guard() -> Iterator[list[str]]:
    """Raise WrongDatabase on a misrouted query; yields the list of problems seen.

    The list lets a caller notice a WrongDatabase that some code caught and swallowed.
    """
    problems: list[str] = []

    def guard(execute, sql, params, many, context):
        problem = routing_problem(context["connection"].alias, sql)
        if problem is not None:
            problems.append(problem)
            raise WrongDatabase(problem)
        return execute(sql, params, many, context)

    with contextlib.ExitStack() as wrappers:
        for alias in connections:
            wrappers.enter_context(connections[alias].execute_wrapper(guard))
        yield problems

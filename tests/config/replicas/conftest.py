"""Fixtures for routing tests on the suite's real primary and streaming replicas (the `cluster`
fixture itself is in tests/services.py)."""

import pytest
from django.conf import settings
from django.db import connections
from django.test.utils import CaptureQueriesContext

from config.replicas.health import replica_aliases
from tests.conftest import api_client_for
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _guarded(routing_guard):
    """Every test here fails on a misrouted query."""
    return routing_guard


@pytest.fixture(autouse=True)
def _no_response_cache(settings):
    """These tests look at which database answers a read; a cached response asks none."""
    settings.TODO_RESPONSE_CACHE = False


def reader(username: str):
    """An API client for a new user whose rows the standbys already have."""
    client = api_client_for(UserFactory(username=username))
    settings.TEST_CLUSTER.wait_for_replay()
    return client


class QueriesByAlias:
    """The statements each alias ran inside the block (health checks are not among them)."""

    def __init__(self):
        self.aliases = ["default", *replica_aliases()]
        self._contexts = {
            alias: CaptureQueriesContext(connections[alias]) for alias in self.aliases
        }

    def __enter__(self):
        for context in self._contexts.values():
            context.__enter__()
        return self

    def __exit__(self, *exc_info):
        for context in self._contexts.values():
            context.__exit__(*exc_info)

    def sql(self, alias: str) -> list[str]:
        return [query["sql"] for query in self._contexts[alias].captured_queries]

    def todo_reads(self, alias: str) -> int:
        return sum('FROM "todos_todo"' in sql for sql in self.sql(alias))

    def replica_todo_reads(self) -> int:
        return sum(self.todo_reads(alias) for alias in replica_aliases())


@pytest.fixture
def queries():
    return QueriesByAlias


def pause_replay(cluster) -> None:
    """Stop every standby's replay once it has replayed everything so far.

    Pausing in the middle of a transaction's WAL could leave a standby holding a lock that
    transaction took (a TRUNCATE between tests takes one), and reads there would wait on it.
    """
    cluster.wait_for_replay()
    for index in range(len(cluster.replica_ports)):
        cluster.pause_replay(index)


def resume_replay(cluster) -> None:
    for index in range(len(cluster.replica_ports)):
        cluster.resume_replay(index)
    cluster.wait_for_replay()

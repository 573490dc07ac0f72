"""A standby that stops, mid-run or mid-request, never fails a read; it is used again later."""

import time

import psycopg
import pytest
from django.db import connections
from django.test import RequestFactory
from prometheus_client import REGISTRY

from config.replicas.health import replica_aliases, replica_health
from config.replicas.read_routing import routing_for
from tests.config.replicas.conftest import pause_replay, reader
from tests.factories import TodoFactory
from todos.models import Todo

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def stop_all(cluster):
    for index in range(len(cluster.replica_ports)):
        cluster.stop_replica(index)


def start_all(cluster):
    for index in range(len(cluster.replica_ports)):
        cluster.start_replica(index)
    cluster.wait_for_replay()


def fallbacks(reason: str) -> float:
    sample = "todo_scale_db_replica_fallbacks_total"
    return REGISTRY.get_sample_value(sample, {"reason": reason}) or 0


def test_reads_answer_from_the_primary_while_replicas_are_down_and_return_after_cooldown(
    cluster, queries, settings
):
    # given: a cool-down long enough to outlast a standby restart, short enough to wait out;
    # and a reader whose connection to the standby is open
    settings.DATABASE_REPLICA_COOLDOWN = 3.0
    settings.DATABASE_REPLICA_CHECK_INTERVAL = 0.1
    bob = reader("bob")
    todo = TodoFactory(owner=bob.user, title="t")
    cluster.wait_for_replay()
    with queries() as reads:
        assert bob.get("/api/todos").status_code == 200
    assert reads.replica_todo_reads() == 1

    # when: every standby stops
    stop_all(cluster)

    # then: every read still answers, from the primary
    with queries() as reads:
        for _ in range(3):
            assert [t["id"] for t in bob.get("/api/todos").json()] == [todo.id]
            assert bob.get(f"/api/todos/{todo.id}").status_code == 200
    assert reads.todo_reads("default") == 6
    assert reads.replica_todo_reads() == 0
    health = replica_health()
    assert {health.states[a].down_reason for a in replica_aliases()} == {"error"}

    # when: they come back while the cool-down lasts
    start_all(cluster)
    cooling = max(health.states[a].down_until for a in replica_aliases()) - time.monotonic()
    assert cooling > 0, "the restart outlasted the cool-down: raise it"
    with queries() as reads:
        bob.get("/api/todos")
    assert reads.replica_todo_reads() == 0

    # then: once it is over a standby serves reads again
    time.sleep(cooling)
    with queries() as reads:
        assert bob.get("/api/todos").status_code == 200
    assert reads.replica_todo_reads() == 1


def test_a_query_failing_on_an_open_replica_connection_is_answered_by_the_primary(cluster, queries):
    # given: a request routed to a standby, its connection open
    bob = reader("bob")
    todo = TodoFactory(owner=bob.user, title="t")
    cluster.wait_for_replay()
    request = RequestFactory().get("/api/todos")
    request.user = bob.user
    before = fallbacks("replica_error")
    with routing_for(request) as routing:
        chosen = routing.read_alias()
        assert chosen in replica_aliases()
        assert connections[chosen].connection is not None

        # when: the standby shuts down under it (the open connection gets AdminShutdown)
        stop_all(cluster)
        with queries() as reads:
            rows = list(Todo.objects.filter(owner=bob.user))

        # then: the same query ran on the primary and its rows came back
        assert rows == [todo]
        assert reads.todo_reads("default") == 1
        assert routing.read_alias() == "default"
    assert fallbacks("replica_error") == before + 1
    assert replica_health().states[chosen].down_reason == "error"


def test_a_failing_replica_during_a_paged_read_keeps_the_page(cluster):
    # a read that fetches several rows after the failure, through the API's own pagination
    bob = reader("bob")
    created = [TodoFactory(owner=bob.user).id for _ in range(5)]
    cluster.wait_for_replay()
    assert bob.get("/api/todos?limit=2").status_code == 200

    stop_all(cluster)
    response = bob.get("/api/todos?limit=3")

    assert response.status_code == 200
    assert [t["id"] for t in response.json()] == created[:3]


@pytest.fixture
def short_replica_statement_timeout():
    """Standby connections opened in the test cancel statements after 300 ms, not 2 s."""
    saved = {}
    for alias in replica_aliases():
        options = connections[alias].settings_dict["OPTIONS"]
        saved[alias] = options["options"]
        options["options"] = "-c statement_timeout=300"
        connections[alias].close()
    yield
    for alias, value in saved.items():
        connections[alias].settings_dict["OPTIONS"]["options"] = value
        connections[alias].close()


def test_a_read_stuck_on_a_lock_the_paused_standby_replayed_is_answered_by_the_primary(
    cluster, queries, short_replica_statement_timeout
):
    # given: a transaction on the primary holding an exclusive lock on the todos table, the
    # standbys having replayed the lock, and their replay paused before the commit
    bob = reader("bob")
    todo = TodoFactory(owner=bob.user)
    cluster.wait_for_replay()
    dbname = connections["default"].settings_dict["NAME"]
    with psycopg.connect(cluster.url(dbname=dbname)) as locker:
        locker.execute("LOCK TABLE todos_todo IN ACCESS EXCLUSIVE MODE")
        # Switching to a new WAL file ships the record of the lock to the standbys at once (a
        # commit elsewhere did not, here).
        cluster.execute("SELECT pg_switch_wal()")
        pause_replay(cluster)
        locker.commit()

        # when: bob reads, routed to a standby where the lock is still held
        with queries() as reads:
            response = bob.get(f"/api/todos/{todo.id}")

    # then: the standby cancelled the statement and the primary answered
    assert response.status_code == 200
    assert reads.todo_reads("default") == 1
    assert "error" in {replica_health().states[a].down_reason for a in replica_aliases()}

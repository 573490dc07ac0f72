"""Read-your-writes on a real streaming replica: LSN marks decide who may read from a standby."""

import psycopg
import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DataError, IntegrityError, connections
from prometheus_client import REGISTRY

from config.edge import response_cache
from config.replicas import sticking
from config.replicas.health import parse_lsn, replica_aliases, replica_health
from tests.config.replicas.conftest import pause_replay, reader, resume_replay
from tests.factories import TodoFactory, UserFactory
from todos import services
from todos.models import Todo

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def fallbacks(reason: str) -> float:
    return REGISTRY.get_sample_value("todo_scale_db_replica_fallbacks_total", {"reason": reason})


def test_writer_reads_from_primary_while_others_read_the_paused_replica(cluster, queries):
    # given: two users, and standbys that stop replaying
    alice, bob = reader("alice"), reader("bob")
    TodoFactory(owner=bob.user, title="bob's old todo")
    cluster.wait_for_replay()
    pause_replay(cluster)

    # when: alice writes and at once reads her list and the new item
    created = alice.post("/api/todos", {"title": "buy milk"}, format="json")
    assert created.status_code == 201
    todo_id = created.json()["id"]
    with queries() as alice_reads:
        listed = alice.get("/api/todos")
        fetched = alice.get(f"/api/todos/{todo_id}")

    # then: she sees her todo, served by the primary; no standby has it yet
    assert listed.status_code == 200
    assert [todo["id"] for todo in listed.json()] == [todo_id]
    assert fetched.status_code == 200
    assert alice_reads.todo_reads("default") == 2
    assert alice_reads.replica_todo_reads() == 0
    for alias in replica_aliases():
        assert (
            not connections[alias]
            .cursor()
            .execute("SELECT 1 FROM todos_todo WHERE id = %s", [todo_id])
            .fetchone()
        )

    # and: bob, who wrote nothing, reads from a standby at the same moment
    with queries() as bob_reads:
        response = bob.get("/api/todos")
    assert [todo["title"] for todo in response.json()] == ["bob's old todo"]
    assert bob_reads.replica_todo_reads() == 1
    assert bob_reads.todo_reads("default") == 0

    # when: the standbys catch up
    resume_replay(cluster)
    with queries() as after:
        listed = alice.get("/api/todos")

    # then: alice is back on a standby
    assert [todo["id"] for todo in listed.json()] == [todo_id]
    assert after.replica_todo_reads() == 1
    assert after.todo_reads("default") == 0


def test_every_write_endpoint_sticks_the_writer(cluster, queries):
    alice = reader("alice")
    todo_id = alice.post("/api/todos", {"title": "a"}, format="json").json()["id"]
    cluster.wait_for_replay()
    pause_replay(cluster)

    # PATCH: the writer must see the new title on the next request
    assert alice.patch(f"/api/todos/{todo_id}", {"title": "b"}, format="json").status_code == 200
    with queries() as reads:
        assert alice.get(f"/api/todos/{todo_id}").json()["title"] == "b"
    assert reads.todo_reads("default") == 1

    # DELETE: and must not see the deleted todo again
    assert alice.delete(f"/api/todos/{todo_id}").status_code == 204
    assert alice.get(f"/api/todos/{todo_id}").status_code == 404
    assert alice.get("/api/todos").json() == []


def test_the_mark_is_the_primarys_lsn_in_redis_shared_by_every_web_replica(cluster, queries):
    alice = reader("alice")
    pause_replay(cluster)

    alice.post("/api/todos", {"title": "a"}, format="json")

    # the mark is in the shared Redis, as the primary's WAL position after the commit
    raw = redis.Redis.from_url(settings.REDIS_URL)
    keys = [key for key in raw.keys("*") if sticking.mark_key(alice.user.pk).encode() in key]
    assert len(keys) == 1
    (primary_lsn,) = cluster.execute("SELECT pg_current_wal_lsn()::text")[0]
    mark = sticking.write_location(alice.user.pk)
    assert mark <= parse_lsn(primary_lsn)
    assert 0 < raw.ttl(keys[0]) <= settings.DATABASE_STICKING_TTL
    # another web process knows nothing about the standbys yet, only what Redis holds
    replica_health().reset()
    with queries() as reads:
        alice.get("/api/todos")
    assert reads.todo_reads("default") == 1
    assert reads.replica_todo_reads() == 0


def test_reads_go_to_the_primary_when_the_marks_cannot_be_read(cluster, queries, settings):
    # given: a user who wrote nothing, and a cache whose Redis refuses connections
    from deploy.local.ports import free_port

    bob = reader("bob")
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    before = fallbacks("marks_unavailable") or 0

    # when
    with queries() as reads:
        response = bob.get("/api/todos")

    # then: correctness before speed, the primary answers
    assert response.status_code == 200
    assert reads.todo_reads("default") == 1
    assert reads.replica_todo_reads() == 0
    assert fallbacks("marks_unavailable") == before + 1


def test_a_replica_lagging_beyond_the_limit_is_skipped(cluster, queries, settings):
    # given: standbys that stopped replaying, and a limit of one byte
    bob = reader("bob")
    settings.DATABASE_REPLICA_MAX_LAG = 1
    pause_replay(cluster)
    TodoFactory(title="written by someone else while the standbys are paused")
    replica_health().refresh(force=True)

    # when
    with queries() as reads:
        response = bob.get("/api/todos")

    # then: every standby is out for the cool-down, and the primary answers
    assert response.status_code == 200
    assert reads.replica_todo_reads() == 0
    assert {replica_health().states[a].down_reason for a in replica_aliases()} == {"lag"}


def test_reads_count_per_alias(cluster):
    bob = reader("bob")
    before = REGISTRY.get_sample_value("todo_scale_db_reads_total", {"alias": "replica1"}) or 0
    settings_aliases = replica_aliases()
    replica_health().aliases = ["replica1"]
    try:
        bob.get("/api/todos")
    finally:
        replica_health().aliases = settings_aliases
    after = REGISTRY.get_sample_value("todo_scale_db_reads_total", {"alias": "replica1"})
    assert after == before + 1


def test_with_the_response_cache_on_a_create_marks_its_writer_past_its_commit(
    cluster, queries, settings
):
    # The generation bump stores the marks then, in its one round trip to Redis.
    settings.TODO_RESPONSE_CACHE = True
    alice = reader("alice")
    pause_replay(cluster)

    created = alice.post("/api/todos", {"title": "mine"}, format="json")

    assert created.status_code == 201
    mark = sticking.write_location(alice.user.pk)
    assert mark is not None
    (primary_lsn,) = cluster.execute("SELECT pg_current_wal_lsn()::text")[0]
    assert mark <= parse_lsn(primary_lsn)
    # so alice's next read, which misses the cache (a new generation), is the primary's
    with queries() as reads:
        listed = alice.get("/api/todos")
    assert [todo["title"] for todo in listed.json()] == ["mine"]
    assert reads.todo_reads("default") == 1
    assert reads.replica_todo_reads() == 0
    resume_replay(cluster)


@pytest.mark.parametrize("cached", [True, False], ids=["cache-on", "cache-off"])
@pytest.mark.parametrize("write", ["create", "patch"])
def test_a_write_on_its_own_reads_its_writers_mark_in_its_own_round_trip(
    cluster, queries, settings, write, cached
):
    # The statement commits by itself, so the position after its commit comes back with it,
    # and the writer's mark is set from it, with the response cache on (by the bump) or off.
    settings.TODO_RESPONSE_CACHE = cached
    alice = reader("alice")
    todo_id = alice.post("/api/todos", {"title": "first"}, format="json").json()["id"]
    (before,) = cluster.execute("SELECT pg_current_wal_lsn()::text")[0]
    pause_replay(cluster)

    with queries() as statements:
        if write == "create":
            answer = alice.post("/api/todos", {"title": "mine"}, format="json")
        else:
            answer = alice.patch(f"/api/todos/{todo_id}", {"title": "mine"}, format="json")
    (after,) = cluster.execute("SELECT pg_current_wal_lsn()::text")[0]

    assert answer.status_code in (200, 201)
    (statement,) = [sql for sql in statements.sql("default") if not sql.startswith("SELECT")]
    assert statement.endswith("; BEGIN; COMMIT; SELECT pg_current_wal_lsn()::text")
    mark = sticking.write_location(alice.user.pk)
    assert parse_lsn(before) < mark <= parse_lsn(after)
    # the standby has not replayed the write: the mark sends alice's next read to the primary
    with queries() as reads:
        listed = alice.get("/api/todos")
    assert "mine" in [todo["title"] for todo in listed.json()]
    assert reads.todo_reads("default") == 1
    assert reads.replica_todo_reads() == 0
    resume_replay(cluster)


@pytest.mark.parametrize(
    ("title", "owner_offset", "error"),
    [
        # A title longer than the column: Postgres refuses the INSERT itself.
        pytest.param("x" * 1000, 0, DataError, id="at-the-insert"),
        # An owner that does not exist: the deferred foreign key fails at the COMMIT.
        pytest.param("orphan", 10**6, IntegrityError, id="at-the-commit"),
    ],
)
def test_a_write_on_its_own_that_fails_leaves_nothing_and_its_connection_usable(
    cluster, settings, title, owner_offset, error
):
    settings.TODO_RESPONSE_CACHE = True
    user = UserFactory()
    owner = get_user_model()(pk=user.pk + owner_offset)
    generation = response_cache.generation_get(owner.pk)

    with pytest.raises(error):
        services.todo_create(owner=owner, title=title)

    primary = connections["default"]
    assert primary.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    # the same connection answers the next query, and nothing was written or marked
    assert Todo.objects.count() == 0
    assert sticking.write_location(owner.pk) is None
    assert response_cache.generation_get(owner.pk) == generation

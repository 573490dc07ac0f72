"""Pure logic of the routing: LSNs, statement kinds, the router, the breaker and its clock."""

import pytest

from config.db_router import PrimaryReplicaRouter
from config.replicas import health as health_module
from config.replicas.health import ReplicaHealth, format_lsn, parse_lsn
from config.replicas.read_routing import is_read, is_write
from todos.models import Todo

pytestmark = []


def test_lsns_compare_as_byte_positions():
    assert parse_lsn("0/FFFFFFFF") < parse_lsn("1/0")
    assert parse_lsn("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"


@pytest.mark.parametrize(
    ("sql", "read", "write"),
    [
        ('SELECT "todos_todo"."id" FROM "todos_todo"', True, False),
        ("  select 1", True, False),
        ('INSERT INTO "todos_todo" ("title") VALUES (%s)', False, True),
        ('UPDATE "todos_todo" SET "title" = %s', False, True),
        ('DELETE FROM "todos_todo"', False, True),
        ("WITH gone AS (DELETE FROM t RETURNING id) SELECT count(*) FROM gone", False, True),
        ('SAVEPOINT "s1"', False, False),
        ('RELEASE SAVEPOINT "s1"', False, False),
        ("SET TIME ZONE 'UTC'", False, False),
    ],
)
def test_statement_kinds(sql, read, write):
    assert (is_read(sql), is_write(sql)) == (read, write)


def test_router_sends_writes_and_migrations_to_the_primary_and_reads_outside_requests_too():
    router = PrimaryReplicaRouter()
    assert router.db_for_write(Todo) == "default"
    assert router.db_for_read(Todo) == "default"  # no request: nobody's marks are known
    assert router.allow_migrate("default", "todos")
    assert not router.allow_migrate("replica1", "todos")
    assert router.allow_relation(Todo(), Todo())


class FakeDatabases:
    """Positions the primary and the standbys report, as the status queries would."""

    def __init__(self, monkeypatch):
        self.primary = 1000
        self.replay = {"replica1": 1000, "replica2": 1000}
        self.down: set[str] = set()
        self.queries = 0
        monkeypatch.setattr(health_module, "query_one", self.query_one)
        monkeypatch.setattr(health_module, "primary_write_location", lambda: self.primary)

    def query_one(self, alias, query):
        from django.db import OperationalError

        self.queries += 1
        if alias in self.down:
            raise OperationalError("connection refused")
        return (format_lsn(self.replay[alias]),)


@pytest.fixture
def clock():
    class Clock:
        now = 100.0

        def __call__(self):
            return self.now

    return Clock()


@pytest.fixture
def health(settings, clock):
    settings.DATABASE_REPLICA_CHECK_INTERVAL = 1.0
    settings.DATABASE_REPLICA_COOLDOWN = 10.0
    settings.DATABASE_REPLICA_MAX_LAG = 500
    settings.DATABASE_STICKING_TTL = 30
    return ReplicaHealth(["replica1", "replica2"], clock=clock)


def test_positions_are_asked_once_per_interval(health, clock, monkeypatch):
    databases = FakeDatabases(monkeypatch)
    for _ in range(50):
        assert health.available() == ["replica1", "replica2"]
    assert databases.queries == 2
    clock.now += 1.0
    health.available()
    assert databases.queries == 4


def test_caught_up_asks_again_only_when_the_cached_position_is_behind(health, clock, monkeypatch):
    databases = FakeDatabases(monkeypatch)
    health.available()
    asked = databases.queries
    assert health.caught_up("replica1", 900)
    assert databases.queries == asked
    databases.replay["replica1"] = 1100
    assert health.caught_up("replica1", 1050)
    assert databases.queries == asked + 1


def test_a_failing_or_lagging_standby_cools_down_then_returns(health, clock, monkeypatch):
    databases = FakeDatabases(monkeypatch)
    databases.down = {"replica1"}
    databases.replay["replica2"] = 400  # 600 bytes behind, the limit is 500
    assert health.available() == []
    assert health.states["replica1"].down_reason == "error"
    assert health.states["replica2"].down_reason == "lag"

    databases.down = set()
    databases.replay["replica2"] = 1000
    clock.now += 5
    assert health.available() == []
    clock.now += 5
    assert health.available() == ["replica1", "replica2"]


def test_a_standby_that_misses_old_writes_is_out_whatever_the_byte_count(
    health, clock, monkeypatch
):
    # given: a standby stuck while the primary writes a little (under the byte limit)
    databases = FakeDatabases(monkeypatch)
    health.available()
    databases.primary = 1100
    clock.now += 1
    health.available()
    databases.primary = 1200
    databases.replay = {"replica1": 1050, "replica2": 1200}

    # when: half the marks' lifetime has passed since the primary was at 1100
    clock.now += 15
    health.available()

    # then: replica1 has not replayed what the primary had 15 s ago: an expired mark could
    # point a user at a write it misses
    assert health.states["replica1"].down_reason == "stale"
    assert health.is_up("replica2")

"""The project behind a real PgBouncer in transaction pooling mode (deploy/local/pgbouncer.py)
in front of the suite's private primary and standby, with DATABASE_TRANSACTION_POOLING=true
(config/transaction_pooling.py): a gunicorn replica serving the API through it, and a child
process showing why `.iterator()` needs server-side cursors off and that the standby's statement
timeout and the replication checks survive the pooler."""

import concurrent.futures
import json
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from config.transaction_pooling import for_transaction_pooling
from deploy.local.pgbouncer import database_entries, start_pgbouncer
from tests.factories import TodoFactory, TokenFactory, UserFactory
from tests.servers import ROOT, clean_env, gunicorn, replica_env
from tests.services import wait_for

# Server connections per database entry: fewer than the gunicorn threads that talk to it.
POOL_SIZE = 2
# Seconds a statement waits for a server connection (the launcher's default is 5): short, so
# that the standby lost below costs the test a second.
QUERY_WAIT_TIMEOUT = 1
POSTGRES = "django.db.backends.postgresql"


# --- the settings ----------------------------------------------------------------------------
def test_pooling_settings_drop_session_state_and_keep_the_rest():
    databases = {
        "default": {
            "ENGINE": POSTGRES,
            "NAME": "todo",
            "OPTIONS": {"connect_timeout": 5, "prepare_threshold": 5},
        },
        "replica1": {
            "ENGINE": POSTGRES,
            "NAME": "todo_replica1",
            "OPTIONS": {"connect_timeout": 1, "options": "-c statement_timeout=2000"},
            "TEST": {"MIRROR": "default"},
        },
    }

    pooled = for_transaction_pooling(databases)

    assert pooled["default"]["OPTIONS"] == {"connect_timeout": 5, "prepare_threshold": None}
    assert pooled["replica1"]["OPTIONS"] == {"connect_timeout": 1, "prepare_threshold": None}
    assert all(config["DISABLE_SERVER_SIDE_CURSORS"] for config in pooled.values())
    assert pooled["replica1"]["TEST"] == {"MIRROR": "default"}
    # The settings it was given are left as they were.
    assert databases["replica1"]["OPTIONS"]["options"] == "-c statement_timeout=2000"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}, "needs Postgres"),
        ({"ENGINE": POSTGRES, "NAME": "todo", "OPTIONS": {"assume_role": "app"}}, "assume_role"),
    ],
)
def test_pooling_refuses_what_cannot_work_through_it(config, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        for_transaction_pooling({"default": config})


# --- a real PgBouncer --------------------------------------------------------------------------
@pytest.fixture
def bouncer(cluster):
    """PgBouncer (transaction mode, POOL_SIZE server connections per entry) in front of the
    test database on the primary and on each standby."""
    entries = database_entries(
        primary_port=cluster.primary_port,
        dbname=connection.settings_dict["NAME"],
        standby_ports=cluster.replica_ports,
        statement_timeout=settings.DATABASE_REPLICA_STATEMENT_TIMEOUT,
    )
    with start_pgbouncer(
        None, entries, pool_size=POOL_SIZE, query_wait_timeout=QUERY_WAIT_TIMEOUT
    ) as running:
        yield running


def pooled_env(bouncer, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": bouncer.primary_url,
        "DATABASE_REPLICA_URLS": ",".join(bouncer.replica_urls),
        "DATABASE_TRANSACTION_POOLING": "true",
        **extra,
    }


def pool(bouncer, name: str) -> dict:
    (row,) = [row for row in bouncer.show("POOLS") if row["database"] == name]
    return row


def server_connections(row: dict) -> int:
    return sum(row[state] for state in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))


def path_of(url: str, server) -> str:
    assert url.startswith(server.base), url
    return url.removeprefix(server.base)


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_the_api_works_through_pgbouncer_on_fewer_server_connections(bouncer):
    token = TokenFactory(user=UserFactory(username="pooled")).key
    env = replica_env(
        **pooled_env(
            bouncer,
            REDIS_URL=settings.REDIS_URL,
            RATE_LIMIT_USER="off",
            TODO_PAGE_SIZE="3",
            # Every read asks a database, so each one passes through the pooler.
            TODO_RESPONSE_CACHE="false",
        )
    )
    with gunicorn(env, workers=2) as server:
        # create
        created = []
        for n in range(7):
            reply = server.request("POST", "/api/todos", token=token, body={"title": f"t{n}"})
            assert reply.status == 201, reply.body
            created.append(reply.json()["id"])

        # an idempotent create, retried: one todo, the first answer replayed
        key = {"Idempotency-Key": str(uuid.uuid4())}
        once = {"title": "once"}
        first = server.request("POST", "/api/todos", token=token, body=once, headers=key)
        again = server.request("POST", "/api/todos", token=token, body=once, headers=key)
        assert (first.status, again.status) == (201, 201)
        assert again.json() == first.json()
        assert again.headers.get("Idempotent-Replayed") == "true"
        created.append(first.json()["id"])

        # list, three to a page, following the keyset cursor of each page's Link header
        listed, path, pages = [], "/api/todos", 0
        while path:
            reply = server.request("GET", path, token=token)
            assert reply.status == 200, reply.body
            listed += [todo["id"] for todo in reply.json()]
            pages += 1
            link = reply.headers.get("Link")
            path = path_of(link.split(">")[0].lstrip("<"), server) if link else None
        assert (sorted(listed), pages) == (sorted(created), 3)

        # PATCH with If-Match: the current ETag wins, a stale one is refused
        item = f"/api/todos/{created[0]}"
        etag = server.request("GET", item, token=token).headers["ETag"]
        changed = server.request(
            "PATCH", item, token=token, body={"completed": True}, headers={"If-Match": etag}
        )
        stale = server.request(
            "PATCH", item, token=token, body={"title": "lost"}, headers={"If-Match": etag}
        )
        assert (changed.status, changed.json()["completed"], stale.status) == (200, True, 412)

        # an export (run in the web process: no broker), downloaded once done
        reply = server.request("POST", "/api/exports", token=token, body={"format": "json"})
        assert reply.status == 202, reply.body
        export = path_of(reply.json()["url"], server)
        done = wait_for(
            lambda: server.request("GET", export, token=token).json()["status"] == "done",
            timeout=15,
            what="the export to be done",
        )
        assert done
        download = server.request("GET", f"{export}/download", token=token)
        assert download.status == 200, download.body
        assert sorted(todo["id"] for todo in json.loads(download.body)) == sorted(created)

        # many clients at once: each gunicorn thread keeps a connection of its own
        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as executor:
            statuses = list(
                executor.map(lambda _: server.request("GET", item, token=token).status, range(48))
            )
        assert statuses == [200] * 48

        primary = pool(bouncer, bouncer.databases[0]["name"])
        standby = pool(bouncer, bouncer.databases[1]["name"])
        stats = {row["database"]: row for row in bouncer.show("STATS")}

    # Each gunicorn thread keeps a client connection per alias it used; PgBouncer served them
    # all on at most POOL_SIZE server connections per database.
    assert (primary["pool_mode"], standby["pool_mode"]) == ("transaction", "transaction")
    assert 1 <= server_connections(primary) <= POOL_SIZE
    assert 1 <= server_connections(standby) <= POOL_SIZE
    clients = sum(row["cl_active"] + row["cl_waiting"] for row in (primary, standby))
    assert clients > server_connections(primary) + server_connections(standby)
    # Every one of the 65 requests above (besides the export's polls) ran at least one
    # transaction, on the primary or the standby, through PgBouncer; the writes on the primary.
    primary_xacts, standby_xacts = (
        stats[row["database"]]["total_xact_count"] for row in (primary, standby)
    )
    assert primary_xacts + standby_xacts >= 65
    assert primary_xacts >= 7 + 1 + 1 + 1  # the creates, the PATCH, the export


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_standby_lost_under_connected_clients_hands_its_reads_to_the_primary(bouncer, cluster):
    owner = UserFactory(username="failing-over")
    token = TokenFactory(user=owner).key
    for n in range(3):
        TodoFactory(owner=owner, title=f"f{n}")
    cluster.wait_for_replay()
    env = replica_env(
        **pooled_env(
            bouncer,
            REDIS_URL=settings.REDIS_URL,
            RATE_LIMIT_USER="off",
            TODO_RESPONSE_CACHE="false",
        )
    )
    with gunicorn(env, workers=1) as server:
        for _ in range(4):
            assert server.request("GET", "/api/todos", token=token).status == 200
        assert pool(bouncer, bouncer.databases[1]["name"])["cl_active"] >= 1

        # The standby goes away while gunicorn's threads are connected to PgBouncer for it: a
        # read waits for a server connection at most QUERY_WAIT_TIMEOUT (PgBouncer's default,
        # 120 s, would outlast gunicorn's 30 s), fails, and the primary answers it.
        cluster.stop_replica(0)
        began = time.monotonic()
        replies = [server.request("GET", "/api/todos", token=token) for _ in range(3)]
        took = time.monotonic() - began

        assert [reply.status for reply in replies] == [200] * 3
        assert all(len(reply.json()) == 3 for reply in replies)
        assert took < 10 * QUERY_WAIT_TIMEOUT
        ejected = server.metric(
            "todo_scale_db_replica_ejections_total", alias="replica1", reason="error"
        )
        assert ejected >= 1, server.log.read_text()[-3000:]


# What the child process runs: `.iterator()` while another client holds the server connection
# the iterator's first statements ran on, with the settings' DISABLE_SERVER_SIDE_CURSORS and with
# it switched off; then the standby's statement timeout and the replication report.
CHILD_SCRIPT = """
import json
import psycopg
from django.db import DatabaseError, connections
from config.replicas.health import replication_status
from todos.models import Todo

def iterate(url):
    todos = Todo.objects.filter(owner__username="iterated").order_by("id").iterator(chunk_size=2)
    first = [next(todos), next(todos)]
    # Another client takes the server connection the iterator's statements ran on (PgBouncer
    # lends the last one released first) and keeps it in a transaction.
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("BEGIN")
        other.execute("SELECT 1")
        try:
            return len(first) + len(list(todos))
        except (DatabaseError, psycopg.Error) as exc:
            return str(exc).strip()

default = connections["default"]
url = "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(**default.settings_dict)
report = {"client_side": iterate(url)}
default.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = False
report["server_side"] = iterate(url)
with connections["replica1"].cursor() as cursor:
    cursor.execute("SHOW statement_timeout")
    report["standby_statement_timeout"] = cursor.fetchone()[0]
report["replication"] = replication_status()["replicas"]
print(json.dumps(report))
"""


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_iterator_needs_client_side_cursors_and_the_standby_keeps_its_timeout(bouncer, cluster):
    owner = UserFactory(username="iterated")
    for n in range(5):
        TodoFactory(owner=owner, title=f"i{n}")
    cluster.wait_for_replay()
    env = clean_env(**pooled_env(bouncer, DJANGO_SECRET_KEY="test-secret-key-for-a-child"))

    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", CHILD_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # With the settings: the whole result came with the first fetch, nothing was left on the
    # server connection.
    assert report["client_side"] == 5
    # Without them: the cursor WITH HOLD stayed on a server connection another client now has.
    assert 'cursor "_django_curs_' in report["server_side"]
    assert "does not exist" in report["server_side"]
    # The standby's statement timeout came from PgBouncer's connect_query, not a startup option.
    milliseconds = settings.DATABASE_REPLICA_STATEMENT_TIMEOUT
    shown = f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"
    assert report["standby_statement_timeout"] == shown
    (replica,) = report["replication"]
    assert (replica["alias"], replica["reachable"], replica["error"]) == ("replica1", True, None)

"""The private Postgres, Redis and RabbitMQ launchers, against real processes."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import kombu
import psycopg
import pytest
import redis

from deploy.local import postgres as pg_module
from deploy.local._proc import ServiceError, cmdline, pid_alive
from deploy.local.ports import free_port, free_ports, port_open
from deploy.local.postgres import PostgresCluster, start_cluster
from deploy.local.rabbitmq import RabbitMQNode, start_rabbitmq
from deploy.local.redis import RedisServer, start_redis

# Plain pytest: no Django, no database fixtures.
pytestmark = []

REPO = Path(__file__).resolve().parents[3]


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains `text` (the data or home directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            line = cmdline(int(entry.name))
            if text in line and pid_alive(int(entry.name)):
                found.append((int(entry.name), line))
    return found


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory the service users can enter (pytest's tmp_path is 0700 and root's)."""
    path = Path(tempfile.mkdtemp(prefix="svc-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_cli(module: str, *args: str) -> dict[str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    values = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        (values[key],) = shlex.split(value) or [""]
    return values


# --- ports ---------------------------------------------------------------------------------------
def test_free_ports_are_distinct_and_closed():
    ports = free_ports(5)
    assert len(set(ports)) == 5
    assert not port_open(free_port())


# --- Postgres ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    with start_cluster(replicas=1) as started:
        yield started


@pytest.fixture
def probe(cluster: PostgresCluster) -> None:
    """An empty table `probe`, already on the standby."""
    cluster.execute("DROP TABLE IF EXISTS probe")
    cluster.execute("CREATE TABLE probe (id int PRIMARY KEY)")
    cluster.wait_for_replay()


def test_cluster_has_a_primary_and_a_streaming_standby(cluster: PostgresCluster):
    assert cluster.primary_url == f"postgres://postgres@127.0.0.1:{cluster.primary_port}/postgres"
    assert cluster.replica_urls == [cluster.url(cluster.replica_ports[0])]
    assert cluster.execute("SELECT pg_is_in_recovery()") == [(False,)]
    assert cluster.execute("SELECT pg_is_in_recovery()", replica=0) == [(True,)]
    assert cluster.execute("SHOW synchronous_commit") == [("on",)]
    senders = cluster.execute(
        "SELECT state, slot_name FROM pg_stat_replication JOIN "
        "pg_replication_slots ON active_pid = pid"
    )
    assert senders == [("streaming", "slot1")]


def test_row_on_primary_is_visible_on_replica_after_wait_for_replay(
    cluster: PostgresCluster, probe: None
):
    cluster.execute("INSERT INTO probe VALUES (1)")
    cluster.wait_for_replay(index=0)
    assert cluster.execute("SELECT id FROM probe", replica=0) == [(1,)]


def test_paused_replay_hides_new_rows_until_resumed(cluster: PostgresCluster, probe: None):
    cluster.pause_replay()
    try:
        assert cluster.replay_paused()
        cluster.execute("INSERT INTO probe VALUES (2)")
        with pytest.raises(TimeoutError):
            cluster.wait_for_replay(timeout=0.3)
        assert cluster.execute("SELECT id FROM probe", replica=0) == []
    finally:
        cluster.resume_replay()
    cluster.wait_for_replay()
    assert cluster.execute("SELECT id FROM probe", replica=0) == [(2,)]


def test_stopped_replica_refuses_connections_and_comes_back(cluster: PostgresCluster, probe: None):
    cluster.stop_replica()
    try:
        with pytest.raises(psycopg.OperationalError, match="refused"):
            cluster.connect(replica=0, timeout=2)
        # The primary carries on alone.
        cluster.execute("INSERT INTO probe VALUES (3)")
    finally:
        cluster.start_replica()
    cluster.wait_for_replay()
    assert cluster.execute("SELECT id FROM probe", replica=0) == [(3,)]


def test_create_database_reaches_the_replica(cluster: PostgresCluster):
    cluster.create_database("todo_local")
    assert cluster.execute("SELECT current_database()", replica=0, dbname="todo_local") == [
        ("todo_local",)
    ]


def test_stop_leaves_no_process_and_removes_its_directory():
    started = start_cluster(replicas=1)
    pids = [postmaster_pid(started.primary_dir), postmaster_pid(started.replica_dir(0))]
    started.pause_replay()  # stop() must cope with (and undo) a paused standby
    started.stop()
    assert not any(pid_alive(pid) for pid in pids)
    assert processes_mentioning(str(started.base_dir)) == []
    assert not started.base_dir.exists()
    started.stop()  # idempotent


def test_failed_start_stops_what_it_started(monkeypatch: pytest.MonkeyPatch, shared_tmp: Path):
    real_run = pg_module.run

    def failing_run(argv, *, what, **kwargs):
        if what == "pg_basebackup":
            raise ServiceError("simulated base backup failure")
        return real_run(argv, what=what, **kwargs)

    monkeypatch.setattr(pg_module, "run", failing_run)
    base = shared_tmp / "pg"
    with pytest.raises(ServiceError, match="simulated"):
        start_cluster(base, replicas=1)
    assert processes_mentioning(str(base)) == []
    assert not base.exists()


def test_cli_starts_and_stops_a_cluster_in_a_given_directory(shared_tmp: Path):
    values = run_cli("deploy.local.postgres", "start", "--dir", str(shared_tmp), "--dbname", "todo")
    primary, replicas = values["PRIMARY_URL"], values["REPLICA_URLS"].split(",")
    assert primary.endswith("/todo")
    assert len(replicas) == 1
    cluster = PostgresCluster.load(shared_tmp)
    try:
        with psycopg.connect(replicas[0], connect_timeout=5) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    finally:
        run_cli("deploy.local.postgres", "stop", "--dir", str(shared_tmp))
    assert processes_mentioning(str(shared_tmp)) == []
    assert not port_open(cluster.primary_port)
    # The caller's directory stays, with the logs, and can host a new cluster.
    assert shared_tmp.is_dir()
    assert (shared_tmp / "primary.log").exists()
    assert not cluster.primary_dir.exists()


# --- Redis ---------------------------------------------------------------------------------------
def test_redis_start_ping_stop_restart():
    with start_redis() as server:
        client = redis.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
        assert client.ping()
        client.set("k", "v")
        server.stop()
        assert not server.ping()
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        server.start()
        assert client.get("k") is None  # nothing persisted, and the client reconnects by itself
        server.restart()
        assert server.ping()
        base_dir = server.base_dir
    assert not base_dir.exists()
    assert not port_open(server.port)


def test_redis_cli(shared_tmp: Path):
    directory = shared_tmp / "redis"
    port = free_port()
    values = run_cli("deploy.local.redis", "start", "--dir", str(directory), "--port", str(port))
    assert values == {"REDIS_URL": f"redis://127.0.0.1:{port}"}
    pid = RedisServer.load(directory).pid
    assert redis.Redis.from_url(values["REDIS_URL"]).ping()
    run_cli("deploy.local.redis", "stop", "--dir", str(directory))
    assert pid is not None
    assert not pid_alive(pid)
    assert not directory.exists()


# --- RabbitMQ ------------------------------------------------------------------------------------
def test_rabbitmq_start_amqp_stop():
    with start_rabbitmq() as node:
        mark = f"-home {node.base_dir} "
        assert processes_mentioning(mark)
        with kombu.Connection(node.url, connect_timeout=5) as conn:
            queue = conn.SimpleQueue("deploy-local-test")
            queue.put({"hello": "world"})
            message = queue.get(timeout=5)
            assert message.payload == {"hello": "world"}
            message.ack()
            queue.close()
        node.stop()
        assert not port_open(node.port)
        assert not node.amqp_ok()
        # epmd is shared by every Erlang node on the machine and may stay; the VM may not.
        assert processes_mentioning(mark) == []
    assert not node.base_dir.exists()


def test_rabbitmq_cli_and_restart(shared_tmp: Path):
    directory = shared_tmp / "rabbit"
    values = run_cli("deploy.local.rabbitmq", "start", "--dir", str(directory))
    node = RabbitMQNode.load(directory)
    assert values == {"CELERY_BROKER_URL": node.url}
    try:
        assert node.amqp_ok()
        # A node loaded from its state file (not our child) can still be restarted.
        node.restart()
        assert node.amqp_ok()
    finally:
        run_cli("deploy.local.rabbitmq", "stop", "--dir", str(directory))
    assert not port_open(node.port)
    assert processes_mentioning(f"-home {directory} ") == []
    assert not directory.exists()

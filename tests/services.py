"""The real services tests run against, as fixtures registered for the whole suite.

The suite's own Postgres cluster and Redis are started by tests/settings.py; here are the
`cluster` fixture on top of that cluster, a private RabbitMQ node and a Redis for task results,
the Celery app pointed at them (`broker`), workers (in a thread, or real `celery worker`
processes for tests that kill them) and child processes on the test database, in the background
or run to their end with stderr a terminal (`run_command`). Every service
comes from deploy/local/ (the code `make stack` uses) and never from the machine's own.
"""

import contextlib
import fcntl
import os
import pty
import signal
import struct
import subprocess
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import amqp
import kombu.pools
import psycopg
import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.conf import settings
from django.db import connection, connections

from config.celery import app as celery_app
from deploy.local import celery_worker
from deploy.local._proc import ROOT, stop_group
from deploy.local._proc import spawn as spawn_process
from deploy.local.rabbitmq import start_rabbitmq
from deploy.local.redis import start_redis
from tasks import outbox

QUEUE = "celery"


def wait_for(predicate, *, timeout: float, what: str, interval: float = 0.02):
    """Poll until `predicate()` is truthy and return its value; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# --- Postgres ------------------------------------------------------------------------------------
@pytest.fixture
def cluster():
    """The private primary + standbys of this test run, every standby running and replaying
    again afterwards (a paused replay outlives its session; a stopped one outlives the test)."""
    cluster = settings.TEST_CLUSTER
    if cluster is None or not cluster.replica_ports:
        pytest.skip("needs the suite's own cluster (TEST_DATABASE_URL points elsewhere)")
    yield cluster
    for index in range(len(cluster.replica_ports)):
        try:
            cluster.resume_replay(index)
        except psycopg.OperationalError:
            # Stopped by the test: a restarted standby replays on its own.
            cluster.start_replica(index)
    cluster.wait_for_replay()


# --- RabbitMQ, results Redis and the Celery app --------------------------------------------------
@pytest.fixture(scope="session")
def rabbitmq():
    with start_rabbitmq() as node:
        yield node


@pytest.fixture(scope="session")
def results_redis():
    with start_redis() as server:
        yield server


def reset_connections() -> None:
    """Drop the app's pooled broker connections and producers, so the next publish connects to
    whatever `broker_url` now says."""
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    celery_app._local.__dict__.pop("backend", None)


def queue_depth(node) -> int:
    with celery_app.connection_for_write(node.url) as conn:
        try:
            return conn.default_channel.queue_declare(QUEUE, passive=True).message_count
        except amqp.exceptions.NotFound:
            return 0


def purge_queue(node) -> None:
    if not node.running:
        return
    with celery_app.connection_for_write(node.url) as conn, contextlib.suppress(Exception):
        conn.default_channel.queue_purge(QUEUE)


@pytest.fixture
def broker(rabbitmq, results_redis, settings):
    """The Celery app of this process publishing to the private node, results in Redis db 1."""
    saved = {
        key: celery_app.conf[key]
        for key in ("broker_url", "task_always_eager", "result_backend", "broker_transport_options")
    }
    if not rabbitmq.running:
        rabbitmq.start()
    celery_app.conf.update(
        broker_url=rabbitmq.url,
        task_always_eager=False,
        result_backend=f"{results_redis.url}/1",
        broker_transport_options={"confirm_publish": True},
    )
    settings.CELERY_BROKER_URL = rabbitmq.url
    reset_connections()
    outbox.fast_path_reset()
    purge_queue(rabbitmq)
    yield rabbitmq
    if not rabbitmq.running:
        rabbitmq.start()
    purge_queue(rabbitmq)
    celery_app.conf.update(saved)
    reset_connections()
    outbox.fast_path_reset()


# --- workers -------------------------------------------------------------------------------------
class TaskRuns:
    """Counts tasks the in-thread worker finished, so a test can wait for them."""

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, **kwargs):
        with self.lock:
            self.count += 1
        # Each worker thread has its own database connections; closing them here, in that
        # thread, leaves none open when the test database is flushed or dropped.
        connections.close_all()

    def wait(self, count: int, timeout: float = 30) -> None:
        wait_for(lambda: self.count >= count, timeout=timeout, what=f"{count} finished tasks")


@contextlib.contextmanager
def in_thread_worker():
    """A real Celery worker consuming from the broker `broker_url` names, in threads of this
    process; `.runs` counts the tasks it finished."""
    runs = TaskRuns()
    task_postrun.connect(runs, weak=False)
    try:
        with start_worker(
            celery_app,
            pool="threads",
            concurrency=2,
            perform_ping_check=False,
            loglevel="WARNING",
            shutdown_timeout=30,
        ) as running:
            running.runs = runs
            # An idle worker's loop sleeps up to ten seconds before it looks at the stop flag
            # again; a no-op timer every 0.2 s makes stopping it quick.
            running.hub.call_repeatedly(0.2, lambda: None)
            yield running
    finally:
        task_postrun.disconnect(runs)


@pytest.fixture
def worker(broker):
    with in_thread_worker() as running:
        yield running


def celery_worker_argv(name: str) -> list[str]:
    """`celery -A config worker` as deployed: prefork, one process, acks_late from settings."""
    return celery_worker.worker_argv(hostname=f"{name}@%h", concurrency=1, quick_start=True)


# --- child processes on the test database --------------------------------------------------------
def child_database_url() -> str:
    """The URL of the test database (`test_<name>`), for child processes."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"])
    return f"postgres://{credentials}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process on the test database, with production settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    for name in ("TEST_DATABASE_URL", "TEST_REDIS_URL", "REDIS_URL", "DATABASE_REPLICA_URLS"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_SECRET_KEY="test-only-secret-key-for-child-processes",
        DATABASE_URL=child_database_url(),
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


class ChildProcess:
    """A process in a session of its own, so that `kill` reaches it and all its children."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path):
        self.log = log
        self.proc = spawn_process(argv, env=env, log=log)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        """SIGTERM (a worker's warm shutdown), SIGKILL if it lingers."""
        stop_group(
            self.proc.pid, timeout=celery_worker.STOP_TIMEOUT, proc=self.proc, leader_only=True
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def spawn(tmp_path):
    """Start child processes on the test database; every one is stopped after the test."""
    started: list[ChildProcess] = []

    def start(argv: list[str], **env: str) -> ChildProcess:
        child = ChildProcess(argv, child_env(**env), tmp_path / f"child-{len(started)}.log")
        started.append(child)
        return child

    yield start
    for child in started:
        child.stop()


@dataclass
class CommandRun:
    returncode: int
    stdout: str
    stderr: str


def run_command(
    argv: list[str],
    *,
    env: dict[str, str],
    terminal: bool,
    columns: int = 80,
    timeout: float = 120,
) -> CommandRun:
    """Run `argv` to its end with stdout a pipe and stderr either a pseudo-terminal (as in an
    operator's shell: `isatty()` is true, `columns` wide; 0 is a terminal that reports no size)
    or a pipe (as under cron or a Job); returns its exit status and both streams as text (a
    terminal's line endings are `\\r\\n`)."""
    if not terminal:
        done = subprocess.run(
            argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout
        )
        return CommandRun(done.returncode, done.stdout.decode(), done.stderr.decode())
    master, slave = pty.openpty()
    if columns:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            start_new_session=True,
        )
    finally:
        os.close(slave)
    # The terminal is read in a thread while stdout is: either could fill and stall the child.
    terminal_output = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has closed it
                return
            if not data:
                return
            terminal_output.extend(data)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        reader.join(timeout=10)
        os.close(master)
    return CommandRun(proc.returncode, stdout.decode(), terminal_output.decode(errors="replace"))

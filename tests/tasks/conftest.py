"""Real-service fixtures for deferred work: a private RabbitMQ node, a private Redis for task
results, the Celery app pointed at them, and workers (in a thread, or a real `celery worker`
process for tests that kill it).

The node and Redis come from deploy/local/ (the code `make stack` uses) and never from the
machine's own services.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import amqp
import kombu.pools
import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.db import connection, connections
from django.utils import timezone

from config.celery import app as celery_app
from deploy.local.rabbitmq import start_rabbitmq
from deploy.local.redis import start_redis
from tasks import outbox
from tests.conftest import api_client_for
from tests.factories import UserFactory
from todos.models import Todo

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.fixture(scope="session")
def rabbitmq():
    node = start_rabbitmq()
    yield node
    node.close()


@pytest.fixture(scope="session")
def results_redis():
    server = start_redis()
    yield server
    server.close()


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
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        """SIGTERM (a worker's warm shutdown), SIGKILL if it lingers."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        # Children left behind by a group member that exited first.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

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


def celery_worker_argv(name: str) -> list[str]:
    """`celery -A config worker` as deployed: prefork, one process, acks_late from settings."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        "1",
        "--loglevel",
        "INFO",
        "--hostname",
        f"{name}@%h",
        # Nothing to synchronise with in a test: saves seconds at start-up.
        "--without-gossip",
        "--without-mingle",
    ]


@pytest.fixture
def owner_api(db):
    """A user with an email address, and an API client with their token."""
    user = UserFactory(username="exporter", email="exporter@example.com")
    return api_client_for(user)


# Titles that a CSV or JSON writer must escape: commas, quotes, newlines, non-ASCII.
AWKWARD_TITLES = ("plain", 'say "hi", then leave', "line one\nline two", "café ☕ 東京", "=1+2")


def seed_todos(owner, count: int) -> None:
    """`count` todos for `owner` with every field varied, in one bulk insert."""
    now = timezone.now()
    Todo.objects.bulk_create(
        [
            Todo(
                owner=owner,
                title=f"{AWKWARD_TITLES[i % len(AWKWARD_TITLES)]} #{i}",
                completed=i % 3 == 0,
                order=None if i % 7 == 0 else i - 5000,
                due_at=None if i % 2 else now + timedelta(days=i % 40, microseconds=i),
            )
            for i in range(count)
        ],
        batch_size=5000,
    )


def api_todo_list(client) -> list[dict]:
    """Every todo of the client's user, as `GET /api/todos` renders them, page after page."""
    todos: list[dict] = []
    url = "/api/todos?limit=1000"
    while url:
        response = client.get(url)
        assert response.status_code == 200
        todos.extend(response.json())
        link = response.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    return todos

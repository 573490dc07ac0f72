"""The opt-in granian server (deploy/granian_server.py): the same application, sizing and metrics
as gunicorn, in a real granian process on the test database and the suite's Redis."""

import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings

from deploy.local.gunicorn import start_gunicorn
from tests.factories import TodoFactory, TokenFactory, UserFactory
from tests.servers import AppServer, replica_env

pytestmark = pytest.mark.django_db(transaction=True)


def metrics_directories() -> set[Path]:
    """The metrics directories servers made for themselves (deploy/gunicorn.conf.py's rule)."""
    return set(Path(tempfile.gettempdir()).glob("todo-scale-metrics-*"))


def started_workers(records: list[dict]) -> set[int]:
    """The pids of the workers granian logged as started."""
    return {
        r["pid"] for r in records if r["logger"] == "_granian.serve" and "Started" in r["message"]
    }


def test_granian_serves_the_api_with_gunicorns_sizing_and_shared_metrics():
    user = UserFactory()
    token = TokenFactory(user=user).key
    TodoFactory(owner=user, title="on granian")
    env = replica_env(REDIS_URL=settings.REDIS_URL, WEB_CONCURRENCY="2")
    before = metrics_directories()
    with tempfile.TemporaryDirectory(prefix="granian-") as directory:
        log = Path(directory) / "granian.log"
        with start_gunicorn(env=env, log=log, ready_path="/healthz", server="granian") as server:
            app = AppServer(server.url, log)
            replies = [app.request("GET", "/api/todos", token=token) for _ in range(6)]
            created = app.request("POST", "/api/todos", token=token, body={"title": "new"})
            counted = app.metric(
                "todo_scale_http_requests_total",
                method="GET",
                outcome="hit",
                route="todo-list",
                status="2xx",
            )
            # A busy box may start the second worker after the first has served all of these.
            deadline = time.monotonic() + 20
            while len(started_workers(records := app.log_records())) < 2:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            running = metrics_directories()
        after = metrics_directories()

    assert [reply.status for reply in replies] == [200] * 6
    assert [todo["title"] for todo in replies[-1].json()] == ["on granian"]
    assert created.status == 201
    # The first read taught the gateway the token and filled the cache; the rest were hits,
    # counted once whichever of the two workers served them.
    assert counted == 5
    # Two workers, as WEB_CONCURRENCY says, and granian's own lines in the JSON log format.
    assert len(started_workers(records)) == 2
    # A metrics directory of its own while it ran, gone once it stopped.
    assert len(running - before) == 1
    assert after == before

"""Every metric an alert rule or a dashboard panel uses is served by a live process: a gunicorn
web replica reading from a real standby, a prefork Celery worker and the outbox relay, scraped
over HTTP after real traffic."""

import sys
import urllib.error
import urllib.request

import pytest
from django.db import connections
from prometheus_client.parser import text_string_to_metric_families

from config.celery import app as celery_app
from deploy.local.ports import free_port
from deploy.local.redis import start_redis
from tests.deploy.test_prometheus import metric_names, used_exprs
from tests.factories import TodoFactory, TokenFactory, UserFactory
from tests.servers import clean_env, gunicorn
from tests.services import celery_worker_argv, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

STATS_TASK = "tasks.stats.stats_recompute_task"
# Written by Prometheus itself for each scrape, not by any process.
SCRAPE_METRICS = {"up"}
# A user's requests per hour: low enough that the test's own requests reach the limit, and a
# window that rarely ends during the test (the count would start again).
RATE_LIMIT = 4


def sample_names(url: str) -> set[str] | None:
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def database_url(alias: str, *, port: int | None = None) -> str:
    db = connections[alias].settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{port or db['PORT']}/{db['NAME']}"


@pytest.fixture
def web_redis():
    """A Redis of this test's own, so stopping it leaves the suite's Redis alone."""
    server = start_redis()
    yield server
    server.close()


def web_samples(redis_server) -> set[str]:
    """Sample names of a web replica after hits, misses, a 429, standby reads, a standby that is
    down, and requests while Redis is down."""
    if "replica1" not in connections.databases:
        pytest.skip("the suite runs without a standby here")
    user = UserFactory()
    token = TokenFactory(user=user).key
    TodoFactory(owner=user)
    # The second standby is a port nothing listens on: it is ejected at the first check.
    replicas = [database_url("replica1"), database_url("replica1", port=free_port())]
    env = clean_env(
        DATABASE_URL=database_url("default"),
        DATABASE_REPLICA_URLS=",".join(replicas),
        DJANGO_SECRET_KEY="test-secret-key-for-the-live-metrics-test",
        REDIS_URL=f"{redis_server.url}/0",
        RATE_LIMIT_USER=f"{RATE_LIMIT}/hour",
    )
    with gunicorn(env, workers=1) as server:
        statuses = [
            server.request("GET", "/api/todos", token=token).status for _ in range(RATE_LIMIT + 1)
        ]
        redis_server.stop()
        without_redis = server.request("GET", "/api/todos", token=token).status
        names = sample_names(server.base)
    assert statuses == [200] * RATE_LIMIT + [429]
    assert without_redis == 200
    return names


def worker_samples(broker, spawn) -> set[str]:
    """Sample names of a prefork worker that ran a task."""
    owner = UserFactory()
    port = free_port()
    spawn(celery_worker_argv("live"), CELERY_BROKER_URL=broker.url, CELERY_METRICS_PORT=str(port))
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: sample_names(url) is not None, timeout=30, what="the worker's metrics")
    celery_app.send_task(STATS_TASK, kwargs={"owner_id": owner.pk})
    # Counted on success, timed after the run: both are in once the second shows.
    counted = {"todo_scale_celery_tasks_total", "todo_scale_celery_task_duration_seconds_bucket"}
    return wait_for(
        lambda: (names := sample_names(url)) and counted <= names and names,
        timeout=30,
        what="the task to be counted and timed",
    )


def relay_samples(broker, spawn) -> set[str]:
    port = free_port()
    spawn(
        [sys.executable, "manage.py", "outbox_relay", "--interval", "0.2"],
        CELERY_BROKER_URL=broker.url,
        OUTBOX_METRICS_PORT=str(port),
    )
    return wait_for(
        lambda: sample_names(f"http://127.0.0.1:{port}"), timeout=30, what="the relay's metrics"
    )


def test_every_metric_of_the_alerts_and_the_dashboard_is_served(web_redis, broker, spawn):
    # given: a web replica, a worker and the relay after real traffic
    served = web_samples(web_redis) | worker_samples(broker, spawn) | relay_samples(broker, spawn)

    # when: the names every alert and panel select are listed
    missing = {
        where: sorted(metric_names(expr) - served - SCRAPE_METRICS)
        for where, expr in used_exprs().items()
    }

    # then: each exists in a live process
    assert {where: names for where, names in missing.items() if names} == {}

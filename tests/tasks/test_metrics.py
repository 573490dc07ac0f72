"""Prometheus metrics of deferred work, scraped over HTTP from real processes: a prefork
`celery worker` counting its tasks by outcome, and `manage.py outbox_relay` showing the backlog
while the broker is down."""

import os
import signal
import sys
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from celery import shared_task
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from config.celery import app as celery_app
from deploy.local.ports import free_port
from tasks import outbox
from tasks.base import ReliableTask
from tasks.metrics import OutboxBacklogCollector
from tests.factories import UserFactory
from tests.services import celery_worker_argv, wait_for
from todos.models import OutboxMessage

pytestmark = pytest.mark.django_db(transaction=True)

STATS_TASK = "tasks.stats.stats_recompute_task"
# The worker imports this module (`--include`) for the two tasks below, which only tests need.
THIS_MODULE = __name__


@shared_task(base=ReliableTask, bind=True)
def flaky_task(self) -> None:
    """Fails its first run the way a database restart does, then succeeds on the retry."""
    if self.request.retries == 0:
        raise OperationalError("the database went away for a moment")


@shared_task(base=ReliableTask, bind=True)
def process_kill_task(self) -> None:
    """Kills the pool child running it on the first delivery, as the OOM killer would; the
    redelivered message then runs to the end."""
    if not self.request.delivery_info.get("redelivered"):
        os.kill(os.getpid(), signal.SIGKILL)


def scrape(port: int) -> dict[tuple, float] | None:
    """Every sample on http://127.0.0.1:port/metrics as {(name, labels...): value}, or None
    while nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    return {
        (sample.name, *sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def task_counts(samples: dict[tuple, float]) -> dict[tuple[str, str], float]:
    """{(task, outcome): count} from todo_scale_celery_tasks_total."""
    return {
        (dict(key[1:])["task"], dict(key[1:])["outcome"]): value
        for key, value in samples.items()
        if key[0] == "todo_scale_celery_tasks_total"
    }


def run_counts(samples: dict[tuple, float]) -> dict[str, float]:
    """{task: observed runs} from the run-time histogram."""
    return {
        dict(key[1:])["task"]: value
        for key, value in samples.items()
        if key[0] == "todo_scale_celery_task_duration_seconds_count"
    }


def test_the_worker_counts_each_outcome_once_summed_over_its_pool_children(broker, spawn):
    # given: a prefork worker serving metrics, recycling its child after every task so the
    # counts come from several child processes
    owner = UserFactory()
    port = free_port()
    argv = [*celery_worker_argv("metrics"), "--include", THIS_MODULE, "--max-tasks-per-child", "1"]
    spawn(argv, CELERY_BROKER_URL=broker.url, CELERY_METRICS_PORT=str(port))
    wait_for(lambda: scrape(port) is not None, timeout=30, what="the worker's metrics endpoint")

    # when: tasks that succeed, fail (an argument the task does not take), retry, kill their
    # process, and one no worker knows
    for _ in range(2):
        celery_app.send_task(STATS_TASK, kwargs={"owner_id": owner.pk})
    celery_app.send_task(STATS_TASK, kwargs={"owner": owner.pk})
    celery_app.send_task(flaky_task.name)
    celery_app.send_task(process_kill_task.name)
    celery_app.send_task("tasks.nowhere.unknown_task")

    # then: each run is counted once, under its outcome; the killed child's message was handed
    # back to the broker (rejected), and its redelivery succeeded
    expected = {
        (STATS_TASK, "succeeded"): 2.0,
        (STATS_TASK, "failed"): 1.0,
        (flaky_task.name, "retried"): 1.0,
        (flaky_task.name, "succeeded"): 1.0,
        (process_kill_task.name, "rejected"): 1.0,
        (process_kill_task.name, "succeeded"): 1.0,
        ("tasks.nowhere.unknown_task", "rejected"): 1.0,
    }
    wait_for(
        lambda: sum(task_counts(scrape(port) or {}).values()) >= sum(expected.values()),
        timeout=30,
        what="every outcome to be counted",
    )
    samples = scrape(port)
    assert task_counts(samples) == expected
    # Every run that returned, raised or retried is timed; killed runs never finish.
    assert run_counts(samples) == {
        STATS_TASK: 3.0,
        flaky_task.name: 2.0,
        process_kill_task.name: 1.0,
    }
    all_runs = (
        "todo_scale_celery_task_duration_seconds_bucket",
        ("le", "+Inf"),
        ("task", STATS_TASK),
    )
    assert samples[all_runs] == 3.0


def test_the_relay_shows_the_backlog_while_the_broker_is_down_and_none_once_sent(broker, spawn):
    # given: the broker is down, three tasks wait in the outbox, the oldest for two minutes
    broker.stop()
    owner = UserFactory()
    rows = [
        OutboxMessage.objects.create(task_name=STATS_TASK, kwargs={"owner_id": owner.pk})
        for _ in range(3)
    ]
    OutboxMessage.objects.filter(pk=rows[0].pk).update(
        created_at=timezone.now() - timedelta(seconds=120)
    )

    # when: the relay runs, with its metrics port
    port = free_port()
    spawn(
        [sys.executable, "manage.py", "outbox_relay", "--interval", "0.2"],
        CELERY_BROKER_URL=broker.url,
        OUTBOX_METRICS_PORT=str(port),
    )
    samples = wait_for(lambda: scrape(port), timeout=30, what="the relay's metrics endpoint")

    # then: it shows every unsent row and the age of the oldest
    assert samples[("todo_scale_outbox_unsent",)] == 3.0
    assert 120 <= samples[("todo_scale_outbox_oldest_unsent_age_seconds",)] < 180

    # when: the broker is back and the rows are published: by this process at once (a second
    # relay, as in production) rather than after the relay process's back-off
    broker.start()
    outbox.outbox_relay()
    wait_for(
        lambda: not OutboxMessage.objects.filter(sent_at__isnull=True).exists(),
        timeout=30,
        what="the backlog to be published",
    )

    # then: the next scrape shows no backlog
    samples = scrape(port)
    assert samples[("todo_scale_outbox_unsent",)] == 0.0
    assert samples[("todo_scale_outbox_oldest_unsent_age_seconds",)] == 0.0


def test_the_backlog_queries_use_the_partial_index_of_unsent_rows():
    # given: the queries one scrape runs
    with CaptureQueriesContext(connection) as scrape_queries:
        families = list(OutboxBacklogCollector().collect())
    assert [family.samples[0].value for family in families] == [0.0, 0.0]

    # when: Postgres plans them, with sequential scans off so that even a tiny test table shows
    # which index serves them (on a real table of sent rows the planner picks it by itself)
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        plans = []
        for query in scrape_queries.captured_queries:
            cursor.execute(f"EXPLAIN {query['sql']}")
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
        cursor.execute("RESET enable_seqscan")

    # then: both read the partial index that holds only the unsent rows
    assert len(plans) == 2
    assert all("outbox_unsent" in plan for plan in plans), plans

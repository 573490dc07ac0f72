"""The transactional outbox against a real broker: requests succeed while the broker is down, and
what they asked for is delivered once the broker is back, exactly once."""

import sys
import time

import pytest
from django.db import transaction

from tasks import outbox
from tasks.models import TaskDelivery
from tests.factories import TodoFactory
from tests.services import child_env, in_thread_worker, queue_depth, run_command, wait_for
from todos import services
from todos.models import Export, ExportChunk, OutboxMessage, UserStats
from todos.outbox import STATS_RECOMPUTE_TASK

pytestmark = pytest.mark.django_db(transaction=True)


def test_requests_succeed_while_the_broker_is_down_and_the_work_runs_once_it_is_back(
    owner_api, broker, spawn
):
    # given: the broker is down
    broker.stop()
    todo = TodoFactory(owner=owner_api.user)

    # when: clients keep working
    started = time.monotonic()
    created = owner_api.post("/api/todos", {"title": "still works"}, format="json")
    completed = owner_api.patch(f"/api/todos/{todo.pk}", {"completed": True}, format="json")
    exports = [
        owner_api.post("/api/exports", {"format": export_format}, format="json")
        for export_format in ("json", "csv")
    ]
    elapsed = time.monotonic() - started

    # then: every request succeeded, quickly, and left its work in the outbox
    assert created.status_code == 201
    assert completed.status_code == 200
    assert [response.status_code for response in exports] == [202, 202]
    assert elapsed < 2.0
    messages = list(OutboxMessage.objects.order_by("id"))
    assert [m.task_name for m in messages] == [
        "tasks.stats.stats_recompute_task",
        "tasks.exports.export_run_task",
        "tasks.exports.export_run_task",
    ]
    assert all(m.sent_at is None for m in messages)
    assert messages[0].attempts == 1
    assert "Connection refused" in messages[0].last_error
    assert outbox.outbox_relay().error is not None

    # when: the relay process runs while the broker is still down, then the broker comes back
    relay = spawn(
        [sys.executable, "manage.py", "outbox_relay", "--interval", "0.2"],
        CELERY_BROKER_URL=broker.url,
    )
    time.sleep(1)
    assert OutboxMessage.objects.filter(sent_at__isnull=True).count() == 3
    broker.start()

    # then: the relay publishes each row once; running it again publishes nothing more
    wait_for(
        lambda: not OutboxMessage.objects.filter(sent_at__isnull=True).exists(),
        timeout=60,
        what=f"the relay to drain the outbox\n{relay.output()}",
    )
    relay.stop()
    assert queue_depth(broker) == 3
    assert outbox.outbox_relay().sent == 0
    assert queue_depth(broker) == 3

    # when: a worker takes the messages
    with in_thread_worker() as worker:
        worker.runs.wait(3)

    # then: each task ran once and did its work
    assert set(Export.objects.values_list("status", flat=True)) == {"done"}
    assert UserStats.objects.get(owner=owner_api.user).completed == 1
    deliveries = TaskDelivery.objects.filter(task_id__in=[str(m.task_id) for m in messages])
    assert list(deliveries.values_list("deliveries", flat=True)) == [1, 1, 1]


def test_a_row_published_but_not_marked_sent_goes_out_again_and_does_no_harm(
    owner_api, broker, worker
):
    # given: an export whose row the broker took, but the relay died before marking it sent
    TodoFactory.create_batch(5, owner=owner_api.user)
    outbox._fast_path["paused_until"] = time.monotonic() + 60
    export = services.export_create(
        owner=owner_api.user, export_format="json", todo_url_prefix="http://testserver/api/todos/"
    )
    message = OutboxMessage.objects.get()
    with transaction.atomic():
        outbox._publish(message)
    assert OutboxMessage.objects.get().sent_at is None

    # when: the relay publishes it again, and the worker receives both copies
    assert outbox.outbox_relay().sent == 1
    worker.runs.wait(2)

    # then: both copies ran (same task id) and the export has one file
    assert TaskDelivery.objects.get(task_id=str(message.task_id)).deliveries == 2
    export.refresh_from_db()
    assert export.status == "done"
    assert export.todo_count == 5
    assert ExportChunk.objects.filter(export=export).count() == 2  # the todos, then "]"


def test_without_publish_on_commit_the_request_leaves_its_rows_to_the_relay(
    owner_api, broker, settings
):
    # given: web processes that leave publishing to the relay process
    settings.OUTBOX_PUBLISH_ON_COMMIT = False
    todo = TodoFactory(owner=owner_api.user)

    # when: a client completes a todo
    response = owner_api.patch(f"/api/todos/{todo.pk}", {"completed": True}, format="json")

    # then: the request succeeded and published nothing; the relay publishes the row
    assert response.status_code == 200
    assert OutboxMessage.objects.get().sent_at is None
    assert outbox.outbox_relay().sent == 1
    assert OutboxMessage.objects.get().sent_at is not None


BACKLOG = 250  # two full batches of the relay's and a part


@pytest.mark.parametrize(
    ("terminal", "bar"), [(True, True), (False, False)], ids=["terminal", "pipe"]
)
def test_relay_once_shows_the_backlog_draining_on_a_terminal_only(
    user, broker, settings, terminal, bar
):
    # given: a backlog the web processes left to the relay
    settings.OUTBOX_PUBLISH_ON_COMMIT = False
    with transaction.atomic():
        for _ in range(BACKLOG):
            services.outbox_enqueue(task=STATS_RECOMPUTE_TASK, kwargs={"owner_id": user.pk})

    # when: an operator drains it with `outbox_relay --once`
    run = run_command(
        [sys.executable, "manage.py", "outbox_relay", "--once"],
        env=child_env(CELERY_BROKER_URL=broker.url),
        terminal=terminal,
    )

    # then: every row is published; the bar, on a terminal only, ends at the backlog's count
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"published {BACKLOG}\n"
    assert not OutboxMessage.objects.filter(sent_at__isnull=True).exists()
    assert queue_depth(broker) == BACKLOG
    if bar:
        last = run.stderr.split("\r")[-2]
        assert last.startswith("publishing: 100%")
        assert f"{BACKLOG}/{BACKLOG}" in last
        assert "rows/s" in last
    else:
        assert "publishing" not in run.stderr
        assert "\r" not in run.stderr

"""Failures on a real broker and worker: a task that always fails stops after its retry cap, and
a message started too often is given up; both are recorded as failed."""

import time

import pytest
from celery.result import AsyncResult
from django.db import OperationalError

from tasks import outbox
from tasks.exports import export_run_task
from tasks.models import TaskDelivery
from tests.factories import TodoFactory
from tests.services import wait_for
from todos import services
from todos.models import Export, ExportChunk, OutboxMessage

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # Celery's Redis result backend still calls redis-py's deprecated `setex`.
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]


def test_a_task_that_always_fails_stops_after_its_retries_and_is_recorded_failed(
    owner_api, worker, monkeypatch
):
    # given: the export's database work fails every time, as if Postgres were unreachable
    attempts = []

    def unreachable(**kwargs):
        attempts.append(kwargs)
        raise OperationalError("connection refused")

    monkeypatch.setattr(services, "export_build", unreachable)
    # Milliseconds instead of seconds between tries; the schedule's shape is unchanged.
    monkeypatch.setattr(export_run_task, "retry_backoff", 0.01)

    # when
    export_id = owner_api.post("/api/exports", {"format": "json"}, format="json").json()["id"]

    # then: one try plus max_retries retries, then failed in the export and in the results
    wait_for(
        lambda: Export.objects.filter(pk=export_id, status="failed").exists(),
        timeout=30,
        what="the export to be marked failed",
    )
    assert len(attempts) == export_run_task.max_retries + 1 == 6
    export = Export.objects.get(pk=export_id)
    assert export.error == "OperationalError: connection refused"
    assert export.finished_at is not None
    task_id = str(OutboxMessage.objects.get().task_id)
    result = AsyncResult(task_id, app=export_run_task.app)
    wait_for(lambda: result.state == "FAILURE", timeout=10, what="the failure to be recorded")
    assert isinstance(result.result, OperationalError)
    # Each retry is a new message of the same task id, delivered once.
    assert sorted(
        TaskDelivery.objects.filter(task_id=task_id).values_list("retries", "deliveries")
    ) == [(retry, 1) for retry in range(6)]


def test_a_message_delivered_too_often_is_given_up_without_running(owner_api, worker):
    # given: an export whose message was already started max_deliveries times (it killed a
    # worker each time), held back from the broker until the count is in place
    TodoFactory(owner=owner_api.user)
    outbox._fast_path["paused_until"] = time.monotonic() + 60
    export = services.export_create(
        owner=owner_api.user, export_format="csv", todo_url_prefix="http://testserver/api/todos/"
    )
    message = OutboxMessage.objects.get()
    TaskDelivery.objects.create(task_id=str(message.task_id), retries=0, deliveries=3)

    # when: it is delivered a fourth time
    assert outbox.outbox_relay().sent == 1
    worker.runs.wait(1)

    # then: recorded failed, without building anything
    export.refresh_from_db()
    assert export.status == "failed"
    assert export.error.startswith("DeliveryLimitExceeded")
    assert not ExportChunk.objects.filter(export=export).exists()
    result = AsyncResult(str(message.task_id), app=export_run_task.app)
    wait_for(lambda: result.state == "FAILURE", timeout=10, what="the failure to be recorded")

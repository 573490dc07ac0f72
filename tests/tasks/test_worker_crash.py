"""A worker killed with SIGKILL in the middle of an export: the broker redelivers the task to the
next worker, and the export is written once."""

import json

import pytest

from deploy.local.seed import seed_todos
from tasks.models import TaskDelivery
from tests.services import celery_worker_argv, wait_for
from tests.tasks.conftest import api_todo_list
from todos.models import Export, ExportChunk, OutboxMessage

pytestmark = pytest.mark.django_db(transaction=True)


def test_export_killed_mid_task_is_redelivered_and_written_once(owner_api, broker, spawn):
    # given: an export of 10,000 todos, published to the broker before any worker runs
    seed_todos(owner_api.user, 10_000, varied=True)
    created = owner_api.post("/api/exports", {"format": "json"}, format="json").json()
    message = OutboxMessage.objects.get(kwargs__export_id=created["id"])
    assert message.sent_at is not None

    # when: the first worker is killed (-9, the whole process group) while it builds the file
    first = spawn(celery_worker_argv("first"), CELERY_BROKER_URL=broker.url)
    wait_for(
        lambda: Export.objects.filter(pk=created["id"], status="running").exists(),
        timeout=60,
        what=f"the first worker to start the export\n{first.output()}",
        interval=0.005,
    )
    first.kill()

    # then: it really died mid-task (nothing of the file committed), and the message is back
    export = Export.objects.get(pk=created["id"])
    assert export.status == "running"
    assert not ExportChunk.objects.filter(export=export).exists()

    # when: another worker comes up
    second = spawn(celery_worker_argv("second"), CELERY_BROKER_URL=broker.url)
    wait_for(
        lambda: Export.objects.filter(pk=created["id"], status__in=["done", "failed"]).exists(),
        timeout=60,
        what=f"the second worker to finish the export\n{second.output()}",
    )

    # then: the task ran twice (one delivery each) and its effect happened once
    delivery = TaskDelivery.objects.get(task_id=str(message.task_id), retries=0)
    assert delivery.deliveries == 2
    export.refresh_from_db()
    assert export.status == "done"
    assert export.todo_count == 10_000
    indexes = list(ExportChunk.objects.filter(export=export).values_list("index", flat=True))
    assert sorted(indexes) == list(range(len(indexes)))
    download = owner_api.get(owner_api.get(created["url"]).json()["download_url"])
    assert json.loads(b"".join(download.streaming_content)) == api_todo_list(owner_api)

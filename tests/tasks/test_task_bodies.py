"""Task bodies and the services behind them, run directly or eagerly (no broker)."""

import json
import logging
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from config.celery import app as celery_app
from tasks.base import ReliableTask
from tasks.exports import export_run_task
from tasks.housekeeping import housekeeping_purge_task
from tasks.models import TaskDelivery
from tasks.reminders import reminders_scan_task
from tasks.stats import stats_recompute_task
from tests.factories import TodoFactory, TokenFactory, UserFactory
from todos import export_files, outbox, services
from todos.models import (
    Export,
    ExportChunk,
    IdempotencyKey,
    OutboxMessage,
    Todo,
    UserStats,
)

pytestmark = pytest.mark.django_db


def build(owner, export_format: str) -> bytes:
    export = Export.objects.create(owner=owner, format=export_format, todo_url_prefix="http://x/")
    assert services.export_start(export_id=export.pk)
    services.export_build(export_id=export.pk, batch_rows=2)
    return b"".join(ExportChunk.objects.filter(export=export).values_list("data", flat=True))


@pytest.mark.parametrize(("export_format", "content"), [("json", b"[]"), ("csv", None)])
def test_an_export_of_no_todos_is_an_empty_file(user, export_format, content):
    header = b"id,url,title,completed,order,due_at,created_at,updated_at\r\n"

    assert build(user, export_format) == (content or header)


def test_an_export_splices_batches_into_one_json_array(user):
    TodoFactory.create_batch(5, owner=user)

    exported = build(user, "json")

    assert [item["title"] for item in json.loads(exported)] == list(
        Todo.objects.order_by("created_at", "id").values_list("title", flat=True)
    )


def test_a_long_export_logs_its_progress_and_a_short_one_does_not(user, caplog):
    TodoFactory.create_batch(5, owner=user)
    long, short = (
        Export.objects.create(owner=user, format="csv", todo_url_prefix="http://x/")
        for _ in range(2)
    )
    for export in (long, short):
        assert services.export_start(export_id=export.pk)

    with caplog.at_level(logging.INFO, logger="todos.services.exports"):
        services.export_build(export_id=long.pk, batch_rows=2, log_every=3)
        services.export_build(export_id=short.pk, batch_rows=2)

    records = [record for record in caplog.records if record.name == "todos.services.exports"]
    # Every 3 todos (checked per batch of 2), then the final count.
    assert [record.getMessage() for record in records] == [
        f"export {long.pk}: exported 4/5 todos",
        f"export {long.pk}: exported 5/5 todos",
    ]
    # The counts are fields of their own in the JSON log lines.
    assert [(r.export_id, r.exported, r.total) for r in records] == [
        (long.pk, 4, 5),
        (long.pk, 5, 5),
    ]


def test_an_export_that_finished_is_not_built_again(user):
    export = Export.objects.create(owner=user, format="json", todo_url_prefix="http://x/")
    services.export_start(export_id=export.pk)
    services.export_build(export_id=export.pk)
    finished = Export.objects.get(pk=export.pk).finished_at

    assert services.export_start(export_id=export.pk) is False
    assert services.export_build(export_id=export.pk) is None
    assert services.export_fail(export_id=export.pk, error="late") is False
    assert Export.objects.get(pk=export.pk).finished_at == finished


def test_unknown_export_format_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown export format"):
        list(export_files.render(export_format="xml", batches=[], todo_url_prefix=""))


def test_an_export_message_without_its_owner_is_still_built(user):
    # As enqueued before the owner went with the export's id.
    TodoFactory.create_batch(2, owner=user)
    export = Export.objects.create(owner=user, format="json", todo_url_prefix="http://x/")

    export_run_task.apply(kwargs={"export_id": export.pk})

    export.refresh_from_db()
    assert (export.status, export.todo_count) == ("done", 2)
    assert ExportChunk.objects.filter(owner=user, export=export).exists()


def test_an_export_message_naming_another_owner_builds_nothing(user, other_user):
    export = Export.objects.create(owner=user, format="json", todo_url_prefix="http://x/")

    export_run_task.apply(kwargs={"export_id": export.pk, "owner_id": other_user.pk})

    export.refresh_from_db()
    assert export.status == "pending"
    assert not ExportChunk.objects.exists()


def test_stats_are_recomputed_not_incremented(user):
    TodoFactory.create_batch(2, owner=user, completed=True)
    TodoFactory(owner=user)

    stats_recompute_task.apply(kwargs={"owner_id": user.pk})
    stats_recompute_task.apply(kwargs={"owner_id": user.pk})

    stats = UserStats.objects.get(owner=user)
    assert (stats.total, stats.completed) == (3, 2)


def test_stats_of_a_deleted_user_are_skipped():
    assert services.stats_recompute(owner_id=987654) is None


def test_housekeeping_deletes_what_expired_and_keeps_the_rest(user):
    now = timezone.now()
    old_key = IdempotencyKey.objects.create(
        owner=user, key="old", fingerprint="f", response_status=201, response_body={}
    )
    IdempotencyKey.objects.create(
        owner=user, key="new", fingerprint="f", response_status=201, response_body={}
    )
    IdempotencyKey.objects.filter(pk=old_key.pk).update(created_at=now - timedelta(hours=25))
    old_export = Export.objects.create(owner=user, format="json", todo_url_prefix="x")
    ExportChunk.objects.create(owner=user, export=old_export, index=0, data=b"[]")
    Export.objects.filter(pk=old_export.pk).update(created_at=now - timedelta(days=8))
    Export.objects.create(owner=user, format="json", todo_url_prefix="x")
    stuck = Export.objects.create(owner=user, format="csv", todo_url_prefix="x", status="running")
    Export.objects.filter(pk=stuck.pk).update(started_at=now - timedelta(hours=2))
    OutboxMessage.objects.create(task_name="t", sent_at=now - timedelta(days=8))
    OutboxMessage.objects.create(task_name="t", sent_at=now - timedelta(days=1))
    OutboxMessage.objects.create(task_name="t")  # unsent rows are never deleted
    TaskDelivery.objects.create(task_id="a", retries=0, deliveries=1)
    TaskDelivery.objects.filter(task_id="a").update(created_at=now - timedelta(days=8))
    TokenFactory(user=user, expires_at=now - timedelta(seconds=1))
    live_token = TokenFactory(user=user)

    purged = housekeeping_purge_task.apply().get()

    assert purged == {
        "idempotency_keys": 1,
        "exports": 1,
        "outbox_messages": 1,
        "task_deliveries": 1,
        "api_tokens": 1,
        "stuck_exports_failed": 1,
    }
    assert list(user.api_tokens.values_list("digest", flat=True)) == [live_token.digest]
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    assert Export.objects.count() == 2
    assert not ExportChunk.objects.exists()
    assert Export.objects.get(pk=stuck.pk).status == "failed"
    assert OutboxMessage.objects.count() == 2
    assert set(housekeeping_purge_task.apply().get().values()) == {0}


def test_reminder_lead_is_a_setting(settings):
    settings.REMINDER_LEAD = timedelta(hours=3)
    owner = UserFactory(email="dave@example.com")
    TodoFactory(owner=owner, title="in 2 h", due_at=timezone.now() + timedelta(hours=2))
    TodoFactory(owner=owner, title="in 4 h", due_at=timezone.now() + timedelta(hours=4))

    assert reminders_scan_task.apply().get() == 1
    assert [message.subject for message in mail.outbox] == ["Reminder: in 2 h"]


def test_a_todo_whose_owner_has_no_email_is_marked_reminded_without_mail(user):
    todo = TodoFactory(owner=user, due_at=timezone.now())

    assert services.todo_remind(todo_id=todo.pk, now=timezone.now()) is True
    assert mail.outbox == []
    assert Todo.objects.get(pk=todo.pk).reminded_at is not None


@pytest.mark.django_db(transaction=True)
def test_outbox_rows_are_written_only_inside_the_datas_transaction():
    with pytest.raises(RuntimeError, match="inside the transaction"):
        services.outbox_enqueue(task=outbox.STATS_RECOMPUTE_TASK, kwargs={})


def test_without_a_broker_a_committed_row_runs_in_process_and_is_marked_sent(
    user, django_capture_on_commit_callbacks
):
    TodoFactory(owner=user, completed=True)

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        services.todo_completion_changed(owner_ids=[user.pk])

    assert OutboxMessage.objects.get().sent_at is not None
    assert UserStats.objects.get(owner=user).completed == 1


def test_every_enqueued_and_scheduled_task_exists_and_is_named_thing_verb_task(settings):
    named = {outbox.EXPORT_RUN_TASK, outbox.STATS_RECOMPUTE_TASK}
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    ours = {name for name in celery_app.tasks if name.startswith("tasks.")}

    assert named | scheduled <= ours
    for name in ours:
        assert name.endswith("_task")
        assert isinstance(celery_app.tasks[name], ReliableTask), name


@pytest.mark.parametrize("retries", [0, 1, 4, 20])
def test_retry_waits_grow_exponentially_with_jitter_and_a_cap(retries):
    task = celery_app.tasks[outbox.STATS_RECOMPUTE_TASK]
    ceiling = min(task.retry_backoff_max, task.retry_backoff * 2**retries)
    task.push_request(retries=retries)
    try:
        waits = [task.retry_countdown() for _ in range(200)]
    finally:
        task.pop_request()

    assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
    assert len(set(waits)) > 1


def test_relay_command_refuses_to_run_without_a_broker(settings):
    settings.CELERY_BROKER_URL = ""

    with pytest.raises(CommandError, match="CELERY_BROKER_URL is not set"):
        call_command("outbox_relay", "--once")

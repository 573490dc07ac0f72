"""Exports on the real streaming standby with a real worker: the task carries the position of the
request that asked for it, and reads the todos from a standby only once it has replayed that far."""

import json

import pytest
from celery import shared_task
from django.db import OperationalError, transaction
from prometheus_client import REGISTRY

from config.replicas.health import primary_write_location, replica_aliases
from deploy.local.seed import seed_todos
from tasks.base import ReliableTask, message_position
from tests.config.replicas.conftest import pause_replay
from tests.services import in_thread_worker, wait_for
from tests.tasks.conftest import api_todo_list
from todos import services
from todos.models import Export

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

SEEDED = 5_000
# 5,001 todos in pages of 2,000 (todos/services/exports.py): three keyset reads.
TODO_BATCHES = 3


# What each run of `position_seen` found in its message: (retries, WAL position).
SEEN: list[tuple[int, int | None]] = []


@shared_task(base=ReliableTask, bind=True)
def position_seen(self) -> None:
    """Notes the position its message carries; fails its first run as a database restart does."""
    SEEN.append((self.request.retries, message_position(self.request)))
    if self.request.retries == 0:
        raise OperationalError("the database went away for a moment")


def reads(alias: str) -> float:
    return REGISTRY.get_sample_value("todo_scale_db_reads_total", {"alias": alias}) or 0


def replica_reads() -> float:
    return sum(reads(alias) for alias in replica_aliases())


def not_caught_up_fallbacks() -> float:
    return (
        REGISTRY.get_sample_value(
            "todo_scale_db_replica_fallbacks_total", {"reason": "not_caught_up"}
        )
        or 0
    )


def run_export(client, before_worker=lambda: None) -> tuple[Export, dict[str, float]]:
    """Ask for a JSON export, call `before_worker`, let a worker build it; returns the export
    and what the worker's task did meanwhile (nothing else reads then): its reads on the primary
    and on the standbys, and its reads sent to the primary for want of a caught-up standby."""
    created = client.post("/api/exports", {"format": "json"}, format="json")
    assert created.status_code == 202, created.content
    export_id = created.json()["id"]
    before_worker()
    before = {"primary": reads("default"), "replicas": replica_reads()}
    before["not_caught_up"] = not_caught_up_fallbacks()
    with in_thread_worker():
        wait_for(
            lambda: Export.objects.filter(pk=export_id, status__in=["done", "failed"]).exists(),
            timeout=60,
            what="the export to finish",
        )
    made = {"primary": reads("default") - before["primary"]}
    made["replicas"] = replica_reads() - before["replicas"]
    made["not_caught_up"] = not_caught_up_fallbacks() - before["not_caught_up"]
    return Export.objects.get(pk=export_id), made


def downloaded(client, export: Export) -> list[dict]:
    body = client.get(f"/api/exports/{export.pk}").json()
    assert body["status"] == "done"
    download = client.get(body["download_url"])
    assert download.status_code == 200
    return json.loads(b"".join(download.streaming_content))


def test_an_export_asked_for_while_the_standby_lags_has_the_new_todo_read_on_the_primary(
    cluster, owner_api, broker
):
    # given: many todos the standby has, then replay stopped and one more todo created
    seed_todos(owner_api.user, SEEDED)
    pause_replay(cluster)
    created = owner_api.post("/api/todos", {"title": "created just before"}, format="json")
    assert created.status_code == 201

    # when: an export is asked for at once, and a worker builds it
    export, made = run_export(owner_api)

    # then: the file has the new todo, because the todos were read on the primary
    assert export.status == "done", export.error
    assert export.todo_count == SEEDED + 1
    exported = downloaded(owner_api, export)
    assert exported[-1]["id"] == created.json()["id"]
    assert exported == api_todo_list(owner_api)
    assert made["replicas"] == 0
    assert made["primary"] >= TODO_BATCHES
    assert made["not_caught_up"] == 1


def test_an_export_reads_its_todos_on_a_standby_that_has_replayed_the_request(
    cluster, owner_api, broker
):
    # given: many todos and one just created, with replay running
    seed_todos(owner_api.user, SEEDED)
    created = owner_api.post("/api/todos", {"title": "created just before"}, format="json")
    assert created.status_code == 201

    # when: the standby has replayed the request by the time a worker builds the export
    export, made = run_export(owner_api, before_worker=cluster.wait_for_replay)

    # then: every todo read of the task went to the standby, and the file is complete
    assert export.status == "done", export.error
    assert made["replicas"] == TODO_BATCHES
    assert made["not_caught_up"] == 0
    assert export.todo_count == SEEDED + 1
    exported = downloaded(owner_api, export)
    assert exported[-1]["id"] == created.json()["id"]
    assert exported == api_todo_list(owner_api)


def test_a_retried_task_keeps_the_position_of_the_write_that_enqueued_it(broker):
    # given: a task enqueued with a write, after which the primary moved on
    SEEN.clear()
    before = primary_write_location()
    with transaction.atomic():
        services.outbox_enqueue(task=position_seen.name, kwargs={})
    after_commit = primary_write_location()

    # when: a worker runs it, and its first run fails and is retried
    with in_thread_worker() as running:
        running.runs.wait(2)

    # then: both runs read after the same position, taken once the enqueueing write committed
    assert [retries for retries, _ in SEEN] == [0, 1]
    positions = {position for _, position in SEEN}
    assert len(positions) == 1
    (position,) = positions
    assert position is not None
    assert before < position <= after_commit

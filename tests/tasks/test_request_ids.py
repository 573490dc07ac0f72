"""A request's id follows the work it caused: from `X-Request-ID` on a real gunicorn, through the
outbox row and the broker, into the JSON log lines of the prefork worker that runs the task and
of the outbox relay."""

import json
import sys

import pytest

from tests.factories import TodoFactory, TokenFactory, UserFactory
from tests.servers import clean_env, gunicorn
from tests.services import celery_worker_argv, child_database_url, wait_for
from todos.models import OutboxMessage

pytestmark = pytest.mark.django_db(transaction=True)

STATS_TASK = "tasks.stats.stats_recompute_task"


def json_lines(text: str) -> list[dict]:
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def with_request_id(request_id: str):
    def records_of(text: str) -> list[dict]:
        return [r for r in json_lines(text) if r.get("request_id") == request_id]

    return records_of


@pytest.mark.parametrize("publisher", ["request", "relay"])
def test_the_task_a_request_enqueued_logs_that_requests_id(broker, spawn, publisher):
    # given: a worker, and a web replica publishing on commit (or leaving it to the relay)
    user = UserFactory()
    token = TokenFactory(user=user).key
    todo = TodoFactory(owner=user)
    worker = spawn(celery_worker_argv("reqid"), CELERY_BROKER_URL=broker.url)
    env = clean_env(
        DATABASE_URL=child_database_url(),
        DJANGO_SECRET_KEY="test-secret-key-for-the-request-id-tests",
        CELERY_BROKER_URL=broker.url,
        OUTBOX_PUBLISH_ON_COMMIT=str(publisher == "request").lower(),
    )
    request_id = f"abc-{publisher}-0123456789"
    records_of = with_request_id(request_id)

    # when: a request with an X-Request-ID completes a todo, which enqueues a recomputation
    with gunicorn(env, workers=1) as server:
        reply = server.request(
            "PATCH",
            f"/api/todos/{todo.pk}",
            token=token,
            body={"completed": True},
            headers={"X-Request-ID": request_id},
        )
    if publisher == "relay":
        relay = spawn(
            [sys.executable, "manage.py", "outbox_relay", "--interval", "0.2"],
            CELERY_BROKER_URL=broker.url,
        )
        # The relay's own log is JSON too.
        wait_for(
            lambda: any(
                r["message"].startswith("outbox: published") for r in json_lines(relay.output())
            ),
            timeout=30,
            what="the relay to log the row's publish",
        )

    # then: the outbox row kept the id, and the worker's line for the task's run carries it
    assert reply.status == 200
    assert reply.headers["X-Request-ID"] == request_id
    (message,) = OutboxMessage.objects.filter(task_name=STATS_TASK)
    assert message.request_id == request_id
    (done,) = wait_for(
        lambda: [
            r
            for r in records_of(worker.output())
            if r["logger"] == "celery.app.trace" and "succeeded" in r["message"]
        ],
        timeout=30,
        what="the worker to log the task's success with the request id",
    )
    assert str(message.task_id) in done["message"]
    assert done["level"] == "INFO"

"""Exports through the real broker and a real worker: 202, then done, then a file equal to what
the API lists, in JSON and in CSV (with text cells that a spreadsheet would run neutralised)."""

import csv
import io
import json

import pytest

from deploy.local.seed import seed_todos
from tests.services import wait_for
from tests.tasks.conftest import api_todo_list
from todos.models import Export, OutboxMessage, Todo

pytestmark = pytest.mark.django_db(transaction=True)

TODOS = 10_000
FIELDS = ["id", "url", "title", "completed", "order", "due_at", "created_at", "updated_at"]


def csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value[:1] in {"=", "+", "-", "@", "\t", "\r"}:
        return "'" + value
    return str(value)


def export_and_download(client, export_format: str) -> tuple[dict, bytes, str]:
    response = client.post("/api/exports", {"format": export_format}, format="json")
    assert response.status_code == 202, response.content
    created = response.json()
    assert response["Location"] == created["url"]
    assert created["status"] in {"pending", "running", "done"}
    # The relay published it right after the commit: nothing waits for a poller.
    assert OutboxMessage.objects.get(kwargs__export_id=created["id"]).sent_at is not None

    wait_for(
        lambda: Export.objects.filter(pk=created["id"], status__in=["done", "failed"]).exists(),
        timeout=60,
        what="the export to finish",
    )
    status = client.get(created["url"])
    assert status.status_code == 200
    body = status.json()
    download = client.get(body["download_url"])
    assert download.status_code == 200
    content = b"".join(download.streaming_content)
    assert int(download["Content-Length"]) == len(content)
    return body, content, download["Content-Type"]


def test_json_export_of_10000_todos_is_exactly_the_api_list(owner_api, worker):
    seed_todos(owner_api.user, TODOS, varied=True)

    body, content, content_type = export_and_download(owner_api, "json")

    assert body["status"] == "done"
    assert body["format"] == "json"
    assert body["finished_at"] is not None
    assert content_type == "application/json"
    exported = json.loads(content)
    assert len(exported) == TODOS
    assert exported == api_todo_list(owner_api)


def test_csv_export_of_10000_todos_is_exactly_the_api_list(owner_api, worker):
    seed_todos(owner_api.user, TODOS, varied=True)

    body, content, content_type = export_and_download(owner_api, "csv")

    assert body["status"] == "done"
    assert content_type == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(content.decode(), newline="")))
    listed = api_todo_list(owner_api)
    assert rows[0] == FIELDS
    assert rows[1:] == [[csv_value(todo[name]) for name in FIELDS] for todo in listed]
    assert len(rows) == TODOS + 1


FORMULA_TITLES = [
    '=HYPERLINK("http://evil.example","click")',
    "+1+1",
    "-2+3",
    "@SUM(A1:A2)",
    "\t=1+1",
    "\r=1+1",
]
HARMLESS_TITLES = ["plain", "1+1", " =1+1", "a=b", "'quoted"]


def test_csv_export_neutralises_formula_cells_and_json_keeps_the_titles(owner_api, worker):
    for index, title in enumerate(FORMULA_TITLES + HARMLESS_TITLES):
        Todo.objects.create(owner=owner_api.user, title=title, order=-index)

    _, csv_content, _ = export_and_download(owner_api, "csv")
    _, json_content, _ = export_and_download(owner_api, "json")

    rows = list(csv.DictReader(io.StringIO(csv_content.decode(), newline="")))
    assert [row["title"] for row in rows] == ["'" + title for title in FORMULA_TITLES] + (
        HARMLESS_TITLES
    )
    # Numbers are not text: a negative order stays a number.
    assert [row["order"] for row in rows] == [str(-index) for index in range(len(rows))]
    listed = owner_api.get("/api/todos?limit=1000")
    assert json_content == listed.content

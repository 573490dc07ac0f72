"""The export and statistics endpoints: contract, strict input, owner scoping. Tasks run eagerly
here (no broker configured), after the request's commit, as in the embedded default."""

import json

import pytest

from tests.factories import TodoFactory
from todos.models import Export, OutboxMessage, UserStats

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/exports", "/api/exports/"])
def test_post_answers_202_with_the_exports_url_and_a_worker_finishes_it(
    api, path, django_capture_on_commit_callbacks
):
    TodoFactory.create_batch(3, owner=api.user)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(path, {"format": "json"}, format="json")

    assert response.status_code == 202
    body = response.json()
    export = Export.objects.get()
    assert body == {
        "id": export.pk,
        "url": f"http://testserver/api/exports/{export.pk}",
        "format": "json",
        "status": "pending",
        "created_at": body["created_at"],
        "finished_at": None,
        "download_url": None,
    }
    assert response["Location"] == body["url"]
    message = OutboxMessage.objects.get()
    assert message.sent_at is not None
    # The owner goes with the export's id, for the worker's statements to name.
    assert message.kwargs == {"export_id": export.pk, "owner_id": api.user.pk}
    done = api.get(f"/api/exports/{export.pk}/").json()
    assert done["status"] == "done"
    assert done["finished_at"] is not None
    assert done["download_url"] == f"http://testserver/api/exports/{export.pk}/download"
    download = api.get(done["download_url"] + "/")
    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="todos-{export.pk}.json"'
    assert json.loads(b"".join(download.streaming_content)) == api.get("/api/todos").json()


def test_format_defaults_to_json(api):
    response = api.post("/api/exports", {}, format="json")

    assert response.status_code == 202
    assert response.json()["format"] == "json"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"format": "xml"}, "format"),
        ({"format": "JSON"}, "format"),
        ({"format": 1}, "format"),
        ({"format": ["csv"]}, "format"),
        ({"format": None}, "format"),
        ({"format": "csv", "compress": True}, "compress"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_writes_nothing(api, body, field):
    response = api.post("/api/exports", body, format="json")

    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert not Export.objects.exists()
    assert not OutboxMessage.objects.exists()


def test_a_body_that_is_not_an_object_is_400(api):
    response = api.post("/api/exports", ["json"], format="json")

    assert response.status_code == 400
    assert not Export.objects.exists()


def test_another_users_export_is_404_like_a_missing_one(api, other_api):
    export_id = other_api.post("/api/exports", {"format": "csv"}, format="json").json()["id"]

    for path in (
        f"/api/exports/{export_id}",
        f"/api/exports/{export_id}/download",
        "/api/exports/999999",
        "/api/exports/999999/download",
    ):
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not found."}


def test_download_before_the_export_is_done_is_409(api):
    export_id = api.post("/api/exports", {"format": "csv"}, format="json").json()["id"]

    response = api.get(f"/api/exports/{export_id}/download", HTTP_ACCEPT="text/csv")

    assert response.status_code == 409
    assert "not done" in response.json()["detail"]


def test_csv_download_is_served_to_a_client_that_asks_for_csv(
    api, django_capture_on_commit_callbacks
):
    TodoFactory(owner=api.user, title='a "quoted", title')
    with django_capture_on_commit_callbacks(execute=True):
        export_id = api.post("/api/exports", {"format": "csv"}, format="json").json()["id"]

    response = api.get(f"/api/exports/{export_id}/download", HTTP_ACCEPT="text/csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0] == "id,url,title,completed,order,due_at,created_at,updated_at"
    assert '"a ""quoted"", title",false,,' in lines[1]


def test_export_endpoints_need_authentication(client):
    assert client.post("/api/exports", {}, content_type="application/json").status_code == 401
    assert client.get("/api/exports/1").status_code == 401
    assert client.get("/api/stats").status_code == 401


def test_stats_count_the_callers_todos_and_are_recomputed_after_a_completion(
    api, other_user, django_capture_on_commit_callbacks
):
    todos = TodoFactory.create_batch(3, owner=api.user)
    TodoFactory(owner=other_user, completed=True)

    before = api.get("/api/stats")
    with django_capture_on_commit_callbacks(execute=True):
        api.patch(f"/api/todos/{todos[0].pk}", {"completed": True}, format="json")
    after = api.get("/api/stats/")

    assert before.status_code == 200
    assert before.json() | {"computed_at": None} == {
        "total": 3,
        "completed": 0,
        "computed_at": None,
    }
    stored = UserStats.objects.get(owner=api.user)
    assert (stored.total, stored.completed) == (3, 1)
    assert after.json()["completed"] == 1
    assert after.json()["computed_at"] is not None


def test_a_title_change_writes_no_outbox_row(api):
    todo = TodoFactory(owner=api.user)

    api.patch(f"/api/todos/{todo.pk}", {"title": "renamed"}, format="json")

    assert not OutboxMessage.objects.exists()

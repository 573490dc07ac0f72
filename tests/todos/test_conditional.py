"""ETags, 304 Not Modified and 412 Precondition Failed: no lost updates."""

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests.factories import TodoFactory
from todos.models import Todo

pytestmark = pytest.mark.django_db(transaction=True)


def test_item_has_an_etag_and_if_none_match_gives_304(api):
    todo = TodoFactory(owner=api.user)

    first = api.get(f"/api/todos/{todo.id}")
    again = api.get(f"/api/todos/{todo.id}", HTTP_IF_NONE_MATCH=first["ETag"])

    assert first["ETag"].startswith('"')
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == first["ETag"]


def test_list_etag_changes_with_the_data(api):
    TodoFactory(owner=api.user)
    etag = api.get("/api/todos")["ETag"]

    assert api.get("/api/todos", HTTP_IF_NONE_MATCH=etag).status_code == 304
    api.post("/api/todos", {"title": "new"}, format="json")
    changed = api.get("/api/todos", HTTP_IF_NONE_MATCH=etag)

    assert changed.status_code == 200
    assert changed["ETag"] != etag


def test_patch_with_the_current_etag_succeeds_and_returns_the_new_one(api):
    todo = TodoFactory(owner=api.user, title="old")
    etag = api.get(f"/api/todos/{todo.id}")["ETag"]

    response = api.patch(
        f"/api/todos/{todo.id}", {"title": "new"}, format="json", HTTP_IF_MATCH=etag
    )

    assert response.status_code == 200
    assert response["ETag"] != etag
    assert api.get(f"/api/todos/{todo.id}")["ETag"] == response["ETag"]


@pytest.mark.parametrize("method", ["patch", "put", "delete"])
def test_stale_if_match_is_412_and_nothing_changes(api, method):
    todo = TodoFactory(owner=api.user, title="v1")
    stale = api.get(f"/api/todos/{todo.id}")["ETag"]
    api.patch(f"/api/todos/{todo.id}", {"title": "v2"}, format="json")

    response = getattr(api, method)(
        f"/api/todos/{todo.id}", {"title": "v3"}, format="json", HTTP_IF_MATCH=stale
    )

    assert response.status_code == 412
    assert "changed" in response.json()["detail"]
    assert Todo.objects.get(pk=todo.pk).title == "v2"


def test_if_match_star_and_absent_header_always_apply(api):
    todo = TodoFactory(owner=api.user)

    assert api.patch(f"/api/todos/{todo.id}", {"order": 1}, format="json").status_code == 200
    response = api.patch(f"/api/todos/{todo.id}", {"order": 2}, format="json", HTTP_IF_MATCH="*")
    assert response.status_code == 200


def test_if_match_on_a_foreign_todo_is_still_404(api, other_api):
    todo = TodoFactory(owner=other_api.user)

    response = api.patch(f"/api/todos/{todo.id}", {"title": "x"}, format="json", HTTP_IF_MATCH="*")

    assert response.status_code == 404


def test_two_racing_patches_with_the_same_if_match_one_wins(api):
    # given: two clients that both read version 1
    todo = TodoFactory(owner=api.user, title="v1")
    etag = api.get(f"/api/todos/{todo.id}")["ETag"]
    token = api._credentials["HTTP_AUTHORIZATION"]
    barrier, statuses = threading.Barrier(2), []

    def edit(title: str) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=token)
        barrier.wait()
        try:
            response = client.patch(
                f"/api/todos/{todo.id}", {"title": title}, format="json", HTTP_IF_MATCH=etag
            )
            statuses.append((response.status_code, title))
        finally:
            connection.close()

    # when: both send their change at the same moment
    threads = [threading.Thread(target=edit, args=(title,)) for title in ("mine", "theirs")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then: one applied, the other was told; the stored title is the winner's
    assert sorted(status for status, _ in statuses) == [200, 412]
    winner = next(title for status, title in statuses if status == 200)
    assert Todo.objects.get(pk=todo.pk).title == winner

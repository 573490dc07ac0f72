"""`Idempotency-Key` on POST /api/todos: a retry returns the first answer, never a second todo."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from todos.models import IdempotencyKey, Todo

pytestmark = pytest.mark.django_db(transaction=True)


def post(client, body: dict, key: str | None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post("/api/todos", body, format="json", **headers)


def test_a_retry_returns_the_first_answer(api):
    first = post(api, {"title": "pay rent"}, "key-1")
    retry = post(api, {"title": "pay rent"}, "key-1")

    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry["Location"] == first["Location"]
    assert retry["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Todo.objects.count() == 1


def test_the_same_key_with_another_body_is_422_and_creates_nothing(api):
    post(api, {"title": "pay rent"}, "key-1")

    response = post(api, {"title": "pay rent twice"}, "key-1")

    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["detail"]
    assert list(Todo.objects.values_list("title", flat=True)) == ["pay rent"]


def test_keys_are_per_user(api, other_api):
    post(api, {"title": "x"}, "shared-key")
    post(other_api, {"title": "x"}, "shared-key")

    assert Todo.objects.filter(owner=api.user).count() == 1
    assert Todo.objects.filter(owner=other_api.user).count() == 1


def test_a_key_expires_after_24_hours(api):
    first = post(api, {"title": "x"}, "old-key")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))

    again = post(api, {"title": "x"}, "old-key")

    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"]
    assert "Idempotent-Replayed" not in again


def test_invalid_input_does_not_consume_the_key(api):
    assert post(api, {"title": ""}, "key-2").status_code == 400

    response = post(api, {"title": "fixed"}, "key-2")

    assert response.status_code == 201
    assert IdempotencyKey.objects.count() == 1


def test_deleting_the_todo_unlinks_its_key_which_still_answers_the_retry(api):
    first = post(api, {"title": "pay rent"}, "key-1")
    todo_id = first.json()["id"]
    assert IdempotencyKey.objects.get().todo_id == todo_id

    # committed: the key's foreign key is checked, so the key must have been unlinked
    assert api.delete(f"/api/todos/{todo_id}").status_code == 204

    assert IdempotencyKey.objects.get().todo_id is None
    retry = post(api, {"title": "pay rent"}, "key-1")
    assert retry.status_code == 201
    assert retry.json() == first.json()
    assert retry["Idempotent-Replayed"] == "true"
    assert not Todo.objects.exists()


def test_deleting_all_todos_unlinks_the_owners_keys_only(api, other_api):
    post(api, {"title": "a"}, "key-a")
    post(api, {"title": "b"}, "key-b")
    kept = post(other_api, {"title": "c"}, "key-c").json()["id"]

    assert api.delete("/api/todos").status_code == 204

    assert dict(IdempotencyKey.objects.values_list("key", "todo_id")) == {
        "key-a": None,
        "key-b": None,
        "key-c": kept,
    }
    assert list(Todo.objects.values_list("pk", flat=True)) == [kept]


def test_deleting_a_user_deletes_their_keys_and_todos(api, other_api):
    post(api, {"title": "a"}, "key-a")
    kept = post(other_api, {"title": "b"}, "key-b").json()["id"]

    api.user.delete()

    assert list(IdempotencyKey.objects.values_list("key", "todo_id")) == [("key-b", kept)]
    assert list(Todo.objects.values_list("pk", flat=True)) == [kept]


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve"])
def test_a_malformed_key_is_400(api, key):
    response = post(api, {"title": "x"}, key)

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert Todo.objects.count() == 0


def test_twenty_concurrent_identical_requests_create_one_todo(api):
    # given: twenty copies of one request, as an impatient client and a retrying proxy send them
    token = api._credentials["HTTP_AUTHORIZATION"]
    barrier, responses = threading.Barrier(20), []

    def send() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=token)
        barrier.wait()
        try:
            responses.append(post(client, {"title": "once"}, "race-key"))
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then: every client got the same todo, and there is exactly one
    assert [response.status_code for response in responses] == [201] * 20
    assert len({response.json()["id"] for response in responses}) == 1
    assert Todo.objects.count() == 1
    assert sum(1 for response in responses if "Idempotent-Replayed" not in response) == 1

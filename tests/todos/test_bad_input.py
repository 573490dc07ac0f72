"""Bad input: a clear 4xx JSON error naming the problem, and nothing written."""

import json

import pytest

from tests.factories import TodoFactory
from todos.models import Todo
from todos.serializers import TodoSerializer

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 501}, "title"),
        ({"title": None}, "title"),
        ({"title": 5}, "title"),
        ({"title": "ok", "completed": "yes"}, "completed"),
        ({"title": "ok", "completed": 1}, "completed"),
        ({"title": "ok", "order": "5"}, "order"),
        ({"title": "ok", "order": 1.5}, "order"),
        ({"title": "ok", "order": 2**31}, "order"),
        ({"title": "ok", "due_at": "next tuesday"}, "due_at"),
        ({"title": "ok", "colour": "red"}, "colour"),
        ({"title": "ok", "owner": 1}, "owner"),
        ({"title": "nul \x00 byte"}, "title"),
    ],
)
def test_invalid_create_is_400_naming_the_field(api, body, field):
    response = api.post("/api/todos", body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert Todo.objects.count() == 0


def test_a_json_array_instead_of_an_object_is_400(api):
    response = api.post("/api/todos", [{"title": "x"}], format="json")

    assert response.status_code == 400
    assert "non_field_errors" in response.json()
    assert Todo.objects.count() == 0


def test_read_only_fields_in_the_body_are_never_applied(api, other_user):
    response = api.post(
        "/api/todos",
        {"title": "mine", "id": 424242, "created_at": "2000-01-01T00:00:00Z", "url": "x"},
        format="json",
    )

    assert response.status_code == 201
    todo = Todo.objects.get()
    assert todo.id != 424242
    assert todo.created_at.year != 2000
    assert todo.owner == api.user


def test_patch_with_owner_is_rejected_and_nothing_changes(api, other_user):
    todo = TodoFactory(owner=api.user, title="keep")

    response = api.patch(
        f"/api/todos/{todo.id}", {"title": "changed", "owner": other_user.id}, format="json"
    )

    assert response.status_code == 400
    assert "owner" in response.json()
    todo.refresh_from_db()
    assert (todo.title, todo.owner) == ("keep", api.user)


def test_invalid_patch_writes_nothing(api):
    todo = TodoFactory(owner=api.user, title="keep", completed=False)

    response = api.patch(
        f"/api/todos/{todo.id}", {"title": "changed", "completed": "yes"}, format="json"
    )

    assert response.status_code == 400
    assert "completed" in response.json()
    todo.refresh_from_db()
    assert (todo.title, todo.completed) == ("keep", False)


def test_malformed_json_is_400(api):
    response = api.generic("POST", "/api/todos", '{"title": "x",', content_type="application/json")

    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert Todo.objects.count() == 0


def test_non_json_content_type_is_415(api):
    response = api.generic("POST", "/api/todos", "title=x", content_type="text/plain")

    assert response.status_code == 415
    assert "text/plain" in response.json()["detail"]
    assert Todo.objects.count() == 0


def test_form_encoded_body_is_415(api):
    response = api.post("/api/todos", {"title": "x"})  # multipart, as an HTML form sends

    assert response.status_code == 415
    assert Todo.objects.count() == 0


def test_body_over_one_mebibyte_is_413(api):
    body = json.dumps({"title": "x" * (1024 * 1024)})

    response = api.generic("POST", "/api/todos", body, content_type="application/json")

    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert Todo.objects.count() == 0


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("limit=-5", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=eyJvIjoib3JkZXIiLCJ2IjoxLCJpIjoxfQ", "cursor"),  # made for another ordering
        ("cursor=eyJvIjoiY3JlYXRlZF9hdCIsInYiOjEsImkiOjF9", "cursor"),  # wrong value type
        ("ordering=password", "ordering"),
        ("ordering=-owner__password", "ordering"),
        ("completed=maybe", "completed"),
    ],
)
def test_invalid_query_parameters_are_400_naming_the_parameter(api, query, param):
    TodoFactory(owner=api.user)

    response = api.get(f"/api/todos?{query}")

    assert response.status_code == 400
    assert param in response.json()


def test_serializers_validating_at_once_keep_their_own_fields_and_errors():
    # The serializer's fields are copied from ones built once per process (todos/serializers.py):
    # serializers alive together, as in a worker's threads, must not see each other's state.
    bad = TodoSerializer(data={"title": "", "order": "x"})
    good = TodoSerializer(data={"title": " fine ", "order": 7}, partial=True)

    assert not bad.is_valid()
    assert good.is_valid(), good.errors
    assert sorted(bad.errors) == ["order", "title"]
    assert good.validated_data == {"title": "fine", "order": 7}
    assert bad.fields["title"] is not good.fields["title"]
    assert bad.fields["title"].parent is bad
    assert good.fields["title"].parent is good
    assert TodoSerializer(data={"title": "again"}).is_valid()

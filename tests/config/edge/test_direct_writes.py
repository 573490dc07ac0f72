"""Creates the gateway performs itself (config/edge/direct_writes.py, todos/writes.py), in a real
gunicorn process on the suite's Postgres and a real Redis: the same answer as Django's, Django
for everything it does not take (with the body intact), idempotency, and no partial write."""

import json
import urllib.error
import urllib.request

import pytest
from rest_framework.test import APIClient

from tests.config.edge.test_direct_reads import app_server, requests_counted
from tests.factories import TodoFactory, TokenFactory, UserFactory
from todos.models import Todo

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

# Headers that differ between any two responses, or that only the real server sets.
PER_RESPONSE = {"Date", "Server", "X-Request-ID", "Location", "Content-Length", "Connection"}
PER_RESPONSE |= {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}
TIMES_AND_IDS = ("id", "url", "created_at", "updated_at")


@pytest.fixture
def carol():
    user = UserFactory(username="carol")
    return user, TokenFactory(user=user).key


def raw_post(server, token: str, body: bytes, headers: dict):
    request = urllib.request.Request(server.base + "/api/todos", data=body, method="POST")
    request.add_header("Authorization", f"Token {token}")
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def django_create(server, token: str, body: dict):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.post(
        "/api/todos", body, format="json", HTTP_HOST=server.base.removeprefix("http://")
    )


@pytest.mark.parametrize("cache", ["true", "false"])
def test_the_gateway_creates_exactly_as_django(carol, cache):
    user, token = carol
    body = {
        "title": "  buy milk  ",
        "completed": True,
        "order": 7,
        "due_at": "2027-01-02T03:04:05Z",
    }
    with app_server(TODO_RESPONSE_CACHE=cache) as server:
        server.request("GET", "/api/todos", token=token)  # teaches the gateway the token
        created = server.request("POST", "/api/todos", token=token, body=body)
        direct = requests_counted(server, "direct", route="todo-list")
        fetched = server.request(
            "GET", created.headers["Location"].removeprefix(server.base), token=token
        )
        expected = django_create(server, token, body)

    assert direct == 1
    assert created.status == expected.status_code == 201
    mine, theirs = created.json(), expected.json()
    assert {k: v for k, v in mine.items() if k not in TIMES_AND_IDS} == {
        k: v for k, v in theirs.items() if k not in TIMES_AND_IDS
    }
    assert mine["title"] == "buy milk"
    assert created.headers["Location"] == mine["url"] == f"{server.base}/api/todos/{mine['id']}"
    assert fetched.json() == mine
    names = {name for name in created.headers if name not in PER_RESPONSE}
    django_names = {name for name in expected.headers if name not in PER_RESPONSE}
    assert names == django_names
    for name in names:
        # Field names in Vary are case-insensitive (django-cors-headers writes "origin").
        assert created.headers[name].lower() == expected.headers[name].lower(), name
    assert list(Todo.objects.filter(owner=user).values_list("title", flat=True)) == [
        "buy milk",
        "buy milk",
    ]


def test_what_the_gateway_does_not_create_django_answers_with_the_body_intact(carol):
    user, token = carol
    json_type = {"Content-Type": "application/json"}
    with app_server(TODO_RESPONSE_CACHE="true") as server:
        server.request("GET", "/api/todos", token=token)
        missing = raw_post(server, token, b'{"completed": true}', json_type)
        unknown = raw_post(server, token, b'{"title": "x", "done": true}', json_type)
        wrong_type = raw_post(server, token, b'{"title": "x", "order": "7"}', json_type)
        broken = raw_post(server, token, b'{"title": ', json_type)
        deep = raw_post(server, token, b'{"title": ' + b"[" * 5000 + b"]" * 5000 + b"}", json_type)
        not_json = raw_post(server, token, b"title=x", {"Content-Type": "text/plain"})
        bad_key = raw_post(server, token, b'{"title": "x"}', {**json_type, "Idempotency-Key": ""})
        # Taken by Django, the body read once already by the gateway: still created.
        html = raw_post(
            server, token, b'{"title": "from html"}', {**json_type, "Accept": "text/html"}
        )
        latin = raw_post(
            server, token, '{"title": "caf\u00e9"}'.encode("latin-1"),
            {"Content-Type": "application/json; charset=latin-1"},
        )  # fmt: skip
        by_django = requests_counted(server, "django", route="todo-list")
        direct = requests_counted(server, "direct", route="todo-list")

    def error(reply) -> tuple[int, dict]:
        status, headers, body = reply
        assert headers["Content-Type"].startswith("application/json")
        return status, json.loads(body)

    assert error(missing)[0] == 400
    assert "title" in error(missing)[1]
    assert error(unknown) == (400, {"done": ["Unknown field."]})
    assert error(wrong_type)[0] == 400
    assert "order" in error(wrong_type)[1]
    assert error(broken)[0] == 400
    assert "detail" in error(broken)[1]
    assert error(deep)[0] == 400
    assert "nested deeper" in error(deep)[1]["detail"]
    assert not_json[0] == 415
    assert error(bad_key)[0] == 400
    assert "Idempotency-Key" in error(bad_key)[1]
    assert html[0] == 201
    assert html[1]["Content-Type"].startswith("text/html")
    assert latin[0] == 201
    # The first GET and every request above went to Django; the gateway created nothing.
    assert direct == 0
    assert by_django == 10
    titles = set(Todo.objects.filter(owner=user).values_list("title", flat=True))
    assert titles == {"from html", "caf\u00e9"}


def test_an_idempotent_create_through_the_gateway_happens_once(carol):
    user, token = carol
    key = {"Idempotency-Key": "order-42"}
    with app_server(TODO_RESPONSE_CACHE="true") as server:
        server.request("GET", "/api/todos", token=token)
        first = server.request("POST", "/api/todos", token=token, body={"title": "a"}, headers=key)
        again = server.request("POST", "/api/todos", token=token, body={"title": "a"}, headers=key)
        other = server.request("POST", "/api/todos", token=token, body={"title": "b"}, headers=key)
        direct = requests_counted(server, "direct", route="todo-list")

    assert first.status == again.status == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert other.status == 422
    assert direct == 2
    assert list(Todo.objects.filter(owner=user).values_list("title", flat=True)) == ["a"]


def test_a_revoked_token_creates_nothing_through_the_gateway(carol):
    user, token = carol
    with app_server(TODO_RESPONSE_CACHE="true") as server:
        server.request("GET", "/api/todos", token=token)
        assert server.request("POST", "/api/auth/logout", token=token).status == 204
        refused = server.request("POST", "/api/todos", token=token, body={"title": "x"})

    assert refused.status == 401
    assert not Todo.objects.filter(owner=user).exists()


def django_update(server, token: str, method: str, path: str, body: dict, headers=None):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    send = getattr(client, method.lower())
    host = server.base.removeprefix("http://")
    return send(path, body, format="json", HTTP_HOST=host, headers=headers or {})


def test_the_gateway_updates_exactly_as_django(carol):
    user, token = carol
    mine = TodoFactory(owner=user, title="old", order=1)
    theirs = TodoFactory(owner=user, title="old", order=1)
    path, django_path = f"/api/todos/{mine.pk}", f"/api/todos/{theirs.pk}"
    with app_server(TODO_RESPONSE_CACHE="true") as server:
        server.request("GET", "/api/todos", token=token)
        patched = server.request("PATCH", path, token=token, body={"completed": True})
        put = server.request("PUT", path, token=token, body={"title": "new", "order": None})
        fetched = server.request("GET", path, token=token)
        direct = requests_counted(server, "direct", route="todo-detail")
        expected_patch = django_update(server, token, "PATCH", django_path, {"completed": True})
        expected_put = django_update(
            server, token, "PUT", django_path, {"title": "new", "order": None}
        )

    assert direct == 2
    for reply, expected in ((patched, expected_patch), (put, expected_put)):
        assert reply.status == expected.status_code == 200
        got, wanted = reply.json(), expected.json()
        assert {k: v for k, v in got.items() if k not in TIMES_AND_IDS} == {
            k: v for k, v in wanted.items() if k not in TIMES_AND_IDS
        }
        names = {name for name in reply.headers if name not in PER_RESPONSE | {"ETag"}}
        assert names == {name for name in expected.headers if name not in PER_RESPONSE | {"ETag"}}
        for name in names:
            assert reply.headers[name].lower() == expected.headers[name].lower(), name
    assert put.json()["completed"] is True  # PUT leaves out what it does not name
    assert fetched.json() == put.json()
    assert fetched.headers["ETag"] == put.headers["ETag"]


def test_what_the_gateway_does_not_update_django_answers(carol):
    user, token = carol
    todo = TodoFactory(owner=user, title="kept")
    foreign = TodoFactory(owner=UserFactory(), title="foreign")
    path = f"/api/todos/{todo.pk}"
    with app_server(TODO_RESPONSE_CACHE="true") as server:
        server.request("GET", "/api/todos", token=token)
        etag = server.request("GET", path, token=token).headers["ETag"]
        invalid = server.request("PATCH", path, token=token, body={"completed": "yes"})
        no_title = server.request("PUT", path, token=token, body={"completed": True})
        unknown = server.request("PATCH", path, token=token, body={"titel": "x"})
        other = server.request(
            "PATCH", f"/api/todos/{foreign.pk}", token=token, body={"title": "x"}
        )
        missing = server.request("PATCH", "/api/todos/999999", token=token, body={"title": "x"})
        changed = server.request(
            "PATCH", path, token=token, body={"title": "v2"}, headers={"If-Match": etag}
        )
        stale = server.request(
            "PATCH", path, token=token, body={"title": "v3"}, headers={"If-Match": etag}
        )
        direct = requests_counted(server, "direct", route="todo-detail")

    assert invalid.status == 400
    assert "completed" in invalid.json()
    assert no_title.status == 400
    assert "title" in no_title.json()
    assert unknown.status == 400
    assert unknown.json() == {"titel": ["Unknown field."]}
    assert other.status == missing.status == 404
    assert changed.status == 200
    assert stale.status == 412
    assert direct == 1  # only the PATCH with the current ETag
    todo.refresh_from_db()
    foreign.refresh_from_db()
    assert (todo.title, todo.completed, foreign.title) == ("v2", False, "foreign")

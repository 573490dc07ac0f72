"""The Todo API contract of the README ("The API"), row by row, over real token authentication."""

import pytest
from rest_framework.test import APIClient

from tests.factories import TodoFactory
from todos.models import Todo

pytestmark = pytest.mark.django_db

BASE = "http://testserver/api/todos"


def test_post_creates_a_todo_with_location_and_absolute_url(api):
    response = api.post("/api/todos", {"title": "  buy milk  ", "order": 3}, format="json")

    assert response.status_code == 201
    body = response.json()
    todo = Todo.objects.get()
    assert body == {
        "id": todo.id,
        "url": f"{BASE}/{todo.id}",
        "title": "buy milk",
        "completed": False,
        "order": 3,
        "due_at": None,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    assert response["Location"] == body["url"]
    assert todo.owner == api.user


def test_post_accepts_due_at_and_completed(api):
    response = api.post(
        "/api/todos",
        {"title": "file taxes", "completed": True, "due_at": "2030-04-15T12:00:00Z"},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["due_at"] == "2030-04-15T12:00:00Z"
    assert response.json()["completed"] is True


def test_list_is_a_bare_array_of_the_callers_todos_in_creation_order(api, other_user):
    mine = [TodoFactory(owner=api.user, title=f"mine {i}") for i in range(3)]
    TodoFactory(owner=other_user, title="not mine")

    response = api.get("/api/todos")

    assert response.status_code == 200
    assert [item["id"] for item in response.json()] == [todo.id for todo in mine]
    assert "Link" not in response


def test_list_pages_with_limit_and_link_header_until_the_end(api):
    created = [TodoFactory(owner=api.user).id for _ in range(7)]

    seen, url, pages = [], "/api/todos?limit=3", 0
    while url:
        response = api.get(url)
        assert response.status_code == 200
        seen += [item["id"] for item in response.json()]
        pages += 1
        link = response.get("Link")
        url = link.split(">")[0].lstrip("<").replace("http://testserver", "") if link else None
        if link:
            assert link.endswith('; rel="next"')

    assert seen == created
    assert pages == 3


def test_default_page_size_is_100(api):
    Todo.objects.bulk_create(Todo(owner=api.user, title=f"t{i}") for i in range(101))

    response = api.get("/api/todos")

    assert len(response.json()) == 100
    assert 'rel="next"' in response["Link"]


def test_page_stays_stable_when_rows_are_added_before_the_cursor(api):
    first = [TodoFactory(owner=api.user).id for _ in range(4)]
    page1 = api.get("/api/todos?limit=2")
    next_url = page1["Link"].split(">")[0].lstrip("<")
    TodoFactory(owner=api.user)  # arrives at the end: no duplicates, no skips before it

    page2 = api.get(next_url)

    assert [item["id"] for item in page2.json()] == first[2:4]


@pytest.mark.parametrize(
    "key", ["order", "-order", "due_at", "-due_at", "title", "-title", "created_at", "-created_at"]
)
def test_every_ordering_pages_through_all_rows_once_with_nulls_last(api, key):
    # given: duplicates and NULLs in the sort key, the hard cases for a keyset cursor
    values = [(5, "b"), (None, "a"), (1, "c"), (5, "a"), (None, "d"), (3, "b"), (1, "a")]
    for order, title in values:
        due = None if order is None else f"2030-01-{order:02d}T00:00:00Z"
        api.post("/api/todos", {"title": title, "order": order, "due_at": due}, format="json")
    field = key.lstrip("-")

    # when
    seen, url = [], f"/api/todos?limit=2&ordering={key}"
    while url:
        response = api.get(url)
        assert response.status_code == 200, response.json()
        seen += response.json()
        link = response.get("Link")
        url = link.split(">")[0].lstrip("<") if link else None

    # then
    assert sorted(item["id"] for item in seen) == sorted(Todo.objects.values_list("id", flat=True))
    non_null = [item for item in seen if item[field] is not None]
    nulls = [item for item in seen if item[field] is None]
    assert seen == non_null + nulls
    keys = [(item[field], item["id"]) for item in non_null]
    assert keys == sorted(keys, reverse=key.startswith("-"))


def test_filters_completed_and_search(api):
    TodoFactory(owner=api.user, title="Buy milk", completed=True)
    TodoFactory(owner=api.user, title="buy bread")
    TodoFactory(owner=api.user, title="walk dog", completed=True)

    done = api.get("/api/todos?completed=true").json()
    open_ = api.get("/api/todos?completed=false").json()
    found = api.get("/api/todos?search=BUY").json()
    both = api.get("/api/todos?search=buy&completed=true").json()

    assert [t["title"] for t in done] == ["Buy milk", "walk dog"]
    assert [t["title"] for t in open_] == ["buy bread"]
    assert [t["title"] for t in found] == ["Buy milk", "buy bread"]
    assert [t["title"] for t in both] == ["Buy milk"]


@pytest.mark.parametrize("count", [3, 60])
def test_list_query_count_does_not_grow_with_the_number_of_todos(
    api, count, django_assert_num_queries
):
    Todo.objects.bulk_create(Todo(owner=api.user, title=f"t{i}") for i in range(count))

    # one query resolves the token, one reads the page: no COUNT(*), no query per row
    with django_assert_num_queries(2):
        response = api.get("/api/todos?limit=50")

    assert len(response.json()) == min(count, 50)


def test_get_item(api):
    todo = TodoFactory(owner=api.user, title="read book")

    response = api.get(f"/api/todos/{todo.id}")

    assert response.status_code == 200
    assert response.json()["title"] == "read book"
    assert response.json()["url"] == f"{BASE}/{todo.id}"


def test_patch_changes_only_the_given_fields_and_returns_the_whole_todo(api):
    todo = TodoFactory(owner=api.user, title="old", order=1)

    response = api.patch(f"/api/todos/{todo.id}", {"completed": True}, format="json")

    assert response.status_code == 200
    assert response.json()["completed"] is True
    assert response.json()["title"] == "old"
    todo.refresh_from_db()
    assert (todo.title, todo.completed, todo.order) == ("old", True, 1)


@pytest.mark.django_db(transaction=True)
def test_an_update_answers_the_todo_exactly_as_the_next_get_shows_it(api):
    # Committed for real, so that each write moves the cache generation as in production.
    # Without If-Match an update is one UPDATE ... RETURNING: the row it answers with must be
    # the row as stored, every field converted as a read converts it.
    todo = TodoFactory(owner=api.user, title="old", order=3)
    url = f"/api/todos/{todo.id}"

    patched = api.patch(
        url, {"title": "Ünïcode ✓", "due_at": "2027-01-02T03:04:05.678Z"}, format="json"
    )
    after_patch = api.get(url)
    put = api.put(
        url, {"title": "whole", "completed": True, "order": None, "due_at": None}, format="json"
    )
    after_put = api.get(url)

    assert patched.status_code == 200
    assert patched.json() == after_patch.json()
    assert patched["ETag"] == after_patch["ETag"]
    assert patched.json()["due_at"] == "2027-01-02T03:04:05.678000Z"
    assert patched.json()["order"] == 3
    assert put.status_code == 200
    assert put.json() == after_put.json()
    assert put["ETag"] == after_put["ETag"]
    assert put.json()["updated_at"] > patched.json()["updated_at"]
    assert (put.json()["completed"], put.json()["order"], put.json()["due_at"]) == (
        True,
        None,
        None,
    )


def test_an_invalid_update_of_a_missing_todo_is_404_and_of_ones_own_a_400_naming_the_field(
    api, other_api
):
    todo = TodoFactory(owner=api.user, title="mine")
    url = f"/api/todos/{todo.id}"

    foreign = other_api.patch(url, {"order": "soon"}, format="json")
    missing = api.patch("/api/todos/999999", {"order": "soon"}, format="json")
    own = api.patch(url, {"order": "soon"}, format="json")

    assert foreign.status_code == 404
    assert missing.status_code == 404
    assert own.status_code == 400
    assert list(own.json()) == ["order"]
    todo.refresh_from_db()
    assert (todo.title, todo.order) == ("mine", None)


def test_put_replaces_the_todo(api):
    todo = TodoFactory(owner=api.user, title="old", order=1)

    response = api.put(
        f"/api/todos/{todo.id}", {"title": "new", "completed": True, "order": None}, format="json"
    )

    assert response.status_code == 200
    todo.refresh_from_db()
    assert (todo.title, todo.completed, todo.order) == ("new", True, None)


def test_put_without_title_is_400(api):
    todo = TodoFactory(owner=api.user, title="old")

    response = api.put(f"/api/todos/{todo.id}", {"completed": True}, format="json")

    assert response.status_code == 400
    assert "title" in response.json()


def test_delete_item_then_it_is_gone(api):
    todo = TodoFactory(owner=api.user)

    assert api.delete(f"/api/todos/{todo.id}").status_code == 204
    assert api.get(f"/api/todos/{todo.id}").status_code == 404
    assert not Todo.objects.filter(pk=todo.pk).exists()


def test_delete_collection_removes_only_the_callers_todos(api, other_user):
    TodoFactory.create_batch(3, owner=api.user)
    theirs = TodoFactory(owner=other_user)

    response = api.delete("/api/todos")

    assert response.status_code == 204
    assert list(Todo.objects.all()) == [theirs]


@pytest.mark.parametrize("slash", ["", "/"])
def test_every_method_answers_with_and_without_trailing_slash(api, slash):
    created = api.post(f"/api/todos{slash}", {"title": "a"}, format="json")
    assert created.status_code == 201
    item = f"/api/todos/{created.json()['id']}{slash}"

    assert api.get(f"/api/todos{slash}").status_code == 200
    assert api.get(item).status_code == 200
    assert api.patch(item, {"title": "b"}, format="json").status_code == 200
    assert api.put(item, {"title": "c"}, format="json").status_code == 200
    assert api.delete(item).status_code == 204
    assert api.delete(f"/api/todos{slash}").status_code == 204


def test_unknown_id_and_non_numeric_id_are_json_404(api):
    for path in ("/api/todos/999999", "/api/todos/abc", "/api/nothing-here"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found."}


def test_method_not_allowed_is_json_405(api):
    response = api.post("/api/todos/1", {"title": "x"}, format="json")

    assert response.status_code == 405
    assert "detail" in response.json()


def test_unauthenticated_requests_get_401(db):
    client = APIClient()

    assert client.get("/api/todos").status_code == 401
    assert client.post("/api/todos", {"title": "x"}, format="json").status_code == 401
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/todos")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}
    assert Todo.objects.count() == 0


class TestOwnerIsolation:
    """Another user's todo behaves exactly like a missing one, for every method."""

    def test_foreign_todo_is_404_for_every_method_and_unchanged(self, api, other_api):
        todo = TodoFactory(owner=api.user, title="private")
        url = f"/api/todos/{todo.id}"

        assert other_api.get(url).status_code == 404
        assert other_api.patch(url, {"title": "hacked"}, format="json").status_code == 404
        assert other_api.put(url, {"title": "hacked"}, format="json").status_code == 404
        assert other_api.delete(url).status_code == 404
        assert other_api.get(url).json() == other_api.get("/api/todos/999999").json()

        todo.refresh_from_db()
        assert todo.title == "private"

    def test_lists_and_deletes_are_per_user(self, api, other_api):
        api.post("/api/todos", {"title": "alice's"}, format="json")
        other_api.post("/api/todos", {"title": "bob's"}, format="json")

        assert [t["title"] for t in api.get("/api/todos").json()] == ["alice's"]
        assert [t["title"] for t in other_api.get("/api/todos").json()] == ["bob's"]
        other_api.delete("/api/todos")
        assert [t["title"] for t in api.get("/api/todos").json()] == ["alice's"]


class TestProxyHeaders:
    def test_url_uses_forwarded_host_and_proto_when_trusted(self, api, settings):
        settings.USE_X_FORWARDED_HOST = True
        settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
        settings.ALLOWED_HOSTS = ["api.example.com"]

        response = api.post(
            "/api/todos",
            {"title": "x"},
            format="json",
            HTTP_X_FORWARDED_HOST="api.example.com",
            HTTP_X_FORWARDED_PROTO="https",
        )

        todo_id = response.json()["id"]
        assert response.json()["url"] == f"https://api.example.com/api/todos/{todo_id}"
        assert response["Location"] == response.json()["url"]

    def test_forwarded_headers_are_ignored_when_not_trusted(self, api, settings):
        settings.USE_X_FORWARDED_HOST = False
        settings.SECURE_PROXY_SSL_HEADER = None

        response = api.post(
            "/api/todos",
            {"title": "x"},
            format="json",
            HTTP_X_FORWARDED_HOST="evil.example.com",
            HTTP_X_FORWARDED_PROTO="https",
        )

        assert response.json()["url"].startswith("http://testserver/api/todos/")


class TestCors:
    ORIGIN = "https://www.todobackend.com"

    def test_preflight_is_answered_without_authentication(self, db):
        response = APIClient().options(
            "/api/todos",
            HTTP_ORIGIN=self.ORIGIN,
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="PATCH",
            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type",
        )

        assert response.status_code == 200
        assert response["Access-Control-Allow-Origin"] == "*"
        methods = {m.strip() for m in response["Access-Control-Allow-Methods"].split(",")}
        assert methods >= {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
        headers = {h.strip() for h in response["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type"} <= headers
        assert "*" not in headers

    @pytest.mark.parametrize(
        ("method", "path", "expected"),
        [
            ("get", "/api/todos", 200),
            ("get", "/api/todos/999999", 404),
            ("post", "/api/todos", 400),
            ("get", "/api/unknown", 404),
        ],
    )
    def test_every_response_carries_allow_origin(self, api, method, path, expected):
        response = getattr(api, method)(path, {}, format="json", HTTP_ORIGIN=self.ORIGIN)

        assert response.status_code == expected
        assert response["Access-Control-Allow-Origin"] == "*"

    def test_browser_clients_may_read_every_header_of_ours(self, api):
        response = api.get("/api/todos", HTTP_ORIGIN=self.ORIGIN)

        exposed = {h.strip() for h in response["Access-Control-Expose-Headers"].split(",")}
        assert exposed >= {"etag", "link", "location", "retry-after", "idempotent-replayed"}
        assert exposed >= {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}
        assert exposed >= {"x-cache", "x-request-id"}

    def test_unauthenticated_error_carries_allow_origin(self, db):
        response = APIClient().get("/api/todos", HTTP_ORIGIN=self.ORIGIN)

        assert response.status_code == 401
        assert response["Access-Control-Allow-Origin"] == "*"

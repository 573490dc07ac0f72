"""The admin as the server renders it: filters, actions, bounded counting, and operators' edits
reaching API clients like their own writes."""

import pytest

from tests.conftest import api_client_for
from tests.factories import TodoFactory, UserFactory
from todos import services
from todos.admin import EstimatedCountPaginator
from todos.models import IdempotencyKey, Todo

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    client.force_login(UserFactory(username="operator", is_staff=True, is_superuser=True))
    return client


def test_changelist_filters_by_owner_username_and_search(operator_client):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    TodoFactory(owner=alice, title="buy milk")
    TodoFactory(owner=alice, title="walk dog")
    TodoFactory(owner=bob, title="buy stamps")

    response = operator_client.get("/admin/todos/todo/", {"owner": "alice", "q": "buy"})

    assert response.status_code == 200
    assert [todo.title for todo in response.context["cl"].result_list] == ["buy milk"]


def test_changelist_query_count_is_constant(operator_client, django_assert_max_num_queries):
    owners = [UserFactory() for _ in range(5)]
    for owner in owners:
        TodoFactory.create_batch(4, owner=owner)

    # session, user, count, page (owners joined), plus the statement-timeout savepoint
    with django_assert_max_num_queries(10):
        response = operator_client.get("/admin/todos/todo/")

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 20


def test_bulk_actions_mark_completed_and_not_completed(operator_client):
    todos = TodoFactory.create_batch(3)
    ids = [todo.pk for todo in todos[:2]]

    response = operator_client.post(
        "/admin/todos/todo/",
        {"action": "mark_completed", "_selected_action": ids, "index": 0},
        follow=True,
    )

    assert response.status_code == 200
    assert set(Todo.objects.filter(completed=True).values_list("pk", flat=True)) == set(ids)
    operator_client.post(
        "/admin/todos/todo/", {"action": "mark_not_completed", "_selected_action": ids[:1]}
    )
    assert set(Todo.objects.filter(completed=True).values_list("pk", flat=True)) == {ids[1]}


@pytest.mark.django_db(transaction=True)
def test_bulk_delete_of_several_owners_todos_unlinks_their_idempotency_keys(operator_client):
    owners = [UserFactory(username=name) for name in ("dave", "erin")]
    clients = [api_client_for(owner) for owner in owners]
    created = [
        client.post("/api/todos", {"title": "t"}, format="json", HTTP_IDEMPOTENCY_KEY="k").json()
        for client in clients
    ]
    kept = TodoFactory(owner=owners[0])

    response = operator_client.post(
        "/admin/todos/todo/",
        {
            "action": "delete_selected",
            "_selected_action": [todo["id"] for todo in created],
            "post": "yes",
        },
    )

    assert response.status_code == 302
    assert list(Todo.objects.values_list("pk", flat=True)) == [kept.pk]
    assert list(IdempotencyKey.objects.values_list("todo_id", flat=True)) == [None, None]
    assert [client.get("/api/todos").json() for client in clients][1] == []


def test_paginator_falls_back_to_the_planner_estimate_when_counting_is_slow(monkeypatch):
    TodoFactory.create_batch(3)
    # Each row sleeps 50 ms, so the exact count cannot finish within a 1 ms budget.
    slow = Todo.objects.extra(where=["pg_sleep(0.05) IS NOT NULL"])
    monkeypatch.setattr(EstimatedCountPaginator, "COUNT_TIMEOUT_MS", 1)

    count = EstimatedCountPaginator(slow, 10).count

    assert count == EstimatedCountPaginator._estimate(slow)
    # the cancelled count left the surrounding transaction usable
    assert Todo.objects.count() == 3


def test_paginator_counts_exactly_when_it_is_fast():
    TodoFactory.create_batch(3)

    assert EstimatedCountPaginator(Todo.objects.all(), 10).count == 3


def test_operators_can_see_the_outbox_and_exports_but_not_change_them(operator_client):
    owner = UserFactory(username="exporter")
    services.export_create(owner=owner, export_format="json", todo_url_prefix="http://x/")

    outbox = operator_client.get("/admin/todos/outboxmessage/", {"sent": "no"})
    exports = operator_client.get("/admin/todos/export/")
    add = operator_client.get("/admin/todos/export/add/")

    assert outbox.status_code == 200
    assert exports.status_code == 200
    assert [export.owner.username for export in exports.context["cl"].result_list] == ["exporter"]
    assert add.status_code == 403


def change_form(todo: Todo, **changes) -> dict:
    """The admin change form of `todo` as the browser posts it, with `changes` applied."""
    data = {
        "owner": todo.owner_id,
        "title": todo.title,
        "completed": todo.completed,
        "order": "" if todo.order is None else todo.order,
        "due_at_0": "",
        "due_at_1": "",
        "_save": "Save",
        **changes,
    }
    if not data.pop("completed"):
        return data
    return {**data, "completed": "on"}


@pytest.mark.django_db(transaction=True)
def test_an_admin_edit_of_completed_reaches_the_cached_list_and_the_stats(operator_client, api):
    # Transactional: the cache generation moves, and the stats task runs (eagerly, no broker
    # configured), only once the admin's transaction really commits.
    todo = TodoFactory(owner=api.user, title="pay rent", completed=False)
    # Stored statistics, as after any earlier completion: from now on they change only when the
    # stats task recounts them.
    services.stats_recompute(owner_id=api.user.pk)
    assert api.get("/api/stats").json()["completed"] == 0
    api.get("/api/todos")
    assert api.get("/api/todos")["X-Cache"] == "hit"

    response = operator_client.post(
        f"/admin/todos/todo/{todo.pk}/change/", change_form(todo, completed=True)
    )

    assert response.status_code == 302
    listed = api.get("/api/todos")
    assert listed["X-Cache"] == "miss"
    assert [item["completed"] for item in listed.json()] == [True]
    stats = api.get("/api/stats").json()
    assert (stats["total"], stats["completed"]) == (1, 1)
    assert stats["computed_at"] is not None


@pytest.mark.django_db(transaction=True)
def test_moving_a_todo_to_another_owner_updates_both_owners(operator_client, api, other_api):
    todo = TodoFactory(owner=api.user, title="shared chore", completed=True)
    for user in (api.user, other_api.user):
        services.stats_recompute(owner_id=user.pk)
    api.get("/api/todos")
    other_api.get("/api/todos")

    response = operator_client.post(
        f"/admin/todos/todo/{todo.pk}/change/", change_form(todo, owner=other_api.user.pk)
    )

    assert response.status_code == 302
    assert api.get("/api/todos").json() == []
    assert [item["title"] for item in other_api.get("/api/todos").json()] == ["shared chore"]
    assert api.get("/api/stats").json()["total"] == 0
    assert other_api.get("/api/stats").json()["completed"] == 1


@pytest.mark.django_db(transaction=True)
def test_admin_add_and_delete_reach_the_cached_list(operator_client):
    owner = UserFactory(username="carol")
    api = api_client_for(owner)
    assert api.get("/api/todos").json() == []

    added = operator_client.post(
        "/admin/todos/todo/add/", change_form(Todo(owner=owner, title="added by an operator"))
    )

    assert added.status_code == 302
    todo = Todo.objects.get()
    assert added["Location"] == "/admin/todos/todo/"
    assert [item["title"] for item in api.get("/api/todos").json()] == ["added by an operator"]

    deleted = operator_client.post(f"/admin/todos/todo/{todo.pk}/delete/", {"post": "yes"})

    assert deleted.status_code == 302
    assert api.get("/api/todos").json() == []

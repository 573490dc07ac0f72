"""The admin changelist as the server renders it: filters, actions and bounded counting."""

import pytest

from tests.factories import TodoFactory, UserFactory
from todos.admin import EstimatedCountPaginator
from todos.models import Todo

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
    from todos import services

    owner = UserFactory(username="exporter")
    services.export_create(owner=owner, export_format="json", todo_url_prefix="http://x/")

    outbox = operator_client.get("/admin/todos/outboxmessage/", {"sent": "no"})
    exports = operator_client.get("/admin/todos/export/")
    add = operator_client.get("/admin/todos/export/add/")

    assert outbox.status_code == 200
    assert exports.status_code == 200
    assert [export.owner.username for export in exports.context["cl"].result_list] == ["exporter"]
    assert add.status_code == 403

"""The read paths' row-based rendering matches TodoSerializer, field for field."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from rest_framework.renderers import JSONRenderer

from tests.factories import TodoFactory
from todos.conditional import todo_etag, todo_version_etag
from todos.models import Todo
from todos.representation import (
    json_array,
    todo_json_item,
    todo_json_rows,
    todo_representation,
    todo_rows,
)
from todos.serializers import TodoSerializer

pytestmark = pytest.mark.django_db

PREFIX = "https://api.example.com/api/todos/"


def test_rows_render_exactly_like_the_serializer(user):
    # given: the value shapes that trip up date handling: none, whole seconds, microseconds,
    # another time zone, and text that needs escaping
    TodoFactory(owner=user, title='quote " and ünïcode', order=None, due_at=None)
    TodoFactory(owner=user, order=-5, due_at=datetime(2030, 1, 1, tzinfo=UTC), completed=True)
    TodoFactory(
        owner=user,
        order=2**31 - 1,
        due_at=datetime(2031, 6, 30, 23, 59, 59, 123456, tzinfo=timezone(timedelta(hours=5))),
    )
    Todo.objects.filter(order=-5).update(created_at=datetime(2029, 1, 1, 0, 0, 0, tzinfo=UTC))

    # when
    fast = [todo_representation(row, PREFIX) for row in todo_rows(Todo.objects.order_by("id"))]
    reference = TodoSerializer(
        Todo.objects.order_by("id"), many=True, context={"todo_url_prefix": PREFIX}
    ).data

    # then
    assert fast == [dict(item) for item in reference]
    assert fast[1]["created_at"] == "2029-01-01T00:00:00Z"
    assert fast[2]["due_at"] == "2031-06-30T18:59:59.123456Z"


def test_postgres_renders_the_same_bytes_as_drf(user):
    # given: every edge of every field: NULL order and due_at, whole seconds and microseconds,
    # another time zone, years before 1000, escapes, control characters, line separators that
    # DRF escapes, non-BMP characters
    titles = [
        'quote " back\\slash / solidus',
        "tab\tnew\nline\rcr \x01\x1f\x7f",
        "ünïcode 東京 ☕ 🎉",
        "line\u2028sep\u2029para",
        "x" * 500,
    ]
    for index, title in enumerate(titles):
        TodoFactory(owner=user, title=title, order=None if index % 2 else -(2**31), due_at=None)
    TodoFactory(owner=user, order=2**31 - 1, completed=True, due_at=datetime(999, 1, 2, tzinfo=UTC))
    TodoFactory(
        owner=user,
        order=0,
        due_at=datetime(2031, 6, 30, 23, 59, 59, 123456, tzinfo=timezone(timedelta(hours=5))),
    )
    TodoFactory(owner=user, due_at=datetime(2030, 1, 1, 0, 0, 0, 1, tzinfo=UTC))
    Todo.objects.filter(order=0).update(created_at=datetime(2029, 1, 1, 0, 0, 0, tzinfo=UTC))

    # when
    queryset = Todo.objects.order_by("id")
    from_postgres = json_array(list(todo_json_rows(queryset, PREFIX).values("json")))
    from_python = JSONRenderer().render(
        TodoSerializer(queryset, many=True, context={"todo_url_prefix": PREFIX}).data
    )

    # then
    assert from_postgres == from_python
    assert json_array([]) == JSONRenderer().render([])

    # and: one todo read alone is the same text, with the version its ETag is made of
    for todo in queryset:
        text, updated_at = todo_json_item(user, todo.pk, PREFIX)
        expected = TodoSerializer(todo, context={"todo_url_prefix": PREFIX}).data
        assert text.encode() == JSONRenderer().render(expected)
        assert todo_version_etag(todo.pk, updated_at) == todo_etag(todo)
    assert todo_json_item(user.pk, Todo.objects.order_by("id").last().pk + 1, PREFIX) is None

"""A page compiled once per shape (todos/reads.py `owner_page`) against the ORM's own page, on
Postgres: the same rows and the same next link for every ordering, direction, cursor kind
(first page, after a value, after a NULL sort key) and page size."""

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.factories import TodoFactory, UserFactory
from todos import selectors
from todos.pagination import ORDERING_KEYS, KeysetPagination
from todos.reads import owner_page
from todos.representation import todo_json_rows

pytestmark = pytest.mark.django_db

PREFIX = "https://api.example.com/api/todos/"
URL = "https://api.example.com/api/todos"


def pages(user_id: int, params: dict, compiled: bool) -> list[tuple[list[str], str | None]]:
    """Every page of the list (each todo's JSON), following the next links."""
    found = []
    while True:
        pagination = KeysetPagination()
        query = "&".join(f"{k}={v}" for k, v in params.items())
        if compiled:
            pagination.start(params, f"{URL}?{query}")
            rows = owner_page(pagination, user_id, PREFIX)
        else:
            todos = todo_json_rows(selectors.todo_list(owner=user_id), PREFIX)
            rows = [
                row["json"]
                for row in pagination.paginate(todos, params, f"{URL}?{query}", ["json"])
            ]
        link = pagination.next_link()
        found.append((rows, link))
        if not link:
            return found
        params = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}


def test_every_shape_of_page_matches_the_orms():
    user, other = UserFactory(), UserFactory()
    for n in range(7):
        TodoFactory(
            owner=user,
            title=f"todo {n % 3}",
            order=None if n % 3 == 0 else n % 4,
            due_at=None if n % 2 else datetime(2030, 1, 1 + n % 3, tzinfo=UTC),
        )
    TodoFactory(owner=other, title="not yours", order=1)

    shapes = 0
    for key, nullable in ORDERING_KEYS.items():
        for ordering in (key, f"-{key}"):
            for limit in (1, 2, 3, 100):
                params = {"ordering": ordering, "limit": str(limit)}
                compiled = pages(user.pk, params, compiled=True)
                assert compiled == pages(user.pk, params, compiled=False), (ordering, limit)
                assert sum(len(rows) for rows, _ in compiled) == 7
                shapes += 1
                if nullable and limit == 1:
                    # Paging one row at a time through the NULLs starts pages after a NULL.
                    nulls = [rows[0] for rows, _ in compiled if json.loads(rows[0])[key] is None]
                    assert len(nulls) >= 2
    assert shapes == 32

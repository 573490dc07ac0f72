"""Fixtures and helpers for deferred work: an owner with an email address, and the list of
their todos as the API renders it. The services (broker, workers, child processes) are in
tests/services.py."""

import pytest

from tests.conftest import api_client_for
from tests.factories import UserFactory


@pytest.fixture
def owner_api(db):
    """A user with an email address, and an API client with their token."""
    user = UserFactory(username="exporter", email="exporter@example.com")
    return api_client_for(user)


def api_todo_list(client) -> list[dict]:
    """Every todo of the client's user, as `GET /api/todos` renders them, page after page."""
    todos: list[dict] = []
    url = "/api/todos?limit=1000"
    while url:
        response = client.get(url)
        assert response.status_code == 200
        todos.extend(response.json())
        link = response.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    return todos

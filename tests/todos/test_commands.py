"""Operator commands: seed_todos and create_api_user."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from todos.models import Todo

pytestmark = pytest.mark.django_db


def seed(**options) -> str:
    out = StringIO()
    call_command("seed_todos", stdout=out, **options)
    return out.getvalue()


def test_seed_creates_users_and_todos_in_batches_with_progress():
    output = seed(users=3, per_user=7, seed=1, batch_size=5)

    assert get_user_model().objects.filter(username__startswith="seed-user-").count() == 3
    assert Todo.objects.count() == 21
    assert sorted(set(Todo.objects.values_list("owner__username", flat=True))) == [
        "seed-user-000000",
        "seed-user-000001",
        "seed-user-000002",
    ]
    assert "21/21 todos" in output
    assert "21 todos created" in output


def test_seed_is_idempotent_and_tops_up():
    seed(users=2, per_user=5, seed=1)
    titles = sorted(Todo.objects.values_list("title", flat=True))

    output = seed(users=2, per_user=5, seed=1)
    assert Todo.objects.count() == 10
    assert sorted(Todo.objects.values_list("title", flat=True)) == titles
    assert "0 todos created" in output

    seed(users=3, per_user=6, seed=1)
    assert Todo.objects.count() == 18


def test_seed_rejects_negative_counts():
    with pytest.raises(CommandError):
        seed(users=-1, per_user=5)


def test_create_api_user_prints_a_working_token():
    out = StringIO()
    call_command("create_api_user", "script-bot", stdout=out, stderr=StringIO())
    token = out.getvalue().strip()

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.post("/api/todos", {"title": "from a script"}, format="json").status_code == 201

    again = StringIO()
    call_command("create_api_user", "script-bot", stdout=again, stderr=StringIO())
    assert again.getvalue().strip() == token

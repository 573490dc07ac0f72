"""Operator commands: seed_todos (its progress bar in a pseudo-terminal) and create_api_user."""

import sys
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.test import APIClient

from tests.services import child_env, run_command
from todos import services
from todos.models import Todo

pytestmark = pytest.mark.django_db


def seed(**options) -> str:
    out = StringIO()
    call_command("seed_todos", stdout=out, **options)
    return out.getvalue()


def test_seed_creates_users_and_todos_in_batches():
    output = seed(users=3, per_user=7, seed=1, batch_size=5)

    assert get_user_model().objects.filter(username__startswith="seed-user-").count() == 3
    assert Todo.objects.count() == 21
    assert sorted(set(Todo.objects.values_list("owner__username", flat=True))) == [
        "seed-user-000000",
        "seed-user-000001",
        "seed-user-000002",
    ]
    # stdout has the summary line only: progress goes to stderr, and only on a terminal (below).
    assert len(output.splitlines()) == 1
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


needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="COPY is the Postgres path"
)
SEED_FIELDS = ("owner__username", "order", "title", "completed", "due_at")


def seeded_rows() -> list[tuple]:
    return list(Todo.objects.order_by("owner__username", "order").values_list(*SEED_FIELDS))


@needs_postgres
def test_seed_with_copy_writes_the_same_todos_as_with_inserts():
    now = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    created = services.todos_seed(users=3, per_user=40, seed=7, batch_size=13, copy=True, now=now)
    assert created == 120
    copied = seeded_rows()
    assert set(Todo.objects.values_list("created_at", "updated_at")) == {(now, now)}
    Todo.objects.all().delete()

    services.todos_seed(users=3, per_user=40, seed=7, batch_size=13, copy=False, now=now)

    assert seeded_rows() == copied
    assert not Todo.objects.filter(created_at__isnull=True).exists()
    assert any(row[3] for row in copied)
    assert not all(row[3] for row in copied)
    due = {row[4] for row in copied} - {None}
    assert due
    assert all(now < due_at <= now + timedelta(days=30) for due_at in due)


@needs_postgres
def test_topping_up_adds_the_missing_orders_of_each_user():
    services.todos_seed(users=2, per_user=4, seed=3)
    services.todos_seed(users=1, per_user=11, seed=3)
    first = seeded_rows()

    assert services.todos_seed(users=2, per_user=25, seed=3) == 50 - 2 * 4 - 7

    rows = seeded_rows()
    assert [(row[0], row[1]) for row in rows] == [
        (f"seed-user-{user:06d}", order) for user in range(2) for order in range(25)
    ]
    assert set(first) <= set(rows)


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_seed_writes_with_parallel_copies_and_stays_idempotent():
    output = seed(users=5, per_user=30, seed=2, batch_size=7, writers=2)

    assert "150 todos created" in output
    assert Todo.objects.count() == 150
    for username in [f"seed-user-{index:06d}" for index in range(5)]:
        orders = Todo.objects.filter(owner__username=username).values_list("order", flat=True)
        assert sorted(orders) == list(range(30))
    rows = seeded_rows()

    assert "0 todos created" in seed(users=5, per_user=30, seed=2, writers=2)
    assert seeded_rows() == rows
    seed(users=6, per_user=32, seed=2, batch_size=5, writers=2)
    assert Todo.objects.count() == 6 * 32


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("terminal", "columns", "flags", "bar"),
    [
        (True, 80, [], True),
        # A terminal that reports no size (a fresh `docker exec -t`) still gets the bar.
        (True, 0, [], True),
        (False, 0, [], False),
        (True, 80, ["--no-progress"], False),
    ],
    ids=["terminal", "terminal-without-size", "pipe", "no-progress"],
)
def test_seed_shows_a_progress_bar_on_a_terminal_only(terminal, columns, flags, bar):
    argv = [sys.executable, "manage.py", "seed_todos", "--users", "4", "--per-user", "25"]

    run = run_command(
        [*argv, "--batch-size", "10", *flags], env=child_env(), terminal=terminal, columns=columns
    )

    assert run.returncode == 0, run.stderr
    assert Todo.objects.count() == 100
    if bar:
        # Its last state, left on the screen: every todo inserted, and the rate.
        last = run.stderr.split("\r")[-2]
        assert last.startswith("seeding: 100%")
        assert "100/100" in last
        assert "todos/s" in last
    else:
        assert "seeding" not in run.stderr
        assert "\r" not in run.stderr
    # stdout is the summary line, whatever stderr is.
    assert len(run.stdout.splitlines()) == 1
    assert "100 todos created" in run.stdout
    assert "100/100" not in run.stdout


def test_seed_rejects_negative_counts():
    with pytest.raises(CommandError):
        seed(users=-1, per_user=5)
    with pytest.raises(CommandError):
        seed(users=1, per_user=5, writers=0)


def test_create_api_user_prints_a_working_token():
    out = StringIO()
    call_command("create_api_user", "script-bot", stdout=out, stderr=StringIO())
    token = out.getvalue().strip()

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.post("/api/todos", {"title": "from a script"}, format="json").status_code == 201

    # a second run issues another token (only digests are kept, no key can be shown again);
    # both work
    again = StringIO()
    call_command("create_api_user", "script-bot", stdout=again, stderr=StringIO())
    second = again.getvalue().strip()
    assert second != token
    for key in (token, second):
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        assert client.get("/api/todos").status_code == 200

"""What must always reach the primary: transactions, migrations, authentication."""

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import RequestFactory

from config.replicas.health import replica_aliases
from config.replicas.read_routing import read_alias, routing_for
from tests.config.replicas.conftest import pause_replay
from tests.factories import TodoFactory, TokenFactory, UserFactory
from todos.models import Todo

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def request_as(user):
    request = RequestFactory().get("/api/todos")
    request.user = user
    return request


def test_everything_inside_an_atomic_block_uses_the_primary(cluster, queries):
    user = UserFactory()
    TodoFactory(owner=user)
    cluster.wait_for_replay()
    with routing_for(request_as(user)):
        assert read_alias() in replica_aliases()
        with queries() as inside, transaction.atomic():
            assert read_alias() == "default"
            list(Todo.objects.filter(owner=user))
            Todo.objects.filter(owner=user).count()
            Todo.objects.filter(owner=user).update(title="changed")
            assert Todo.objects.get(owner=user).title == "changed"
        assert inside.todo_reads("default") == 3
        assert any(sql.startswith('UPDATE "todos_todo"') for sql in inside.sql("default"))
        assert all(inside.sql(alias) == [] for alias in replica_aliases())


def test_a_request_that_wrote_reads_from_the_primary_for_the_rest_of_it(cluster, queries):
    user = UserFactory()
    cluster.wait_for_replay()
    with routing_for(request_as(user)) as routing:
        assert read_alias() in replica_aliases()
        TodoFactory(owner=user)
        assert routing.wrote
        with queries() as after:
            assert Todo.objects.filter(owner=user).count() == 1
        assert after.todo_reads("default") == 1


def test_migrations_never_touch_a_replica(cluster, queries):
    from django.db import router

    with queries() as ran:
        call_command("migrate", verbosity=0)
        call_command("migrate", "todos", "zero", verbosity=0)
        call_command("migrate", verbosity=0)

    assert ran.sql("default")
    for alias in replica_aliases():
        assert ran.sql(alias) == []
        assert not router.allow_migrate(alias, "todos", model_name="todo")
    assert router.allow_migrate("default", "todos", model_name="todo")


def test_a_token_issued_a_moment_ago_works_while_replicas_lag(cluster, queries):
    # given: standbys that replay nothing, and a token created after that
    pause_replay(cluster)
    token = TokenFactory()

    # when
    with queries() as ran:
        response = reader_with(token).get("/api/todos")

    # then: the lookup went to the primary, in one query with the user
    assert response.status_code == 200
    token_queries = [sql for sql in ran.sql("default") if "todos_apitoken" in sql]
    assert len(token_queries) == 1
    assert "auth_user" in token_queries[0]


def reader_with(token):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def test_anonymous_and_sign_up_requests_use_the_primary(cluster, queries):
    with queries() as ran:
        response = reader_with(TokenFactory.build(key="0" * 40)).get("/api/todos")
        signup = reader_with(TokenFactory.build(key="0" * 40))
        signup.credentials()
        created = signup.post(
            "/api/auth/register",
            {"username": "carol", "password": "a-long-enough-passphrase-1"},
            format="json",
        )
    assert response.status_code == 401
    assert created.status_code == 201
    for alias in replica_aliases():
        assert ran.sql(alias) == []

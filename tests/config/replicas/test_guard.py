"""The routing guard turns a misrouted query into a test failure."""

import pytest
from django.test import RequestFactory

from config.replicas.health import replica_aliases
from config.replicas.read_routing import read_alias, routing_for
from config.replicas.routing_guard import WrongDatabase
from tests.factories import TodoFactory, UserFactory
from todos.models import Todo

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def test_a_write_reaching_a_replica_fails(routing_guard):
    replica = replica_aliases()[0]

    with pytest.raises(WrongDatabase, match=f"a write reached the replica {replica}"):
        Todo.objects.using(replica).filter(title="x").update(title="y")

    assert len(routing_guard) == 1
    routing_guard.clear()


def test_a_read_reaching_the_primary_where_the_router_chose_a_replica_fails(cluster, routing_guard):
    user = UserFactory()
    TodoFactory(owner=user)
    cluster.wait_for_replay()
    request = RequestFactory().get("/api/todos")
    request.user = user

    with routing_for(request):
        chosen = read_alias()
        assert chosen in replica_aliases()
        assert Todo.objects.filter(owner=user).count() == 1
        with pytest.raises(WrongDatabase, match=f"the router had chosen {chosen}"):
            Todo.objects.using("default").filter(owner=user).count()

    assert len(routing_guard) == 1
    routing_guard.clear()


def test_reads_on_the_primary_are_fine_outside_a_request_and_in_a_transaction(routing_guard):
    assert Todo.objects.using("default").count() == 0
    assert routing_guard == []

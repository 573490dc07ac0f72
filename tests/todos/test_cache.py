"""The per-user response cache on a real Redis: hits, misses, and generations bumped on commit.

Transactional tests: generations move in `on_commit`, which only runs when a transaction
really commits.
"""

import threading
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import RequestFactory
from django.utils import timezone
from django_redis import get_redis_connection

from config.edge import response_cache
from config.edge.http_cache import CachedResponse
from tests.conftest import api_client_for
from tests.factories import TodoFactory, TokenFactory
from todos import services
from todos.cache import cached_or_computed
from todos.models import Todo


def gate_for(token: str, signature, limits, mark_prefix: str = ""):
    """The gateway's gate for a request bearing `token`."""
    return response_cache.gate(response_cache.token_digest(token), signature, limits, mark_prefix)


pytestmark = pytest.mark.django_db(transaction=True)


def titles(response) -> list[str]:
    return [todo["title"] for todo in response.json()]


def test_second_read_is_a_hit_with_the_same_bytes(api):
    TodoFactory(owner=api.user, title="a")

    first = api.get("/api/todos")
    second = api.get("/api/todos")

    assert first["X-Cache"] == "miss"
    assert second["X-Cache"] == "hit"
    assert second.content == first.content
    assert second["ETag"] == first["ETag"]


def test_hit_does_no_database_query_beyond_authentication(api, django_assert_num_queries):
    TodoFactory(owner=api.user)
    api.get("/api/todos")

    with django_assert_num_queries(1):  # the token lookup; the rows come from Redis
        response = api.get("/api/todos")

    assert response["X-Cache"] == "hit"


def test_own_write_is_visible_in_the_very_next_list(api):
    api.post("/api/todos", {"title": "first"}, format="json")
    assert titles(api.get("/api/todos")) == ["first"]
    assert api.get("/api/todos")["X-Cache"] == "hit"

    api.post("/api/todos", {"title": "second"}, format="json")
    after_create = api.get("/api/todos")
    todo_id = after_create.json()[0]["id"]
    api.patch(f"/api/todos/{todo_id}", {"title": "renamed"}, format="json")
    after_patch = api.get("/api/todos")
    api.delete(f"/api/todos/{todo_id}")
    after_delete = api.get("/api/todos")

    assert titles(after_create) == ["first", "second"]
    assert after_create["X-Cache"] == "miss"
    assert titles(after_patch) == ["renamed", "second"]
    assert titles(after_delete) == ["second"]


def test_item_reads_are_cached_and_refreshed_by_writes(api):
    todo_id = api.post("/api/todos", {"title": "old"}, format="json").json()["id"]
    api.get(f"/api/todos/{todo_id}")
    assert api.get(f"/api/todos/{todo_id}")["X-Cache"] == "hit"

    api.put(f"/api/todos/{todo_id}", {"title": "new"}, format="json")

    response = api.get(f"/api/todos/{todo_id}")
    assert response["X-Cache"] == "miss"
    assert response.json()["title"] == "new"


def test_another_users_cache_is_untouched_by_my_writes(api, other_api):
    TodoFactory(owner=other_api.user, title="bob's")
    other_api.get("/api/todos")

    api.post("/api/todos", {"title": "alice's"}, format="json")

    response = other_api.get("/api/todos")
    assert response["X-Cache"] == "hit"
    assert titles(response) == ["bob's"]


def test_different_queries_are_different_entries(api):
    TodoFactory(owner=api.user, title="done", completed=True)
    TodoFactory(owner=api.user, title="open")

    everything = api.get("/api/todos")
    done = api.get("/api/todos?completed=true")
    done_again = api.get("/api/todos/?completed=true")

    assert titles(everything) == ["done", "open"]
    assert titles(done) == ["done"]
    assert done_again["X-Cache"] == "hit"


def test_admin_bulk_action_bumps_the_generation(api):
    todo = TodoFactory(owner=api.user, completed=False)
    api.get("/api/todos")

    services.todos_set_completed(todos=Todo.objects.filter(pk=todo.pk), completed=True)

    response = api.get("/api/todos")
    assert response["X-Cache"] == "miss"
    assert [item["completed"] for item in response.json()] == [True]


def test_admin_delete_bumps_the_generation(api):
    from django.contrib.admin.sites import site

    todo = TodoFactory(owner=api.user)
    api.get("/api/todos")

    site._registry[Todo].delete_queryset(None, Todo.objects.filter(pk=todo.pk))

    assert api.get("/api/todos").json() == []


def test_seed_command_bumps_the_generation(api):
    api.user.username = "seed-user-000000"
    api.user.save()
    assert api.get("/api/todos").json() == []

    services.todos_seed(users=1, per_user=2)

    assert len(api.get("/api/todos").json()) == 2


def test_browsable_api_is_not_served_from_the_json_cache(api):
    TodoFactory(owner=api.user)
    api.get("/api/todos")

    response = api.get("/api/todos", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")


def test_concurrent_misses_compute_once(user):
    # given: ten requests for the same entry at the same moment
    request = RequestFactory().get("/api/todos")
    calls, barrier = [], threading.Barrier(10)
    results = []

    def compute() -> CachedResponse:
        calls.append(1)
        threading.Event().wait(0.2)  # a slow query
        return CachedResponse('"x"', "", b"[]")

    def one_request():
        barrier.wait()
        results.append(cached_or_computed(request, user_id=user.pk, compute=compute))

    # when
    threads = [threading.Thread(target=one_request) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then
    assert len(calls) == 1
    assert sorted(outcome for _, outcome in results) == ["hit"] * 9 + ["miss"]
    assert {cached.body for cached, _ in results} == {b"[]"}


def test_revoked_token_is_forgotten_at_once(api):
    token = api.token
    api.get("/api/todos")
    assert gate_for(token.key, None, []).user_id == api.user.pk

    token.delete()

    assert gate_for(token.key, None, []).user_id is None
    assert api.get("/api/todos").status_code == 401


def test_deactivated_user_tokens_are_forgotten(api):
    token = api.token
    api.get("/api/todos")

    api.user.is_active = False
    api.user.save()

    assert gate_for(token.key, None, []).user_id is None


def test_unknown_tokens_are_never_cached(db):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token no-such-token")

    assert client.get("/api/todos").status_code == 401
    assert gate_for("no-such-token", None, []).user_id is None


def token_ttl_ms(token) -> int:
    """How long Redis keeps the token's `tok:` mapping (milliseconds; -2 when there is none)."""
    return get_redis_connection("default").pttl(cache.make_key(f"tok:{token.digest}"))


def test_the_mapping_expires_when_the_token_does(user):
    api = api_client_for(user)
    api.token.expires_at = timezone.now() + timedelta(seconds=30)
    api.token.save()

    assert api.get("/api/todos").status_code == 200

    assert gate_for(api.token.key, None, []).user_id == user.pk
    assert 28_000 < token_ttl_ms(api.token) <= 30_000


def test_a_long_lived_token_is_remembered_for_a_day_at_most(api):
    api.get("/api/todos")

    assert 86_000_000 < token_ttl_ms(api.token) <= 86_400_000


def test_an_expired_token_is_refused_and_never_remembered(user):
    api = api_client_for(user)
    api.token.expires_at = timezone.now() - timedelta(seconds=1)
    api.token.save()

    response = api.get("/api/todos")

    assert response.status_code == 401
    assert response.json() == {"detail": "Token expired."}
    assert token_ttl_ms(api.token) == -2


def test_logout_and_logout_all_leave_tombstones(user):
    phone, laptop, tablet = (api_client_for(user) for _ in range(3))
    for client in (phone, laptop, tablet):
        client.get("/api/todos")

    assert phone.post("/api/auth/logout").status_code == 204

    assert gate_for(phone.token.key, None, []).user_id is None
    assert gate_for(laptop.token.key, None, []).user_id == user.pk

    assert laptop.post("/api/auth/logout-all").status_code == 204

    for client in (phone, laptop, tablet):
        raw = get_redis_connection("default").get(cache.make_key(f"tok:{client.token.digest}"))
        assert raw == response_cache.REVOKED.encode()
        assert client.get("/api/todos").status_code == 401


def test_purging_expired_tokens_writes_no_tombstones(user):
    expired = TokenFactory(user=user, expires_at=timezone.now() - timedelta(minutes=1))

    assert services.housekeeping_purge(now=timezone.now())["api_tokens"] == 1

    assert token_ttl_ms(expired) == -2


def test_generation_survives_a_flush_without_reusing_old_values(user):
    first = response_cache.generation_get(user.pk)
    response_cache.generation_bump(user.pk)
    bumped = response_cache.generation_get(user.pk)
    from django_redis import get_redis_connection

    get_redis_connection("default").flushdb()

    fresh = response_cache.generation_get(user.pk)

    assert int(bumped) == int(first) + 1
    assert fresh not in {first, bumped}
    assert int(fresh) > int(bumped)


def test_the_gate_reads_the_users_read_your_writes_mark(api):
    from django.core.cache import cache

    from config.replicas import sticking

    token = api.token
    api.get("/api/todos")
    prefix = sticking.mark_key("")
    assert gate_for(token.key, None, [], prefix).mark == ""
    assert gate_for(token.key, None, []).mark is None

    cache.set(sticking.mark_key(api.user.pk), "0/1A2B", timeout=30)
    gate = gate_for(token.key, None, [], prefix)

    assert gate.mark == "0/1A2B"
    assert sticking.write_location(api.user.pk, gate) == 0x1A2B
    assert sticking.write_location(api.user.pk + 1, gate) is None

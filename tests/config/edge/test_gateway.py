"""The gateway in real gunicorn processes on a real Redis: hits without Django, shared rate
limits, and service without Redis."""

import time

import pytest

from deploy.local.redis import start_redis
from tests.factories import TodoFactory, TokenFactory, UserFactory
from tests.servers import gunicorn, replica_env
from todos.models import ApiToken, Todo

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def redis_server():
    """A Redis of this module's own, so stopping it leaves the suite's Redis alone."""
    server = start_redis()
    yield server
    server.close()


@pytest.fixture
def flushed_redis(redis_server):
    import redis

    if not redis_server.running:
        redis_server.start()
    for db in (0, 2):
        with redis.Redis.from_url(f"{redis_server.url}/{db}") as client:
            client.flushdb()
    return redis_server


def app_server(redis_url: str, **env: str):
    """A web replica on the test database and this module's Redis."""
    return gunicorn(replica_env(REDIS_URL=f"{redis_url}/0", REDIS_COOLDOWN="1", **env))


@pytest.fixture
def alice():
    user = UserFactory(username="alice")
    return user, TokenFactory(user=user).key


def test_second_read_is_served_by_the_gateway(flushed_redis, alice):
    user, token = alice
    TodoFactory(owner=user, title="a")
    with app_server(flushed_redis.url) as server:
        first = server.request("GET", "/api/todos", token=token)
        second = server.request("GET", "/api/todos/", token=token)
        hits = server.metric("todo_scale_gateway_responses_total", outcome="hit")

    assert first.headers["X-Cache"] == "miss"
    assert second.headers["X-Cache"] == "hit"
    assert second.body == first.body
    assert second.headers["ETag"] == first.headers["ETag"]
    assert second.headers["X-RateLimit-Limit"] == first.headers["X-RateLimit-Limit"]
    assert hits == 1


def test_gateway_hit_honours_if_none_match_and_cors(flushed_redis, alice):
    user, token = alice
    TodoFactory(owner=user)
    with app_server(flushed_redis.url) as server:
        etag = server.request("GET", "/api/todos", token=token).headers["ETag"]
        not_modified = server.request(
            "GET", "/api/todos", token=token, headers={"If-None-Match": etag}
        )
        cross_origin = server.request(
            "GET", "/api/todos", token=token, headers={"Origin": "https://app.example"}
        )

    assert not_modified.status == 304
    assert not_modified.body == b""
    assert cross_origin.headers["X-Cache"] == "hit"
    assert cross_origin.headers["Access-Control-Allow-Origin"] == "*"


def test_a_write_on_one_replica_is_seen_by_the_next_read_on_another(flushed_redis, alice):
    _, token = alice
    with app_server(flushed_redis.url) as one, app_server(flushed_redis.url) as two:
        one.request("POST", "/api/todos", token=token, body={"title": "first"})
        assert two.request("GET", "/api/todos", token=token).headers["X-Cache"] == "miss"
        assert two.request("GET", "/api/todos", token=token).headers["X-Cache"] == "hit"

        one.request("POST", "/api/todos", token=token, body={"title": "second"})
        listing = two.request("GET", "/api/todos", token=token)

    assert [todo["title"] for todo in listing.json()] == ["first", "second"]


def test_rate_limit_is_shared_by_two_app_processes(flushed_redis, alice):
    _, token = alice
    limits = {"RATE_LIMIT_USER": "5/hour", "RATE_LIMIT_IP": "off"}
    with (
        app_server(flushed_redis.url, **limits) as one,
        app_server(flushed_redis.url, **limits) as two,
    ):
        allowed = [server.request("GET", "/api/todos", token=token) for server in (one, two) * 2]
        allowed.append(one.request("POST", "/api/todos", token=token, body={"title": "x"}))
        refused = two.request("GET", "/api/todos", token=token)

    assert [reply.status for reply in allowed] == [200, 200, 200, 200, 201]
    assert [reply.headers["X-RateLimit-Remaining"] for reply in allowed] == list("43210")
    assert refused.status == 429
    assert refused.headers["X-RateLimit-Limit"] == "5"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert int(refused.headers["X-RateLimit-Reset"]) == int(refused.headers["Retry-After"])
    assert "Too many requests" in refused.json()["detail"]
    assert Todo.objects.count() == 1


def test_auth_endpoints_have_their_own_tighter_limit(flushed_redis):
    UserFactory(username="carol", password="correct-horse-battery")
    body = {"username": "carol", "password": "wrong-guess"}
    with app_server(flushed_redis.url, RATE_LIMIT_AUTH="3/hour") as server:
        guesses = [server.request("POST", "/api/auth/token", body=body) for _ in range(4)]

    assert [reply.status for reply in guesses] == [400, 400, 400, 429]
    assert guesses[-1].headers["Retry-After"]


def test_unknown_tokens_are_limited_per_ip_before_the_database(flushed_redis):
    with app_server(flushed_redis.url, RATE_LIMIT_IP="3/hour") as server:
        replies = [server.request("GET", "/api/todos", token=f"guess-{n}") for n in range(4)]

    assert [reply.status for reply in replies] == [401, 401, 401, 429]


def test_requests_succeed_with_redis_stopped_and_caching_resumes(flushed_redis, alice):
    user, token = alice
    TodoFactory(owner=user, title="before")
    with app_server(flushed_redis.url, RATE_LIMIT_USER="1000/hour") as server:
        server.request("GET", "/api/todos", token=token)

        # given: Redis dies
        flushed_redis.stop()

        # then: reads and writes still answer, from Postgres
        created = server.request("POST", "/api/todos", token=token, body={"title": "during"})
        listing = server.request("GET", "/api/todos", token=token)
        item = server.request("GET", f"/api/todos/{created.json()['id']}", token=token)
        bypasses = server.metric("todo_scale_redis_bypass_total")

        # when: Redis is back and the cool-down (1 s here) has passed
        flushed_redis.start()
        time.sleep(1.2)
        server.request("GET", "/api/todos", token=token)
        server.request("GET", "/api/todos", token=token)
        server.request("GET", "/api/todos", token=token)
        again = server.request("GET", "/api/todos", token=token)

    assert created.status == 201
    assert [todo["title"] for todo in listing.json()] == ["before", "during"]
    assert item.status == 200
    assert "X-RateLimit-Limit" not in listing.headers  # limits fail open without Redis
    assert bypasses > 0
    assert again.headers["X-Cache"] == "hit"
    assert [todo["title"] for todo in again.json()] == ["before", "during"]


def test_the_gate_and_the_bump_load_their_scripts_again_after_a_script_flush(flushed_redis, alice):
    import redis

    user, token = alice
    TodoFactory(owner=user, title="before")
    with app_server(flushed_redis.url) as server:
        server.request("GET", "/api/todos", token=token)
        assert server.request("GET", "/api/todos", token=token).headers["X-Cache"] == "hit"

        # given: Redis forgets every script the replica registered
        redis.Redis.from_url(flushed_redis.url).script_flush()

        # then: the gate loads its script again and the hit still answers from Redis
        hit = server.request("GET", "/api/todos", token=token)
        redis.Redis.from_url(flushed_redis.url).script_flush()
        # and: so does the bump of a create, which moves the generation on: the list is fresh
        created = server.request("POST", "/api/todos", token=token, body={"title": "after"})
        listing = server.request("GET", "/api/todos", token=token)
        bypasses = server.metric("todo_scale_redis_bypass_total")

    assert hit.status == 200
    assert hit.headers["X-Cache"] == "hit"
    assert created.status == 201
    assert listing.headers["X-Cache"] == "miss"
    assert [todo["title"] for todo in listing.json()] == ["before", "after"]
    assert bypasses == 0


def test_idempotent_post_holds_with_redis_stopped(flushed_redis, alice):
    _, token = alice
    with app_server(flushed_redis.url) as one, app_server(flushed_redis.url) as two:
        flushed_redis.stop()
        key = {"Idempotency-Key": "retry-me"}
        first = one.request("POST", "/api/todos", token=token, body={"title": "x"}, headers=key)
        retry = two.request("POST", "/api/todos", token=token, body={"title": "x"}, headers=key)

    assert first.status == retry.status == 201
    assert retry.json()["id"] == first.json()["id"]
    assert Todo.objects.count() == 1


def suite_redis() -> str:
    """The Redis this test process's cache uses (the one its signal receivers write to)."""
    from django.conf import settings

    return settings.REDIS_URL.rsplit("/", 1)[0]


def test_without_the_response_cache_the_gateway_still_authenticates_and_revokes_at_once(alice):
    user, token = alice
    todo = TodoFactory(owner=user, title="a")
    with app_server(suite_redis(), TODO_RESPONSE_CACHE="false") as server:
        # the first request teaches the gateway the token; the later ones are resolved by it
        replies = [server.request("GET", "/api/todos", token=token) for _ in range(3)]
        item = server.request("GET", f"/api/todos/{todo.id}", token=token)
        created = server.request("POST", "/api/todos", token=token, body={"title": "b"})

        ApiToken.objects.filter(user=user).delete()
        revoked = server.request("GET", "/api/todos", token=token)

    assert [reply.status for reply in replies] == [200, 200, 200]
    assert {reply.body for reply in replies} == {replies[0].body}
    assert replies[-1].headers["X-Cache"] == "uncached"
    assert item.json()["title"] == "a"
    assert created.status == 201
    assert Todo.objects.get(pk=created.json()["id"]).owner == user
    assert revoked.status == 401


def test_a_deactivated_user_is_refused_at_once(alice):
    user, token = alice
    with app_server(suite_redis(), TODO_RESPONSE_CACHE="false") as server:
        assert server.request("GET", "/api/todos", token=token).status == 200
        assert server.request("GET", "/api/todos", token=token).status == 200
        user.is_active = False
        user.save()
        refused = server.request("GET", "/api/todos", token=token)

    assert refused.status == 401


def test_a_request_that_authenticated_before_a_revocation_cannot_bring_the_token_back(alice):
    from config.edge import response_cache

    user, token = alice
    with app_server(suite_redis(), TODO_RESPONSE_CACHE="false") as server:
        assert server.request("GET", "/api/todos", token=token).status == 200
        (row,) = ApiToken.objects.filter(user=user)
        row.delete()
        # what a request that read the token from Postgres just before the delete writes late
        response_cache.token_remember(row.digest, user.pk, row.expires_at)
        revoked = server.request("GET", "/api/todos", token=token)

    assert revoked.status == 401


def listing_cached_for(server, token: str) -> str:
    """GET the list twice with `token`; the second answer's X-Cache (a gateway hit, "hit")."""
    server.request("GET", "/api/todos", token=token)
    return server.request("GET", "/api/todos", token=token).headers["X-Cache"]


def test_logout_is_refused_at_once_on_every_replica_even_where_a_hit_was_cached(
    flushed_redis, alice
):
    # given: the user's list cached, and answered by the gateway for this token and another
    user, token = alice
    other_device = TokenFactory(user=user).key
    TodoFactory(owner=user, title="a")
    with app_server(flushed_redis.url) as one, app_server(flushed_redis.url) as two:
        assert listing_cached_for(two, token) == "hit"
        assert listing_cached_for(two, other_device) == "hit"

        # when
        logout = one.request("POST", "/api/auth/logout", token=token)

        # then: the very read that was a hit is refused, on both replicas; the entry is still
        # there for the other device
        refused = [server.request("GET", "/api/todos", token=token) for server in (two, one)]
        kept = two.request("GET", "/api/todos", token=other_device)
        again = one.request("POST", "/api/auth/logout/", token=token)

    assert logout.status == 204
    assert logout.body == b""
    assert [reply.status for reply in refused] == [401, 401]
    assert refused[0].json() == {"detail": "Invalid token."}
    assert kept.status == 200
    assert kept.headers["X-Cache"] == "hit"
    assert again.status == 401
    assert list(ApiToken.objects.filter(user=user).values_list("digest", flat=True)) == [
        ApiToken.for_key(other_device).digest
    ]


def test_logout_all_refuses_every_token_of_the_user_at_once(flushed_redis, alice):
    user, phone = alice
    laptop = TokenFactory(user=user).key
    bob = TokenFactory(user=UserFactory(username="bob")).key
    TodoFactory(owner=user)
    with app_server(flushed_redis.url) as one, app_server(flushed_redis.url) as two:
        assert {listing_cached_for(two, token) for token in (phone, laptop, bob)} == {"hit"}

        logout_all = one.request("POST", "/api/auth/logout-all", token=laptop)

        after = {
            name: two.request("GET", "/api/todos", token=token)
            for name, token in [("phone", phone), ("laptop", laptop), ("bob", bob)]
        }
        on_one = one.request("GET", "/api/todos", token=phone)

    assert logout_all.status == 204
    assert after["phone"].status == after["laptop"].status == on_one.status == 401
    assert after["bob"].status == 200
    assert after["bob"].headers["X-Cache"] == "hit"
    assert not ApiToken.objects.filter(user=user).exists()


def test_a_token_is_refused_once_it_expires_even_where_a_hit_was_cached(flushed_redis):
    # given: tokens that live 3 s on this replica (API_TOKEN_TTL), from a sign-up and a login
    # there (the replica hashes passwords its own way, not as the tests' settings do)
    credentials = {"username": "carol", "password": "correct-horse-battery"}
    with app_server(flushed_redis.url, API_TOKEN_TTL="3") as server:
        signup = server.request("POST", "/api/auth/register", body=credentials)
        token = signup.json()["token"]
        server.request("POST", "/api/todos", token=token, body={"title": "a"})
        cached = listing_cached_for(server, token)
        row = ApiToken.objects.get(user__username="carol")

        # when: the expiry passes
        time.sleep(max(row.expires_at.timestamp() - time.time(), 0) + 0.2)
        expired = server.request("GET", "/api/todos", token=token)
        login = server.request("POST", "/api/auth/token", body=credentials)
        fresh = server.request("GET", "/api/todos", token=login.json()["token"])

    # then
    assert signup.status == 201
    assert cached == "hit"
    assert (row.expires_at - row.created).total_seconds() == pytest.approx(3, abs=0.1)
    assert expired.status == 401
    assert expired.json() == {"detail": "Token expired."}
    assert login.status == 200
    assert fresh.status == 200
    assert [todo["title"] for todo in fresh.json()] == ["a"]


def test_a_bump_that_missed_redis_is_retried_so_other_replicas_stop_serving_the_old_list(
    flushed_redis, alice
):
    import redis

    user, token = alice
    todo = TodoFactory(owner=user, title="old")
    with app_server(flushed_redis.url) as one, app_server(flushed_redis.url) as two:
        two.request("GET", "/api/todos", token=token)
        assert two.request("GET", "/api/todos", token=token).headers["X-Cache"] == "hit"
        one.request("GET", "/api/todos", token=token)

        # given: Redis holds every write command for 1.5 s, so `one` times out on the bump
        # after its PATCH commits, while `two` keeps the cached list
        with redis.Redis.from_url(flushed_redis.url) as admin:
            admin.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
        paused_at = time.monotonic()
        patched = one.request("PATCH", f"/api/todos/{todo.pk}", token=token, body={"title": "new"})
        time.sleep(max(0.0, 1.6 - (time.monotonic() - paused_at)))

        # then: once Redis answers again, `one` bumps the generation after all: `two` stops
        # serving the old list long before the entry would expire (60 s)
        deadline, titles = time.monotonic() + 5, None
        while time.monotonic() < deadline:
            titles = [t["title"] for t in two.request("GET", "/api/todos", token=token).json()]
            if titles == ["new"]:
                break
            time.sleep(0.1)
        retried = [r for r in one.log_records() if "generation bump retried" in r["message"]]

    assert patched.status == 200
    assert titles == ["new"]
    assert retried

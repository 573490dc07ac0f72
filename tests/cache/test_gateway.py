"""The gateway in real gunicorn processes on a real Redis: hits without Django, shared rate
limits, and service without Redis."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from django.db import connection

from deploy.local.ports import free_port
from deploy.local.redis import start_redis
from tests.factories import TodoFactory, TokenFactory, UserFactory
from tests.test_platform import ROOT, clean_env
from todos.models import Todo

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class AppServer:
    base: str

    def request(self, method: str, path: str, *, token=None, body=None, headers=None) -> Reply:
        request = urllib.request.Request(self.base + path, method=method)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if token:
            request.add_header("Authorization", f"Token {token}")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, data=data, timeout=15) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, dict(error.headers), error.read())

    def metric(self, name: str, **labels) -> float:
        """The value of one Prometheus sample of this server (0 when absent)."""
        text = self.request("GET", "/metrics").body.decode()
        wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (not wanted or "{" + wanted + "}" in line):
                total += float(line.rsplit(" ", 1)[1])
        return total


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


@contextmanager
def app_server(redis_url: str, **env: str) -> Iterator[AppServer]:
    """gunicorn serving config.wsgi on the test database, as a web replica runs it."""
    db = connection.settings_dict
    port = free_port()
    environment = clean_env(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        DJANGO_SECRET_KEY="test-secret-key-for-the-gateway-tests",
        REDIS_URL=f"{redis_url}/0",
        REDIS_COOLDOWN="1",
        WEB_CONCURRENCY="2",
        **env,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
         "-b", f"127.0.0.1:{port}", "config.wsgi:application"],
        cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    server = AppServer(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if server.request("GET", "/healthz").status == 200:
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(process.stderr.read().decode()[-3000:]) from None
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


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

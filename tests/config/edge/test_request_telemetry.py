"""Every response in the request metrics, with a request id and one JSON log line, whichever
layer answered it: real gunicorn on real Redis and Postgres."""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy.local.redis import start_redis
from tests.factories import TodoFactory, TokenFactory, UserFactory
from tests.servers import gunicorn, replica_env

pytestmark = pytest.mark.django_db(transaction=True)

# A user's requests per hour: the test's own list requests reach it, so the last one is a 429.
RATE_LIMIT = 10


@pytest.fixture
def redis_server():
    """A Redis of this test's own, empty."""
    server = start_redis()
    yield server
    server.close()


def app_server(redis_url: str, **env: str):
    return gunicorn(replica_env(REDIS_URL=f"{redis_url}/0", **env))


def request_samples(base: str) -> dict[str, list]:
    """The request metrics' samples of route todo-list, by sample name."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("route") == "todo-list":
                samples.setdefault(sample.name, []).append(sample)
    return samples


def test_every_list_request_is_counted_and_timed_once_whichever_layer_answered(redis_server):
    # given: a user with a todo, a replica with two workers, and a rate limit of 10 an hour
    user = UserFactory()
    token = TokenFactory(user=user).key
    todo = TodoFactory(owner=user)
    with app_server(redis_server.url, RATE_LIMIT_USER=f"{RATE_LIMIT}/hour") as server:
        # when: the list is read until the limit is passed: misses, hits, a 304 and a 429
        statuses = []
        first = server.request("GET", "/api/todos", token=token)
        statuses.append(first.status)
        for _ in range(4):
            statuses.append(server.request("GET", "/api/todos", token=token).status)
        etag = {"If-None-Match": first.headers["ETag"]}
        statuses.append(server.request("GET", "/api/todos", token=token, headers=etag).status)
        # A write makes the next read a miss again.
        server.request("PATCH", f"/api/todos/{todo.pk}", token=token, body={"completed": True})
        for _ in range(RATE_LIMIT - 7):
            statuses.append(server.request("GET", "/api/todos", token=token).status)
        statuses.append(server.request("GET", "/api/todos", token=token).status)
        samples = request_samples(server.base)

    # then: each of the N list requests is in the counter once, and in the histogram once
    n = len(statuses)
    assert statuses == [200] * 5 + [304] + [200] * (RATE_LIMIT - 7) + [429]
    counted = {}
    for sample in samples["todo_scale_http_requests_total"]:
        assert sample.labels["method"] == "GET"
        key = (sample.labels["outcome"], sample.labels["status"])
        counted[key] = counted.get(key, 0) + sample.value
    assert sum(counted.values()) == n
    # The first miss is Django's (the gateway does not know the token yet); the one after the
    # write, the gateway's own (config/edge/direct_reads.py).
    assert counted == {
        ("django", "2xx"): 1,
        ("miss", "2xx"): 1,
        ("hit", "2xx"): n - 4,
        ("not_modified", "3xx"): 1,
        ("rate_limited", "4xx"): 1,
    }
    timed = sum(s.value for s in samples["todo_scale_http_request_duration_seconds_count"])
    assert timed == n
    # Every gateway hit took under a second: the time is the request's, not since start-up.
    timely_hits = [
        s.value
        for s in samples["todo_scale_http_request_duration_seconds_bucket"]
        if s.labels["outcome"] == "hit" and s.labels["le"] == "1.0"
    ]
    assert timely_hits == [n - 4]


def test_the_request_id_sent_is_echoed_and_logged_in_one_json_line(redis_server):
    # given: a user with a todo and a replica with rate limits of 2 an hour
    user = UserFactory()
    token = TokenFactory(user=user).key
    TodoFactory(owner=user)
    with app_server(redis_server.url, RATE_LIMIT_USER="2/hour") as server:
        # when: the list is read with request ids (a miss, a hit, a 429), then with none and
        # with one that is not printable ASCII
        replies = [
            server.request("GET", "/api/todos", token=token, headers={"X-Request-ID": rid})
            for rid in ("abc-miss-1", "abc-hit-2", "abc-limited-3")
        ]
        made = server.request("GET", "/api/nowhere")
        refused = server.request("GET", "/healthz", headers={"X-Request-ID": "x" * 129})
        records = server.log_records()

    # then: every response echoes the id it was sent, or one made for it
    assert [r.status for r in replies] == [200, 200, 429]
    assert [r.headers["X-Cache"] for r in replies[:2]] == ["miss", "hit"]
    assert [r.headers["X-Request-ID"] for r in replies] == [
        "abc-miss-1",
        "abc-hit-2",
        "abc-limited-3",
    ]
    assert made.status == 404
    assert len(made.headers["X-Request-ID"]) == 32
    assert len(refused.headers["X-Request-ID"]) == 32

    # and: each request has one JSON line with its id, user, route, status, time, outcome and
    # the database that served its reads
    by_id = {}
    for record in records:
        if record.get("logger") == "config.edge.request_telemetry":
            by_id.setdefault(record["request_id"], []).append(record)
    miss, hit, limited = (by_id[rid] for rid in ("abc-miss-1", "abc-hit-2", "abc-limited-3"))
    assert len(miss) == len(hit) == len(limited) == 1
    fields = ("user_id", "route", "method", "status", "outcome", "db_alias")
    assert {k: miss[0][k] for k in fields} == {
        "user_id": user.pk,
        "route": "todo-list",
        "method": "GET",
        "status": 200,
        "outcome": "django",
        "db_alias": "default",
    }
    assert {k: hit[0][k] for k in fields} == {
        **{k: miss[0][k] for k in fields},
        "outcome": "hit",
        "db_alias": None,
    }
    assert (limited[0]["status"], limited[0]["outcome"]) == (429, "rate_limited")
    assert all(r[0]["duration_ms"] > 0 and r[0]["level"] == "INFO" for r in (miss, hit, limited))
    assert "time" in miss[0]
    assert by_id[made.headers["X-Request-ID"]][0]["route"] == "other"
    assert by_id[refused.headers["X-Request-ID"]][0]["route"] == "healthz"

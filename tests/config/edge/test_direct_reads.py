"""Reads the gateway renders itself on a miss (config/edge/direct_reads.py), in real gunicorn
processes on the suite's Postgres primary and streaming standby and a real Redis: the same
bytes and headers as Django's answer, Django for everything else, and read-your-writes."""

import pytest
from django.db import connections
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from config.replicas.health import replica_aliases
from tests.config.replicas.conftest import pause_replay, resume_replay
from tests.factories import TodoFactory, TokenFactory, UserFactory
from tests.servers import gunicorn, replica_env

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

ENTITY_HEADERS = ("ETag", "Link", "Content-Type")


def suite_redis() -> str:
    from django.conf import settings

    return settings.REDIS_URL


def app_server(**env: str):
    return gunicorn(replica_env(REDIS_URL=suite_redis(), RATE_LIMIT_USER="off", **env), workers=1)


def requests_counted(server, outcome: str, route=None, slower_than=None) -> float:
    """Requests of the todo routes answered with `outcome` (by `route`; only those that took
    longer than `slower_than` seconds, a histogram bucket's bound)."""
    text = server.request("GET", "/metrics").body.decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("outcome") != outcome or labels.get("route") not in (
                (route,) if route else ("todo-list", "todo-detail")
            ):
                continue
            if slower_than is None and sample.name == "todo_scale_http_requests_total":
                total += sample.value
            elif slower_than is not None:
                name = "todo_scale_http_request_duration_seconds"
                if sample.name == f"{name}_count":
                    total += sample.value
                elif sample.name == f"{name}_bucket" and labels["le"] == slower_than:
                    total -= sample.value
    return total


def replica_urls() -> str:
    urls = []
    for alias in replica_aliases():
        db = connections[alias].settings_dict
        urls.append(f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}")
    return ",".join(urls)


@pytest.fixture
def alice():
    user = UserFactory(username="alice")
    for n, title in enumerate(["b", "a", "c\u2028\u00e9", "d"]):
        TodoFactory(owner=user, title=title, order=None if n == 2 else n)
    return user, TokenFactory(user=user).key


def django_answer(server, token: str, path: str):
    """The same request answered by Django alone (the test client has no gateway, and the
    caller switches this process's response cache off), for the host the server answers as."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.get(path, HTTP_HOST=server.base.removeprefix("http://"))


@pytest.mark.parametrize("cache", ["true", "false"])
def test_the_gateway_renders_pages_and_items_exactly_as_django(alice, cache, settings):
    settings.TODO_RESPONSE_CACHE = False  # Django renders afresh here, whatever the server holds
    user, token = alice
    first = user.todos.order_by("id").first()
    paths = [
        "/api/todos",
        "/api/todos?limit=2",
        "/api/todos?limit=1&ordering=-title",
        "/api/todos?ordering=order&limit=3",
        f"/api/todos/{first.pk}",
    ]
    with app_server(TODO_RESPONSE_CACHE=cache) as server:
        server.request("GET", "/api/todos?limit=1", token=token)  # teaches the gateway the token
        # Every page of every ordering, following the Link header as a client does.
        replies = []
        for path in paths:
            while path:
                reply = server.request("GET", path, token=token)
                replies.append((path, reply))
                link = reply.headers.get("Link")
                path = link[1 : link.index(">")].removeprefix(server.base) if link else None
        direct = requests_counted(server, "miss") + requests_counted(server, "uncached")

        for path, reply in replies:
            expected = django_answer(server, token, path)
            assert reply.status == expected.status_code == 200, path
            assert reply.body == expected.content, path
            for name in ENTITY_HEADERS:
                assert reply.headers.get(name) == expected.headers.get(name), (path, name)
    # None of them went through Django: each was the gateway's own miss.
    assert direct == len(replies) > len(paths)


def test_what_the_gateway_does_not_render_django_answers(alice):
    _, token = alice
    other = TodoFactory(owner=UserFactory())
    with app_server(TODO_RESPONSE_CACHE="false") as server:
        server.request("GET", "/api/todos", token=token)
        bad_cursor = server.request("GET", "/api/todos?cursor=nonsense", token=token)
        bad_limit = server.request("GET", "/api/todos?limit=0", token=token)
        twice = server.request("GET", "/api/todos?limit=1&limit=2", token=token)
        filtered = server.request("GET", "/api/todos?completed=true", token=token)
        foreign = server.request("GET", f"/api/todos/{other.pk}", token=token)
        with_params = server.request("GET", f"/api/todos/{other.pk}?x=1", token=token)
        html = server.request("GET", "/api/todos", token=token, headers={"Accept": "text/html"})
        by_django = requests_counted(server, "django")

    assert bad_cursor.status == 400
    assert "cursor" in bad_cursor.json()
    assert bad_limit.status == 400
    assert "limit" in bad_limit.json()
    assert twice.status == 200
    assert len(twice.json()) == 2
    assert filtered.status == 200
    assert filtered.json() == []
    assert foreign.status == 404
    assert with_params.status == 404
    assert html.status == 200
    assert html.headers["Content-Type"].startswith("text/html")
    # The first request (token not yet known), and each of the seven above.
    assert by_django == 8


def test_a_missing_item_does_not_hold_up_the_next_request_for_it(alice):
    # A failed render gives its fill lock back: without that, each later request for the same
    # missing todo waited a second for an entry that never came.
    _, token = alice
    with app_server(TODO_RESPONSE_CACHE="true") as server:
        server.request("GET", "/api/todos", token=token)
        replies = [server.request("GET", "/api/todos/999999", token=token) for _ in range(3)]
        slow = requests_counted(server, "django", route="todo-detail", slower_than="0.5")

    assert [reply.status for reply in replies] == [404, 404, 404]
    assert slow == 0


def test_the_writer_reads_its_write_while_the_standby_lags(cluster, alice):
    user, token = alice
    bob = UserFactory(username="bob")
    TodoFactory(owner=bob, title="bob's")
    bob_token = TokenFactory(user=bob).key
    cluster.wait_for_replay()
    env = {"DATABASE_REPLICA_URLS": replica_urls(), "TODO_RESPONSE_CACHE": "false"}
    with app_server(**env) as server:
        for key in (token, bob_token):
            server.request("GET", "/api/todos", token=key)
        pause_replay(cluster)
        try:
            created = server.request("POST", "/api/todos", token=token, body={"title": "new"})
            listed = server.request("GET", "/api/todos?limit=100", token=token)
            item = server.request("GET", f"/api/todos/{created.json()['id']}", token=token)
            others = server.request("GET", "/api/todos", token=bob_token)
        finally:
            resume_replay(cluster)
        records = [
            r for r in server.log_records() if r.get("route") in ("todo-list", "todo-detail")
        ]

    assert created.status == 201
    assert "new" in [todo["title"] for todo in listed.json()]
    assert item.status == 200
    assert item.json()["title"] == "new"
    assert [todo["title"] for todo in others.json()] == ["bob's"]
    # alice's reads after her write: the primary; bob's: a standby, answered by the gateway.
    served = [(r["user_id"], r["outcome"], r["db_alias"]) for r in records[-3:]]
    assert served[0] == (user.pk, "uncached", "default")
    assert served[1] == (user.pk, "uncached", "default")
    assert served[2][:2] == (bob.pk, "uncached")
    assert served[2][2] in replica_aliases()

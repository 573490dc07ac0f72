"""Shared fixtures: users with tokens and API clients that authenticate like real clients."""

import pytest
from rest_framework.test import APIClient

from tests.factories import TokenFactory, UserFactory

# The fixtures that start real services (RabbitMQ, workers, child processes) and hand out the
# suite's own Postgres cluster.
pytest_plugins = ["tests.services"]


def api_client_for(user) -> APIClient:
    """An API client sending `Authorization: Token <key>` for `user`, as scripts do; its token
    (with the plain `.key`) is `client.token`."""
    token = TokenFactory(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    client.user = user
    client.token = token
    return client


@pytest.fixture
def user(db):
    return UserFactory(username="alice")


@pytest.fixture
def other_user(db):
    return UserFactory(username="bob")


@pytest.fixture
def api(user) -> APIClient:
    return api_client_for(user)


@pytest.fixture
def other_api(other_user) -> APIClient:
    return api_client_for(other_user)


@pytest.fixture(autouse=True)
def _fresh_redis():
    """Each test starts with an empty cache and rate-limit database and a closed breaker: the
    database is rolled back between tests, so cached answers must not outlive it."""
    import redis
    from django.conf import settings
    from django_redis import get_redis_connection

    from config.edge.redis_breaker import breaker

    get_redis_connection("default").flushdb()
    server = settings.REDIS_URL.rsplit("/", 1)[0]
    with redis.Redis.from_url(f"{server}/{settings.REDIS_RATELIMIT_DB}") as limits:
        limits.flushdb()
    breaker.reset()


@pytest.fixture(autouse=True)
def _replica_reads_only_where_allowed(request):
    """Reads go to a replica only in tests that list it in `django_db(databases=...)`.

    Django refuses queries to databases a test did not ask for, so a transactional test that
    names only `default` reads from the primary, as without replicas. Each test also starts
    with every replica in rotation and no cool-down left over from another test.
    """
    from django.db import DEFAULT_DB_ALIAS
    from pytest_django.fixtures import validate_django_db

    from config.replicas.health import replica_health

    marker = request.node.get_closest_marker("django_db")
    databases = validate_django_db(marker)[2] if marker else None
    health = replica_health()
    health.reset()
    if databases != "__all__":
        allowed = set(databases or [DEFAULT_DB_ALIAS])
        health.aliases = [alias for alias in health.configured if alias in allowed]
    yield
    health.aliases = list(health.configured)
    health.reset()


@pytest.fixture
def routing_guard():
    """Fail the test on a write reaching a replica, or a read reaching the primary where the
    router chose a replica (config/replicas/routing_guard.py)."""
    from config.replicas.routing_guard import routing_guard as guard

    with guard() as problems:
        yield problems
    assert problems == [], problems

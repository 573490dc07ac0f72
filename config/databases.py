"""Django's DATABASES entries from URLs: the primary's, and the streaming standbys'.

settings.py builds DATABASES with these from DATABASE_URL and DATABASE_REPLICA_URLS (the suite's
settings from its own private cluster), so every database the project uses is configured here.
"""

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

# Django's PostgreSQL backend, with the health check skipped for a connection just used without
# error (config/postgres_backend/base.py).
POSTGRES_BACKEND = "config.postgres_backend"


def database_from_url(url: str, *, conn_max_age: int) -> dict:
    """The DATABASES entry for `url`: persistent connections of `conn_max_age` seconds, with
    health checks."""
    config = dj_database_url.parse(url, conn_max_age=conn_max_age, conn_health_checks=True)
    if config["ENGINE"] == "django.db.backends.postgresql":
        config["ENGINE"] = POSTGRES_BACKEND
        # A stuck connect must not hold a gunicorn worker forever (seconds).
        config.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    return config


def replica_databases(
    urls: list[str], *, conn_max_age: int, statement_timeout: int
) -> dict[str, dict]:
    """Aliases `replica1`, `replica2`, ... for streaming standbys of the primary, each
    statement on them cancelled after `statement_timeout` milliseconds.

    Under test a replica alias mirrors `default`: Django then creates no test database on the
    read-only standby and never flushes it; the alias keeps its own host and port, so it reads
    the test database as streamed from the primary, lag included.
    """
    databases = {}
    for number, url in enumerate(urls, start=1):
        config = database_from_url(url, conn_max_age=conn_max_age)
        if config["ENGINE"] != POSTGRES_BACKEND:
            raise ImproperlyConfigured("DATABASE_REPLICA_URLS must be Postgres streaming standbys")
        # One second: a standby that cannot take a connection by then is treated as down and
        # the read goes to the primary, instead of the request waiting out the primary's 5 s.
        config["OPTIONS"]["connect_timeout"] = 1
        # No per-request `SELECT 1`: a read that fails on a broken standby connection is run
        # again on the primary (config/replicas/read_routing.py), which is what the check would
        # have led to, and the failure takes the standby out and closes the connection.
        config["CONN_HEALTH_CHECKS"] = False
        config["OPTIONS"]["options"] = f"-c statement_timeout={statement_timeout}"
        config["TEST"] = {"MIRROR": "default"}
        databases[f"replica{number}"] = config
    return databases

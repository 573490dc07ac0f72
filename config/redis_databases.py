"""Which Redis database each user of Redis takes, and the refusal to let two share one."""

from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from redis.connection import parse_url

# redis-py's default port, so `redis://host/0` and `redis://host:6379/0` are one server.
DEFAULT_PORT = 6379


def redis_database(url: str) -> tuple[tuple, int] | None:
    """(server, database number) of a Redis URL, or None for any other URL (amqp://).

    Read by redis-py's own URL parser, the one the cache and Celery clients connect with, so a
    `?db=N`, a Unix socket or an omitted port means here what it means to them.
    """
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        return None
    kwargs = parse_url(url)
    server = (kwargs.get("path"), kwargs.get("host"), kwargs.get("port", DEFAULT_PORT))
    return server, kwargs.get("db", 0)


def refuse_shared_databases(
    *, cache_url: str, ratelimit_db: int, broker_url: str, result_backend: str | None
) -> None:
    """Raise ImproperlyConfigured, naming the variables, unless each has a database of its own.

    An empty or non-Redis URL (amqp://) takes none; the rate limits take `ratelimit_db`
    on the server of `cache_url`.
    """
    urls = {
        "REDIS_URL": cache_url,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": result_backend,
    }
    users = {name: redis_database(url) for name, url in urls.items() if url}
    users = {name: database for name, database in users.items() if database}
    if cache_url:
        users["REDIS_RATELIMIT_DB"] = (redis_database(cache_url)[0], ratelimit_db)
    if len(set(users.values())) < len(users):
        raise ImproperlyConfigured(
            f"{', '.join(users)} must each use a Redis database of their own"
        )

"""The Todo's entity tag, and the `If-Match` check services run against it.

An item's ETag comes from its id and `updated_at`, so it changes with every write (updates set
`updated_at` to the transaction's clock, in microseconds) and can be checked under a row lock
without rendering the todo. The generic ETag and `If-Match`/`If-None-Match` rules are HTTP
caching's (config/edge/http_cache.py).
"""

from datetime import datetime

from config.edge.http_cache import version_etag
from todos.models import Todo


def todo_etag(todo: Todo) -> str:
    return todo_version_etag(todo.pk, todo.updated_at)


def todo_version_etag(todo_id: int, updated_at: datetime) -> str:
    """The ETag of the todo `todo_id` as of `updated_at`, without loading the todo."""
    return version_etag(f"{todo_id}:{updated_at.isoformat()}")

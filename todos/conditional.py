"""ETags and the conditional-request headers `If-None-Match` and `If-Match`.

An item's ETag comes from its id and `updated_at`, so it changes with every write (updates set
`updated_at` to the transaction's clock, in microseconds) and can be checked under a row lock
without rendering the todo. A list's ETag is a hash of its bytes.
"""

import hashlib

from todos.models import Todo


def todo_etag(todo: Todo) -> str:
    version = f"{todo.pk}:{todo.updated_at.isoformat()}"
    return '"' + hashlib.blake2b(version.encode(), digest_size=10).hexdigest() + '"'


def body_etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=10).hexdigest() + '"'


def parse_etags(header: str | None) -> list[str]:
    """The entity tags of an If-Match/If-None-Match header ("*" stays "*")."""
    if not header:
        return []
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def none_match(header: str | None, etag: str) -> bool:
    """True when `If-None-Match` names this representation (weak comparison): answer 304."""
    tags = parse_etags(header)
    bare = etag.removeprefix("W/")
    return "*" in tags or any(tag.removeprefix("W/") == bare for tag in tags)


def match(header: str | None, etag: str) -> bool:
    """True when `If-Match` is absent or names the current version (strong comparison)."""
    tags = parse_etags(header)
    return not tags or "*" in tags or etag in tags

"""Read-your-writes marks: the primary's WAL position after a user's last write, in the cache.

GitLab's "sticking" (`sticking.rb`), keyed by user: when a request of a user wrote and
committed, `stick()` stores `pg_current_wal_lsn()` under the user's key for
`DATABASE_STICKING_TTL` seconds. Every web replica shares the cache (Redis in production), so
the user's next read, wherever it lands, goes to a standby only if that standby has replayed at
least this far (config/replicas/read_routing.py decides).

The mark is not deleted when the standbys catch up (GitLab's "unstick"): a delete could race
with the user's next write on another web replica and drop its newer mark. It simply expires;
a standby that has not replayed what the primary wrote `DATABASE_STICKING_TTL / 2` seconds ago
is out of rotation anyway (config/replicas/health.py), so an expired mark never matters.
"""

import logging
from collections.abc import Iterable

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError

from config.edge.redis_breaker import redis_call
from config.replicas.health import (
    format_lsn,
    parse_lsn,
    primary_write_location,
    replica_aliases,
)

logger = logging.getLogger(__name__)

# Bump the version when the value's format changes, so old marks are simply not found.
KEY_FORMAT = "db-sticking:v1:user:{user_id}"


class MarksUnavailable(Exception):
    """The cache holding the marks did not answer: the caller must read from the primary."""


# What a cache that swallows its errors (django-redis' IGNORE_EXCEPTIONS) returns for any get;
# a missing key returns the default passed in instead, so the two cannot be confused.
_UNREACHABLE = None
_NO_MARK = ""


def mark_key(user_id: int) -> str:
    return KEY_FORMAT.format(user_id=user_id)


def stick(user_id: int, position: int | None = None) -> None:
    """Record the primary's current position (or `position`, read right after the write's
    commit) as `user_id`'s last write.

    Call it after the write committed. If the cache cannot take it, the failure is logged and
    counted (the cache breaker): while the cache is down every read goes to the primary anyway.
    """
    if position is None:
        try:
            position = primary_write_location()
        except DatabaseError:
            logger.warning("could not read the primary's WAL position for user %s", user_id)
            return
    redis_call(
        "lsn_mark_set",
        lambda: cache.set(
            mark_key(user_id), format_lsn(position), timeout=settings.DATABASE_STICKING_TTL
        ),
        None,
    )


def write_position() -> int | None:
    """The primary's current position, to stick users who just committed; None if unreadable.

    For callers that record the marks themselves (`marks`), together with other cache writes.
    """
    try:
        return primary_write_location()
    except DatabaseError:
        logger.warning("could not read the primary's WAL position")
        return None


# Appended to a statement that commits on its own, so that the same round trip reads the
# position after its commit: in a simple query several statements run as one implicit
# transaction, which BEGIN turns into an explicit one (the statement's work included) and COMMIT
# commits; the SELECT then runs after the commit. A statement that fails ends the implicit
# transaction there, rolled back, and the connection is idle again: nothing after it runs.
_COMMIT_THEN_POSITION = "; BEGIN; COMMIT; SELECT pg_current_wal_lsn()::text"


def commits_alone(connection) -> bool:
    """True when a write on `connection` (the primary's) would commit by itself, with no
    transaction open, and a mark will want the position after it (read replicas configured):
    `execute_committing` can then read that position in the statement's own round trip. Only
    with client-side binding (Django's default for psycopg 3): a server-side bound statement
    cannot hold several."""
    return (
        connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and connection.get_autocommit()
        and not connection.settings_dict.get("OPTIONS", {}).get("server_side_binding")
        and bool(replica_aliases())
    )


def execute_committing(cursor, sql: str, params) -> tuple[tuple | None, int]:
    """Run the write `sql` (one statement, on a connection where `commits_alone` holds) and
    read the primary's position once it committed, in the same round trip: its first row (or
    None) and the position. That is the query `write_position` would send next, without a
    round trip of its own: some 90-140 us of a create's or a PATCH's CPU, in process."""
    cursor.execute(sql + _COMMIT_THEN_POSITION, params)
    row = cursor.fetchone()
    for _ in range(3):  # BEGIN, COMMIT, then the SELECT's row
        cursor.nextset()
    (lsn,) = cursor.fetchone()
    return row, parse_lsn(lsn)


def marks(user_ids: Iterable[int], position: int) -> dict[str, bytes]:
    """The cache entries `stick()` would store for `user_ids` at `position`: full key → value,
    encoded as the cache encodes them, to be set with an expiry of `DATABASE_STICKING_TTL`.

    Precondition: the cache is django-redis' (as the response cache requires).
    """
    value = cache.client.encode(format_lsn(position), allow_int=False)
    return {cache.make_key(mark_key(user_id)): value for user_id in user_ids}


def write_location(user_id: int, gate=None) -> int | None:
    """The position the user's reads must see, or None if they wrote nothing recently.

    `gate` is the gateway's answer for this request (config/edge/response_cache.py): when it
    read this user's mark, that value is used instead of another round trip. Raises
    MarksUnavailable when the cache cannot answer: correctness before speed.
    """
    if gate is not None and gate.user_id == user_id and gate.mark is not None:
        value = gate.mark
    else:
        value = redis_call(
            "lsn_mark_get", lambda: cache.get(mark_key(user_id), _NO_MARK), _UNREACHABLE
        )
    if value is _UNREACHABLE:
        raise MarksUnavailable
    return parse_lsn(value) if value else None

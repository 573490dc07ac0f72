"""Which database a web request or a task reads from, decided once per request or task.

`ReadReplicaMiddleware` opens a `RequestRouting` for each request (in a contextvar, so it works
for gunicorn's sync workers and for threads alike). The router asks it for the read alias:

- no signed-in user known yet (anonymous, sign-up, the token lookup itself): the primary;
- inside `transaction.atomic`, or after the request wrote: the primary;
- otherwise, once per request, a standby that is up and has replayed the user's last write
  (config/replicas/sticking.py), picked at random; the same one for the rest of the request. If none
  qualifies, or the marks cannot be read, the primary.

DRF authenticates inside the view, so the user is known only from then on: the routing looks at
the user DRF set on the Django request (`request.user`), never forcing a lazy one.

Per request it also wraps the connections' execute: on the primary it notices writes (any
statement but a SELECT and transaction control), so that the user's mark is recorded once the
request's work has committed; on a standby it counts reads and, when a query fails with a
connection error, takes the standby out and runs the same query on the primary, handing its
rows to the caller, so a standby failing mid-request never fails the request.

A task has no user whose marks to read; it carries the position of the write that enqueued it
instead (tasks/outbox.py, tasks/base.py), and `reads_after(position)` routes its reads with that
position as the mark, by the same rules and the same choice of standby (GitLab's Sidekiq jobs
do the same). Reads that need only what was committed before the mark, and none of the block's
own writes, may ask `committed_read_alias()` for the standby even inside a transaction.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import MiddlewareNotUsed
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections, transaction
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject, empty

from config.replicas import sticking
from config.replicas.health import DB_READS, REPLICA_FALLBACKS, replica_aliases, replica_health

logger = logging.getLogger(__name__)

# The WSGI environ key where the middleware leaves the alias that served the request's reads,
# for the request's log line (config/edge/request_telemetry.py).
READ_ALIAS = "todo_scale.read_alias"

# Statements that neither change rows nor need a mark: reads, and the transaction control Django
# sends around them.
_READ_PREFIXES = ("SELECT", "SHOW")
_CONTROL_PREFIXES = ("SAVEPOINT", "RELEASE", "ROLLBACK", "SET ", "BEGIN", "COMMIT")


def is_read(sql: str) -> bool:
    return sql.lstrip()[:6].upper().startswith(_READ_PREFIXES)


def is_write(sql: str) -> bool:
    """Anything that may change data; a `WITH` query counts, as it may hold an INSERT."""
    head = sql.lstrip()[:9].upper()
    return not head.startswith(_READ_PREFIXES + _CONTROL_PREFIXES)


def authenticated_user_id(request: HttpRequest) -> int | None:
    """The signed-in user's id if authentication has already run for `request`, else None."""
    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject):
        # AuthenticationMiddleware's lazy session user: evaluating it here would query the
        # session store from inside the router.
        user = user._wrapped
        if user is empty:
            return None
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk


class Routing:
    """The read-routing state of one request or task: the choice, and whether it wrote."""

    alias: str | None = None
    wrote: bool = False

    def choose(self) -> str | None:
        """The alias for this block's reads when they need not see its own writes; None when
        that cannot be decided yet (no signed-in user known): such reads go to the primary."""
        raise NotImplementedError

    def read_alias(self) -> str:
        if self.wrote or connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return DEFAULT_DB_ALIAS
        return self.committed_alias()

    def committed_alias(self) -> str:
        """The choice made once for the block (a standby past the mark, or the primary)."""
        if self.alias is None:
            self.alias = self.choose()
        return DEFAULT_DB_ALIAS if self.alias is None else self.alias

    # --- execute wrappers -------------------------------------------------------------------
    def watch_primary(self, execute, sql, params, many, context):
        if is_read(sql):
            DB_READS.labels(DEFAULT_DB_ALIAS).inc()
        elif is_write(sql):
            self.note_write()
        return execute(sql, params, many, context)

    def note_write(self) -> None:
        self.wrote = True

    def fail_over(self, execute, sql, params, many, context):
        alias = context["connection"].alias
        try:
            result = execute(sql, params, many, context)
        except (OperationalError, InterfaceError) as exc:
            replica_health().trip(alias, "error", exc)
            REPLICA_FALLBACKS.labels("replica_error").inc()
            self.alias = DEFAULT_DB_ALIAS
            return _run_on_primary(sql, params, many, context)
        DB_READS.labels(alias).inc()
        return result


@dataclass
class RequestRouting(Routing):
    """The read-routing state of one request: the mark is the signed-in user's last write."""

    request: HttpRequest
    alias: str | None = None
    wrote: bool = False
    # A write since the request's user was last stuck: the middleware sticks them at the end.
    unstuck: bool = False

    def choose(self) -> str | None:
        user_id = authenticated_user_id(self.request)
        if user_id is None:
            return None
        return choose_read_alias(user_id, self.request.META.get("todo_scale.gate"))

    def note_write(self) -> None:
        self.wrote = self.unstuck = True


@dataclass
class UserRouting(Routing):
    """The read-routing state of a read the gateway answers itself: the user is known from the
    token before any Django request exists, and the gateway already read their mark."""

    user_id: int = 0
    gate: object = None
    alias: str | None = None
    wrote: bool = False
    # As for RequestRouting: a write since the user was last stuck.
    unstuck: bool = False

    def choose(self) -> str:
        return choose_read_alias(self.user_id, self.gate)

    def note_write(self) -> None:
        self.wrote = self.unstuck = True


@dataclass
class PositionRouting(Routing):
    """The read-routing state of a task: the mark is the position it was enqueued at."""

    position: int | None = None
    alias: str | None = None
    wrote: bool = False

    def choose(self) -> str:
        if self.position is None:
            # An old message, or one published without a position: the primary, which has
            # every write.
            return DEFAULT_DB_ALIAS
        return choose_alias_after(self.position)


def _run_on_primary(sql, params, many, context):
    """Run a query that failed on a standby on the primary, in the caller's cursor.

    The caller (Django's SQL compiler) fetches the rows from the cursor it executed on, so that
    cursor is pointed at the primary's driver cursor holding the result.
    """
    primary_cursor = connections[DEFAULT_DB_ALIAS].cursor()
    if many:
        result = primary_cursor.executemany(sql, params)
    else:
        result = primary_cursor.execute(sql, params)
    context["cursor"].cursor = primary_cursor.cursor
    return result


_current: contextvars.ContextVar[Routing | None] = contextvars.ContextVar(
    "read_routing", default=None
)


def current_routing() -> Routing | None:
    return _current.get()


@contextlib.contextmanager
def _routed(routing: Routing):
    token = _current.set(routing)
    try:
        with contextlib.ExitStack() as wrappers:
            wrappers.enter_context(
                connections[DEFAULT_DB_ALIAS].execute_wrapper(routing.watch_primary)
            )
            for alias in replica_aliases():
                wrappers.enter_context(connections[alias].execute_wrapper(routing.fail_over))
            yield routing
    finally:
        _current.reset(token)


@contextlib.contextmanager
def routing_for(request: HttpRequest):
    """Route the reads made inside the block as for `request`; yields its RequestRouting."""
    with _routed(RequestRouting(request=request)) as routing:
        yield routing


@contextlib.contextmanager
def routing_for_user(user_id: int, gate=None):
    """Route the reads made inside the block as for a request of `user_id` (`gate`: the
    gateway's answer, holding the user's mark). Yields its UserRouting (None when no replica is
    configured: every read is the primary's then)."""
    if not replica_aliases():
        yield None
        return
    with _routed(UserRouting(user_id=user_id, gate=gate)) as routing:
        yield routing


@contextlib.contextmanager
def reads_after(position: int | None):
    """Route the reads made inside the block as for work enqueued at WAL `position`: to a
    standby that is up and has replayed past it, else (or with no position) to the primary;
    writes, reads after a write and reads inside a transaction to the primary. Yields its
    PositionRouting (None when no replica is configured: every read is the primary's then).
    """
    if not replica_aliases():
        yield None
        return
    with _routed(PositionRouting(position=position)) as routing:
        yield routing


def users_stuck(user_ids: Iterable[int]) -> None:
    """Note that `user_ids` were just stuck after a commit (config/replicas/sticking.py), so
    the request need not stick its user again unless it writes once more."""
    routing = _current.get()
    if isinstance(routing, RequestRouting):
        user_id = authenticated_user_id(routing.request)
    elif isinstance(routing, UserRouting):
        user_id = routing.user_id
    else:
        return
    if user_id in user_ids:
        routing.unstuck = False


def stick_if_written(routing: RequestRouting | UserRouting | None, user_id: int | None) -> None:
    """Stick `user_id` to the primary's position once the block's writes have committed, unless
    a commit already did (`users_stuck`). A mark taken before the commit could be older than
    the write; with no transaction open (the normal case here) this runs at once."""
    if routing is not None and routing.unstuck and user_id is not None:
        transaction.on_commit(functools.partial(sticking.stick, user_id), using=DEFAULT_DB_ALIAS)


def read_alias() -> str:
    """The alias for a read now: the request's or the task's choice, else the primary.

    Work outside both (management commands, the shell) does not know whose writes it must see,
    so it reads from the primary.
    """
    routing = _current.get()
    return DEFAULT_DB_ALIAS if routing is None else routing.read_alias()


def committed_read_alias() -> str:
    """The alias for a read that needs what was committed before the block's mark and none of
    the block's own writes: the block's choice even inside a transaction or after a write (a
    task that locks a row and writes other rows, reading data it does not change); the primary
    outside a request or task.
    """
    routing = _current.get()
    return DEFAULT_DB_ALIAS if routing is None else routing.committed_alias()


def choose_read_alias(user_id: int, gate=None) -> str:
    """A standby that is up and has replayed `user_id`'s last write, else the primary.

    `gate`: the gateway's answer for the request, holding the user's mark when it read it.
    """
    try:
        mark = sticking.write_location(user_id, gate)
    except sticking.MarksUnavailable:
        REPLICA_FALLBACKS.labels("marks_unavailable").inc()
        return DEFAULT_DB_ALIAS
    return choose_alias_after(mark)


def choose_alias_after(mark: int | None) -> str:
    """A standby that is up and has replayed up to `mark` (any that is up, with no mark),
    picked at random; else the primary."""
    health = replica_health()
    candidates = health.available()
    if mark is not None:
        candidates = [alias for alias in candidates if health.caught_up(alias, mark)]
        if not candidates and any(health.is_up(alias) for alias in health.aliases):
            REPLICA_FALLBACKS.labels("not_caught_up").inc()
            return DEFAULT_DB_ALIAS
    random.shuffle(candidates)
    for alias in candidates:
        if health.connect(alias):
            return alias
    REPLICA_FALLBACKS.labels("no_replica").inc()
    return DEFAULT_DB_ALIAS


class ReadReplicaMiddleware:
    """Route each request's reads (see the module docstring) and stick users who wrote.

    Place it after AuthenticationMiddleware. Not used at all when no replica is configured.
    """

    def __init__(self, get_response):
        if not replica_aliases():
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request):
        with routing_for(request) as routing:
            response = self.get_response(request)
        request.META[READ_ALIAS] = routing.alias or DEFAULT_DB_ALIAS
        if routing.unstuck:
            stick_if_written(routing, authenticated_user_id(request))
        return response

"""Django's PostgreSQL backend, with the connection health check skipped for a connection that
was just used without error.

With `CONN_HEALTH_CHECKS`, Django runs `SELECT 1` before the first query of every request on a
persistent connection: one more round trip to the primary per request, a fifth of a create's
wall time under load (py-spy, 64 clients). A connection that served a request without error
less than `HEALTH_CHECK_DELAY` seconds ago is used as it is, as PgBouncer does with
`server_check_delay` (30 s there): what the check finds is a connection the server closed while
it sat idle (a restart, an idle timeout), and a busy connection has not sat idle. A restart
takes the server away for longer than the delay, so every connection is checked again on its
first use afterwards; a query that still fails on a broken connection marks it, and Django
closes it at the end of that request (`errors_occurred`).
"""

import time

from django.core.signals import request_finished
from django.db import connections
from django.db.backends.postgresql import base

# Seconds since a connection last served a request without error, under which it is not checked.
HEALTH_CHECK_DELAY = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    _used_ok_at = float("-inf")

    def close_if_health_check_failed(self):
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and time.monotonic() - self._used_ok_at < HEALTH_CHECK_DELAY
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()


def note_used_ok(**kwargs) -> None:
    """At the end of each request, after Django closed what it found broken or too old: each
    connection still open served the request without error (or passed Django's check)."""
    now = time.monotonic()
    for connection in connections.all(initialized_only=True):
        if (
            isinstance(connection, DatabaseWrapper)
            and connection.connection is not None
            and not connection.errors_occurred
        ):
            connection._used_ok_at = now


request_finished.connect(note_used_ok, dispatch_uid="todo_scale.postgres_backend.used_ok")

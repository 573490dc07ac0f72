"""The primary's connection health check (config/postgres_backend/base.py), on the suite's real
Postgres: skipped for a connection that just served a request, run for one that sat idle, and a
connection the server closed costs at most one failed request either way."""

import time

import psycopg
import pytest
from django.core.signals import request_finished, request_started
from django.db import OperationalError, connections

from config.postgres_backend.base import HEALTH_CHECK_DELAY

pytestmark = pytest.mark.django_db(transaction=True)


def served_by() -> int:
    """One request's worth of work on the default connection: the server process serving it."""
    request_started.send(sender=__name__)
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]
    finally:
        request_finished.send(sender=__name__)


def terminate(pid: int) -> None:
    """Close the server side of a connection, as a restart or an idle timeout would."""
    settings = connections["default"].settings_dict
    with psycopg.connect(
        host=settings["HOST"], port=settings["PORT"], user=settings["USER"], dbname="postgres"
    ) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]


def test_the_health_check_runs_only_for_a_connection_that_sat_idle():
    assert connections["default"].settings_dict["CONN_HEALTH_CHECKS"]
    first = served_by()
    assert served_by() == first  # persistent: the same server process

    # Idle past the delay: the check finds the closed connection and the request reconnects.
    terminate(first)
    time.sleep(HEALTH_CHECK_DELAY + 0.2)
    second = served_by()
    assert second != first

    # Just used: no check, so the first query finds the connection closed and the request fails;
    # Django drops the broken connection at the end of it, and the next request reconnects.
    terminate(second)
    with pytest.raises(OperationalError):
        served_by()
    third = served_by()
    assert third not in (first, second)
    assert served_by() == third

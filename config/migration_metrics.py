"""The count of unapplied migrations on /metrics, refreshed while Prometheus scrapes.

django-prometheus owns the gauge (`django_migrations_unapplied_total{connection}`) but fills it
only at start-up, when `PROMETHEUS_EXPORT_MIGRATIONS` is on: a query to every database in every
process (each `manage.py` command and Celery worker too), which fails the start while a
database is down, and a count that never changes after `migrate` runs. Here the process
answering a scrape asks the primary itself, at most once a minute, and a failure only leaves
the previous count.
"""

import logging
import threading
import time

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django_prometheus.migrations import ExportMigrationsForDatabase

logger = logging.getLogger(__name__)

# Seconds between two counts in one process: a deploy's `migrate` shows within a minute, and the
# migration graph is loaded at most once a minute per worker rather than on every scrape (15 s).
REFRESH_INTERVAL = 60.0

_lock = threading.Lock()
_next_refresh = 0.0


def unapplied_migrations_refresh() -> None:
    """Count the primary's unapplied migrations into the gauge, if the last count is old."""
    global _next_refresh
    now = time.monotonic()
    if now < _next_refresh or not _lock.acquire(blocking=False):
        return
    try:
        _next_refresh = now + REFRESH_INTERVAL
        # Imported here: the executor needs the app registry ready.
        from django.db.migrations.executor import MigrationExecutor

        ExportMigrationsForDatabase(
            DEFAULT_DB_ALIAS, MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        )
    except DatabaseError as exc:
        logger.warning("unapplied migrations not counted: %s", exc)
    finally:
        _lock.release()

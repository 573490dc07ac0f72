"""Health of the read replicas as one worker process sees it: replay position, lag, cool-down.

The process-local half of GitLab's database load balancing (`host.rb`): each standby is asked
for its replay position at most once per `DATABASE_REPLICA_CHECK_INTERVAL`, together with one
question to the primary for its current position, and the answers are kept in memory. So
checking whether a standby has replayed a user's last write usually costs no round trip at all.

A standby is taken out for `DATABASE_REPLICA_COOLDOWN` seconds (a circuit breaker) when it
refuses a connection or errors, when it is more than `DATABASE_REPLICA_MAX_LAG` bytes of WAL
behind, or when it has not replayed what the primary had written `DATABASE_STICKING_TTL / 2`
seconds ago (so an expired read-your-writes mark never points a user at a standby that misses
the write). After the cool-down the next check decides whether it is back.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from prometheus_client import Counter, Gauge

logger = logging.getLogger(__name__)

REPLICA_PREFIX = "replica"

DB_READS = Counter(
    "todo_scale_db_reads",
    "SELECT statements run for web requests and tasks, by the database alias that answered",
    ["alias"],
)
REPLICA_FALLBACKS = Counter(
    "todo_scale_db_replica_fallbacks",
    "Reads of a signed-in user or a task sent to the primary although replicas are configured, "
    "by reason",
    ["reason"],
)
REPLICA_EJECTIONS = Counter(
    "todo_scale_db_replica_ejections",
    "Standbys taken out of this process's reads for the cool-down, by alias and reason",
    ["alias", "reason"],
)
# Each gunicorn worker checks on its own schedule: the newest check of a live worker is the
# value to show, and a dead worker's last value must not linger.
REPLICA_LAG = Gauge(
    "todo_scale_db_replica_lag_bytes",
    "Bytes of WAL the primary had written that the standby had not replayed, at the last check",
    ["alias"],
    multiprocess_mode="livemostrecent",
)


def parse_lsn(text: str) -> int:
    """`'16/B374D848'` (Postgres' pg_lsn text) as a byte position, so positions compare as ints."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def replica_aliases() -> list[str]:
    """The configured standbys, `replica1`, `replica2`, ... (see `DATABASE_REPLICA_URLS`)."""
    return [alias for alias in settings.DATABASES if alias.startswith(REPLICA_PREFIX)]


def query_one(alias: str, query: str) -> tuple:
    """Run a tiny status query on `alias` and return its row.

    It goes to the driver's cursor directly: a health check is neither a read to count nor a
    query a test's query count should see. Errors still come out as Django's DatabaseError.
    """
    connection = connections[alias]
    with connection.wrap_database_errors:
        connection.close_if_health_check_failed()
        connection.ensure_connection()
        with connection.connection.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetchone()


def primary_write_location() -> int:
    """The primary's current WAL write position."""
    (lsn,) = query_one(DEFAULT_DB_ALIAS, "SELECT pg_current_wal_lsn()::text")
    return parse_lsn(lsn)


@dataclass
class ReplicaState:
    alias: str
    replay_lsn: int | None = None
    lag_bytes: int | None = None
    checked_at: float | None = None
    down_until: float = 0.0
    down_reason: str = ""


class ReplicaHealth:
    """What this process knows about each standby; safe to share between threads."""

    def __init__(self, aliases: list[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.configured = list(aliases)
        # The standbys reads may go to; tests narrow it to the databases a test may use.
        self.aliases = list(aliases)
        self.states = {alias: ReplicaState(alias) for alias in self.configured}
        self._clock = clock
        self._next_check = 0.0
        self._lock = threading.Lock()
        # (time, primary position) at each check, to tell which standby has not replayed what
        # the primary had written a while ago, whatever the write volume since.
        self._primary_history: collections.deque[tuple[float, int]] = collections.deque()

    # --- settings, read at call time so that tests can change them --------------------------
    @property
    def interval(self) -> float:
        return settings.DATABASE_REPLICA_CHECK_INTERVAL

    @property
    def cooldown(self) -> float:
        return settings.DATABASE_REPLICA_COOLDOWN

    @property
    def max_lag(self) -> int:
        return settings.DATABASE_REPLICA_MAX_LAG

    @property
    def max_staleness(self) -> float:
        return settings.DATABASE_STICKING_TTL / 2

    # --- state ------------------------------------------------------------------------------
    def is_up(self, alias: str) -> bool:
        return self._clock() >= self.states[alias].down_until

    def available(self) -> list[str]:
        """Standbys usable now (not cooling down), after a check if the last one is too old."""
        self.refresh()
        return [alias for alias in self.aliases if self.is_up(alias)]

    def trip(self, alias: str, reason: str, detail: object = "") -> None:
        """Leave `alias` out for the cool-down; after an error its connection is dropped."""
        state = self.states[alias]
        if self.is_up(alias):
            logger.warning(
                "read replica %s out for %.0f s (%s): %s", alias, self.cooldown, reason, detail
            )
            REPLICA_EJECTIONS.labels(alias, reason).inc()
        state.down_until = self._clock() + self.cooldown
        state.down_reason = reason
        if reason == "error":
            # Broken, most likely; the next check after the cool-down opens a fresh one.
            try:
                connections[alias].close()
            except DatabaseError:
                logger.debug("closing the connection to %s failed", alias, exc_info=True)

    def reset(self) -> None:
        """Forget everything (tests; a process that must re-check at once)."""
        with self._lock:
            self.states = {alias: ReplicaState(alias) for alias in self.configured}
            self._next_check = 0.0
            self._primary_history.clear()

    # --- checks -----------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Ask the primary and every standby not cooling down for their positions.

        Runs at most once per interval per process; a thread that finds another one checking
        goes on with the previous answers rather than waiting.
        """
        now = self._clock()
        if not force and now < self._next_check:
            return
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._next_check = now + self.interval
            primary = primary_write_location()
            baseline = self._remember_primary(now, primary)
            for alias in self.aliases:
                if self.is_up(alias):
                    self._check(self.states[alias], primary, baseline)
        finally:
            self._lock.release()

    def _remember_primary(self, now: float, primary: int) -> int | None:
        """Record the primary's position; return the newest one at least max_staleness old."""
        history = self._primary_history
        history.append((now, primary))
        horizon = now - self.max_staleness
        # Keep only the newest entry older than the horizon, and everything after it.
        while len(history) >= 2 and history[1][0] <= horizon:
            history.popleft()
        oldest_time, oldest_position = history[0]
        return oldest_position if oldest_time <= horizon else None

    def _check(self, state: ReplicaState, primary: int, baseline: int | None) -> None:
        try:
            (replay,) = query_one(state.alias, "SELECT pg_last_wal_replay_lsn()::text")
        except DatabaseError as exc:
            self.trip(state.alias, "error", exc)
            return
        state.checked_at = self._clock()
        if replay is None:
            # Not in recovery: a promoted standby or a primary listed by mistake. Its data is
            # not the primary's, so it must not serve reads.
            self.trip(state.alias, "not_a_standby", "pg_last_wal_replay_lsn() is NULL")
            return
        state.replay_lsn = parse_lsn(replay)
        state.lag_bytes = max(primary - state.replay_lsn, 0)
        REPLICA_LAG.labels(state.alias).set(state.lag_bytes)
        if state.lag_bytes > self.max_lag:
            self.trip(state.alias, "lag", f"{state.lag_bytes} bytes behind")
        elif baseline is not None and state.replay_lsn < baseline:
            self.trip(
                state.alias,
                "stale",
                f"has not replayed what the primary wrote {self.max_staleness:.0f} s ago",
            )

    def caught_up(self, alias: str, position: int) -> bool:
        """Has `alias` replayed up to `position`? The cached answer if it says yes, else asked.

        Replay positions only move forward, so a cached position at or past the mark is proof;
        one that is behind may be old, and one round trip to the standby settles it.
        """
        state = self.states[alias]
        if state.replay_lsn is not None and state.replay_lsn >= position:
            return True
        try:
            (replay,) = query_one(alias, "SELECT pg_last_wal_replay_lsn()::text")
        except DatabaseError as exc:
            self.trip(alias, "error", exc)
            return False
        if replay is None:
            self.trip(alias, "not_a_standby", "pg_last_wal_replay_lsn() is NULL")
            return False
        state.replay_lsn = max(parse_lsn(replay), state.replay_lsn or 0)
        return state.replay_lsn >= position

    def connect(self, alias: str) -> bool:
        """Make sure this thread's connection to `alias` works before a request relies on it.

        Connection failures happen when Django opens the cursor, before any execute wrapper
        could fail the query over, so they are caught here instead. With persistent
        connections this is Django's per-request health check, done a little earlier.
        """
        connection = connections[alias]
        try:
            with connection.wrap_database_errors:
                connection.close_if_health_check_failed()
                connection.ensure_connection()
        except DatabaseError as exc:
            self.trip(alias, "error", exc)
            return False
        return True


@functools.cache
def replica_health() -> ReplicaHealth:
    """The process-wide health of the configured standbys."""
    return ReplicaHealth(replica_aliases())


_STATUS_QUERY = """
SELECT pg_is_in_recovery(),
       pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END,
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8
       END
"""


def replication_status() -> dict:
    """The primary's position and one row per configured standby, asked now: for operators.

    `lag_seconds` is 0 when the standby has replayed everything it received, else the age of
    the last transaction it replayed; `lag_bytes` is measured against the primary's current
    position, so it also shows a standby that stopped receiving.
    """
    primary = primary_write_location()
    rows = []
    for alias in replica_aliases():
        row = {"alias": alias, "reachable": False, "replay_lsn": None, "lag_bytes": None}
        row.update({"lag_seconds": None, "replay_paused": None, "error": None})
        try:
            in_recovery, replay, paused, seconds = query_one(alias, _STATUS_QUERY)
        except DatabaseError as exc:
            row["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            rows.append(row)
            continue
        row["reachable"] = True
        if not in_recovery:
            row["error"] = "not a standby (not in recovery)"
        else:
            row["replay_lsn"] = replay
            row["lag_bytes"] = max(primary - parse_lsn(replay), 0)
            row["lag_seconds"] = seconds
            row["replay_paused"] = paused
        rows.append(row)
    return {"primary_lsn": format_lsn(primary), "replicas": rows}

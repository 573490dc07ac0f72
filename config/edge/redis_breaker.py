"""A circuit breaker in front of Redis: when Redis fails, skip it for a cool-down.

Redis makes the API faster (cached responses, shared rate limits, read-your-writes marks) but is
never needed for an answer. When a call fails, the process stops calling Redis for
`REDIS_COOLDOWN` seconds and every caller takes its documented fallback (serve from Postgres,
let the request through, read from the primary), so no request waits on a dead Redis more than
once per cool-down. Each skipped or failed call is counted in
`todo_scale_redis_bypass_total{operation}`.
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis.exceptions
from django.conf import settings
from prometheus_client import Counter

logger = logging.getLogger(__name__)

T = TypeVar("T")
D = TypeVar("D")

# Connection refused/reset, timeouts, a server that is loading or read-only after a failover:
# all mean "Redis cannot answer now". Programming errors (a bad command) are not caught.
REDIS_FAILURES = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    ConnectionError,
    TimeoutError,
)

REDIS_BYPASS = Counter(
    "todo_scale_redis_bypass",
    "Redis calls skipped or failed, so the request took its fallback",
    ["operation"],
)


class RedisBreaker:
    """Process-local breaker: closed (call Redis) or open until a deadline (skip Redis)."""

    def __init__(self) -> None:
        self._open_until = 0.0
        self._lock = threading.Lock()

    @property
    def cooldown(self) -> float:
        return settings.REDIS_COOLDOWN

    def allows(self) -> bool:
        return time.monotonic() >= self._open_until

    def trip(self, operation: str, exc: BaseException) -> None:
        with self._lock:
            if self.allows():
                logger.warning(
                    "Redis unavailable during %s (%s: %s); skipping it for %.1f s",
                    operation,
                    type(exc).__name__,
                    exc,
                    self.cooldown,
                )
            self._open_until = time.monotonic() + self.cooldown

    def reset(self) -> None:
        self._open_until = 0.0


breaker = RedisBreaker()


def redis_call(operation: str, call: Callable[[], T], fallback: D) -> T | D:
    """Run `call` unless the breaker is open; on a Redis failure trip it and return `fallback`.

    `operation` names the caller in the log line and the bypass metric.
    """
    if not breaker.allows():
        REDIS_BYPASS.labels(operation).inc()
        return fallback
    try:
        return call()
    except REDIS_FAILURES as exc:
        breaker.trip(operation, exc)
        REDIS_BYPASS.labels(operation).inc()
        return fallback

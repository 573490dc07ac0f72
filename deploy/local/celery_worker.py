"""The deferred-work processes as deployed: a Celery worker, beat and the outbox relay.

Their command lines, and whether a worker answers over the broker; every process is started
with `_proc.spawn` and stopped with `_proc.stop_group` (SIGTERM to the main process: a worker's
warm shutdown finishes the tasks it runs). The one-box stack, the suite's worker tests and the
export benchmark use these.
"""

from __future__ import annotations

import sys
from pathlib import Path

CELERY = [sys.executable, "-m", "celery", "-A", "config"]
# A worker's warm shutdown waits for the tasks it runs; an export takes seconds.
STOP_TIMEOUT = 30.0


def worker_argv(
    *,
    hostname: str | None = None,
    concurrency: int = 1,
    quick_start: bool = False,
    extra_args: tuple[str, ...] = (),
) -> list[str]:
    """`celery -A config worker` with the prefork pool (acks_late and the rest from settings).

    `quick_start` skips gossip and mingle: with one worker there is nobody to synchronise with,
    and it saves seconds at start-up.
    """
    argv = [*CELERY, "worker", "--pool", "prefork", "--concurrency", str(concurrency)]
    argv += ["--loglevel", "INFO"]
    if hostname is not None:
        argv += ["--hostname", hostname]
    if quick_start:
        argv += ["--without-gossip", "--without-mingle"]
    return [*argv, *extra_args]


def beat_argv(*, schedule: Path, pidfile: Path) -> list[str]:
    """Celery beat; its pidfile refuses a second beat started on the same directory."""
    return [*CELERY, "beat", "--loglevel", "INFO", "-s", str(schedule), "--pidfile", str(pidfile)]


def relay_argv() -> list[str]:
    return [sys.executable, "manage.py", "outbox_relay"]


def worker_answers(broker_url: str, hostname: str, timeout: float = 1.0) -> bool:
    """True if the worker named `hostname` answers a ping over the broker (so it consumes)."""
    from celery import Celery

    app = Celery(set_as_current=False, broker=broker_url)
    # A broker that is down must fail the probe now, not after Celery's 100 retries.
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    app.conf.broker_connection_timeout = timeout
    try:
        return bool(app.control.ping(destination=[hostname], timeout=timeout))
    except Exception:  # any broker failure means: not answering
        return False
    finally:
        app.close()

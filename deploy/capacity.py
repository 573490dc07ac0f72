"""How much one web replica takes at once, and the bound nginx keeps in front of it.

One place for the figures: deploy/gunicorn.conf.py runs `workers()` gunicorn workers of
`THREADS` threads each (granian, deploy/granian_server.py, reads the same), and
deploy/local/nginx.py renders each replica's `max_conns` from them for `make stack`, the
benchmarks and the tests. deploy/nginx/nginx.conf (compose) states the figure for compose's
WEB_CONCURRENCY; tests/deploy/test_manifests.py checks that it still matches.

Standard library only, and no import of the project: gunicorn's master reads this file by its
path (see deploy/gunicorn.conf.py), so a HUP reload never keeps old project code around.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

# Threads per gthread worker; deploy/gunicorn.conf.py has the measurements behind the figure.
THREADS = 4


def available_cores() -> int:
    """Cores this process may really use: its CPU affinity, capped by a cgroup v2 CPU quota.

    `os.cpu_count()` reports the node's cores inside a container, so a pod limited to 500m on a
    64-core node would otherwise start 129 workers and be killed for memory.
    """
    cores = len(os.sched_getaffinity(0))
    try:
        with open("/sys/fs/cgroup/cpu.max") as cpu_max:
            quota, period = cpu_max.read().split()
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


def workers(env: Mapping[str, str] = os.environ) -> int:
    """gunicorn workers per replica: WEB_CONCURRENCY, else one per usable core."""
    return int(env.get("WEB_CONCURRENCY") or available_cores())


def upstream_max_conns(workers: int, threads: int = THREADS) -> int:
    """Requests nginx lets one replica hold at once (`max_conns`); beyond it nginx answers 503.

    One per thread (`workers x threads`: every request the replica can run at the same time),
    plus half as many waiting. nginx has no queue of its own: a request that finds every slot
    taken is refused at once, even if a slot frees a millisecond later. So the waiting margin is
    what keeps a thread that finishes supplied with its next request, and it absorbs the kernel
    spreading connections unevenly over a replica's workers. It stays small so that waiting
    stays short: with 4 waiting for 8 threads, a request starts within about one request's time.
    2 workers x 4 threads: 8 running + 4 waiting = 12.

    Measured with tests/deploy/test_overload.py's load (2 one-worker replicas, half creates and
    half cached list reads, 48 clients; a 2-core box shared with other work; two rounds each):
    a bound of 4 per replica (threads only) accepted 614 and 650 req/s, p99 89 and 75 ms; 6 (plus
    half) 630 and 696 req/s, p99 97 and 95 ms; 8 (twice) 533 and 606 req/s, p99 146 and 125 ms;
    no bound 561 and 523 req/s with every request queued, p99 344 and 362 ms.
    """
    running = workers * threads
    return running + math.ceil(running / 2)


def listen_backlog(workers: int, threads: int = THREADS) -> int:
    """gunicorn's listen backlog: connections the kernel holds until a worker accepts them.

    Behind nginx at most `upstream_max_conns` requests reach a replica at once, and gthread
    workers accept eagerly (a connection waits for a thread inside the worker, not in the
    backlog), so the backlog only ever holds the connections of a moment: at a worker's start,
    or in the milliseconds before a busy worker's loop gets the GIL to accept. Twice the bound
    (at least 64) covers them, nginx's probes and Prometheus' scrapes. A shorter backlog would
    not shed load: Linux drops the handshake of a connection that finds it full without an
    answer, and the client retries after a second, which is a slow refusal, not a fast one.
    """
    return max(64, 2 * upstream_max_conns(workers, threads))

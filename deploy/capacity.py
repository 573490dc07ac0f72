"""How much one web replica takes at once: its workers and their threads.

One place for the figures: deploy/gunicorn.conf.py runs `workers()` gunicorn workers of
`THREADS` threads each (granian, deploy/granian_server.py, reads the same), and what is sized
after a replica's capacity reads them here.

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

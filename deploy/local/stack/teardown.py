"""`stack down`: everything the stack started stopped, nothing of it left, all but logs removed."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

from deploy.local import celery_worker, gunicorn
from deploy.local._proc import ServiceError, cmdline, wait_until
from deploy.local.pgbouncer import PgBouncer
from deploy.local.postgres import PostgresCluster
from deploy.local.rabbitmq import RabbitMQNode
from deploy.local.redis import RedisServer
from deploy.local.service import LocalService
from deploy.local.stack.environment import LOGS
from deploy.local.stack.processes import Stack, StackError

# The services the others depend on, stopped last.
SERVICES: dict[str, type[LocalService]] = {
    "rabbitmq": RabbitMQNode,
    "redis": RedisServer,
    "pgbouncer": PgBouncer,
    "postgres": PostgresCluster,
}
# beat, the relay, nginx and Prometheus stop in well under a second.
OTHER_STOP_TIMEOUT = 10.0


def down(stack: Stack, *, quiet: bool = False) -> None:
    """Stop everything, check that nothing is left, and remove all but the logs."""
    # One write per line: the steps below report from several threads at once.
    say = (lambda message: None) if quiet else (lambda message: sys.stdout.write(f"{message}\n"))
    if stack.state_path.exists() and not stack.state:
        stack.load()
    processes = stack.state.get("processes", {})
    webs = stack.state.get("web", [])
    # On `down` the broker goes away with the worker, so an export still running after its
    # warm shutdown's timeout is abandoned (acks_late would redeliver it).
    timeouts = {
        **dict.fromkeys(webs, gunicorn.STOP_TIMEOUT),
        "worker": celery_worker.STOP_TIMEOUT,
    }
    errors: list[str] = []

    def stop(name: str) -> None:
        say(f"  stopping {name}")
        try:
            if name in SERVICES:
                SERVICES[name].load(stack.service_dir(name)).close()
            else:
                stack.stop(processes[name], timeout=timeouts.get(name, OTHER_STOP_TIMEOUT))
        except (ServiceError, TimeoutError) as exc:
            errors.append(f"{name}: {exc}")

    # The entrance first, so no request arrives while the rest goes away; the services the
    # others depend on last. Within a step everything stops at once: each waits only for
    # itself (a worker's warm shutdown alone takes seconds).
    steps = [
        ["nginx", "prometheus"],
        [*webs, "relay", "beat", "worker"],
        [
            name
            for name, service in SERVICES.items()
            if service.recorded_in(stack.service_dir(name))
        ],
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for step in steps:
            names = [name for name in step if name in processes or name in SERVICES]
            list(pool.map(stop, names))
    stragglers = stack.leftovers()
    if stragglers:
        say(f"  stopping leftover processes {stragglers}")
        for pid in stragglers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not stack.leftovers(), timeout=10, what="leftovers to die")
    remaining = stack.leftovers()
    if remaining:
        errors.append(f"still running: {[(pid, cmdline(pid)) for pid in remaining]}")
    if errors:
        raise StackError("\n".join(errors))
    remove_runtime_state(stack)
    say(f"Stack stopped; nothing of it runs. Logs kept in {stack.logs}")


def remove_runtime_state(stack: Stack) -> None:
    """Delete data, sockets, pid and state files; keep every log.

    The services' logs are copied from the data directory into D/logs/<service>/ first, and the
    data directory is removed whole.
    """
    data_dir = stack.data_dir
    if data_dir is not None and data_dir.is_dir():
        for path in data_dir.rglob("*"):
            relative = path.relative_to(data_dir)
            if path.is_file() and _is_log(relative):
                kept = stack.logs / relative
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, kept)
        shutil.rmtree(data_dir, ignore_errors=True)
    if not stack.dir.exists():
        return
    for path in stack.dir.rglob("*"):
        if not path.is_dir() and not _is_log(path.relative_to(stack.dir)):
            path.unlink(missing_ok=True)
    # Deepest first, so a directory is empty by the time it is looked at.
    for path in sorted((p for p in stack.dir.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):
            path.rmdir()
    stack.state = {}


def _is_log(relative: Path) -> bool:
    """Logs are kept by `down`: ours in logs/, the services' as *.log or in a log/ directory."""
    return relative.suffix == ".log" or bool({LOGS, "log"} & set(relative.parts[:-1]))

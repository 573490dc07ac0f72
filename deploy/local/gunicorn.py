"""gunicorn serving the project with deploy/gunicorn.conf.py on a loopback port: start, ready, stop.

The one way the project starts a web process outside a container: every replica of the one-box
stack, the suite's live-server tests and the benchmarks. `server="granian"` (the stack's
`SERVER=granian`) starts deploy/granian_server.py instead, sized by the same gunicorn config.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local._proc import spawn, stop_group, wait_started
from deploy.local.ports import free_port

CONFIG = "deploy/gunicorn.conf.py"
APPLICATION = "config.wsgi:application"
# Importing Django and opening the first connections takes about 2 s; a loaded CI box is
# several times slower, and a process that is not up in a minute is broken, not slow.
START_TIMEOUT = 60.0
# gunicorn gives in-flight requests graceful_timeout (30 s) after SIGTERM; a little more here.
STOP_TIMEOUT = 35.0
# How long a single readiness probe may take; a local process answers in milliseconds.
PROBE_TIMEOUT = 2.0


def http_status(port: int, path: str, timeout: float = PROBE_TIMEOUT) -> int | None:
    """The status of GET http://127.0.0.1:port/path, or None if nothing answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def gunicorn_argv(port: int, extra_args: Sequence[str] = ()) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        CONFIG,
        "-b",
        f"127.0.0.1:{port}",
        *extra_args,
        APPLICATION,
    ]


# The web servers a replica can run: gunicorn (the default) or granian (deploy/granian_server.py).
SERVERS = ("gunicorn", "granian")


def server_argv(server: str, port: int, extra_args: Sequence[str] = ()) -> list[str]:
    if server == "gunicorn":
        return gunicorn_argv(port, extra_args)
    if server == "granian":
        return [sys.executable, "-m", "deploy.granian_server", "--bind", f"127.0.0.1:{port}"]
    raise ValueError(f"unknown web server {server!r}: one of {', '.join(SERVERS)}")


@dataclass
class Gunicorn:
    """One gunicorn master (in a session of its own) and its workers."""

    port: int
    proc: subprocess.Popen = field(repr=False)
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def spawn(
        cls,
        *,
        env: dict[str, str],
        port: int | None = None,
        log: Path | None = None,
        workers: int | None = None,
        extra_args: Sequence[str] = (),
        server: str = "gunicorn",
    ) -> Gunicorn:
        """Start gunicorn (or `server`) without waiting for it; `workers` sets WEB_CONCURRENCY."""
        port = port or free_port()
        env = {**env, "PORT": str(port)}
        if workers is not None:
            env = {**env, "WEB_CONCURRENCY": str(workers)}
        return cls(port, spawn(server_argv(server, port, extra_args), env=env, log=log), log)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, path: str = "/readyz", timeout: float = START_TIMEOUT) -> None:
        """Return once `path` answers 200; raise ServiceError (with the log) if it never does."""
        wait_started(
            self.alive,
            lambda: http_status(self.port, path) == 200,
            name=f"gunicorn on port {self.port}",
            what=f"gunicorn on port {self.port} to answer {path}",
            timeout=timeout,
            log=self.log,
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """gunicorn's graceful stop: SIGTERM to the master, which lets workers finish requests."""
        stop_group(self.pid, timeout=timeout, proc=self.proc, leader_only=True)

    def __enter__(self) -> Gunicorn:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_gunicorn(*, ready_path: str = "/readyz", **options) -> Gunicorn:
    """Gunicorn.spawn(**options), returned once `ready_path` answers; stopped if it never does."""
    server = Gunicorn.spawn(**options)
    try:
        server.wait_ready(ready_path)
    except BaseException:
        server.stop()
        raise
    return server

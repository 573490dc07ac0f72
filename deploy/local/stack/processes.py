"""The stack in one directory: its state file, and the processes it started and recorded there.

Every process runs in a session of its own with its output in D/logs/; D/stack.json records its
name, pid, port and log, so that `status`, `restart` and `down` find it again from another
command. The services' data (Postgres, Redis, RabbitMQ, nginx, Prometheus) lives in a data
directory of its own, made by `start` under the system's temporary directory and recorded in
D/stack.json: the service users (postgres, rabbitmq, nginx's nobody) must enter it, and they
cannot enter a checkout under a folder such as /root. The web replicas and nginx are started
through the launchers next to this package (deploy/local/gunicorn.py, nginx.py), the code the
tests and benchmarks run.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from deploy import capacity
from deploy.local._proc import (
    ServiceError,
    cmdline,
    pid_alive,
    read_state,
    spawn,
    stop_group,
    wait_started,
    write_state,
)
from deploy.local.gunicorn import Gunicorn, http_status
from deploy.local.nginx import Nginx, render_template
from deploy.local.pgbouncer import PgBouncer
from deploy.local.stack.environment import (
    DEFAULT_WEB_CONCURRENCY,
    LOGS,
    MARK_ENV,
    STATE_FILE,
    app_env,
)

# Importing Django and opening the first connections takes about 2 s; a loaded CI box is
# several times slower, and a process that is not up in a minute is broken, not slow.
START_TIMEOUT = 60.0


class StackError(ServiceError):
    """The stack could not be started, restarted or stopped as asked."""


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []


def _ancestors() -> set[int]:
    """This process and its parents: the shell or test that called us may name the directory."""
    found, pid = set(), os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return found


class Stack:
    """The stack in one directory: what `start` recorded there, and its processes."""

    def __init__(self, base_dir: Path) -> None:
        self.dir = Path(base_dir).absolute()
        self.state: dict = {}
        self._children: dict[int, subprocess.Popen] = {}
        self._mark = f"{MARK_ENV}={self.dir}".encode()

    # --- paths and state ---------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.dir / STATE_FILE

    @property
    def logs(self) -> Path:
        return self.dir / LOGS

    @property
    def data_dir(self) -> Path | None:
        """Where the services keep their data, once `start` made it (see the module docstring)."""
        recorded = self.state.get("data_dir")
        return Path(recorded) if recorded else None

    def service_dir(self, name: str) -> Path:
        # A stack recorded without a data directory kept its services next to its state.
        return (self.data_dir or self.dir) / name

    def save(self) -> None:
        write_state(self.state_path, self.state)

    def load(self) -> Stack:
        self.state = read_state(self.state_path)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.state['port']}"

    def web(self) -> list[dict]:
        return [self.state["processes"][name] for name in self.state["web"]]

    def app_env(self) -> dict[str, str]:
        return app_env(self.dir, self.state)

    def pgbouncer(self) -> PgBouncer | None:
        """The stack's PgBouncer, if it was started with one (STACK_PGBOUNCER=1)."""
        directory = self.service_dir("pgbouncer")
        return PgBouncer.load(directory) if PgBouncer.recorded_in(directory) else None

    # --- our processes -----------------------------------------------------------------------
    def owns(self, pid: int) -> bool:
        """True if the process belongs to this stack: it names the directory or carries the mark."""
        line = cmdline(pid)
        # The services run as other users, with their own environment: their command line names
        # the data directory instead.
        named = [path for path in (self.dir, self.data_dir) if path is not None]
        if any(re.search(re.escape(str(path)) + r"(/|\s|$)", line) for path in named):
            return True
        return self._mark in _environ(pid)

    def leftovers(self) -> list[int]:
        """Live processes of this stack, wherever they came from (not us or our callers)."""
        skip = _ancestors()
        return [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit()
            and int(entry.name) not in skip
            and pid_alive(int(entry.name))
            and self.owns(int(entry.name))
        ]

    def log_path(self, name: str) -> Path:
        self.logs.mkdir(exist_ok=True)
        return self.logs / f"{name}.log"

    def record(self, name: str, proc: subprocess.Popen, port: int | None) -> dict:
        """Remember a started process, in this object and in the state file."""
        self._children[proc.pid] = proc
        log = str(self.log_path(name))
        record = {"name": name, "pid": proc.pid, "port": port, "log": log}
        self.state["processes"][name] = record
        self.save()
        return record

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str], port: int | None = None
    ) -> dict:
        proc = spawn(argv, env={**env, MARK_ENV: str(self.dir)}, log=self.log_path(name))
        return self.record(name, proc, port)

    def alive(self, record: dict) -> bool:
        child = self._children.get(record["pid"])
        if child is not None:
            return child.poll() is None
        return pid_alive(record["pid"]) and self.owns(record["pid"])

    def wait_ready(self, record: dict, ready: Callable[[], bool], what: str) -> None:
        try:
            wait_started(
                lambda: self.alive(record),
                ready,
                name=record["name"],
                what=what,
                timeout=START_TIMEOUT,
                log=Path(record["log"]),
            )
        except ServiceError as exc:
            raise StackError(str(exc)) from None

    def stop(self, record: dict, *, timeout: float) -> None:
        """SIGTERM the process the stack started, wait for its whole group, SIGKILL stragglers.

        Only the leader gets the SIGTERM: gunicorn's master and Celery's main process shut their
        children down gracefully themselves.
        """
        name = record["name"]
        stop_group(
            record["pid"],
            timeout=timeout,
            proc=self._children.get(record["pid"]),
            leader_only=True,
            belongs=self.owns,
            before_kill=lambda: print(
                f"  {name} ignored SIGTERM for {timeout:g} s: killing it", flush=True
            ),
        )

    # --- the web replicas ----------------------------------------------------------------------
    @staticmethod
    def web_concurrency() -> int:
        """gunicorn workers per replica; nginx's bound on each replica is derived from it."""
        return int(os.environ.get("WEB_CONCURRENCY") or DEFAULT_WEB_CONCURRENCY)

    def spawn_web(self, name: str, port: int) -> dict:
        metrics = self.dir / "web" / name / "metrics"
        metrics.mkdir(parents=True, exist_ok=True)
        env = {
            **self.app_env(),
            "WEB_CONCURRENCY": str(self.web_concurrency()),
            # One directory per replica: /metrics sums this replica's workers and no other's.
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        }
        # The control socket stays off (the gunicorn config's default): nothing here uses it,
        # and one per replica would only be another file to clean up.
        server = Gunicorn.spawn(
            env=env,
            port=port,
            log=self.log_path(name),
            server=os.environ.get("SERVER") or "gunicorn",
        )
        return self.record(name, server.proc, port)

    def wait_web(self, record: dict) -> None:
        self.wait_ready(
            record,
            lambda: http_status(record["port"], "/readyz") == 200,
            f"{record['name']} on port {record['port']} to answer /readyz",
        )

    # --- nginx ---------------------------------------------------------------------------------
    def nginx(self) -> Nginx:
        record = self.state["processes"].get("nginx")
        return Nginx(
            self.service_dir("nginx"),
            self.state["port"],
            pid=record["pid"] if record else None,
            proc=self._children.get(record["pid"]) if record else None,
        )

    def render_nginx(self, *, down: frozenset[str] = frozenset()) -> None:
        """Write nginx.conf with every replica as an upstream, those in `down` marked down, each
        bounded by what its workers run at once (deploy/capacity.py)."""
        upstreams = [(web["port"], web["name"] in down) for web in self.web()]
        max_conns = capacity.upstream_max_conns(self.web_concurrency())
        self.nginx().configure(render_template(self.state["port"], upstreams, max_conns))

    def reload_nginx(self, *, drain: bool) -> None:
        if not self.nginx().reload(drain=drain):
            # A request older than proxy_read_timeout is stuck; gunicorn's graceful stop still
            # gives it its own 30 s.
            print("  nginx: old workers still busy; continuing", flush=True)

    def start_nginx(self) -> dict:
        nginx = self.nginx()
        nginx.prepare()
        self.render_nginx()
        nginx.start(env={**os.environ, MARK_ENV: str(self.dir)}, log=self.log_path("nginx"))
        return self.record("nginx", nginx.proc, self.state["port"])

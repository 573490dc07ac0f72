"""nginx from a prefix directory: render its config, start it, reload it with a drain, stop it.

The one way the project runs nginx outside a container: in front of the one-box stack's replicas
(deploy/nginx/todo-scale.conf.template) and in the benchmarks.
"""

from __future__ import annotations

import os
import shutil
import signal
import string
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local._proc import (
    IS_ROOT,
    ROOT,
    ServiceError,
    as_user,
    cmdline,
    group_members,
    log_tail,
    run,
    spawn,
    stop_group,
    wait_started,
    wait_until,
)
from deploy.local.ports import port_open

TEMPLATE = ROOT / "deploy" / "nginx" / "todo-scale.conf.template"
CONFIG = "nginx.conf"
# Where the template sends nginx's error log, relative to the prefix.
ERROR_LOG = "nginx-error.log"
# ... and the access log of the requests nginx answers itself for want of a replica.
ACCESS_LOG = "nginx-access.log"
# nginx workers retired by a reload finish their requests first; none runs longer than
# proxy_read_timeout (35 s) in the template.
DRAIN_TIMEOUT = 40.0
# nginx listens within milliseconds; a config it rejects makes it exit at once.
START_TIMEOUT = 60.0
# A fast shutdown closes every connection at once.
STOP_TIMEOUT = 10.0


def binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def render_template(port: int, upstreams: Sequence[tuple[int, bool]], max_conns: int) -> str:
    """The deployment's config listening on `port`, one upstream server per (port, down), each
    holding at most `max_conns` requests at once (deploy/capacity.py's upstream_max_conns for
    the replicas' workers)."""
    servers = "\n        ".join(
        f"server 127.0.0.1:{upstream} max_conns={max_conns}{' down' if down else ''};"
        for upstream, down in upstreams
    )
    return string.Template(TEMPLATE.read_text()).safe_substitute(
        NGINX_PORT=str(port), UPSTREAM_SERVERS=servers
    )


@dataclass
class Nginx:
    """nginx running PREFIX/nginx.conf on `port`; every path in the config is within PREFIX."""

    prefix: Path
    port: int
    pid: int | None = None
    error_log: str = ERROR_LOG
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def argv(self, *args: str) -> list[str]:
        return [binary(), "-p", f"{self.prefix}/", "-c", CONFIG, "-e", "stderr", *args]

    def prepare(self) -> None:
        """Make the prefix, and make sure nginx's workers may enter it."""
        self.prefix.mkdir(parents=True, exist_ok=True)
        if not IS_ROOT:
            return
        # nginx started by root runs its workers as `nobody` (its compiled-in default), and
        # they write proxy temp files inside the prefix. We keep that default rather than
        # `user root;`: the workers parse every client's bytes and should hold no privilege.
        # So the prefix must be reachable by nobody; check now rather than fail on the first
        # large response.
        self.prefix.chmod(0o755)
        probe = subprocess.run(as_user("nobody", ["test", "-x", str(self.prefix)]), check=False)
        if probe.returncode != 0:
            raise ServiceError(f"nginx's workers (user nobody) cannot enter {self.prefix}")

    def configure(self, text: str) -> None:
        """Write nginx.conf and check it: a reload with a broken file keeps the old one."""
        (self.prefix / CONFIG).write_text(text)
        run(self.argv("-t"), what="nginx -t", log=self.prefix / self.error_log)

    def start(self, *, env: dict[str, str] | None = None, log: Path | None = None) -> None:
        """Start the master in the foreground of its own session (its children are ours)."""
        self.proc = spawn(self.argv("-g", "daemon off;"), env=env, log=log)
        self.pid = self.proc.pid

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and bool(group_members(self.pid))

    def wait_ready(
        self, ready: Callable[[], bool] | None = None, timeout: float = START_TIMEOUT
    ) -> None:
        """Wait until `ready` (by default: something accepts connections on the port)."""
        wait_started(
            self.alive,
            ready or (lambda: port_open(self.port)),
            name="nginx",
            what=f"nginx on port {self.port}",
            timeout=timeout,
            log=self.prefix / self.error_log,
        )

    def workers(self) -> set[int]:
        assert self.pid is not None
        return {pid for pid in group_members(self.pid) if "worker process" in cmdline(pid)}

    def reload(self, *, drain: bool) -> bool:
        """Apply nginx.conf; with `drain`, return only once the workers of the old one are gone.

        A reload starts new workers and lets the old ones finish the requests they hold, still
        proxying them to the upstreams of the old configuration. Once none is left, no request
        can reach an upstream the new configuration marks down. False if some old worker was
        still busy after DRAIN_TIMEOUT (a request older than proxy_read_timeout is stuck).
        """
        assert self.pid is not None
        old = self.workers()
        os.kill(self.pid, signal.SIGHUP)

        def applied() -> bool:
            workers = self.workers()
            return bool(workers - old) and (not drain or not workers & old)

        try:
            wait_until(applied, timeout=DRAIN_TIMEOUT, what="nginx to apply its new config")
        except TimeoutError:
            if not self.workers() - old:
                log = log_tail(self.prefix / self.error_log)
                raise ServiceError(f"nginx did not reload\n{log}") from None
            return False
        return True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.pid is not None:
            stop_group(self.pid, timeout=timeout, proc=self.proc, leader_only=True)

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

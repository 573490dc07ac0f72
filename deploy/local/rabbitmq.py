"""A private RabbitMQ node on a free loopback port, with its own name, files and Erlang cookie.

    python -m deploy.local.rabbitmq start --dir D [--port P]
    python -m deploy.local.rabbitmq status --dir D
    python -m deploy.local.rabbitmq stop --dir D

`start` prints CELERY_BROKER_URL=... as a shell assignment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import amqp

from deploy.local._proc import (
    ServiceError,
    as_user,
    chown_tree,
    cmdline,
    group_members,
    log_tail,
    spawn,
    stop_group,
    wait_until,
)
from deploy.local.ports import free_port, free_ports, port_open
from deploy.local.service import LocalService, port_option, service_cli, service_dir

STARTUP_LOG = "startup.log"
USER = "rabbitmq"
# Measured ~4 s to accept AMQP; a loaded CI box can take several times that.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def _server_script() -> str:
    """The upstream start script, not Debian's /usr/sbin wrapper.

    The wrapper sends output to the shared /var/log/rabbitmq/startup_log and changes to
    /var/lib/rabbitmq, both of which belong to the system node.
    """
    upstream = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    if upstream.exists():
        return str(upstream)
    found = shutil.which("rabbitmq-server")
    if not found:
        raise ServiceError("rabbitmq-server is not installed")
    return found


@dataclass
class RabbitMQNode(LocalService):
    """One RabbitMQ node; stop()/start()/restart() keep its port and data, close() cleans up."""

    STATE_FILE = "rabbitmq.json"
    WHAT = "RabbitMQ node"

    port: int
    base_dir: Path
    dist_port: int
    owns_dir: bool = field(default=False, repr=False)
    pgid: int | None = None
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @property
    def nodename(self) -> str:
        return f"ts-{self.port}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def assignments(self) -> dict[str, str]:
        return {"CELERY_BROKER_URL": self.url}

    def state(self) -> dict[str, Any]:
        return {"port": self.port, "dist_port": self.dist_port, "pgid": self.pgid}

    @property
    def running(self) -> bool:
        return self.pgid is not None and bool(group_members(self.pgid))

    def env(self) -> dict[str, str]:
        base = self.base_dir
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            # The Erlang cookie is created in and read from HOME.
            "HOME": str(base),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            # Without it Erlang distribution takes port + 20000, which nobody checked was free.
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_BASE": str(base),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            # The system node's /etc/rabbitmq files name its own node and listener (5672): a
            # private node reading them would collide with it.
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def _write_files(self) -> None:
        base = self.base_dir
        (base / "mnesia").mkdir(exist_ok=True)
        (base / "log").mkdir(exist_ok=True)
        (base / "enabled_plugins").write_text("[].\n")
        # The listener comes from RABBITMQ_NODE_IP_ADDRESS/PORT; guest may log in from
        # loopback only (the default, spelled out).
        (base / "rabbitmq.conf").write_text("loopback_users.guest = true\n")
        (base / "rabbitmq-env.conf").write_text("")
        chown_tree(base, USER)

    def amqp_ok(self, timeout: float = 1.0) -> bool:
        """True once a full AMQP handshake and login as guest succeeds."""
        conn = amqp.Connection(
            host=f"127.0.0.1:{self.port}",
            userid="guest",
            password="guest",  # noqa: S106 - the broker default
            virtual_host="/",
            connect_timeout=timeout,
        )
        try:
            conn.connect()
            return True
        except (OSError, amqp.exceptions.AMQPError):
            return False
        finally:
            # A half-open connection may fail to close.
            with contextlib.suppress(Exception):
                conn.close()

    def start(self) -> None:
        """Start the node and return once it accepts AMQP logins."""
        if self.running:
            return
        if port_open(self.port):
            raise ServiceError(f"port {self.port} is already in use")
        self._write_files()
        log = self.base_dir / STARTUP_LOG
        argv = as_user(USER, [_server_script()], preserve_env=True)
        # stop() signals the whole group: runuser, beam.smp and its helpers.
        self._proc = spawn(argv, env=self.env(), log=log, cwd=self.base_dir)
        self.pgid = self._proc.pid

        def ready() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServiceError(
                    f"rabbitmq-server exited with {self._proc.returncode}\n{log_tail(log)}"
                    f"{log_tail(self.base_dir / 'log' / f'{self.nodename}.log')}"
                )
            return port_open(self.port) and self.amqp_ok()

        try:
            wait_until(
                ready, timeout=START_TIMEOUT, what=f"RabbitMQ on port {self.port}", interval=0.1
            )
        except BaseException:
            self.stop()
            raise
        self.save()

    def stop(self) -> None:
        """Stop the Erlang VM and its helpers; return once the AMQP port is closed.

        SIGTERM to the group makes RabbitMQ shut down cleanly (as `rabbitmqctl stop` would,
        without starting a second Erlang VM for the CLI); SIGKILL follows if it lingers.
        """
        pgid = self.pgid
        if pgid is None:
            return
        members = group_members(pgid)
        # The VM is started with HOME = base_dir and shows it as `-home DIR`; the node name is
        # set at run time and appears on no command line.
        mark = f"-home {self.base_dir} "
        if self._proc is None and not any(mark in cmdline(pid) for pid in members):
            # Loaded from a state file and the group is gone or reused: nothing of ours left.
            members = []
        if members:
            stop_group(pgid, timeout=STOP_TIMEOUT, proc=self._proc)
        elif self._proc is not None:
            self._proc.wait(timeout=10)
        wait_until(lambda: not port_open(self.port), timeout=10, what=f"port {self.port} to close")
        self.pgid = None
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def start_rabbitmq(base_dir: Path | None = None, port: int | None = None) -> RabbitMQNode:
    """Start a node in base_dir (a new temporary directory if None) on port (free if None)."""
    with service_dir(base_dir, "rabbitmq-", USER) as (base_dir, created):
        RabbitMQNode.refuse_running(base_dir)
        if port is None:
            port, dist_port = free_ports(2)
        else:
            dist_port = free_port()
        node = RabbitMQNode(port=port, base_dir=base_dir, dist_port=dist_port, owns_dir=created)
        node.start()
        return node


def main(argv: list[str] | None = None) -> int:
    return service_cli(
        argv,
        service=RabbitMQNode,
        doc=__doc__,
        start=lambda args: start_rabbitmq(args.dir, args.port).assignments(),
        start_options=port_option,
    )


if __name__ == "__main__":
    sys.exit(main())

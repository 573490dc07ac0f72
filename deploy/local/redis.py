"""A private redis-server on a free loopback port, without persistence.

    python -m deploy.local.redis start --dir D [--port P]
    python -m deploy.local.redis status --dir D
    python -m deploy.local.redis stop --dir D

`start` prints REDIS_URL=... as a shell assignment.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from deploy.local._proc import (
    ServiceError,
    log_tail,
    pid_alive,
    spawn,
    wait_until,
)
from deploy.local.ports import free_port
from deploy.local.service import ProcessService, port_option, service_cli, service_dir

LOG_FILE = "redis.log"
START_TIMEOUT = 10.0


@dataclass
class RedisServer(ProcessService):
    """One redis-server process; stop()/start()/restart() keep the port, close() cleans up."""

    STATE_FILE = "redis.json"
    WHAT = "redis-server"
    PROGRAM = "redis-server"

    port: int
    base_dir: Path
    owns_dir: bool = field(default=False, repr=False)
    pid: int | None = None
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def assignments(self) -> dict[str, str]:
        return {"REDIS_URL": self.url}

    def state(self) -> dict[str, Any]:
        return {"port": self.port, "pid": self.pid}

    @property
    def running(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    def ping(self, timeout: float = 0.2) -> bool:
        # redis-py 8 retries a refused connection 10 times with backoff (~4 s): a readiness
        # probe must answer at once.
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self) -> None:
        """Start the server and return once it answers PING."""
        if self.running:
            return
        log = self.base_dir / LOG_FILE
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.base_dir),
            "--daemonize",
            "no",
        ]
        self._proc = spawn(argv, env=None, log=log, cwd=self.base_dir)
        self.pid = self._proc.pid

        def ready() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                code = self._proc.returncode
                raise ServiceError(f"redis-server exited with {code}\n{log_tail(log)}")
            return self.ping()

        try:
            wait_until(
                ready,
                timeout=START_TIMEOUT,
                what=f"redis-server on port {self.port}",
                interval=0.005,
            )
        except BaseException:
            self.stop()
            raise
        self.save()


def start_redis(base_dir: Path | None = None, port: int | None = None) -> RedisServer:
    """Start redis-server in base_dir (a new temporary directory if None) on port (free if None)."""
    with service_dir(base_dir, "redis-", None) as (base_dir, created):
        RedisServer.refuse_running(base_dir)
        attempts = 1 if port is not None else 3
        for attempt in range(attempts):
            server = RedisServer(port=port or free_port(), base_dir=base_dir, owns_dir=created)
            try:
                server.start()
                return server
            except ServiceError:
                # A free port can be taken by someone else before redis binds it: pick another.
                if attempt == attempts - 1:
                    raise
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    return service_cli(
        argv,
        service=RedisServer,
        doc=__doc__,
        start=lambda args: start_redis(args.dir, args.port).assignments(),
        start_options=port_option,
    )


if __name__ == "__main__":
    sys.exit(main())

"""A private redis-server on a free loopback port, without persistence.

    python -m deploy.local.redis start --dir D [--port P]
    python -m deploy.local.redis stop --dir D

`start` prints REDIS_URL=... as a shell assignment.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from deploy.local._proc import (
    ServiceError,
    cmdline,
    log_tail,
    pid_alive,
    prepare_dir,
    read_state,
    wait_until,
    write_state,
)
from deploy.local.ports import free_port

STATE_FILE = "redis.json"
LOG_FILE = "redis.log"
START_TIMEOUT = 10.0


@dataclass
class RedisServer:
    """One redis-server process; stop()/start()/restart() keep the port, close() cleans up."""

    port: int
    base_dir: Path
    owns_dir: bool = field(default=False, repr=False)
    pid: int | None = None
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

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
        with log.open("ab") as out:
            # Own session and no inherited stdout: the CLI's caller may read our output through
            # a pipe, which must close when the CLI exits, and a Ctrl-C there must not reach us.
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.base_dir,
            )
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
        self._save()

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGKILL if it lingers) and wait until it is gone."""
        pid = self.pid
        if pid is None:
            return
        if self._proc is None and "redis-server" not in cmdline(pid):
            # Loaded from a state file: the pid may since belong to an unrelated process.
            self.pid = None
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            try:
                wait_until(lambda: self._reaped(pid), timeout=wait, what=f"redis-server {pid}")
                break
            except TimeoutError:
                if sig == signal.SIGKILL:
                    raise
        self.pid = None
        self._proc = None

    def _reaped(self, pid: int) -> bool:
        if self._proc is not None:
            return self._proc.poll() is not None
        return not pid_alive(pid)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop, then remove the directory if start_redis made it (else just the state file)."""
        self.stop()
        if self.owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        else:
            (self.base_dir / STATE_FILE).unlink(missing_ok=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _save(self) -> None:
        write_state(
            self.base_dir / STATE_FILE,
            {"port": self.port, "pid": self.pid, "owns_dir": self.owns_dir},
        )

    @classmethod
    def load(cls, base_dir: Path) -> RedisServer:
        base_dir = Path(base_dir).absolute()
        state = read_state(base_dir / STATE_FILE)
        return cls(
            port=state["port"], base_dir=base_dir, owns_dir=state["owns_dir"], pid=state["pid"]
        )


def start_redis(base_dir: Path | None = None, port: int | None = None) -> RedisServer:
    """Start redis-server in base_dir (a new temporary directory if None) on port (free if None)."""
    base_dir, created = prepare_dir(base_dir, "redis-", None)
    if (base_dir / STATE_FILE).exists():
        existing = RedisServer.load(base_dir)
        if existing.running:
            raise ServiceError(f"{base_dir} already holds a running redis-server: stop it first")
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        server = RedisServer(port=port or free_port(), base_dir=base_dir, owns_dir=created)
        try:
            server.start()
            return server
        except ServiceError:
            # A free port can be taken by someone else before redis binds it: pick another.
            if attempt == attempts - 1:
                if created:
                    shutil.rmtree(base_dir, ignore_errors=True)
                raise
        except BaseException:
            if created:
                shutil.rmtree(base_dir, ignore_errors=True)
            raise
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.redis",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start redis-server in DIR")
    start.add_argument("--dir", required=True, type=Path)
    start.add_argument("--port", type=int)
    stop = sub.add_parser("stop", help="stop the redis-server that `start` left in DIR")
    stop.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            server = start_redis(args.dir, args.port)
            print(f"REDIS_URL={shlex.quote(server.url)}")
        elif not (args.dir / STATE_FILE).exists():
            # Idempotent, so that a teardown trap may call it whatever got started.
            print(f"nothing to stop in {args.dir}", file=sys.stderr)
        else:
            RedisServer.load(args.dir).close()
    except (ServiceError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

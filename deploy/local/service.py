"""What every private local service shares: its state file, `with`, close() and its command line.

Each launcher (postgres.py, redis.py, rabbitmq.py) is a `LocalService` with its own fields, and
its module's `main` is `service_cli`:

    python -m deploy.local.<service> start --dir D [options]   # prints NAME=value assignments
    python -m deploy.local.<service> status --dir D            # the same, if it still runs
    python -m deploy.local.<service> stop --dir D              # idempotent
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Self

from deploy.local._proc import (
    ServiceError,
    cmdline,
    prepare_dir,
    read_state,
    stop_group,
    write_state,
)


class LocalService:
    """A service started in a directory of its own and recorded in a state file there.

    Subclasses are dataclasses whose fields are `base_dir`, `owns_dir` and what `state()`
    returns, so that `load()` can rebuild them from the file.
    """

    STATE_FILE: ClassVar[str]
    # How errors and `status` name it: "redis-server", "RabbitMQ node", ...
    WHAT: ClassVar[str]

    base_dir: Path
    owns_dir: bool

    # --- what each service supplies ----------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The fields, besides base_dir and owns_dir, that `load()` needs to find it again."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def assignments(self) -> dict[str, str]:
        """The shell assignments `start` and `status` print (NAME -> value)."""
        raise NotImplementedError

    # --- the state file ------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.base_dir / self.STATE_FILE

    def save(self) -> None:
        write_state(self.state_path, {**self.state(), "owns_dir": self.owns_dir})

    @classmethod
    def load(cls, base_dir: Path) -> Self:
        base_dir = Path(base_dir).absolute()
        return cls(base_dir=base_dir, **read_state(base_dir / cls.STATE_FILE))

    @classmethod
    def recorded_in(cls, base_dir: Path) -> bool:
        return (Path(base_dir) / cls.STATE_FILE).exists()

    @classmethod
    def refuse_running(cls, base_dir: Path) -> None:
        """Raise if the directory already holds a running instance (a stale state file is fine)."""
        if cls.recorded_in(base_dir) and cls.load(base_dir).running:
            raise ServiceError(f"{base_dir} already holds a running {cls.WHAT}: stop it first")

    # --- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop, then remove the directory if start made it (else what must not outlive it)."""
        self.stop()
        self.discard()

    def discard(self) -> None:
        if self.owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        else:
            self.state_path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ProcessService(LocalService):
    """A service that is one process group: `pid` (and `_proc` when started here), whose
    command line names `PROGRAM`."""

    PROGRAM: ClassVar[str]

    pid: int | None
    _proc: Any

    def start(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the process group (SIGKILL if it lingers) and wait until it is gone."""
        pid = self.pid
        if pid is None:
            return
        if self._proc is not None or self.PROGRAM in cmdline(pid):
            # Else it was loaded from a state file and the pid belongs to someone else now.
            stop_group(pid, timeout=timeout, proc=self._proc)
        self.pid = None
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def service_dir(
    base_dir: Path | None, prefix: str, user: str | None
) -> Iterator[tuple[Path, bool]]:
    """(directory, created) for a starting service; a directory made here goes if start fails."""
    base_dir, created = prepare_dir(base_dir, prefix, user)
    try:
        yield base_dir, created
    except BaseException:
        if created:
            shutil.rmtree(base_dir, ignore_errors=True)
        raise


def port_option(parser: argparse.ArgumentParser) -> None:
    """`start --port P`: a port of the caller's choice instead of a free one."""
    parser.add_argument("--port", type=int)


def service_cli(
    argv: list[str] | None,
    *,
    service: type[LocalService],
    doc: str,
    start: Callable[[argparse.Namespace], dict[str, str]],
    start_options: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
) -> int:
    """`start` (which returns the assignments to print), `status` and `stop` for one service."""
    module = sys.modules[service.__module__].__spec__
    parser = argparse.ArgumentParser(
        prog=f"python -m {module.name if module else service.__module__}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start_parser = sub.add_parser("start", help=f"start a {service.WHAT} in DIR")
    start_parser.add_argument("--dir", required=True, type=Path)
    start_options(start_parser)
    status = sub.add_parser("status", help=f"print the assignments if the {service.WHAT} runs")
    status.add_argument("--dir", required=True, type=Path)
    stop = sub.add_parser("stop", help=f"stop the {service.WHAT} that `start` left in DIR")
    stop.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            values = start(args)
        elif not service.recorded_in(args.dir):
            # Idempotent, so that a teardown trap may call it whatever got started.
            if args.command == "stop":
                print(f"nothing to stop in {args.dir}", file=sys.stderr)
                return 0
            print(f"nothing started in {args.dir}", file=sys.stderr)
            return 1
        elif args.command == "stop":
            service.load(args.dir).close()
            return 0
        else:
            loaded = service.load(args.dir)
            if not loaded.running:
                print(f"the {service.WHAT} in {args.dir} is not running", file=sys.stderr)
                return 1
            values = loaded.assignments()
    except (ServiceError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, value in values.items():
        print(f"{name}={shlex.quote(value)}")
    return 0

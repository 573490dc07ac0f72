"""Process, directory and state-file plumbing shared by the service launchers."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

IS_ROOT = os.geteuid() == 0
# The project: the working directory of every Django process a launcher starts.
ROOT = Path(__file__).resolve().parents[2]


class ServiceError(RuntimeError):
    """A private service could not be started or stopped."""


def as_user(user: str, argv: Sequence[str], *, preserve_env: bool = False) -> list[str]:
    """Prefix argv so it runs as `user` when we are root.

    Postgres refuses to run as root, and RabbitMQ's files must belong to its own user. Without
    root we cannot switch users, and need not: the services run as ourselves.
    """
    if not IS_ROOT:
        return list(argv)
    prefix = ["runuser", "-u", user]
    if preserve_env:
        # Without it runuser resets HOME, which is where the Erlang cookie is looked up.
        prefix.append("--preserve-environment")
    return [*prefix, "--", *argv]


def chown_tree(path: Path, user: str) -> None:
    """Give `path` and everything under it to `user` (only meaningful, and only done, as root)."""
    if not IS_ROOT:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def prepare_dir(base_dir: Path | None, prefix: str, user: str | None) -> tuple[Path, bool]:
    """Return (directory, created) for a service; `created` tells who must remove it."""
    created = False
    if base_dir is None:
        base_dir = Path(tempfile.mkdtemp(prefix=prefix))
        created = True
    else:
        base_dir = Path(base_dir).absolute()
        if not base_dir.exists():
            base_dir.mkdir(parents=True)
            created = True
    if user is not None and IS_ROOT:
        chown_tree(base_dir, user)
        # mkdtemp makes 0700 directories; the service user must be able to enter every parent.
        probe = subprocess.run(as_user(user, ["test", "-w", str(base_dir)]), check=False)
        if probe.returncode != 0:
            if created:
                shutil.rmtree(base_dir, ignore_errors=True)
            raise ServiceError(f"user {user} cannot write to {base_dir}: check its parents' modes")
    return base_dir, created


def run(argv: Sequence[str], *, what: str, log: Path | None = None, **kwargs) -> str:
    """Run a command to completion; on failure raise with its output and the log's tail."""
    proc = subprocess.run(
        list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, **kwargs
    )
    if proc.returncode != 0:
        raise ServiceError(
            f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n"
            f"{proc.stdout}{proc.stderr}{log_tail(log)}"
        )
    return proc.stdout


def log_tail(log: Path | None, lines: int = 25) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"--- last lines of {log} ---\n" + "\n".join(text) + "\n"


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.02
) -> None:
    """Poll `predicate` until it holds; raise TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.25)


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may hold spaces or parentheses: split after its closing one.
    return raw[raw.rindex(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie waiting for a parent that may never reap."""
    fields = _proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (zombies excluded)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _proc_stat(int(entry.name))
        if fields and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def stop_group(
    pgid: int,
    *,
    timeout: float,
    proc: subprocess.Popen | None = None,
    leader_only: bool = False,
    belongs: Callable[[int], bool] | None = None,
    before_kill: Callable[[], None] | None = None,
) -> None:
    """SIGTERM a process group, SIGKILL whatever is left after `timeout`, and wait for the end.

    With `leader_only` only the leader gets the SIGTERM (while it lives): gunicorn's master,
    Celery's main process and nginx's master shut their children down gracefully themselves;
    signalled directly, a child would drop its request or task on the floor. Otherwise every
    member gets it, but runuser is spared: on a signal it forwards it, sleeps 2 s and then
    SIGKILLs its child whether or not that child is still shutting down cleanly. It exits with
    its child. `belongs` narrows the group to the processes that are really ours (a pid read
    from a state file may since have been reused); `before_kill` runs before the SIGKILL.
    """

    def members() -> list[int]:
        if proc is not None:
            proc.poll()
        return [pid for pid in group_members(pgid) if belongs is None or belongs(pid)]

    current = members()
    if not current:
        return
    if leader_only and pgid in current:
        targets = [pgid]
    else:
        targets = [pid for pid in current if not cmdline(pid).startswith("runuser ")] or current
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not members(), timeout=timeout, what=f"process group {pgid} to exit")
    except TimeoutError:
        if before_kill is not None:
            before_kill()
        for pid in members():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not members(), timeout=10, what=f"process group {pgid} to die")
    if proc is not None:
        # Reaped, so that its exit status is known and no zombie is left behind.
        proc.wait(timeout=10)


def spawn(
    argv: Sequence[str], *, env: dict[str, str] | None, log: Path | None, cwd: Path = ROOT
) -> subprocess.Popen:
    """Start a process in a session of its own, its output appended to `log` (else discarded).

    A session of its own: stop_group() signals the whole group, a Ctrl-C in the caller's
    terminal does not reach it, and a caller reading our output through a pipe (make, a shell
    capturing a CLI's assignments) does not wait on one the process inherited.
    """
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log.open("ab")) if log is not None else subprocess.DEVNULL
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_started(
    alive: Callable[[], bool],
    ready: Callable[[], bool],
    *,
    name: str,
    what: str,
    timeout: float,
    log: Path | None = None,
    interval: float = 0.05,
) -> None:
    """Wait until `ready`; raise ServiceError with the log's tail if the process dies or is late."""

    def check() -> bool:
        if not alive():
            raise ServiceError(f"{name} exited during start-up\n{log_tail(log)}")
        return ready()

    try:
        wait_until(check, timeout=timeout, what=what, interval=interval)
    except TimeoutError as exc:
        raise ServiceError(f"{exc}\n{log_tail(log)}") from None


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def write_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ServiceError(f"no state file {path}: nothing was started in this directory") from None

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


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def stop_group(pgid: int, *, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM a process group, SIGKILL whatever is left after `timeout`, and wait for the end.

    runuser is spared the SIGTERM: on a signal it forwards it, sleeps 2 s and then SIGKILLs its
    child whether or not that child is still shutting down cleanly. It exits with its child.
    """
    members = group_members(pgid)
    targets = [pid for pid in members if not cmdline(pid).startswith("runuser ")]
    for pid in targets or members:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: _reap(proc) and not group_members(pgid), timeout=timeout, what="exit")
    except TimeoutError:
        signal_group(pgid, signal.SIGKILL)
        wait_until(lambda: _reap(proc) and not group_members(pgid), timeout=10, what="kill")


def _reap(proc: subprocess.Popen | None) -> bool:
    if proc is not None:
        proc.poll()
    return True


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

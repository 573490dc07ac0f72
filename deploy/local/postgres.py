"""A private Postgres primary with streaming hot standbys, on free loopback ports.

    python -m deploy.local.postgres start --dir D [--replicas N] [--dbname NAME]
    python -m deploy.local.postgres status --dir D
    python -m deploy.local.postgres stop --dir D

`start` prints PRIMARY_URL=... and REPLICA_URLS=... (comma-separated) as shell assignments.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from deploy.local._proc import (
    IS_ROOT,
    ServiceError,
    as_user,
    pid_alive,
    run,
    wait_until,
)
from deploy.local.ports import free_ports
from deploy.local.service import LocalService, service_cli, service_dir

USER = "postgres"
# pg_ctl's own limit; a start that has not finished by then is broken, not slow.
PG_CTL_TIMEOUT = 30
# Unix sockets have a 108-byte path limit (sun_path); longer directories get TCP only.
MAX_SOCKET_DIR = 90


@functools.cache
def bindir() -> Path:
    """Where initdb, pg_ctl and pg_basebackup live (Debian keeps them off PATH)."""
    override = os.environ.get("PG_BINDIR")
    if override:
        return Path(override)
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=True)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ServiceError("cannot find the Postgres binaries: set PG_BINDIR")


def _pg(tool: str, *args: str) -> list[str]:
    return as_user(USER, [str(bindir() / tool), *args])


@dataclass
class PostgresCluster(LocalService):
    """One primary and its hot standbys, all local; `stop()` (or leaving `with`) ends them.

    A cluster has no stopped-but-kept state: stop() is close(), and removes the data.
    """

    STATE_FILE = "postgres.json"
    WHAT = "Postgres cluster"

    base_dir: Path
    primary_port: int
    replica_ports: list[int]
    owns_dir: bool = field(default=False, repr=False)

    # --- addresses -------------------------------------------------------------------------
    def url(self, port: int | None = None, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{port or self.primary_port}/{dbname}"

    @property
    def primary_url(self) -> str:
        return self.url()

    @property
    def replica_urls(self) -> list[str]:
        return [self.url(port) for port in self.replica_ports]

    def assignments(self, dbname: str = "postgres") -> dict[str, str]:
        urls = [self.url(port, dbname) for port in self.replica_ports]
        return {"PRIMARY_URL": self.url(dbname=dbname), "REPLICA_URLS": ",".join(urls)}

    def state(self) -> dict[str, Any]:
        return {"primary_port": self.primary_port, "replica_ports": self.replica_ports}

    @property
    def running(self) -> bool:
        return postmaster_pid(self.primary_dir) is not None

    @property
    def primary_dir(self) -> Path:
        return self.base_dir / "primary"

    def replica_dir(self, index: int = 0) -> Path:
        return self.base_dir / f"replica{index + 1}"

    def _log(self, data_dir: Path) -> Path:
        return data_dir.with_name(data_dir.name + ".log")

    def _port(self, replica: int | None) -> int:
        return self.primary_port if replica is None else self.replica_ports[replica]

    # --- SQL -------------------------------------------------------------------------------
    def connect(
        self, replica: int | None = None, dbname: str = "postgres", timeout: int = 5
    ) -> psycopg.Connection:
        """An autocommit connection to the primary, or to replica number `replica` (0-based)."""
        return psycopg.connect(
            host="127.0.0.1",
            port=self._port(replica),
            user="postgres",
            dbname=dbname,
            autocommit=True,
            connect_timeout=timeout,
        )

    def execute(
        self,
        query: str | sql.Composable,
        params: Any = None,
        *,
        replica: int | None = None,
        dbname: str = "postgres",
    ) -> list[tuple]:
        """Run one statement on its own connection; return its rows ([] if it returns none)."""
        with self.connect(replica, dbname) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description is not None else []

    psql = execute

    def create_database(self, name: str, timeout: float = 10.0) -> None:
        """Create a database on the primary and wait until every running standby has it."""
        self.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.wait_for_replay(timeout=timeout)

    # --- replication control ----------------------------------------------------------------
    def wait_for_replay(self, index: int | None = None, timeout: float = 10.0) -> None:
        """Block until the standby(s) replayed everything the primary has written so far."""
        (target,) = self.execute("SELECT pg_current_wal_lsn()::text")[0]
        indexes = range(len(self.replica_ports)) if index is None else [index]
        deadline = time.monotonic() + timeout
        for i in indexes:
            with self.connect(i) as conn:

                def caught_up(conn: psycopg.Connection = conn) -> bool:
                    row = conn.execute(
                        "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]
                    ).fetchone()
                    return bool(row and row[0])

                wait_until(
                    caught_up,
                    timeout=max(deadline - time.monotonic(), 0.0),
                    what=f"replica {i} to replay up to {target}",
                    interval=0.002,
                )

    def pause_replay(self, index: int = 0) -> None:
        """Stop applying WAL on a standby: it keeps receiving, but serves an older snapshot."""
        self.execute("SELECT pg_wal_replay_pause()", replica=index)

    def resume_replay(self, index: int = 0) -> None:
        self.execute("SELECT pg_wal_replay_resume()", replica=index)

    def replay_paused(self, index: int = 0) -> bool:
        (state,) = self.execute("SELECT pg_get_wal_replay_pause_state()", replica=index)[0]
        return state != "not paused"

    def stop_replica(self, index: int = 0) -> None:
        data_dir = self.replica_dir(index)
        run(_pg("pg_ctl", "-D", str(data_dir), "-m", "fast", "-w", "stop"), what="pg_ctl stop")

    def start_replica(self, index: int = 0) -> None:
        self._start_server(self.replica_dir(index))

    # --- lifecycle ---------------------------------------------------------------------------
    def _start_server(self, data_dir: Path) -> None:
        log = self._log(data_dir)
        run(
            _pg(
                "pg_ctl",
                "-D",
                str(data_dir),
                "-l",
                str(log),
                "-t",
                str(PG_CTL_TIMEOUT),
                "-w",
                "start",
            ),
            what=f"starting Postgres in {data_dir}",
            log=log,
        )

    def _data_dirs(self) -> list[Path]:
        """Standbys first, so that none of them is left retrying a primary that went away."""
        replicas = sorted(
            (p for p in self.base_dir.glob("replica*") if p.is_dir()),
            key=lambda p: int(p.name.removeprefix("replica") or 0),
        )
        return [*replicas, self.primary_dir]

    def stop(self) -> None:
        """Stop every server (fast, then immediate, then SIGKILL) and remove what start made."""
        errors = []
        for index in range(len(self.replica_ports)):
            # A paused standby is harmless to stop, but the pause must not outlive this object
            # if someone restarts the directory by hand.
            if postmaster_pid(self.replica_dir(index)) is not None:
                try:
                    with self.connect(index, timeout=2) as conn:
                        conn.execute("SELECT pg_wal_replay_resume()")
                except psycopg.Error:
                    pass
        for data_dir in self._data_dirs():
            try:
                _stop_server(data_dir)
            except ServiceError as exc:
                errors.append(str(exc))
        if errors:
            raise ServiceError("\n".join(errors))
        self.discard()

    close = stop

    def discard(self) -> None:
        if self.owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        elif self.base_dir.exists():
            # The caller's directory: keep the logs, drop the data so that it can start again.
            for data_dir in self._data_dirs():
                shutil.rmtree(data_dir, ignore_errors=True)
            self.state_path.unlink(missing_ok=True)


def postmaster_pid(data_dir: Path) -> int | None:
    """The postmaster's pid if it is still running."""
    try:
        first = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
    except (FileNotFoundError, PermissionError):
        return None
    pid = int(first) if first.strip().isdigit() else None
    return pid if pid is not None and pid_alive(pid) else None


def _stop_server(data_dir: Path) -> None:
    pid = postmaster_pid(data_dir)
    if pid is None:
        return
    for mode in ("fast", "immediate"):
        subprocess.run(
            _pg("pg_ctl", "-D", str(data_dir), "-m", mode, "-t", "15", "-w", "stop"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        if not pid_alive(pid):
            return
    if IS_ROOT or os.getuid() == data_dir.stat().st_uid:
        # Children notice the postmaster's death and exit on their own.
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), timeout=10, what=f"postmaster {pid} to die")
        return
    raise ServiceError(f"could not stop the Postgres server in {data_dir} (pid {pid})")


def _postgresql_conf(port: int, socket_dir: Path) -> str:
    sockets = str(socket_dir) if len(str(socket_dir)) <= MAX_SOCKET_DIR else ""
    return (
        "\n# Private local cluster (deploy.local.postgres)\n"
        "listen_addresses = '127.0.0.1'\n"
        f"port = {port}\n"
        f"unix_socket_directories = '{sockets}'\n"
        "wal_level = replica\n"
        "max_wal_senders = 10\n"
        "max_replication_slots = 10\n"
        "hot_standby = on\n"
        "wal_keep_size = '128MB'\n"
        # Throwaway data: durability across an OS crash buys nothing and costs every commit.
        "fsync = off\n"
        # Several gunicorn and Celery processes each keep persistent connections.
        "max_connections = 200\n"
    )


def start_cluster(base_dir: Path | None = None, replicas: int = 1) -> PostgresCluster:
    """initdb a primary, stream `replicas` hot standbys from it, and start them all.

    With no base_dir a temporary directory is made and removed by stop(). On any failure
    whatever was started is stopped before the exception propagates.
    """
    with service_dir(base_dir, "pgcluster-", USER) as (base_dir, created):
        if PostgresCluster.recorded_in(base_dir):
            raise ServiceError(f"{base_dir} already holds a cluster: stop it first")
        primary_port, *replica_ports = free_ports(1 + replicas)
        cluster = PostgresCluster(base_dir, primary_port, [], owns_dir=created)
        try:
            _init_cluster(cluster, replica_ports)
        except BaseException:
            # The original failure is the one worth raising.
            with contextlib.suppress(Exception):
                cluster.stop()
            raise
        return cluster


def _init_cluster(cluster: PostgresCluster, replica_ports: list[int]) -> None:
    primary = cluster.primary_dir
    run(
        _pg("initdb", "-D", str(primary), "-U", "postgres", "--auth=trust", "-N", "-k"),
        what="initdb",
    )
    _append(primary / "postgresql.conf", _postgresql_conf(cluster.primary_port, cluster.base_dir))
    _append(primary / "pg_hba.conf", "host replication all 127.0.0.1/32 trust\n")
    cluster._start_server(primary)
    for index, port in enumerate(replica_ports):
        slot = f"slot{index + 1}"
        cluster.execute("SELECT pg_create_physical_replication_slot(%s)", [slot])
        replica = cluster.replica_dir(index)
        run(
            _pg(
                "pg_basebackup",
                "-h",
                "127.0.0.1",
                "-p",
                str(cluster.primary_port),
                "-U",
                "postgres",
                "-D",
                str(replica),
                "-R",
                "-X",
                "stream",
                "-S",
                slot,
                "-c",
                "fast",
            ),
            what="pg_basebackup",
        )
        _append(replica / "postgresql.auto.conf", f"port = {port}\n")
        cluster.replica_ports.append(port)
        cluster._start_server(replica)
    cluster.save()


def _append(path: Path, text: str) -> None:
    # The file belongs to postgres; root appending keeps its owner, and so does postgres.
    with path.open("a") as fh:
        fh.write(text)


def start_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument(
        "--dbname",
        default="postgres",
        help="create this database (if not 'postgres') and use it in the URLs",
    )


def start(args: argparse.Namespace) -> dict[str, str]:
    cluster = start_cluster(args.dir, replicas=args.replicas)
    try:
        if args.dbname != "postgres":
            cluster.create_database(args.dbname)
    except BaseException:
        cluster.stop()
        raise
    return cluster.assignments(args.dbname)


def main(argv: list[str] | None = None) -> int:
    return service_cli(
        argv, service=PostgresCluster, doc=__doc__, start=start, start_options=start_options
    )


if __name__ == "__main__":
    sys.exit(main())

"""A private PgBouncer in transaction pooling mode on a free loopback port.

    python -m deploy.local.pgbouncer start --dir D --primary PORT/DBNAME [--standby PORT ...]
                                           [--pool-size N] [--statement-timeout MS] [--port P]
    python -m deploy.local.pgbouncer status --dir D
    python -m deploy.local.pgbouncer stop --dir D

`start` prints DATABASE_URL=... and DATABASE_REPLICA_URLS=... (comma-separated), the URLs of the
primary and of each standby through PgBouncer, as shell assignments.

In front of a private cluster (deploy/local/postgres.py, which trusts loopback connections):
PgBouncer trusts them too (`auth_type = trust`; the user must still be in its userlist), logs in
to Postgres as the client's user, and keeps at most `pool_size` server connections per database
entry. Each standby's entry sets the standby statement timeout on every server connection it
opens (`connect_query`): the startup option Django would send otherwise does not pass through
PgBouncer (config/transaction_pooling.py). The admin console is the `pgbouncer` database, for
the `postgres` user: `SHOW POOLS`, `SHOW STATS`, ...
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from deploy.local._proc import (
    ServiceError,
    as_user,
    chown_tree,
    log_tail,
    pid_alive,
    spawn,
    wait_until,
)
from deploy.local.ports import free_port
from deploy.local.service import ProcessService, service_cli, service_dir

# PgBouncer refuses to run as root; as root it runs as the cluster's user, like Postgres.
USER = "postgres"
CONFIG_FILE = "pgbouncer.ini"
USERLIST_FILE = "userlist.txt"
LOG_FILE = "pgbouncer.log"
START_TIMEOUT = 10.0
# Server connections per database entry (and user): a few, where the clients are many.
DEFAULT_POOL_SIZE = 10
# The standbys' statement timeout, as the settings' DATABASE_REPLICA_STATEMENT_TIMEOUT default.
DEFAULT_STATEMENT_TIMEOUT = 2000
# Far longer than any wait for a free server connection at this project's transaction lengths
# (milliseconds), far shorter than the 120 s default (render_config says why).
QUERY_WAIT_TIMEOUT = 5
ADMIN_DATABASE = "pgbouncer"


def binary() -> str:
    """The pgbouncer executable (Debian installs it in /usr/sbin, off a user's PATH)."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if found is None:
        raise ServiceError("pgbouncer is not installed (apt-get install pgbouncer)")
    return found


def database_entries(
    *, primary_port: int, dbname: str, standby_ports: list[int], statement_timeout: int
) -> list[dict]:
    """[databases] entries: `dbname` for the primary, `<dbname>_replica<N>` for each standby."""
    entries = [{"name": dbname, "port": primary_port, "dbname": dbname, "statement_timeout": None}]
    for number, port in enumerate(standby_ports, start=1):
        entries.append(
            {
                "name": f"{dbname}_replica{number}",
                "port": port,
                "dbname": dbname,
                "statement_timeout": statement_timeout,
            }
        )
    return entries


def render_config(
    *, port: int, base_dir: Path, databases: list[dict], pool_size: int, query_wait_timeout: int
) -> str:
    lines = ["; Rendered by deploy/local/pgbouncer.py.", "[databases]"]
    for entry in databases:
        line = f"{entry['name']} = host=127.0.0.1 port={entry['port']} dbname={entry['dbname']}"
        if entry["statement_timeout"] is not None:
            line += f" connect_query='SET statement_timeout = {int(entry['statement_timeout'])}'"
        lines.append(line)
    lines += [
        "",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        # TCP only: the cluster's clients all connect over loopback TCP.
        "unix_socket_dir =",
        "auth_type = trust",
        f"auth_file = {base_dir / USERLIST_FILE}",
        f"admin_users = {USER}",
        "pool_mode = transaction",
        f"default_pool_size = {pool_size}",
        "max_client_conn = 1000",
        # Seconds a statement may wait for a server connection. PgBouncer's 120 s would hold a
        # request that long, past gunicorn's 30 s timeout, whenever a standby goes away under
        # connected clients: the read must fail soon, so that the primary takes it over.
        f"query_wait_timeout = {query_wait_timeout}",
        # Stats in the log every minute would only bury its errors; SHOW STATS has them.
        "log_stats = 0",
        "",
    ]
    return "\n".join(lines)


@dataclass
class PgBouncer(ProcessService):
    """One pgbouncer process; stop()/start()/restart() keep the port, close() cleans up."""

    STATE_FILE = "pgbouncer.json"
    WHAT = "PgBouncer"
    PROGRAM = "pgbouncer"

    port: int
    base_dir: Path
    databases: list[dict]
    pool_size: int = DEFAULT_POOL_SIZE
    query_wait_timeout: int = QUERY_WAIT_TIMEOUT
    owns_dir: bool = field(default=False, repr=False)
    pid: int | None = None
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    # --- addresses -------------------------------------------------------------------------
    def url(self, name: str, user: str = USER) -> str:
        return f"postgres://{user}@127.0.0.1:{self.port}/{name}"

    @property
    def primary_url(self) -> str:
        return self.url(self.databases[0]["name"])

    @property
    def replica_urls(self) -> list[str]:
        return [self.url(entry["name"]) for entry in self.databases[1:]]

    def assignments(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.primary_url,
            "DATABASE_REPLICA_URLS": ",".join(self.replica_urls),
        }

    def state(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "databases": self.databases,
            "pool_size": self.pool_size,
            "query_wait_timeout": self.query_wait_timeout,
            "pid": self.pid,
        }

    @property
    def running(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    # --- the admin console -----------------------------------------------------------------
    def admin(self, timeout: float = 2) -> psycopg.Connection:
        """A connection to the admin console, which speaks the simple query protocol only:
        its cursors bind parameters client-side."""
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=USER,
            dbname=ADMIN_DATABASE,
            autocommit=True,
            connect_timeout=max(int(timeout), 1),
            cursor_factory=psycopg.ClientCursor,
        )

    def show(self, what: str) -> list[dict]:
        """`SHOW <what>` on the admin console (POOLS, STATS, CLIENTS, ...), as dicts."""
        with self.admin() as conn, conn.cursor() as cursor:
            cursor.execute(f"SHOW {what}")
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def ping(self) -> bool:
        try:
            with self.admin(timeout=1) as conn:
                conn.execute("SHOW VERSION")
        except psycopg.Error:
            return False
        return True

    # --- lifecycle ---------------------------------------------------------------------------
    def write_config(self) -> Path:
        config = self.base_dir / CONFIG_FILE
        config.write_text(
            render_config(
                port=self.port,
                base_dir=self.base_dir,
                databases=self.databases,
                pool_size=self.pool_size,
                query_wait_timeout=self.query_wait_timeout,
            )
        )
        userlist = self.base_dir / USERLIST_FILE
        # The cluster's only user, with no password: `trust` checks none.
        userlist.write_text(f'"{USER}" ""\n')
        userlist.chmod(0o600)
        chown_tree(self.base_dir, USER)
        return config

    def start(self) -> None:
        """Start pgbouncer and return once its admin console answers."""
        if self.running:
            return
        config = self.write_config()
        log = self.base_dir / LOG_FILE
        self._proc = spawn(as_user(USER, [binary(), str(config)]), env=None, log=log)
        self.pid = self._proc.pid

        def ready() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                code = self._proc.returncode
                raise ServiceError(f"pgbouncer exited with {code}\n{log_tail(log)}")
            return self.ping()

        try:
            wait_until(ready, timeout=START_TIMEOUT, what=f"pgbouncer on port {self.port}")
        except BaseException:
            self.stop()
            raise
        self.save()


def start_pgbouncer(
    base_dir: Path | None,
    databases: list[dict],
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    query_wait_timeout: int = QUERY_WAIT_TIMEOUT,
    port: int | None = None,
) -> PgBouncer:
    """Start pgbouncer in base_dir (a new temporary directory if None) on port (free if None),
    with `databases` as its [databases] entries (see `database_entries`)."""
    binary()  # fails early, naming the package, if it is missing
    with service_dir(base_dir, "pgbouncer-", USER) as (base_dir, created):
        PgBouncer.refuse_running(base_dir)
        attempts = 1 if port is not None else 3
        for attempt in range(attempts):
            bouncer = PgBouncer(
                port=port or free_port(),
                base_dir=base_dir,
                databases=databases,
                pool_size=pool_size,
                query_wait_timeout=query_wait_timeout,
                owns_dir=created,
            )
            try:
                bouncer.start()
                return bouncer
            except ServiceError:
                # A free port can be taken by someone else before pgbouncer binds it.
                if attempt == attempts - 1:
                    raise
    raise AssertionError("unreachable")


def _primary(value: str) -> tuple[int, str]:
    port, _, dbname = value.partition("/")
    if not port.isdigit() or not dbname:
        raise argparse.ArgumentTypeError(f"expected PORT/DBNAME, not {value!r}")
    return int(port), dbname


def start_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--primary", type=_primary, required=True, metavar="PORT/DBNAME")
    parser.add_argument("--standby", type=int, action="append", default=[], metavar="PORT")
    parser.add_argument("--pool-size", type=int, default=DEFAULT_POOL_SIZE)
    parser.add_argument("--statement-timeout", type=int, default=DEFAULT_STATEMENT_TIMEOUT)
    parser.add_argument("--port", type=int)


def start(args: argparse.Namespace) -> dict[str, str]:
    primary_port, dbname = args.primary
    databases = database_entries(
        primary_port=primary_port,
        dbname=dbname,
        standby_ports=args.standby,
        statement_timeout=args.statement_timeout,
    )
    bouncer = start_pgbouncer(args.dir, databases, pool_size=args.pool_size, port=args.port)
    return bouncer.assignments()


def main(argv: list[str] | None = None) -> int:
    return service_cli(
        argv, service=PgBouncer, doc=__doc__, start=start, start_options=start_options
    )


if __name__ == "__main__":
    sys.exit(main())

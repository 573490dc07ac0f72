"""The scaled stack on one box, from local binaries: `make stack` and its companions.

    python -m deploy.local.stack start   [--dir D] [--replicas N] [--port P]
    python -m deploy.local.stack status  [--dir D] [--json]
    python -m deploy.local.stack restart [--dir D]
    python -m deploy.local.stack down    [--dir D]

Postgres (a primary and one streaming standby), Redis and RabbitMQ come from the launchers next
to this module, the code the test suite starts its own services with. On top of them: N gunicorn
web replicas on free loopback ports, nginx (deploy/nginx/todo-scale.conf.template) balancing
over them on PORT, one Celery worker, exactly one beat, the outbox relay and Prometheus
(deploy/prometheus/prometheus.local.yml.template), all wired through the environment as a
production deployment is. Every process runs in the background in a session of its own, with its
output in D/logs/; D/stack.json records them for `status`, `restart` and `down`.

Defaults come from the environment: STACK_DIR (`.stack` in the project), REPLICAS (3) and PORT
(8000), so `make stack REPLICAS=5 PORT=9000` works as expected.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import string
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from deploy.local._proc import (
    IS_ROOT,
    ServiceError,
    as_user,
    cmdline,
    group_members,
    log_tail,
    pid_alive,
    read_state,
    run,
    wait_until,
    write_state,
)
from deploy.local.ports import free_ports, port_open
from deploy.local.postgres import PostgresCluster, _postmaster_pid, bindir, start_cluster
from deploy.local.rabbitmq import RabbitMQNode, start_rabbitmq
from deploy.local.redis import RedisServer, start_redis

ROOT = Path(__file__).resolve().parents[2]
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "todo-scale.conf.template"
PROMETHEUS_TEMPLATE = ROOT / "deploy" / "prometheus" / "prometheus.local.yml.template"

STATE_FILE = "stack.json"
SECRET_FILE = "secret_key"  # noqa: S105 (a file name, not a secret)
LOGS = "logs"
# Set in the environment of every process the stack starts (workers and forks inherit it), so
# `down` recognises them even when their command line does not name the stack directory.
MARK_ENV = "TODO_SCALE_STACK_DIR"

DATABASE_NAME = "todo_scale"
# The same demo account `make demo-user` creates.
DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"  # noqa: S105 (a published demo password on a loopback stack)
# The worker's node name; the broker is private to the stack, so it cannot clash.
WORKER_NAME = "worker1@todo-scale"

# N replicas on one box share its cores: gunicorn's default of 2 x cores + 1 workers each would
# start N times too many processes. WEB_CONCURRENCY still overrides it.
DEFAULT_WEB_CONCURRENCY = 2
# Two task processes run an export while another is queued, and leave the cores to the web tier.
WORKER_CONCURRENCY = 2

# Importing Django and opening the first connections takes about 2 s; a loaded CI box is
# several times slower, and a process that is not up in a minute is broken, not slow.
START_TIMEOUT = 60.0
# gunicorn gives in-flight requests graceful_timeout (30 s) after SIGTERM; a little more here.
WEB_STOP_TIMEOUT = 35.0
# A Celery worker's warm shutdown waits for the tasks it runs. On `down` the broker goes away
# with it, so an export still running after this is abandoned (acks_late would redeliver it).
WORKER_STOP_TIMEOUT = 30.0
# beat, the relay, nginx and Prometheus stop in well under a second.
OTHER_STOP_TIMEOUT = 10.0
# nginx workers retired by a reload finish their requests first; none runs longer than
# proxy_read_timeout (35 s) in the template.
NGINX_DRAIN_TIMEOUT = 40.0
# How long a single readiness probe may take; a local process answers in milliseconds.
PROBE_TIMEOUT = 2.0

# Variables that must not leak from the caller's environment into the stack's processes: a test
# run's settings module and private servers, another gunicorn's metrics directory or control
# socket. (What the stack sets itself is overwritten anyway.)
_NOT_INHERITED = ("TEST_", "PYTEST_")
_NOT_INHERITED_NAMES = {
    "DJANGO_SETTINGS_MODULE",
    "PROMETHEUS_MULTIPROC_DIR",
    "GUNICORN_OWNS_PROMETHEUS_MULTIPROC_DIR",
    "GUNICORN_CONTROL_SOCKET",
}


class StackError(ServiceError):
    """The stack could not be started, restarted or stopped as asked."""


def http_status(port: int, path: str, timeout: float = PROBE_TIMEOUT) -> int | None:
    """The status of GET http://127.0.0.1:port/path, or None if nothing answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


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
    """The stack in one directory: what `start` recorded there, and the commands acting on it."""

    def __init__(self, base_dir: Path) -> None:
        self.dir = Path(base_dir).absolute()
        self.state: dict = {}
        self._children: dict[int, subprocess.Popen] = {}
        self._mark = f"{MARK_ENV}={self.dir}".encode()
        self._mention = re.compile(re.escape(str(self.dir)) + r"(/|\s|$)")

    # --- paths and state ---------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.dir / STATE_FILE

    @property
    def logs(self) -> Path:
        return self.dir / LOGS

    def _service_dir(self, name: str) -> Path:
        return self.dir / name

    def save(self) -> None:
        write_state(self.state_path, self.state)

    def load(self) -> Stack:
        self.state = read_state(self.state_path)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.state['port']}"

    def _web(self) -> list[dict]:
        return [self.state["processes"][name] for name in self.state["web"]]

    def secret_key(self) -> str:
        """The stack's DJANGO_SECRET_KEY: made on first use, then read from its 0600 file."""
        path = self.dir / SECRET_FILE
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(50))
        return path.read_text().strip()

    def app_env(self) -> dict[str, str]:
        """The environment of every Django process: the caller's, plus the stack's wiring.

        Tuning variables the caller sets (WEB_CONCURRENCY, RATE_LIMIT_*, LOG_LEVEL, ...) pass
        through; everything that says where a service is comes from the stack.
        """
        state = self.state
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(_NOT_INHERITED) and name not in _NOT_INHERITED_NAMES
        }
        origins = f"http://127.0.0.1:{state['port']},http://localhost:{state['port']}"
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "DJANGO_SECRET_KEY": self.secret_key(),
                "DJANGO_DEBUG": "false",
                # nginx sets X-Forwarded-Host/-Proto, so `url`s name nginx's address.
                "DJANGO_TRUST_PROXY_HEADERS": "true",
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                # Admin forms posted through nginx come from these origins.
                "DJANGO_CSRF_TRUSTED_ORIGINS": origins,
                "DATABASE_URL": state["database_url"],
                "DATABASE_REPLICA_URLS": ",".join(state["replica_urls"]),
                # Cache in database 0, task failures in 1; rate limits keep their default, 2.
                "REDIS_URL": f"{state['redis_url']}/0",
                "CELERY_RESULT_BACKEND": f"{state['redis_url']}/1",
                "CELERY_BROKER_URL": state["broker_url"],
                MARK_ENV: str(self.dir),
            }
        )
        return env

    # --- our processes -----------------------------------------------------------------------
    def owns(self, pid: int) -> bool:
        """True if the process belongs to this stack: it names the directory or carries the mark."""
        return bool(self._mention.search(cmdline(pid))) or self._mark in _environ(pid)

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

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str], port: int | None = None
    ) -> dict:
        self.logs.mkdir(exist_ok=True)
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            # A session of its own: `down` signals the whole group, a Ctrl-C in the terminal
            # that ran `make stack` does not reach it, and make's output pipe closes at once.
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**env, MARK_ENV: str(self.dir)},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[proc.pid] = proc
        record = {"name": name, "pid": proc.pid, "port": port, "log": str(log)}
        self.state["processes"][name] = record
        self.save()
        return record

    def alive(self, record: dict) -> bool:
        child = self._children.get(record["pid"])
        if child is not None:
            return child.poll() is None
        return pid_alive(record["pid"]) and self.owns(record["pid"])

    def _wait_ready(self, record: dict, ready: Callable[[], bool], what: str) -> None:
        def check() -> bool:
            if not self.alive(record):
                log = log_tail(Path(record["log"]))
                raise StackError(f"{record['name']} exited during start-up\n{log}")
            return ready()

        try:
            wait_until(check, timeout=START_TIMEOUT, what=what, interval=0.05)
        except TimeoutError as exc:
            raise StackError(f"{exc}\n{log_tail(Path(record['log']))}") from None

    def _stop(self, record: dict, *, timeout: float) -> None:
        """SIGTERM the process the stack started, wait for its whole group, SIGKILL stragglers.

        Only the leader gets the SIGTERM: gunicorn's master and Celery's main process shut their
        children down gracefully themselves; signalled directly, a child would drop its request
        or task on the floor.
        """
        pgid = record["pid"]

        def ours() -> list[int]:
            child = self._children.get(pgid)
            if child is not None:
                child.poll()
            return [pid for pid in group_members(pgid) if self.owns(pid)]

        members = ours()
        if not members:
            return
        targets = [pgid] if pgid in members else members
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            wait_until(lambda: not ours(), timeout=timeout, what=f"{record['name']} to stop")
        except TimeoutError:
            print(f"  {record['name']} ignored SIGTERM for {timeout:g} s: killing it", flush=True)
            for pid in ours():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not ours(), timeout=10, what=f"{record['name']} to die")

    # --- the web replicas ----------------------------------------------------------------------
    def _spawn_web(self, name: str, port: int) -> dict:
        metrics = self.dir / "web" / name / "metrics"
        metrics.mkdir(parents=True, exist_ok=True)
        env = {
            **self.app_env(),
            "PORT": str(port),
            "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY") or str(DEFAULT_WEB_CONCURRENCY),
            # One directory per replica: /metrics sums this replica's workers and no other's.
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        }
        # The control socket stays off (the gunicorn config's default): nothing here uses it,
        # and one per replica would only be another file to clean up.
        argv = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"]
        argv += ["-b", f"127.0.0.1:{port}", "config.wsgi:application"]
        return self._spawn(name, argv, env, port)

    def _wait_web(self, record: dict) -> None:
        self._wait_ready(
            record,
            lambda: http_status(record["port"], "/readyz") == 200,
            f"{record['name']} on port {record['port']} to answer /readyz",
        )

    # --- nginx ---------------------------------------------------------------------------------
    @property
    def nginx_dir(self) -> Path:
        return self._service_dir("nginx")

    def _nginx(self, *args: str) -> list[str]:
        # Every path in the template is relative to the prefix, so nothing lands outside it.
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        return [nginx, "-p", f"{self.nginx_dir}/", "-c", "nginx.conf", "-e", "stderr", *args]

    def _render_nginx(self, *, down: frozenset[str] = frozenset()) -> None:
        """Write nginx.conf with every replica as an upstream, those in `down` marked down."""
        servers = "\n        ".join(
            f"server 127.0.0.1:{web['port']}{' down' if web['name'] in down else ''};"
            for web in self._web()
        )
        text = string.Template(NGINX_TEMPLATE.read_text()).safe_substitute(
            NGINX_PORT=str(self.state["port"]), UPSTREAM_SERVERS=servers
        )
        (self.nginx_dir / "nginx.conf").write_text(text)
        # A reload with a broken file is only logged and keeps the old configuration: test first.
        run(self._nginx("-t"), what="nginx -t", log=self.nginx_dir / "nginx-error.log")

    def _nginx_workers(self) -> set[int]:
        master = self.state["processes"]["nginx"]["pid"]
        return {pid for pid in group_members(master) if "worker process" in cmdline(pid)}

    def _reload_nginx(self, *, drain: bool) -> None:
        """Apply nginx.conf; with `drain`, return only once the workers of the old one are gone.

        A reload starts new workers and lets the old ones finish the requests they hold, still
        proxying them to the upstreams of the old configuration. Once none is left, no request
        can reach a replica the new configuration marks down.
        """
        old = self._nginx_workers()
        os.kill(self.state["processes"]["nginx"]["pid"], signal.SIGHUP)

        def applied() -> bool:
            workers = self._nginx_workers()
            return bool(workers - old) and (not drain or not workers & old)

        try:
            wait_until(applied, timeout=NGINX_DRAIN_TIMEOUT, what="nginx to apply its new config")
        except TimeoutError:
            if not self._nginx_workers() - old:
                raise StackError(
                    f"nginx did not reload\n{log_tail(self.nginx_dir / 'nginx-error.log')}"
                ) from None
            # A request older than proxy_read_timeout is stuck; gunicorn's graceful stop still
            # gives it its own 30 s.
            print("  nginx: old workers still busy; continuing", flush=True)

    def _start_nginx(self) -> dict:
        self.nginx_dir.mkdir(exist_ok=True)
        if IS_ROOT:
            # nginx started by root runs its workers as `nobody` (its compiled-in default), and
            # they write proxy temp files inside the prefix. We keep that default rather than
            # `user root;`: the workers parse every client's bytes and should hold no privilege.
            # So the prefix must be reachable by nobody; check now rather than fail on the first
            # large response.
            self.nginx_dir.chmod(0o755)
            probe = subprocess.run(as_user("nobody", ["test", "-x", str(self.nginx_dir)]))
            if probe.returncode != 0:
                raise StackError(f"nginx's workers (user nobody) cannot enter {self.nginx_dir}")
        self._render_nginx()
        argv = self._nginx("-g", "daemon off;")
        return self._spawn("nginx", argv, dict(os.environ), self.state["port"])

    # --- Prometheus ----------------------------------------------------------------------------
    def _start_prometheus(self, port: int) -> dict | None:
        binary = shutil.which("prometheus")
        if binary is None:
            return None
        base = self._service_dir("prometheus")
        (base / "data").mkdir(parents=True, exist_ok=True)
        targets = ", ".join(f'"127.0.0.1:{web["port"]}"' for web in self._web())
        processes = self.state["processes"]
        config = base / "prometheus.yml"
        config.write_text(
            string.Template(PROMETHEUS_TEMPLATE.read_text()).safe_substitute(
                TARGETS=targets,
                WORKER_TARGET=f'"127.0.0.1:{processes["worker"]["port"]}"',
                RELAY_TARGET=f'"127.0.0.1:{processes["relay"]["port"]}"',
            )
        )
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={base / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        return self._spawn("prometheus", argv, dict(os.environ), port)

    # --- Celery --------------------------------------------------------------------------------
    def worker_answers(self, timeout: float = 1.0) -> bool:
        """True if the worker answers a ping over the broker (so it consumes tasks)."""
        from celery import Celery

        app = Celery(set_as_current=False, broker=self.state["broker_url"])
        # A broker that is down must fail the probe now, not after Celery's 100 retries.
        app.conf.broker_connection_retry = False
        app.conf.broker_connection_max_retries = 0
        app.conf.broker_connection_timeout = timeout
        try:
            return bool(app.control.ping(destination=[WORKER_NAME], timeout=timeout))
        except Exception:  # any broker failure means: not answering
            return False
        finally:
            app.close()

    # --- commands ------------------------------------------------------------------------------
    def start(self, *, replicas: int, port: int) -> None:
        began = time.monotonic()
        if self.state_path.exists():
            raise StackError(f"{self.dir} already holds a stack: run `make stack-down` first")
        if replicas < 1:
            raise StackError("REPLICAS must be at least 1")
        if port_open(port):
            raise StackError(f"port {port} is in use: choose another with PORT=...")
        if shutil.which("nginx") is None:
            raise StackError("nginx is not installed (apt-get install nginx)")
        bindir()  # fails early, naming PG_BINDIR, if Postgres is missing
        self.dir.mkdir(parents=True, exist_ok=True)
        # The service users (postgres, rabbitmq, nginx's nobody) must enter the directory.
        self.dir.chmod(0o755)
        self.logs.mkdir(exist_ok=True)
        # The launchers keep their logs in a directory that exists before they start.
        for name in ("postgres", "redis", "rabbitmq"):
            self._service_dir(name).mkdir(exist_ok=True)
        self.state = {"dir": str(self.dir), "port": port, "processes": {}, "web": []}
        self.save()

        print(f"Starting the stack in {self.dir} ...", flush=True)
        # RabbitMQ takes ~4 s to accept logins; Postgres, migrations and the replicas proceed
        # meanwhile, since nothing before the worker needs the broker to be up.
        # All of the stack's own ports in one pick, so no two of them (or PORT) can coincide.
        ports = [p for p in free_ports(replicas + 5) if p != port][: replicas + 4]
        broker_port, prometheus_port, web_ports = ports[0], ports[1], ports[4:]
        worker_metrics_port, relay_metrics_port = ports[2], ports[3]
        self.state["broker_url"] = f"amqp://guest:guest@127.0.0.1:{broker_port}//"
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        broker = pool.submit(start_rabbitmq, self._service_dir("rabbitmq"), broker_port)
        try:
            cluster = start_cluster(self._service_dir("postgres"), replicas=1)
            cluster.create_database(DATABASE_NAME)
            self.state["database_url"] = cluster.url(dbname=DATABASE_NAME)
            self.state["replica_urls"] = [
                cluster.url(replica_port, DATABASE_NAME) for replica_port in cluster.replica_ports
            ]
            self.state["redis_url"] = start_redis(self._service_dir("redis")).url
            self.save()

            env = self.app_env()
            migrated = run(
                [sys.executable, "manage.py", "migrate", "--noinput"],
                what="manage.py migrate",
                cwd=ROOT,
                env=env,
            )
            (self.logs / "migrate.log").write_text(migrated)
            manage = [sys.executable, "manage.py"]
            token = run(
                [*manage, "create_api_user", DEMO_USER, "--superuser", "--password", DEMO_PASSWORD],
                what="manage.py create_api_user",
                cwd=ROOT,
                env=env,
            ).strip()
            self.state["token"] = token

            for number, web_port in enumerate(web_ports, start=1):
                self.state["web"].append(f"web{number}")
                self._spawn_web(f"web{number}", web_port)
            celery = [sys.executable, "-m", "celery", "-A", "config"]
            concurrency = str(WORKER_CONCURRENCY)
            worker_metrics = self.dir / "worker" / "metrics"
            worker_metrics.mkdir(parents=True, exist_ok=True)
            worker = self._spawn(
                "worker",
                [*celery, "worker", "-l", "INFO", "-n", WORKER_NAME, "-c", concurrency],
                {
                    **env,
                    "CELERY_METRICS_PORT": str(worker_metrics_port),
                    "PROMETHEUS_MULTIPROC_DIR": str(worker_metrics),
                },
                worker_metrics_port,
            )
            beat_dir = self.dir / "beat"
            beat_dir.mkdir(exist_ok=True)
            # Exactly one beat: its pidfile also refuses a second one started on this directory.
            schedule, pidfile = beat_dir / "celerybeat-schedule", beat_dir / "celerybeat.pid"
            self._spawn(
                "beat",
                [*celery, "beat", "-l", "INFO", "-s", str(schedule), "--pidfile", str(pidfile)],
                env,
            )
            self._spawn(
                "relay",
                [sys.executable, "manage.py", "outbox_relay"],
                {**env, "OUTBOX_METRICS_PORT": str(relay_metrics_port)},
                relay_metrics_port,
            )
            nginx_record = self._start_nginx()
            prometheus = self._start_prometheus(prometheus_port)

            for web in self._web():
                self._wait_web(web)
            self._wait_ready(
                nginx_record,
                lambda: http_status(port, "/readyz") == 200,
                f"nginx on port {port} to pass /readyz through to a replica",
            )
            broker.result()
            self._wait_ready(worker, self.worker_answers, "the Celery worker to answer a ping")
            if prometheus is not None:
                self._wait_ready(
                    prometheus,
                    lambda: http_status(prometheus["port"], "/-/ready") == 200,
                    "Prometheus to be ready",
                )
            for name in ("beat", "relay"):
                if not self.alive(self.state["processes"][name]):
                    log = Path(self.state["processes"][name]["log"])
                    raise StackError(f"{name} exited during start-up\n{log_tail(log)}")
        except BaseException:
            # Like a shell script's trap: whatever got started is stopped again.
            with contextlib.suppress(Exception):
                broker.result()
            pool.shutdown()
            try:
                self.down(quiet=True)
            except Exception as exc:  # the failure that stopped the start is the one to raise
                print(f"clean-up after the failed start: {exc}", file=sys.stderr)
            raise
        pool.shutdown()
        self.state["started_in"] = round(time.monotonic() - began, 1)
        self.save()
        self._print_summary()

    def _print_summary(self) -> None:
        state = self.state
        custom = "" if self.dir == (ROOT / ".stack") else f"STACK_DIR={self.dir} "
        replicas = ", ".join(f"{web['name']} :{web['port']}" for web in self._web())
        prometheus = state["processes"].get("prometheus")
        lines = [
            "",
            f"Todo Scale stack up in {state['started_in']} s  (state and logs in {self.dir})",
            f"  API          {self.url}/api/todos   (docs /api/docs, admin /admin)",
            f"  replicas     {replicas}  (nginx least_conn)",
            "  Prometheus   "
            + (
                f"http://127.0.0.1:{prometheus['port']}"
                if prometheus
                else "skipped: the prometheus binary is not installed (apt-get install prometheus)"
            ),
            f"  demo user    {DEMO_USER} / {DEMO_PASSWORD}; its API token:",
            f"  export TOKEN={state['token']}",
            f'  try          curl -s {self.url}/api/todos -H "Authorization: Token $TOKEN"',
            f"  commands     {custom}make stack-status | stack-restart | stack-down",
            "",
        ]
        print("\n".join(lines), flush=True)

    def status(self) -> list[dict]:
        """One row per process: name, pid, port, alive, ready."""
        rows = []
        pg_dir = self._service_dir("postgres")
        if (pg_dir / "postgres.json").exists():
            cluster = PostgresCluster.load(pg_dir)
            servers = [("postgres-primary", cluster.primary_dir, None, cluster.primary_port)]
            servers += [
                (f"postgres-replica{i + 1}", cluster.replica_dir(i), i, replica_port)
                for i, replica_port in enumerate(cluster.replica_ports)
            ]
            for name, data_dir, index, server_port in servers:
                pid = _postmaster_pid(data_dir)
                ready = False
                if pid is not None:
                    with contextlib.suppress(Exception), cluster.connect(index, timeout=1):
                        ready = True
                rows.append(_row(name, pid, server_port, pid is not None, ready))
        redis_dir = self._service_dir("redis")
        if (redis_dir / "redis.json").exists():
            server = RedisServer.load(redis_dir)
            rows.append(_row("redis", server.pid, server.port, server.running, server.ping()))
        rabbit_dir = self._service_dir("rabbitmq")
        broker_up = False
        if (rabbit_dir / "rabbitmq.json").exists():
            node = RabbitMQNode.load(rabbit_dir)
            broker_up = node.running and node.amqp_ok()
            rows.append(_row("rabbitmq", node.pgid, node.port, node.running, broker_up))
        probes: dict[str, Callable[[dict], bool]] = {
            "nginx": lambda r: http_status(self.state["port"], "/readyz") == 200,
            "prometheus": lambda r: http_status(r["port"], "/-/ready") == 200,
            "worker": lambda r: broker_up and self.worker_answers(),
            "relay": lambda r: http_status(r["port"], "/metrics") == 200,
        }
        for name, record in self.state["processes"].items():
            alive = self.alive(record)
            if name in self.state["web"]:
                ready = alive and http_status(record["port"], "/readyz") == 200
            else:
                # beat answers nothing: running is all it can show.
                ready = alive and probes.get(name, lambda r: True)(record)
            rows.append(_row(name, record["pid"], record["port"], alive, ready))
        return rows

    def replication_report(self) -> tuple[int, str]:
        proc = subprocess.run(
            [sys.executable, "manage.py", "replication_status"],
            cwd=ROOT,
            env=self.app_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.returncode, (proc.stdout + proc.stderr).strip()

    def restart(self) -> None:
        """Restart the web replicas one at a time, with no failed request.

        Each replica is marked `down` in nginx and nginx reloaded; once nginx's old workers have
        finished their requests nothing reaches it, so a SIGTERM (gunicorn's graceful stop)
        loses nothing. Then a new gunicorn starts on the same port, and the replica goes back
        into nginx once it answers /readyz. The others serve meanwhile.

        Why not gunicorn's HUP reload: it keeps the master, so the Python interpreter, gunicorn
        itself, its configuration file and its environment stay those of the first start, and
        workers that fail to boot leave the replica in nginx regardless. A new master behind a
        drained upstream replaces all of it, and is what a rolling update of pods does.
        """
        began = time.monotonic()
        webs = self._web()
        if len(webs) < 2:
            print(
                "Only one web replica: nothing serves while it restarts (expect 503s). "
                "Start the stack with REPLICAS=2 or more for a rolling restart.",
                flush=True,
            )
        for web in webs:
            step = time.monotonic()
            name, old_pid = web["name"], web["pid"]
            self._render_nginx(down=frozenset({name}))
            self._reload_nginx(drain=True)
            self._stop(web, timeout=WEB_STOP_TIMEOUT)
            new = self._spawn_web(name, web["port"])
            try:
                self._wait_web(new)
            except StackError:
                print(f"{name} did not come back; it stays out of nginx", flush=True)
                raise
            self._render_nginx()
            self._reload_nginx(drain=False)
            took = time.monotonic() - step
            print(f"  {name}: pid {old_pid} -> {new['pid']}, back in {took:.1f} s", flush=True)
        print(f"Rolling restart done in {time.monotonic() - began:.1f} s", flush=True)

    def down(self, *, quiet: bool = False) -> None:
        """Stop everything, check that nothing is left, and remove all but the logs."""
        # One write per line: the steps below report from several threads at once.
        say = (
            (lambda message: None) if quiet else (lambda message: sys.stdout.write(f"{message}\n"))
        )
        if self.state_path.exists() and not self.state:
            self.load()
        processes = self.state.get("processes", {})
        webs = self.state.get("web", [])
        timeouts = {**dict.fromkeys(webs, WEB_STOP_TIMEOUT), "worker": WORKER_STOP_TIMEOUT}
        services = {
            "rabbitmq": lambda path: RabbitMQNode.load(path).close(),
            "redis": lambda path: RedisServer.load(path).close(),
            "postgres": lambda path: PostgresCluster.load(path).stop(),
        }
        errors: list[str] = []

        def stop(name: str) -> None:
            say(f"  stopping {name}")
            try:
                if name in services:
                    services[name](self._service_dir(name))
                else:
                    self._stop(processes[name], timeout=timeouts.get(name, OTHER_STOP_TIMEOUT))
            except (ServiceError, TimeoutError) as exc:
                errors.append(f"{name}: {exc}")

        # The entrance first, so no request arrives while the rest goes away; the services the
        # others depend on last. Within a step everything stops at once: each waits only for
        # itself (a worker's warm shutdown alone takes seconds).
        steps = [
            ["nginx", "prometheus"],
            [*webs, "relay", "beat", "worker"],
            [name for name in services if (self._service_dir(name) / f"{name}.json").exists()],
        ]
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            for step in steps:
                names = [name for name in step if name in processes or name in services]
                list(pool.map(stop, names))
        stragglers = self.leftovers()
        if stragglers:
            say(f"  stopping leftover processes {stragglers}")
            for pid in stragglers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                wait_until(lambda: not self.leftovers(), timeout=10, what="leftovers to die")
        remaining = self.leftovers()
        if remaining:
            errors.append(f"still running: {[(pid, cmdline(pid)) for pid in remaining]}")
        if errors:
            raise StackError("\n".join(errors))
        self._remove_runtime_state()
        say(f"Stack stopped; nothing of it runs. Logs kept in {self.logs}")

    def _remove_runtime_state(self) -> None:
        """Delete data, sockets, pid and state files; keep every log."""
        if not self.dir.exists():
            return
        for path in self.dir.rglob("*"):
            if not path.is_dir() and not _is_log(path.relative_to(self.dir)):
                path.unlink(missing_ok=True)
        # Deepest first, so a directory is empty by the time it is looked at.
        for path in sorted((p for p in self.dir.rglob("*") if p.is_dir()), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir()
        self.state = {}


def _is_log(relative: Path) -> bool:
    """Logs are kept by `down`: ours in logs/, the services' as *.log or in a log/ directory."""
    return relative.suffix == ".log" or bool({LOGS, "log"} & set(relative.parts[:-1]))


def _row(name: str, pid: int | None, port: int | None, alive: bool, ready: bool) -> dict:
    return {"name": name, "pid": pid, "port": port, "alive": alive, "ready": ready}


def _print_status(stack: Stack, rows: list[dict]) -> int:
    print(f"Stack in {stack.dir}: {stack.url}")
    print(f"{'process':<18} {'pid':>8} {'port':>6}  state")
    for row in rows:
        state = "ready" if row["ready"] else ("alive, not ready" if row["alive"] else "DEAD")
        print(f"{row['name']:<18} {row['pid'] or '-':>8} {row['port'] or '-':>6}  {state}")
    if "prometheus" not in stack.state["processes"]:
        print(f"{'prometheus':<18} {'-':>8} {'-':>6}  skipped (not installed)")
    if "database_url" not in stack.state:
        # A start that died before Postgres was up: nothing to ask.
        return 1
    code, report = stack.replication_report()
    print("\nReplication (manage.py replication_status):")
    print(report)
    healthy = all(row["ready"] for row in rows) and code == 0
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("STACK_DIR") or ROOT / ".stack"),
        help="where the stack keeps its state and logs (STACK_DIR, default .stack)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start the whole stack in the background")
    start.add_argument("--replicas", type=int, default=int(os.environ.get("REPLICAS") or 3))
    start.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
    status = sub.add_parser("status", help="each process's pid, port and state; replication")
    status.add_argument("--json", action="store_true", help="print one JSON document")
    sub.add_parser("restart", help="rolling restart of the web replicas, no failed request")
    sub.add_parser("down", help="stop everything and remove all but the logs")
    args = parser.parse_args(argv)

    stack = Stack(args.dir)
    # A SIGTERM (a CI timeout, `kill`) during start must run the same clean-up as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        if args.command == "start":
            stack.start(replicas=args.replicas, port=args.port)
        elif args.command == "down":
            if not stack.state_path.exists() and not stack.leftovers():
                print(f"no stack in {stack.dir}: nothing to stop")
                # Whatever a failed start left behind (data directories) still goes.
                stack._remove_runtime_state()
                return 0
            stack.down()
        else:
            if not stack.state_path.exists():
                print(f"no stack in {stack.dir}: start one with `make stack`", file=sys.stderr)
                return 1
            stack.load()
            if args.command == "restart":
                stack.restart()
            elif args.json:
                document = {
                    "dir": str(stack.dir),
                    "url": stack.url,
                    "token": stack.state.get("token"),
                    "processes": stack.status(),
                }
                print(json.dumps(document, indent=2))
            else:
                return _print_status(stack, stack.status())
    except (ServiceError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

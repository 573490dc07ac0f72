"""`stack start`: every service and process of the stack, in order, ready before it returns.

Postgres (a primary and one streaming standby), Redis and RabbitMQ come from the service
launchers; on top of them N gunicorn replicas, nginx balancing over them, one Celery worker,
exactly one beat, the outbox relay and Prometheus. With `pgbouncer`, one PgBouncer in
transaction mode stands between every Django process and Postgres (deploy/local/pgbouncer.py).
A start that fails stops what it started.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import string
import sys
import tempfile
import time
from pathlib import Path

from deploy.local._proc import ROOT, log_tail, run
from deploy.local.celery_worker import beat_argv, relay_argv, worker_answers, worker_argv
from deploy.local.gunicorn import http_status
from deploy.local.pgbouncer import DEFAULT_STATEMENT_TIMEOUT, database_entries, start_pgbouncer
from deploy.local.ports import free_ports, port_open
from deploy.local.postgres import bindir, start_cluster
from deploy.local.rabbitmq import start_rabbitmq
from deploy.local.redis import start_redis
from deploy.local.stack.environment import (
    DATA_DIR_PREFIX,
    DATABASE_NAME,
    DEMO_PASSWORD,
    DEMO_USER,
    WORKER_CONCURRENCY,
    WORKER_NAME,
)
from deploy.local.stack.processes import Stack, StackError
from deploy.local.stack.teardown import down

PROMETHEUS_TEMPLATE = ROOT / "deploy" / "prometheus" / "prometheus.local.yml.template"
PROMETHEUS_RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


def start(stack: Stack, *, replicas: int, port: int, pgbouncer: bool = False) -> None:
    began = time.monotonic()
    if stack.state_path.exists():
        raise StackError(f"{stack.dir} already holds a stack: run `make stack-down` first")
    if replicas < 1:
        raise StackError("REPLICAS must be at least 1")
    if port_open(port):
        raise StackError(f"port {port} is in use: choose another with PORT=...")
    if shutil.which("nginx") is None:
        raise StackError("nginx is not installed (apt-get install nginx)")
    bindir()  # fails early, naming PG_BINDIR, if Postgres is missing
    stack.dir.mkdir(parents=True, exist_ok=True)
    stack.logs.mkdir(exist_ok=True)
    data_dir = make_data_dir()
    stack.state = {
        "dir": str(stack.dir),
        "data_dir": str(data_dir),
        "port": port,
        "processes": {},
        "web": [],
        "pgbouncer": pgbouncer,
    }
    # Recorded before anything starts, so that `down` finds and removes it whatever happens.
    stack.save()
    # The launchers keep their logs in a directory that exists before they start.
    for name in ("postgres", "redis", "rabbitmq", *(["pgbouncer"] if pgbouncer else [])):
        stack.service_dir(name).mkdir(exist_ok=True)

    print(f"Starting the stack in {stack.dir} ...", flush=True)
    # RabbitMQ takes ~4 s to accept logins; Postgres, migrations and the replicas proceed
    # meanwhile, since nothing before the worker needs the broker to be up.
    # All of the stack's own ports in one pick, so no two of them (or PORT) can coincide.
    ports = [p for p in free_ports(replicas + 5) if p != port][: replicas + 4]
    broker_port, prometheus_port, web_ports = ports[0], ports[1], ports[4:]
    worker_metrics_port, relay_metrics_port = ports[2], ports[3]
    stack.state["broker_url"] = f"amqp://guest:guest@127.0.0.1:{broker_port}//"
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    broker = pool.submit(start_rabbitmq, stack.service_dir("rabbitmq"), broker_port)
    try:
        _start_stores(stack)
        _start_processes(stack, web_ports, worker_metrics_port, relay_metrics_port)
        nginx_record = stack.start_nginx()
        prometheus = _start_prometheus(stack, prometheus_port)

        for web in stack.web():
            stack.wait_web(web)
        stack.wait_ready(
            nginx_record,
            lambda: http_status(port, "/readyz") == 200,
            f"nginx on port {port} to pass /readyz through to a replica",
        )
        broker.result()
        stack.wait_ready(
            stack.state["processes"]["worker"],
            lambda: worker_answers(stack.state["broker_url"], WORKER_NAME),
            "the Celery worker to answer a ping",
        )
        if prometheus is not None:
            stack.wait_ready(
                prometheus,
                lambda: http_status(prometheus["port"], "/-/ready") == 200,
                "Prometheus to be ready",
            )
        for name in ("beat", "relay"):
            if not stack.alive(stack.state["processes"][name]):
                log = Path(stack.state["processes"][name]["log"])
                raise StackError(f"{name} exited during start-up\n{log_tail(log)}")
    except BaseException:
        # Like a shell script's trap: whatever got started is stopped again.
        with contextlib.suppress(Exception):
            broker.result()
        pool.shutdown()
        try:
            down(stack, quiet=True)
        except Exception as exc:  # the failure that stopped the start is the one to raise
            print(f"clean-up after the failed start: {exc}", file=sys.stderr)
        raise
    pool.shutdown()
    stack.state["started_in"] = round(time.monotonic() - began, 1)
    stack.save()
    _print_summary(stack)


def make_data_dir() -> Path:
    """A fresh directory for the services' data under the system's temporary directory (TMPDIR,
    else /tmp), which every user can enter, wherever the project itself is."""
    data_dir = Path(tempfile.mkdtemp(prefix=DATA_DIR_PREFIX))
    # mkdtemp makes it 0700 and ours; the service users must enter it to reach the directory
    # each launcher gives them (postgres' own is 0700 inside).
    data_dir.chmod(0o755)
    return data_dir


def _start_stores(stack: Stack) -> None:
    """Postgres with its database migrated and the demo user, and Redis."""
    cluster = start_cluster(stack.service_dir("postgres"), replicas=1)
    cluster.create_database(DATABASE_NAME)
    stack.state["database_url"] = cluster.url(dbname=DATABASE_NAME)
    stack.state["replica_urls"] = [
        cluster.url(replica_port, DATABASE_NAME) for replica_port in cluster.replica_ports
    ]
    if stack.state.get("pgbouncer"):
        # Every Django process (migrate included) goes through it: one entry for the primary,
        # one per standby, which sets the standbys' statement timeout (config/settings.py).
        timeout = os.environ.get("DATABASE_REPLICA_STATEMENT_TIMEOUT") or DEFAULT_STATEMENT_TIMEOUT
        entries = database_entries(
            primary_port=cluster.primary_port,
            dbname=DATABASE_NAME,
            standby_ports=cluster.replica_ports,
            statement_timeout=int(timeout),
        )
        bouncer = start_pgbouncer(stack.service_dir("pgbouncer"), entries)
        stack.state["database_url"] = bouncer.primary_url
        stack.state["replica_urls"] = bouncer.replica_urls
    stack.state["redis_url"] = start_redis(stack.service_dir("redis")).url
    stack.save()

    env = stack.app_env()
    migrated = run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        what="manage.py migrate",
        cwd=ROOT,
        env=env,
    )
    (stack.logs / "migrate.log").write_text(migrated)
    manage = [sys.executable, "manage.py"]
    token = run(
        [*manage, "create_api_user", DEMO_USER, "--superuser", "--password", DEMO_PASSWORD],
        what="manage.py create_api_user",
        cwd=ROOT,
        env=env,
    ).strip()
    stack.state["token"] = token


def _start_processes(
    stack: Stack, web_ports: list[int], worker_metrics_port: int, relay_metrics_port: int
) -> None:
    """The web replicas, the worker, beat and the relay, without waiting for any of them."""
    for number, web_port in enumerate(web_ports, start=1):
        stack.state["web"].append(f"web{number}")
        stack.spawn_web(f"web{number}", web_port)
    spawn_worker(stack, worker_metrics_port)
    spawn_beat(stack)
    spawn_relay(stack, relay_metrics_port)


def spawn_worker(stack: Stack, metrics_port: int) -> dict:
    """The Celery worker, its metrics on `metrics_port` (also how `revive` starts it again)."""
    worker_metrics = stack.dir / "worker" / "metrics"
    worker_metrics.mkdir(parents=True, exist_ok=True)
    return stack.spawn(
        "worker",
        worker_argv(hostname=WORKER_NAME, concurrency=WORKER_CONCURRENCY),
        {
            **stack.app_env(),
            "CELERY_METRICS_PORT": str(metrics_port),
            "PROMETHEUS_MULTIPROC_DIR": str(worker_metrics),
        },
        metrics_port,
    )


def spawn_beat(stack: Stack) -> dict:
    beat_dir = stack.dir / "beat"
    beat_dir.mkdir(exist_ok=True)
    # Exactly one beat: its pidfile also refuses a second one started on this directory.
    return stack.spawn(
        "beat",
        beat_argv(schedule=beat_dir / "celerybeat-schedule", pidfile=beat_dir / "celerybeat.pid"),
        stack.app_env(),
    )


def spawn_relay(stack: Stack, metrics_port: int) -> dict:
    return stack.spawn(
        "relay",
        relay_argv(),
        {**stack.app_env(), "OUTBOX_METRICS_PORT": str(metrics_port)},
        metrics_port,
    )


def _start_prometheus(stack: Stack, port: int) -> dict | None:
    binary = shutil.which("prometheus")
    if binary is None:
        return None
    base = stack.service_dir("prometheus")
    (base / "data").mkdir(parents=True, exist_ok=True)
    targets = ", ".join(f'"127.0.0.1:{web["port"]}"' for web in stack.web())
    processes = stack.state["processes"]
    config = base / "prometheus.yml"
    config.write_text(
        string.Template(PROMETHEUS_TEMPLATE.read_text()).safe_substitute(
            TARGETS=targets,
            WORKER_TARGET=f'"127.0.0.1:{processes["worker"]["port"]}"',
            RELAY_TARGET=f'"127.0.0.1:{processes["relay"]["port"]}"',
            RULES=str(PROMETHEUS_RULES),
        )
    )
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={base / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return stack.spawn("prometheus", argv, dict(os.environ), port)


def _print_summary(stack: Stack) -> None:
    state = stack.state
    custom = "" if stack.dir == (ROOT / ".stack") else f"STACK_DIR={stack.dir} "
    replicas = ", ".join(f"{web['name']} :{web['port']}" for web in stack.web())
    prometheus = state["processes"].get("prometheus")
    bouncer = stack.pgbouncer()
    lines = [
        "",
        f"Todo Scale stack up in {state['started_in']} s  (state and logs in {stack.dir})",
        f"  data         {stack.data_dir}  (the services' data; removed by stack-down)",
        f"  API          {stack.url}/api/todos   (docs /api/docs, admin /admin)",
        f"  replicas     {replicas}  (nginx least_conn)",
        *(
            [
                f"  PgBouncer    127.0.0.1:{bouncer.port}  (transaction pooling, at most "
                f"{bouncer.pool_size} Postgres connections per database; the Django processes' "
                "DATABASE_URLs)",
                f"               psql -h 127.0.0.1 -p {bouncer.port} -U postgres pgbouncer "
                "-c 'SHOW POOLS'",
            ]
            if bouncer
            else []
        ),
        "  Prometheus   "
        + (
            f"http://127.0.0.1:{prometheus['port']}  (targets /targets, alerts /alerts)"
            if prometheus
            else "skipped: the prometheus binary is not installed (apt-get install prometheus)"
        ),
        f"  demo user    {DEMO_USER} / {DEMO_PASSWORD}; its API token:",
        f"  export TOKEN={state['token']}",
        f'  try          curl -s {stack.url}/api/todos -H "Authorization: Token $TOKEN"',
        f"  commands     {custom}make stack-status | stack-restart | stack-down",
        "",
    ]
    print("\n".join(lines), flush=True)

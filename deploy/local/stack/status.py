"""`stack status`: each process's pid, port and readiness, Prometheus' scrape targets, PgBouncer's
pools when the stack runs one, and the replication report."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable

import psycopg

from deploy.local._proc import ROOT
from deploy.local.celery_worker import worker_answers
from deploy.local.gunicorn import http_status
from deploy.local.postgres import PostgresCluster, postmaster_pid
from deploy.local.rabbitmq import RabbitMQNode
from deploy.local.redis import RedisServer
from deploy.local.stack.environment import WORKER_NAME
from deploy.local.stack.processes import Stack


def _row(name: str, pid: int | None, port: int | None, alive: bool, ready: bool) -> dict:
    return {"name": name, "pid": pid, "port": port, "alive": alive, "ready": ready}


def _service_rows(stack: Stack) -> tuple[list[dict], bool]:
    """Rows for Postgres, Redis and RabbitMQ; and whether the broker accepts logins."""
    rows = []
    pg_dir = stack.service_dir("postgres")
    if PostgresCluster.recorded_in(pg_dir):
        cluster = PostgresCluster.load(pg_dir)
        servers = [("postgres-primary", cluster.primary_dir, None, cluster.primary_port)]
        servers += [
            (f"postgres-replica{i + 1}", cluster.replica_dir(i), i, replica_port)
            for i, replica_port in enumerate(cluster.replica_ports)
        ]
        for name, data_dir, index, server_port in servers:
            pid = postmaster_pid(data_dir)
            ready = False
            if pid is not None:
                with contextlib.suppress(Exception), cluster.connect(index, timeout=1):
                    ready = True
            rows.append(_row(name, pid, server_port, pid is not None, ready))
    redis_dir = stack.service_dir("redis")
    if RedisServer.recorded_in(redis_dir):
        server = RedisServer.load(redis_dir)
        rows.append(_row("redis", server.pid, server.port, server.running, server.ping()))
    bouncer = stack.pgbouncer()
    if bouncer is not None:
        rows.append(_row("pgbouncer", bouncer.pid, bouncer.port, bouncer.running, bouncer.ping()))
    rabbit_dir = stack.service_dir("rabbitmq")
    broker_up = False
    if RabbitMQNode.recorded_in(rabbit_dir):
        node = RabbitMQNode.load(rabbit_dir)
        broker_up = node.running and node.amqp_ok()
        rows.append(_row("rabbitmq", node.pgid, node.port, node.running, broker_up))
    return rows, broker_up


def status(stack: Stack) -> list[dict]:
    """One row per process: name, pid, port, alive, ready."""
    rows, broker_up = _service_rows(stack)
    probes: dict[str, Callable[[dict], bool]] = {
        "nginx": lambda r: http_status(stack.state["port"], "/readyz") == 200,
        "prometheus": lambda r: http_status(r["port"], "/-/ready") == 200,
        "worker": lambda r: broker_up and worker_answers(stack.state["broker_url"], WORKER_NAME),
        "relay": lambda r: http_status(r["port"], "/metrics") == 200,
    }
    for name, record in stack.state["processes"].items():
        alive = stack.alive(record)
        if name in stack.state["web"]:
            ready = alive and http_status(record["port"], "/readyz") == 200
        else:
            # beat answers nothing: running is all it can show.
            ready = alive and probes.get(name, lambda r: True)(record)
        rows.append(_row(name, record["pid"], record["port"], alive, ready))
    return rows


def down_summary(rows: list[dict]) -> str:
    """One line naming the processes that are dead, and those alive but not ready."""
    dead = [row["name"] for row in rows if not row["alive"]]
    unready = [row["name"] for row in rows if row["alive"] and not row["ready"]]
    if not dead and not unready:
        return "All processes up."
    parts = []
    if dead:
        # Nothing restarts them on its own (no supervisor on one box).
        parts.append(f"DOWN: {', '.join(dead)} (`make stack-revive` starts them again)")
    if unready:
        parts.append(f"not ready: {', '.join(unready)}")
    return "; ".join(parts)


def scrape_targets(stack: Stack) -> list[dict] | None:
    """Prometheus' view of each target it scrapes (`/api/v1/targets`): job, address, health
    (`up`, `down`, or `unknown` before the first scrape) and the last error; None without a
    Prometheus that answers."""
    record = stack.state["processes"].get("prometheus")
    if record is None:
        return None
    url = f"http://127.0.0.1:{record['port']}/api/v1/targets?state=active"
    try:
        # 2 s: Prometheus answers from memory in milliseconds; more means it is stuck.
        with urllib.request.urlopen(url, timeout=2) as response:
            document = json.load(response)
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return [
        {
            "job": target["labels"].get("job", ""),
            "instance": target["labels"].get("instance", ""),
            "health": target["health"],
            "last_error": target.get("lastError", ""),
        }
        for target in document["data"]["activeTargets"]
    ]


def _print_targets(targets: list[dict] | None, prometheus_running: bool) -> bool:
    """Print the scrape targets; False when one of them is down."""
    if not prometheus_running:
        return True
    print("\nPrometheus scrape targets (/api/v1/targets):")
    if targets is None:
        print("  Prometheus did not answer")
        return False
    for target in sorted(targets, key=lambda t: (t["job"], t["instance"])):
        error = f"  {target['last_error']}" if target["last_error"] else ""
        print(f"  {target['job']:<14} {target['instance']:<22} {target['health']}{error}")
    # `unknown` is a target not scraped yet (the first 15 s after a start), not a failure.
    return all(target["health"] != "down" for target in targets)


def pgbouncer_pools(stack: Stack) -> list[dict] | None:
    """PgBouncer's `SHOW POOLS` for the stack's databases (clients and server connections per
    database); None without a PgBouncer that answers."""
    bouncer = stack.pgbouncer()
    if bouncer is None or not bouncer.running:
        return None
    try:
        rows = bouncer.show("POOLS")
    except psycopg.Error:
        return None
    servers = ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
    return [
        {
            "database": row["database"],
            "clients": row["cl_active"] + row["cl_waiting"],
            "waiting": row["cl_waiting"],
            "servers": sum(row[state] for state in servers),
            "pool_mode": row["pool_mode"],
        }
        for row in rows
        if row["database"] != "pgbouncer"
    ]


def _print_pools(pools: list[dict] | None) -> bool:
    """Print PgBouncer's pools; False when it did not answer."""
    print("\nPgBouncer pools (SHOW POOLS on its console):")
    if pools is None:
        print("  PgBouncer did not answer")
        return False
    print(f"  {'database':<24} {'clients':>7} {'waiting':>7} {'servers':>7}  mode")
    for pool in pools:
        print(
            f"  {pool['database']:<24} {pool['clients']:>7} {pool['waiting']:>7} "
            f"{pool['servers']:>7}  {pool['pool_mode']}"
        )
    return True


def replication_report(stack: Stack) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "manage.py", "replication_status"],
        cwd=ROOT,
        env=stack.app_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def print_status(stack: Stack, rows: list[dict]) -> int:
    print(f"Stack in {stack.dir}: {stack.url}")
    print(f"Services' data in {stack.data_dir or stack.dir}")
    print(f"{'process':<18} {'pid':>8} {'port':>6}  state")
    for row in rows:
        state = "ready" if row["ready"] else ("alive, not ready" if row["alive"] else "DEAD")
        print(f"{row['name']:<18} {row['pid'] or '-':>8} {row['port'] or '-':>6}  {state}")
    if "prometheus" not in stack.state["processes"]:
        print(f"{'prometheus':<18} {'-':>8} {'-':>6}  skipped (not installed)")
    print(down_summary(rows))
    targets_up = _print_targets(scrape_targets(stack), "prometheus" in stack.state["processes"])
    pools_up = stack.pgbouncer() is None or _print_pools(pgbouncer_pools(stack))
    if "database_url" not in stack.state:
        # A start that died before Postgres was up: nothing to ask.
        return 1
    code, report = replication_report(stack)
    print("\nReplication (manage.py replication_status):")
    print(report)
    healthy = all(row["ready"] for row in rows) and targets_up and pools_up and code == 0
    return 0 if healthy else 1

"""Benchmark: web worker memory over 100,000 requests, as shipped.

`make bench-memory` (or `.venv/bin/python -m bench.memory`). One gunicorn replica as shipped
(deploy/gunicorn.conf.py, rate limits off) on a private Postgres primary + streaming standby and
a private Redis serves the mixed scenario of bench/performance.py (each connection one client:
80 % list reads, hits and the gateway's own misses after a write, and 20 % PATCHes through
Django, with read-your-writes checks), so every code path a request takes runs many times.

The workers' resident memory (VmRSS, summed over the replica's workers) is read after a warm-up
of `WARM_REQUESTS` (every path has run, every pool and cache has filled) and then after each
further block of requests until `REQUESTS` have been served. The target: growth from the first
reading to the last within 10 %. Results: bench/results/memory.md and .json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench import scenarios
from bench.load import Load, process_tree, wrk
from bench.processes import RESULTS, manage, project_env, seed_users
from deploy.local.gunicorn import start_gunicorn
from deploy.local.postgres import start_cluster
from deploy.local.redis import start_redis

REQUESTS = 100_000
WARM_REQUESTS = 10_000
# Requests between two readings: wrk runs until at least this many are done.
BLOCK = 20_000
CONNECTIONS = 16
GROWTH_LIMIT = 0.10


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def workers_rss_mib(master: int) -> float:
    """The workers' resident memory in MiB (the master, which serves nothing, left out)."""
    return sum(rss_kib(pid) for pid in process_tree(master) if pid != master) / 1024


def serve(load: Load, requests: int) -> dict:
    """Run the load until at least `requests` are done: wrk in 5 s rounds."""
    done = {"requests": 0, "errors": 0, "stale_reads": 0, "checked_reads": 0}
    while done["requests"] < requests:
        result = wrk(load, 5, CONNECTIONS)
        done["requests"] += result["requests"]
        done["errors"] += result["non_2xx"] + result["socket_errors"]
        done["stale_reads"] += result.get("stale_reads", 0)
        done["checked_reads"] += result.get("checked_reads", 0)
    return done


def run(total: int) -> dict:
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-memory-")))
        cluster = start_cluster(replicas=1)
        stack.callback(cluster.stop)
        redis_server = start_redis()
        stack.callback(redis_server.close)
        cluster.create_database("bench")
        env = project_env(
            DATABASE_URL=cluster.url(dbname="bench"),
            DATABASE_REPLICA_URLS=cluster.url(cluster.replica_ports[0], "bench"),
            REDIS_URL=f"{redis_server.url}/0",
            RATE_LIMIT_USER="off",
            RATE_LIMIT_IP="off",
        )
        manage(env, "migrate", "--noinput")
        users = seed_users(env, {f"mixed-{i:02}": 100 for i in range(CONNECTIONS)})
        cluster.wait_for_replay()
        server = stack.enter_context(
            start_gunicorn(env=env, log=work / "gunicorn.log", ready_path="/healthz")
        )
        clients = [
            scenarios.Client(token, f"/api/todos/{first}") for token, first in users.values()
        ]
        load = Load(
            f"{server.url}/api/todos",
            script=scenarios.mixed(clients, "/api/todos"),
            threads=CONNECTIONS,
        )
        warm = serve(load, WARM_REQUESTS)
        readings = [{"requests": 0, "rss_mib": round(workers_rss_mib(server.pid), 1)}]
        served = {"requests": 0, "errors": warm["errors"], "stale_reads": 0, "checked_reads": 0}
        started = time.monotonic()
        while served["requests"] < total:
            block = serve(load, min(BLOCK, total - served["requests"]))
            for key in served:
                served[key] += block[key]
            readings.append(
                {"requests": served["requests"], "rss_mib": round(workers_rss_mib(server.pid), 1)}
            )
            print(f"{served['requests']} requests: {readings[-1]['rss_mib']} MiB", file=sys.stderr)
        elapsed = time.monotonic() - started
    first, last = readings[0]["rss_mib"], readings[-1]["rss_mib"]
    return {
        "readings": readings,
        "growth": round((last - first) / first, 4),
        "seconds": round(elapsed, 1),
        **served,
    }


def markdown(result: dict) -> str:
    growth = result["growth"]
    met = "met" if growth <= GROWTH_LIMIT else "**NOT MET**"
    lines = [
        "# Todo Scale web worker memory over 100,000 requests",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores. One gunicorn replica as "
        "shipped (its workers' VmRSS summed), the mixed scenario (80 % list reads, 20 % PATCHes, "
        f"{CONNECTIONS} clients), after a warm-up of {WARM_REQUESTS:,} requests.",
        "",
        "| requests after the warm-up | workers' RSS (MiB) |",
        "| ---: | ---: |",
        *(f"| {r['requests']:,} | {r['rss_mib']} |" for r in result["readings"]),
        "",
        f"Growth: {growth:.1%} (target <= {GROWTH_LIMIT:.0%}: {met}). "
        f"{result['requests']:,} requests in {result['seconds']} s, {result['errors']} errors, "
        f"{result['stale_reads']} stale reads of {result['checked_reads']} reads after a write.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=REQUESTS)
    args = parser.parse_args(argv)
    result = run(args.requests)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "memory.md").write_text(markdown(result))
    print(markdown(result))
    return 0 if result["errors"] == 0 and result["stale_reads"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

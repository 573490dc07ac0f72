"""Benchmark: the cached list (gateway hit) against the uncached list, on one box, in one run.

Starts a private Postgres and Redis (deploy/local), migrates, seeds one user with 100 todos,
then serves `GET /api/todos` (100 todos) from gunicorn three ways and loads each with wrk:
- hit: the gateway answers from Redis (one round trip, no Django);
- miss: the response cache is off, so every request renders from Postgres through DRF;
- ceiling: nginx serving the same bytes from a file (what the machine can do at best).
Reports requests/s and the server's CPU per request (user+system time of the gunicorn processes
divided by requests served), which is steadier than throughput on a shared machine. Results go to
bench/results/cache.md. Run with `make bench-all` or `.venv/bin/python -m bench.cache_hit`.
"""

import argparse
import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

from bench.load import cpu_seconds, process_tree
from bench.processes import RESULTS, manage, project_env, seed_user, static_nginx
from deploy.local.gunicorn import Gunicorn, start_gunicorn
from deploy.local.nginx import binary as nginx_binary
from deploy.local.ports import free_port
from deploy.local.postgres import start_cluster
from deploy.local.redis import start_redis


def wrk(url: str, token: str | None, seconds: int, connections: int) -> dict:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if token:
        command[1:1] = ["-H", f"Authorization: Token {token}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": requests,
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
        "p50": re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1),
        "p99": re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1),
    }


def serve(env: dict, port: int, workers: int) -> Gunicorn:
    """gunicorn on `port`, once it answers /healthz."""
    # No worker recycling here: a recycled worker takes its CPU time with it.
    return start_gunicorn(
        env=env,
        port=port,
        workers=workers,
        extra_args=["--max-requests", "0"],
        ready_path="/healthz",
    )


def measure(name, url, token, pids_of, seconds, connections) -> dict:
    wrk(url, token, 2, connections)  # warm: connections, caches, the first fill
    before = cpu_seconds(pids_of())
    result = wrk(url, token, seconds, connections)
    result["cpu_ms_per_request"] = (cpu_seconds(pids_of()) - before) * 1000 / result["requests"]
    result["name"] = name
    return result


def nginx_ceiling(body: bytes, seconds: int, connections: int) -> dict | None:
    if not Path(nginx_binary()).exists():
        return None
    with static_nginx(body) as (url, process):
        return measure(
            "nginx static file (ceiling)",
            url,
            None,
            lambda: process_tree(process.pid),
            seconds,
            connections,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()

    cluster = start_cluster(replicas=0)
    redis_server = start_redis()
    try:
        cluster.create_database("bench")
        # The benchmark measures serving, not throttling.
        base = project_env(
            DATABASE_URL=cluster.url(dbname="bench"), RATE_LIMIT_USER="off", RATE_LIMIT_IP="off"
        )
        manage(base, "migrate", "--noinput")
        token = seed_user(base, "bench", 100)
        results = []
        for name, extra in (
            ("gateway hit (Redis, no Django)", {"REDIS_URL": f"{redis_server.url}/0"}),
            ("miss path (DRF + Postgres, cache off)", {"TODO_RESPONSE_CACHE": "false"}),
        ):
            port = free_port()
            with serve({**base, **extra}, port, args.workers) as process:
                url = f"http://127.0.0.1:{port}/api/todos"
                results.append(
                    measure(
                        name,
                        url,
                        token,
                        lambda process=process: process_tree(process.pid),
                        args.seconds,
                        args.connections,
                    )
                )
                body = urllib.request.urlopen(
                    urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
                ).read()
        ceiling = nginx_ceiling(body, args.seconds, args.connections)
        if ceiling:
            results.append(ceiling)
    finally:
        redis_server.close()
        cluster.stop()

    hit, miss = results[0], results[1]
    lines = [
        "# Cached list vs uncached list",
        "",
        f"`GET /api/todos` (100 todos, {len(body)} bytes), gunicorn sync x{args.workers}, "
        f"wrk -t2 -c{args.connections} -d{args.seconds}s on the same 2-core box, "
        f"{time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        "| path | req/s | server CPU ms/request | p50 | p99 | non-2xx |",
        "| --- | ---: | ---: | --- | --- | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['rps']:.0f} | {r['cpu_ms_per_request']:.3f} | {r['p50']} "
            f"| {r['p99']} | {r['errors']} |"
        )
    lines += [
        "",
        f"Hit path vs miss path: {hit['rps'] / miss['rps']:.2f}x the throughput, "
        f"{miss['cpu_ms_per_request'] / hit['cpu_ms_per_request']:.2f}x less CPU per request.",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cache.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "cache.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

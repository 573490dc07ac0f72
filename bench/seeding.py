"""Benchmark: `seed_todos` of a million todos, and the list's latency at 10 thousand, 1 million and
10 million rows in the table.

Starts a private Postgres primary (deploy/local, no standbys) and seeds three databases with
`manage.py seed_todos`, 1,000 todos per user, each step timed:
- rows_10k: 10 users;
- rows_1m: 1,000 users (the headline figure: a million todos);
- rows_10m: 1,000 users, then topped up to 10,000 users, unless the first step's time projects
  the top-up beyond `--budget` seconds.
Each table is then vacuumed and analysed (what autovacuum does after a bulk load), and one
user's list, `GET /api/todos?limit=100` with the response cache off, is requested sequentially
from a gunicorn per database (deploy/local/gunicorn.py) on keep-alive connections, the databases
taking turns request by request so that the shared box's load drifts alike for all: median and
p99 of `--requests` requests each after a warm-up. The keyset query that list runs is taken from
the Django queryset (todos/selectors, todos/pagination) and shown with `EXPLAIN (ANALYZE,
BUFFERS)`.

Seeding times are wall clock; the client's and the server's CPU seconds and the load average
are recorded beside them. Results go to bench/results/seeding.md and .json. Run with
`.venv/bin/python -m bench.seeding`.
"""

import argparse
import http.client
import json
import os
import resource
import statistics
import threading
import time

import psycopg

from bench.processes import RESULTS, children, manage, project_env
from deploy.local.gunicorn import start_gunicorn
from deploy.local.postgres import postmaster_pid, start_cluster

USERNAME = "seed-user-000000"
PER_USER = 1_000
# The one user whose list is timed has this many todos at every size: only the table grows.
PAGE = 100
# Requests per size: a few hundred make the p99 a real percentile, not the slowest request.
REQUESTS = 400
# Requests before timing: the worker's first queries, the user's pages into shared buffers.
WARMUP = 50


def explain_list(username: str, limit: int = PAGE) -> None:
    """Print, as JSON, the SQL of `username`'s first list page and its EXPLAIN (ANALYZE,
    BUFFERS); run inside Django (`manage.py shell -c`)."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from todos import selectors
    from todos.pagination import parse_ordering
    from todos.representation import todo_rows

    owner = get_user_model().objects.get(username=username)
    ordering = parse_ordering(None)
    # What KeysetPagination.paginate runs for a first page: the limit plus one row.
    queryset = todo_rows(selectors.todo_list(owner=owner)).order_by(*ordering.order_by())
    queryset = queryset[: limit + 1]
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    print(json.dumps({"sql": connection.ops.compose_sql(sql, params), "plan": plan}))


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """CPU seconds the primary's processes use while the block runs, sampled from a thread: a
    backend exits with its client, taking its counters along."""

    # Often enough that a backend's last moments are a small share of its time.
    INTERVAL = 0.2

    def __init__(self, cluster):
        self.postmaster = postmaster_pid(cluster.primary_dir)
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.stop = threading.Event()

    def sample(self, initial: bool = False) -> None:
        for pid in [self.postmaster, *children(self.postmaster)]:
            used = process_cpu(pid)
            # A process born while sampling used all of its CPU inside the block.
            self.first.setdefault(pid, used if initial else 0.0)
            self.last[pid] = max(used, self.last.get(pid, 0.0))

    def run(self) -> None:
        while not self.stop.wait(self.INTERVAL):
            self.sample()

    def __enter__(self):
        self.sample(initial=True)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join()
        self.sample()

    @property
    def seconds(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def load_average() -> float:
    with open("/proc/loadavg") as loadavg:
        return float(loadavg.read().split()[0])


def seed(cluster, env: dict, users: int) -> dict:
    """Run `seed_todos --users users --per-user PER_USER`; its wall time, CPU and output."""
    load = load_average()
    client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with ServerCpu(cluster) as server:
        started = time.monotonic()
        output = manage(env, "seed_todos", "--users", str(users), "--per-user", str(PER_USER))
        elapsed = time.monotonic() - started
    client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (client_after.ru_utime - client_before.ru_utime) + (
        client_after.ru_stime - client_before.ru_stime
    )
    return {
        "users": users,
        "per_user": PER_USER,
        "seconds": round(elapsed, 2),
        "client_cpu_seconds": round(client, 2),
        "server_cpu_seconds": round(server.seconds, 2),
        "load_average": [load, load_average()],
        "summary": output.splitlines()[-1],
    }


def vacuum(url: str) -> tuple[int, float]:
    """VACUUM (ANALYZE) the todos; return their count and the seconds the vacuum took."""
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.monotonic()
        conn.execute("VACUUM (ANALYZE) todos_todo")
        elapsed = time.monotonic() - started
        (rows,) = conn.execute("SELECT count(*) FROM todos_todo").fetchone()
    return rows, round(elapsed, 2)


def list_latencies(envs: list[dict], tokens: list[str], requests: int) -> list[dict]:
    """Median and p99 (ms) of sequential `GET /api/todos?limit=100`, one gunicorn worker per
    database, the databases' requests interleaved so that the box's load drifts alike for all."""
    servers = [
        start_gunicorn(
            env={**env, "TODO_RESPONSE_CACHE": "false"}, workers=1, ready_path="/healthz"
        )
        for env in envs
    ]
    try:
        conns = [http.client.HTTPConnection("127.0.0.1", s.port, timeout=30) for s in servers]

        def get(index: int) -> float:
            started = time.perf_counter()
            headers = {"Authorization": f"Token {tokens[index]}"}
            conns[index].request("GET", f"/api/todos?limit={PAGE}", headers=headers)
            response = conns[index].getresponse()
            body = response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200 or len(json.loads(body)) != PAGE:
                raise RuntimeError(f"unexpected answer {response.status}: {body[:200]!r}")
            return elapsed * 1000

        samples: list[list[float]] = [[] for _ in envs]
        for round_ in range(WARMUP + requests):
            for index in range(len(envs)):
                elapsed = get(index)
                if round_ >= WARMUP:
                    samples[index].append(elapsed)
        for conn in conns:
            conn.close()
    finally:
        for server in servers:
            server.stop()
    results = []
    for times in samples:
        times.sort()
        results.append(
            {
                "requests": requests,
                "median_ms": round(statistics.median(times), 2),
                "p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
            }
        )
    return results


def explain(env: dict) -> dict:
    script = f"from bench.seeding import explain_list; explain_list({USERNAME!r})"
    return json.loads(manage(env, "shell", "--no-imports", "-c", script))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument(
        "--budget",
        type=float,
        default=300,
        help="seconds the 10M top-up may take (projected from the 1M seed), else it is skipped",
    )
    args = parser.parse_args()

    cluster = start_cluster(replicas=0)
    seeds, envs = [], []
    try:
        # Users seeded per database, in steps: 10k rows; 1M; 1M topped up to 10M.
        for name, plan in (("rows_10k", [10]), ("rows_1m", [1_000]), ("rows_10m", [1_000, 10_000])):
            cluster.create_database(name)
            # The benchmark measures the list, not throttling.
            env = project_env(
                DATABASE_URL=cluster.url(dbname=name), RATE_LIMIT_USER="off", RATE_LIMIT_IP="off"
            )
            manage(env, "migrate", "--noinput")
            for users in plan:
                if users == 10_000:
                    done = seeds[-1]
                    projected = done["seconds"] * (users - done["users"]) / done["users"]
                    if projected > args.budget:
                        print(f"skipping 10M: projected {projected:.0f}s > {args.budget:.0f}s")
                        break
                result = {"database": name, **seed(cluster, env, users)}
                seeds.append(result)
                print(json.dumps(result), flush=True)
            envs.append(env)
        sizes = []
        for env in envs:
            rows, vacuumed = vacuum(env["DATABASE_URL"])
            sizes.append({"rows": rows, "vacuum_seconds": vacuumed})
        tokens = [manage(env, "create_api_user", USERNAME) for env in envs]
        for size, latency in zip(sizes, list_latencies(envs, tokens, args.requests), strict=True):
            size["latency"] = latency
        # After the timed requests, so the plans show the steady state they ran in.
        for size, env in zip(sizes, envs, strict=True):
            explained = explain(env)
            size.update(sql=explained["sql"], explain=explained["plan"])
            print(json.dumps({k: size[k] for k in ("rows", "latency")}), flush=True)
    finally:
        cluster.stop()
    write_results(seeds, sizes)


def write_results(seeds: list[dict], sizes: list[dict]) -> None:
    base = sizes[0]["latency"]["median_ms"]
    lines = [
        "# Seeding a million todos, and the list at 10k, 1M and 10M rows",
        "",
        f"`python -m bench.seeding` on the shared 2-core box, {time.strftime('%Y-%m-%d %H:%M')}: "
        "private Postgres primary (deploy/local, fsync off), `manage.py seed_todos` "
        f"({PER_USER:,} todos per user, COPY from 2 connections).",
        "",
        "## Seeding",
        "",
        "| database | todos written | wall s | rows/s | client CPU s | server CPU s "
        "| load average |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    previous = {}
    for result in seeds:
        total = result["users"] * PER_USER
        written = total - previous.get(result["database"], 0)
        previous[result["database"]] = total
        lines.append(
            f"| {result['database']} | {written:,} (to {total:,}) | {result['seconds']:.1f} "
            f"| {written / result['seconds']:,.0f} | {result['client_cpu_seconds']:.1f} "
            f"| {result['server_cpu_seconds']:.1f} "
            f"| {result['load_average'][0]:.1f} → {result['load_average'][1]:.1f} |"
        )
    lines += [
        "",
        "Client CPU is the `manage.py seed_todos` process; server CPU the primary's processes "
        "(the two COPY backends, WAL writer, checkpointer), sampled every 0.2 s. With 2 cores "
        "shared with other work, the wall time is what the load average leaves of them.",
        "",
        f"## `GET /api/todos?limit={PAGE}` for one user with {PER_USER:,} todos, cache off",
        "",
        "One gunicorn worker per database, sequential requests on one keep-alive connection "
        f"each, after {WARMUP} warm-up requests, taking turns between the databases; the table "
        "vacuumed and analysed after seeding.",
        "",
        "| rows in table | requests | median ms | p99 ms | median vs 10k |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in sizes:
        latency = size["latency"]
        lines.append(
            f"| {size['rows']:,} | {latency['requests']} | {latency['median_ms']:.2f} "
            f"| {latency['p99_ms']:.2f} | {latency['median_ms'] / base - 1:+.1%} |"
        )
    lines += ["", "## The keyset query", "", "```sql", sizes[0]["sql"], "```"]
    for size in sizes:
        lines += ["", f"### {size['rows']:,} rows", "", "```", size["explain"], "```"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "seeding.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "seeding.json").write_text(
        json.dumps({"seeds": seeds, "sizes": sizes}, indent=2) + "\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()

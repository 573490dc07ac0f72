"""Benchmark: every performance scenario of Todo Scale beside the tutorial's servers, in one run.

`make bench` (or `.venv/bin/python -m bench.performance`). One private Postgres primary with one
streaming standby and one Redis (deploy/local) serve everyone. Todo Scale runs as shipped
(deploy/gunicorn.conf.py untouched: no worker count, no flags) in two configurations, each as
`REPLICAS` (default 2) gunicorn replicas behind nginx (deploy/nginx/todo-scale.conf.template),
measured direct (the first replica alone) and through nginx, and one replica on granian
(SERVER=granian, deploy/granian_server.py) measured direct:
- cached: Redis response cache on, reads routed to the standby with read-your-writes;
- uncached: the same with TODO_RESPONSE_CACHE=false, so every read renders from the standby.
Rate limits are off (RATE_LIMIT_USER/RATE_LIMIT_IP): this measures serving, not throttling.

Scenarios (bench/scenarios.py): list hit (a 100-todo list from the cache), list uncached, item
GET uncached, create (POST rotating over WRITERS users, so no one user's rate is the bottleneck),
PATCH (the same users' todos), and mixed: each of the c connections is one client of its own
user, 80 % list reads and 20 % PATCHes, and the read after a write must show it (stale reads are
counted). Writes go to users nobody lists, so the lists stay at 100 todos.

Beside them: an nginx static file holding the same list bytes (the machine's ceiling) and, when
`--peers DIR` or BENCH_PEERS=DIR names the peers' directory, express-seed's and fastapi-seed's
list and create (bench/peers.py; the creates on separate instances, so the lists do not grow).
Without it the peer rows are skipped and the targets that need them are marked so.

Every server runs for the whole measurement and they take turns: each pass gives every scenario
one round (a warm-up, then wrk -c64 for `--seconds`), and each figure is the median of the
rounds. CPU per request and the noise column (other_cores) come from bench/load.py.

Results: bench/results/performance.md and .json, with each target's ratio, met or not met.
BENCH_QUICK=1 (or `--quick`): a couple of seconds per scenario, one round, 16 connections,
nothing written; exits non-zero unless every scenario served requests with zero errors (non-2xx
or socket errors).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import peers, report, scenarios
from bench.load import Load, measure_round, process_tree, stores_cpu, summarize
from bench.processes import RESULTS, manage, nginx, project_env, seed_users, static_nginx
from deploy import capacity
from deploy.local.gunicorn import start_gunicorn
from deploy.local.nginx import render_template
from deploy.local.ports import free_port
from deploy.local.postgres import postmaster_pid, start_cluster
from deploy.local.redis import start_redis

# The list size of the figures in the peers' README, and Todo Scale's default page size.
TODOS = 100
# Users the creates and PATCHes rotate over: at 1,000 writes/s each sees ~33/s, far from any
# per-user limit or row lock queue.
WRITERS = 30
# Warm-up before each measured round: opens wrk's connections and fills caches and pools.
WARM_SECONDS = 2
# Quick mode: long enough for every scenario to serve a few hundred requests on a quiet box.
QUICK_SECONDS = 2
QUICK_WARM_SECONDS = 1
# Quick mode checks errors, not capacity: 16 clients still overlap requests on every thread of
# every replica, and keep a request's queueing (clients / req/s) well inside a 2 s round on a
# busy CI box, where 64 left some scenarios with no request finished in the round.
QUICK_CONNECTIONS = 16


@dataclass
class Row:
    """One measured line: a scenario on one server, and how to load it."""

    scenario: str  # a key of report.SCENARIOS
    server: str  # a key of report.SERVERS
    load: Load
    pids: Callable[[], list[int]]


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=Path, default=os.environ.get("BENCH_PEERS") or None)
    parser.add_argument("--quick", action="store_true", default=bool(os.environ.get("BENCH_QUICK")))
    parser.add_argument("--replicas", type=int, default=int(os.environ.get("REPLICAS") or 2))
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--connections", type=int)
    args = parser.parse_args(argv)
    args.connections = args.connections or (QUICK_CONNECTIONS if args.quick else 64)
    args.seconds = args.seconds or (QUICK_SECONDS if args.quick else 8)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.warm = QUICK_WARM_SECONDS if args.quick else WARM_SECONDS
    return args


def tree_of(*pids: int) -> Callable[[], list[int]]:
    return lambda: [member for pid in pids for member in process_tree(pid)]


@contextlib.contextmanager
def replicas_behind_nginx(env: dict, count: int, logs: Path, clients: int) -> Iterator[tuple]:
    """`count` gunicorn replicas as shipped, behind the deployment's nginx config.

    The benchmark measures serving `clients` connections, not shedding
    (tests/deploy/test_overload.py does that): each replica's max_conns admits all of them, as
    many as the shipped bound or more, so no request of a round is refused with 503.
    """
    with contextlib.ExitStack() as stack:
        servers = []
        for _ in range(count):
            port = free_port()
            server = start_gunicorn(
                env=env, port=port, log=logs / f"gunicorn-{port}.log", ready_path="/healthz"
            )
            servers.append(stack.enter_context(server))
        # A directory of its own: nginx's workers (nobody, under root) must be able to enter it.
        prefix = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-nginx-")))
        port = free_port()
        max_conns = max(capacity.upstream_max_conns(capacity.workers(env)), clients)
        config = render_template(port, [(server.port, False) for server in servers], max_conns)
        proxy = stack.enter_context(nginx(prefix, port, config))
        yield f"http://127.0.0.1:{port}", proxy, servers


def todo_scale_rows(
    via: str, origin: str, pids: Callable, config: str, users: dict, args: argparse.Namespace
) -> list[Row]:
    """The scenarios of one configuration ("cached" or "uncached") on one origin."""
    api = f"{origin}/api/todos"
    token, first = users["bench"]
    writers = [name for name in users if name.startswith("writer-")]
    writing = [scenarios.Client(users[n][0], f"/api/todos/{users[n][1]}") for n in writers]
    mixing = [
        scenarios.Client(users[n][0], f"/api/todos/{users[n][1]}")
        for n in users
        if n.startswith("mixed-")
    ]
    if config == "uncached":
        return [
            Row("list_uncached", via, Load(api, token), pids),
            Row("item_uncached", via, Load(f"{api}/{first}", token), pids),
        ]
    create = scenarios.rotating_post("/api/todos", [c.token for c in writing], {"title": "new"})
    return [
        Row("list_hit", via, Load(api, token), pids),
        Row("create", via, Load(api, script=create), pids),
        Row("patch", via, Load(api, script=scenarios.rotating_patch(writing)), pids),
        Row(
            "mixed",
            via,
            Load(api, script=scenarios.mixed(mixing, "/api/todos"), threads=args.connections),
            pids,
        ),
    ]


def peer_rows(stack: contextlib.ExitStack, args, work: Path, cluster, body: bytes) -> list[Row]:
    """express-seed's and fastapi-seed's list and create, each create on an instance of its own."""
    rows = []
    lists = stack.enter_context(peers.express_seed(work, body))
    creates = stack.enter_context(peers.express_seed(work, body))
    post = scenarios.rotating_post("/todos", [], {"title": "new"})
    rows += [
        Row("peer_list", "express", Load(lists.url), lists.pids),
        Row("peer_create", "express", Load(creates.url, script=post), creates.pids),
    ]
    lists = stack.enter_context(peers.fastapi_seed(work, cluster, "fastapi_lists", TODOS))
    creates = stack.enter_context(peers.fastapi_seed(work, cluster, "fastapi_creates", TODOS))
    post = scenarios.rotating_post("/todos", [], {"title": "new", "completed": False})
    rows += [
        Row("peer_list", "fastapi", Load(lists.url + lists.list_query), lists.pids),
        Row("peer_create", "fastapi", Load(creates.url, script=post), creates.pids),
    ]
    return rows


def run(args: argparse.Namespace) -> tuple[list[dict], dict]:
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-performance-")))
        cluster = start_cluster(replicas=1)
        stack.callback(cluster.stop)
        redis_server = start_redis()
        stack.callback(redis_server.close)
        postmasters = [postmaster_pid(cluster.primary_dir), postmaster_pid(cluster.replica_dir(0))]
        stores = lambda: stores_cpu(postmasters, redis_server.pid)  # noqa: E731

        cluster.create_database("bench")
        base = project_env(
            DATABASE_URL=cluster.url(dbname="bench"),
            DATABASE_REPLICA_URLS=cluster.url(cluster.replica_ports[0], "bench"),
            REDIS_URL=f"{redis_server.url}/0",
            RATE_LIMIT_USER="off",
            RATE_LIMIT_IP="off",
        )
        manage(base, "migrate", "--noinput")
        spec = {"bench": TODOS}
        spec.update({f"writer-{i:02}": 1 for i in range(WRITERS)})
        spec.update({f"mixed-{i:02}": TODOS for i in range(args.connections)})
        users = seed_users(base, spec)
        cluster.wait_for_replay()

        versions = {}
        if args.peers:
            print(f"installing the peers from {args.peers} ...", file=sys.stderr)
            versions = peers.install(args.peers, work)
        rows: list[Row] = []
        origins = {}
        for config, env in (
            ("cached", base),
            ("uncached", {**base, "TODO_RESPONSE_CACHE": "false"}),
        ):
            origin, proxy, servers = stack.enter_context(
                replicas_behind_nginx(env, args.replicas, work, args.connections)
            )
            direct = servers[0]
            origins[config] = direct.url
            rows += todo_scale_rows("direct", direct.url, tree_of(direct.pid), config, users, args)
            everyone = tree_of(proxy.pid, *(server.pid for server in servers))
            rows += todo_scale_rows("nginx", origin, everyone, config, users, args)
            granian = stack.enter_context(
                start_gunicorn(
                    env=env, log=work / f"granian-{config}.log", ready_path="/healthz",
                    server="granian",
                )
            )  # fmt: skip
            rows += todo_scale_rows(
                "granian", granian.url, tree_of(granian.pid), config, users, args
            )

        token = users["bench"][0]
        list_request = urllib.request.Request(  # noqa: S310 (the server started above)
            f"{origins['cached']}/api/todos", headers={"Authorization": f"Token {token}"}
        )
        with urllib.request.urlopen(list_request, timeout=10) as response:  # noqa: S310
            body = response.read()
        url, static = stack.enter_context(static_nginx(body))
        rows.insert(0, Row("peer_list", "ceiling", Load(url), tree_of(static.pid)))
        if args.peers:
            rows[1:1] = peer_rows(stack, args, work, cluster, body)
        else:
            print(
                "no peers directory given (--peers DIR or BENCH_PEERS=DIR): "
                "the express-seed and fastapi-seed rows are skipped",
                file=sys.stderr,
            )

        results: list[list[dict]] = [[] for _ in rows]
        for number in range(args.rounds):
            # One round of each scenario per pass: a burst of other work on the box then spoils
            # one round of several rows, which the median drops, rather than every round of one.
            for row, done in zip(rows, results, strict=True):
                done.append(
                    measure_round(
                        row.load, row.pids, stores,
                        warm=args.warm, seconds=args.seconds, connections=args.connections,
                    )
                )  # fmt: skip
                print(
                    f"round {number + 1}/{args.rounds}: {report.label(row.scenario, row.server)}: "
                    f"{done[-1]['rps']:.0f} req/s, p99 {done[-1]['p99_ms']:.1f} ms",
                    file=sys.stderr,
                )
    summaries = [
        {"scenario": row.scenario, "server": row.server, "body_bytes": len(body), **summarize(done)}
        for row, done in zip(rows, results, strict=True)
    ]
    return summaries, {"peers": bool(args.peers), "versions": versions}


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    load_before = os.getloadavg()[0]
    rows, facts = run(args)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "quick": args.quick,
        "seconds": args.seconds,
        "warm_seconds": args.warm,
        "rounds": args.rounds,
        "connections": args.connections,
        "replicas": args.replicas,
        "writers": WRITERS,
        "todos": TODOS,
        "cores": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        **facts,
    }
    targets = report.targets(rows)
    text = report.markdown(rows, targets, meta)
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "performance.md").write_text(text)
        payload = {"meta": meta, "targets": targets, "rows": rows}
        (RESULTS / "performance.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(text)
    failed = [r for r in rows if report.errors(r) or not all(n["requests"] for n in r["rounds"])]
    for r in failed:
        print(
            f"FAILED: {report.label(r['scenario'], r['server'])}: {r['non_2xx']} non-2xx, "
            f"{r['socket_errors']} socket errors, requests per round "
            f"{[n['requests'] for n in r['rounds']]}",
            file=sys.stderr,
        )
    return 1 if args.quick and failed else 0


if __name__ == "__main__":
    sys.exit(main())

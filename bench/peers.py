"""Benchmark: Todo Scale beside the tutorial's own servers, on one box, in one run, same data.

The peers are the two servers of the source tutorial, kept as written in a directory outside this
repository (`--peers`, see its README): express-seed (Node cluster, todos in memory) and
fastapi-seed (uvicorn, sync SQLAlchemy on Postgres). They are copied into a temporary directory and
installed there (`npm install`; a throwaway venv for fastapi-seed's requirements), so nothing of
theirs reaches this project's venv. One private Postgres cluster and one Redis (deploy/local) serve
everyone: Todo Scale's database holds one user with 100 todos, fastapi-seed's own database holds
the same 100 titles in its `todos` table, and express-seed loads Todo Scale's list response itself
(`TODOS_JSON`), so it serves the same todos in the same bytes.

Each server is loaded with `GET` of its 100-item list:
1. nginx serving Todo Scale's list bytes from a file: the ceiling of this machine;
2. express-seed; 3. fastapi-seed (`?limit=100`);
4. Todo Scale, gateway hit: the same list requested over and over, answered from Redis;
5. Todo Scale, miss path: the response cache off, every request rendered from Postgres by DRF;
6. Todo Scale through nginx (deploy/nginx/todo-scale.conf.template) over 2 gunicorn replicas.

All servers run side by side for the whole measurement and take turns: 3 passes, each giving every
server one round of wrk -t2 -c64 -d8s after a 2 s warm-up; each figure is the median of a
server's 3 rounds. Taking turns matters on a shared box: a burst of other work spoils one round
of a few servers, which the median drops, instead of every round of one server. Server CPU per
request is user+system time of the server's process tree (from /proc) over a round, divided by
the requests served; Postgres and Redis time is counted apart, so that a server that hands its
work to the database does not look cheaper than it is. The load generator shares the 2 cores, so
only ratios within one run mean anything; the CPU that other processes took (the machine's busy
time from /proc/stat less the servers', the stores' and wrk's) is reported with every round.

Then read-your-write: POST one todo, then GET the list 20 times at once. A read "has it" when the
new todo is anywhere in the full list, following the server's own paging (Todo Scale's `Link`
header, fastapi-seed's `skip`/`limit`); whether it is on the first page is reported apart.

Results go to bench/results/peers.md and .json. Run with `make bench` or
`.venv/bin/python -m bench.peers`.
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.cache_hit import cpu_seconds, process_tree, serve, wrk
from bench.processes import RESULTS, manage, nginx, project_env, seed_user, static_nginx
from deploy.local._proc import spawn, stop_group
from deploy.local.nginx import render_template
from deploy.local.ports import free_port
from deploy.local.postgres import start_cluster
from deploy.local.redis import start_redis

# The list size of the figures in the peers' README, and Todo Scale's default page size.
TODOS = 100
# Warm-up before each measured round: opens wrk's connections and fills caches, as cache_hit.
WARM_SECONDS = 2
# Reads after the POST: enough that a per-worker list (2 workers) shows up as a mix.
PROBE_READS = 20
# sync workers for 2 cores that wrk, Postgres and Redis share: 3, as bench/cache_hit.py runs.
# gunicorn's 2 x cores + 1 (5, deploy/gunicorn.conf.py's default here) assumes the cores are the
# server's own; on this box 5 workers cost more CPU per gateway hit (0.45-0.48 ms against
# 0.37-0.43 ms with 2 or 3) and were not faster on the miss path.
WORKERS = 3
# The same machine split in two replicas: 2 workers each, about the single server's total.
REPLICA_WORKERS = 2
# Rows of the report, in the order of the measurements within each round.
ORDER = ("ceiling", "express", "fastapi", "hit", "miss", "nginx_replicas")


@dataclass
class Target:
    name: str
    url: str  # the 100-item list, as wrk requests it
    pids: Callable[[], list[int]]  # the server's process tree, read anew before and after
    token: str | None = None
    create: Callable[[str], dict] | None = None  # POST a todo with this title
    pages: Callable[[], list[list[dict]]] | None = None  # one full read of the list
    remove: Callable[[dict], None] | None = None  # undo create(): later rounds see 100 todos


def request(
    url: str, token: str | None = None, body: dict | None = None, method: str | None = None
) -> tuple[bytes, object]:
    headers = {"Authorization": f"Token {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    # Only http:// URLs of the servers this run started, or the links they answered with.
    req = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
        return response.read(), response.headers


def link_pages(url: str, token: str) -> list[list[dict]]:
    """Todo Scale's list: follow `Link: <...>; rel="next"` until there is none."""
    pages = []
    while url:
        body, headers = request(url, token)
        pages.append(json.loads(body))
        found = re.search(r'<([^>]+)>;\s*rel="next"', headers.get("Link", ""))
        url = found.group(1) if found else None
    return pages


def skip_limit_pages(url: str) -> list[list[dict]]:
    """fastapi-seed's list: skip by the page size until a page comes back short."""
    pages = []
    while True:
        pages.append(json.loads(request(f"{url}?skip={len(pages) * TODOS}&limit={TODOS}")[0]))
        if len(pages[-1]) < TODOS:
            return pages


def probe(target: Target) -> dict:
    """POST one todo, then read the whole list PROBE_READS times: is it there every time?"""
    title = f"probe {uuid.uuid4().hex[:12]}"
    created = target.create(title)
    on_first_page = in_list = 0
    for _ in range(PROBE_READS):
        pages = target.pages()
        on_first_page += any(todo.get("title") == title for todo in pages[0])
        in_list += any(todo.get("title") == title for page in pages for todo in page)
    if target.remove:
        target.remove(created)
    return {
        "reads": PROBE_READS,
        "in_full_list": in_list,
        "on_first_page": on_first_page,
        "pages_per_read": len(pages),
    }


def postgres_redis_cpu(postmaster: int, redis_pid: int) -> float:
    """CPU seconds of Postgres (postmaster, its live children, and the backends it reaped) and
    Redis: the work a server hands to its data stores."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    reaped = (int(fields[13]) + int(fields[14])) / ticks
    return cpu_seconds([*process_tree(postmaster), redis_pid]) + reaped


def machine_busy() -> float:
    """CPU seconds all cores spent on anything but idle and I/O wait since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def load_generator_cpu() -> float:
    """CPU seconds of this process's finished children: wrk, once it has been waited for."""
    times = os.times()
    return times.children_user + times.children_system


def milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def measure_round(target: Target, stores: Callable[[], float], args: argparse.Namespace) -> dict:
    wrk(target.url, target.token, WARM_SECONDS, args.connections)
    server, store = cpu_seconds(target.pids()), stores()
    busy, loader = machine_busy(), load_generator_cpu()
    started = time.monotonic()
    result = wrk(target.url, target.token, args.seconds, args.connections)
    elapsed = time.monotonic() - started
    server = cpu_seconds(target.pids()) - server
    store = stores() - store
    loader = load_generator_cpu() - loader
    busy = machine_busy() - busy
    result.update(
        p50_ms=milliseconds(result.pop("p50")),
        p99_ms=milliseconds(result.pop("p99")),
        cpu_ms_per_request=server * 1000 / result["requests"],
        stores_cpu_ms_per_request=store * 1000 / result["requests"],
        wrk_cores=loader / elapsed,
        # Whatever else ran on the box meanwhile (tests, other stacks): the noise.
        other_cores=max(busy - server - store - loader, 0.0) / elapsed,
    )
    return result


def summarize(name: str, rounds: list[dict]) -> dict:
    keys = ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request", "stores_cpu_ms_per_request")
    summary = {key: statistics.median(r[key] for r in rounds) for key in keys}
    summary["other_cores"] = statistics.median(r["other_cores"] for r in rounds)
    summary["non_2xx"] = sum(r["errors"] for r in rounds)
    summary["rps_min"] = min(r["rps"] for r in rounds)
    summary["rps_max"] = max(r["rps"] for r in rounds)
    return {"name": name, **summary, "rounds": rounds}


@contextlib.contextmanager
def started(argv: list[str], cwd: Path, env: dict, ready_url: str) -> Iterator[subprocess.Popen]:
    log = cwd / "server.log"
    log.unlink(missing_ok=True)
    process = spawn(argv, env=env, log=log, cwd=cwd)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                request(ready_url)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[0]} did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield process
    finally:
        # Every member of the group: a Node cluster's workers must not outlive their master.
        stop_group(process.pid, timeout=10, proc=process)


def copy_peer(source: Path, destination: Path) -> Path:
    """Copy a peer's files, not their read-only modes: installing writes beside them."""
    destination.mkdir()
    for path in source.iterdir():
        shutil.copyfile(path, destination / path.name)
    return destination


def install_peers(peers: Path, work: Path) -> dict:
    """npm install express-seed, and fastapi-seed's requirements into a venv of its own."""
    express = copy_peer(peers / "express-seed", work / "express-seed")
    quiet = ["--no-audit", "--no-fund", "--loglevel=error"]
    subprocess.run(["npm", "install", *quiet], cwd=express, check=True, stdout=subprocess.DEVNULL)
    fastapi = copy_peer(peers / "fastapi-seed", work / "fastapi-seed")
    python = shutil.which("python3") or sys.executable
    subprocess.run([python, "-m", "venv", str(work / "fastapi-venv")], check=True)
    pip = [str(work / "fastapi-venv" / "bin" / "python"), "-m", "pip"]
    installed = subprocess.run(
        [*pip, "install", "--quiet", "--disable-pip-version-check", "-r", "requirements.txt"],
        cwd=fastapi,
        capture_output=True,
        text=True,
    )
    # pip's warnings (an unreachable find-links in a global config, say) only matter on failure.
    if installed.returncode:
        raise RuntimeError(f"pip install for fastapi-seed failed:\n{installed.stderr}")
    frozen = subprocess.run([*pip, "freeze"], capture_output=True, text=True, check=True).stdout
    wanted = {"fastapi", "uvicorn", "sqlalchemy", "psycopg2-binary"}
    versions = dict(
        line.split("==") for line in frozen.split() if line.split("==")[0].lower() in wanted
    )
    versions["node"] = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    versions["express"] = json.loads(
        (express / "node_modules" / "express" / "package.json").read_text()
    )["version"]
    return versions


@contextlib.contextmanager
def express_seed(work: Path, body: bytes) -> Iterator[Target]:
    app = work / "express-seed"
    (app / "todos.json").write_bytes(body)
    port = free_port()
    url = f"http://127.0.0.1:{port}/todos"
    env = {**os.environ, "PORT": str(port), "TODOS_JSON": "todos.json"}
    with started(["node", "server.js"], app, env, url) as process:
        yield Target(
            "express-seed (Node cluster x2, in memory)",
            url,
            tree_of(process),
            create=lambda title: json.loads(request(url, body={"title": title})[0]),
            pages=lambda: [json.loads(request(url)[0])],
        )


@contextlib.contextmanager
def fastapi_seed(work: Path, cluster) -> Iterator[Target]:
    app = work / "fastapi-seed"
    cluster.create_database("fastapi_seed")
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgresql+psycopg2://postgres@127.0.0.1:{cluster.primary_port}/fastapi_seed"
        ),
    }
    python = str(work / "fastapi-venv" / "bin" / "python")
    # Its own create_all makes the table, once: two workers importing it at the same moment
    # would race to create it.
    subprocess.run([python, "-c", "import main"], cwd=app, env=env, check=True)
    cluster.execute(
        "INSERT INTO todos (title, completed) SELECT 'todo ' || i, 'false' "
        "FROM generate_series(0, %s) AS i",
        [TODOS - 1],
        dbname="fastapi_seed",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}/todos"
    argv = [python, "-m", "uvicorn", "main:app", "--workers", "2", "--port", str(port)]
    with started([*argv, "--no-access-log"], app, env, f"{url}?limit=1") as process:
        yield Target(
            "fastapi-seed (uvicorn x2, SQLAlchemy)",
            f"{url}?limit={TODOS}",
            tree_of(process),
            create=lambda title: json.loads(
                request(url, body={"title": title, "completed": False})[0]
            ),
            pages=lambda: skip_limit_pages(url),
        )


class Process(Protocol):
    """A started server: a Popen, or a launcher's Gunicorn or Nginx."""

    @property
    def pid(self) -> int: ...


def tree_of(*processes: Process) -> Callable[[], list[int]]:
    return lambda: [pid for process in processes for pid in process_tree(process.pid)]


def todo_scale(name: str, origin: str, token: str, *processes: subprocess.Popen) -> Target:
    url = f"{origin}/api/todos"

    def remove(todo: dict) -> None:
        request(todo["url"], token, method="DELETE")

    return Target(
        name,
        url,
        tree_of(*processes),
        token=token,
        create=lambda title: json.loads(request(url, token, {"title": title})[0]),
        pages=lambda: link_pages(url, token),
        remove=remove,
    )


@contextlib.contextmanager
def behind_nginx(env: dict, workers: int) -> Iterator[tuple]:
    """The deployment's nginx config (least_conn, keepalive, retries) over 2 gunicorn replicas."""
    with contextlib.ExitStack() as stack:
        replicas = [stack.enter_context(serve(env, free_port(), workers)) for _ in range(2)]
        prefix = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        port = free_port()
        config = render_template(port, [(replica.port, False) for replica in replicas])
        proxy = stack.enter_context(nginx(prefix, port, config))
        yield (f"http://127.0.0.1:{port}", proxy, *replicas)


def correctness(row: dict) -> str:
    found = row.get("probe")
    if not found:
        return "n/a (a file)"
    answer = "yes" if found["in_full_list"] == found["reads"] else "no"
    return (
        f"{answer}: {found['in_full_list']}/{found['reads']} reads had it "
        f"({found['on_first_page']}/{found['reads']} on page 1 of {found['pages_per_read']})"
    )


def report(rows: list[dict], meta: dict) -> str:
    ceiling, express = rows[0]["rps"], rows[1]["rps"]
    lines = [
        "# Todo Scale beside its peers",
        "",
        f"`GET` of a {TODOS}-todo list, wrk -t2 -c{meta['connections']} -d{meta['seconds']}s "
        f"each after a {WARM_SECONDS} s warm-up, medians of {meta['rounds']} rounds taken in "
        f"turns (one round of every server per pass), one run, "
        f"{meta['date']}. **2 cores shared with wrk**: only the ratios between rows mean "
        f"anything. Noise: load average {meta['load_before']:.2f} before, "
        f"{meta['load_after']:.2f} after; other processes on the box used a median of "
        f"{meta['other_cores']:.2f} cores during the rounds (column 'others').",
        "",
        "| server | body bytes | req/s | vs ceiling | vs express-seed | p50 ms | p99 ms "
        "| non-2xx | server CPU ms/req | Postgres+Redis CPU ms/req | others (cores) "
        "| read-your-write: POST, then 20 GETs of the whole list |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['body_bytes']} | {r['rps']:.0f} ({r['rps_min']:.0f}-"
            f"{r['rps_max']:.0f}) | {r['rps'] / ceiling:.3f} | {r['rps'] / express:.2f} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['non_2xx']} "
            f"| {r['cpu_ms_per_request']:.3f} | {r['stores_cpu_ms_per_request']:.3f} "
            f"| {r['other_cores']:.2f} | {correctness(r)} |"
        )
    # CPU per request is steadier than req/s on a shared box: both ratios are given.
    express_cpu = rows[1]["cpu_ms_per_request"] + rows[1]["stores_cpu_ms_per_request"]
    lines += ["", "Ratios (req/s; CPU per request counting the server and the data stores):", ""]
    for r in rows[1:]:
        cpu = r["cpu_ms_per_request"] + r["stores_cpu_ms_per_request"]
        lines.append(
            f"- {r['name']}: {r['rps'] / ceiling:.3f}x the ceiling's req/s, "
            f"{r['rps'] / express:.2f}x express-seed's; {cpu / express_cpu:.1f}x "
            "express-seed's CPU per request."
        )
    lines += [
        "",
        "req/s is the median round with the slowest and fastest in brackets. Server CPU is the",
        "server's own process tree (for the last row nginx and both replicas); Postgres+Redis is",
        "the shared data stores' time over the same round, so the totals compare.",
        "",
        f"Todo Scale: gunicorn sync workers, WEB_CONCURRENCY={WORKERS} (not 2 x 2 cores + 1: "
        "wrk, Postgres and Redis share the cores, and 5 workers cost more CPU per hit); behind "
        f"nginx, 2 replicas x {REPLICA_WORKERS} workers. RATE_LIMIT_USER=off and "
        "RATE_LIMIT_IP=off: this measures serving, not throttling. express-seed runs one worker "
        "per core (2), fastapi-seed `uvicorn --workers 2` as its README says. Versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + ".",
        "",
        "Read-your-write: the new todo counts as seen when it is anywhere in the list read in "
        "full, following each server's paging: Todo Scale's `Link: rel=\"next\"` (sorted by "
        "created_at, so with 101 todos the new one is on page 2), fastapi-seed's `skip`/`limit="
        f"{TODOS}` (no ORDER BY: which rows page 1 holds is up to Postgres), express-seed's one "
        "unpaged array (kept per worker process).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=Path, default=Path("/work/shared/peers"))
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-peers-")))
        versions = install_peers(args.peers, work)
        cluster = start_cluster(replicas=0)
        stack.callback(cluster.stop)
        redis_server = start_redis()
        stack.callback(redis_server.close)
        postmaster = int((cluster.primary_dir / "postmaster.pid").read_text().split()[0])
        stores = lambda: postgres_redis_cpu(postmaster, redis_server.pid)  # noqa: E731

        cluster.create_database("bench")
        base = project_env(
            DATABASE_URL=cluster.url(dbname="bench"), RATE_LIMIT_USER="off", RATE_LIMIT_IP="off"
        )
        manage(base, "migrate", "--noinput")
        token = seed_user(base, "bench", TODOS)
        hit = {**base, "REDIS_URL": f"{redis_server.url}/0"}
        miss = {**base, "TODO_RESPONSE_CACHE": "false"}

        # Every server runs for the whole measurement (idle ones cost next to nothing), so the
        # rounds can take turns.
        targets: dict[str, Target] = {}
        hit_server = stack.enter_context(serve(hit, free_port(), WORKERS))
        origin = hit_server.url
        body = request(f"{origin}/api/todos", token)[0]
        targets["hit"] = todo_scale("Todo Scale, gateway hit (Redis)", origin, token, hit_server)
        miss_server = stack.enter_context(serve(miss, free_port(), WORKERS))
        origin = miss_server.url
        targets["miss"] = todo_scale(
            "Todo Scale, miss path (DRF + Postgres)", origin, token, miss_server
        )
        origin, *proxied = stack.enter_context(behind_nginx(hit, REPLICA_WORKERS))
        targets["nginx_replicas"] = todo_scale(
            "Todo Scale, nginx over 2 replicas, hit", origin, token, *proxied
        )
        url, static = stack.enter_context(static_nginx(body))
        targets["ceiling"] = Target("nginx static file (ceiling)", url, tree_of(static))
        targets["express"] = stack.enter_context(express_seed(work, body))
        targets["fastapi"] = stack.enter_context(fastapi_seed(work, cluster))

        rounds: dict[str, list[dict]] = {key: [] for key in ORDER}
        for number in range(args.rounds):
            # One round of each server per pass: a burst of other work on the box then spoils
            # one round of several servers, which the median drops, rather than every round of
            # one server.
            for key in ORDER:
                rounds[key].append(measure_round(targets[key], stores, args))
                print(f"round {number + 1}: {targets[key].name}: "
                      f"{rounds[key][-1]['rps']:.0f} req/s", file=sys.stderr)  # fmt: skip
        rows = [summarize(targets[key].name, rounds[key]) for key in ORDER]
        for key, row in zip(ORDER, rows, strict=True):
            row["body_bytes"] = len(request(targets[key].url, targets[key].token)[0])
            # Probes last: they add rows to the lists being measured.
            if targets[key].create:
                row["probe"] = probe(targets[key])

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "connections": args.connections,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "other_cores": statistics.median(r["other_cores"] for r in rows),
        "workers": WORKERS,
        "replica_workers": REPLICA_WORKERS,
        "rate_limits": "off",
        "versions": versions,
    }
    text = report(rows, meta)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "peers.md").write_text(text)
    (RESULTS / "peers.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()

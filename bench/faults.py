"""Faults injected into the running one-box stack (`make stack`, 3 web replicas) under load.

Each scenario runs a bounded mixed load through nginx (a few client threads, each sending at
most a fixed number of requests: GETs of the list, and every third request a POST with an
`Idempotency-Key` that the client retries with the same key after a connection error or a
5xx), injects one fault while it runs, and counts what the clients saw:

- rolling restart: `stack restart`, every replica replaced one at a time;
- web kill: `kill -9` of one replica's whole process group (gunicorn master and workers);
- Redis kill: `kill -9` of redis-server, then started again (empty);
- standby stopped: the streaming standby stopped (`pg_ctl stop`), then started again;
- broker stopped: RabbitMQ stopped while exports are requested, then started again;
- worker kill: `kill -9` of the Celery worker while it builds an export of 10,000 todos.

After each fault `stack status` must name the dead process (DOWN) and `stack revive` start it
again, after which status shows it ready with a new pid. Duplicates are counted in Postgres:
todos per idempotency key (each key is also the todo's title). The tests
(tests/deploy/local/test_faults.py) run the same scenarios with smaller counts.

    python -m bench.faults [--clients N] [--requests N]

writes bench/results/faults.md and faults.json.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

from bench.processes import RESULTS, seed_user
from deploy.local._proc import ROOT, read_state, wait_until
from deploy.local.ports import free_port
from deploy.local.postgres import PostgresCluster
from deploy.local.rabbitmq import RabbitMQNode
from deploy.local.stack.environment import STATE_FILE
from deploy.local.stack.processes import Stack

# Start, restart, revive and down each take seconds; minutes mean one of them hangs.
COMMAND_TIMEOUT = 180


def stack_command(
    env: dict[str, str], *args: str, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess:
    """`python -m deploy.local.stack ARGS` (what `make stack*` runs) in `env`, its output kept."""
    return subprocess.run(
        [sys.executable, "-m", "deploy.local.stack", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# A client's answer later than this counts as none (nginx gives a replica 35 s).
ANSWER_TIMEOUT = 10.0
# A POST is sent again with its key after a connection error or a 5xx, at most this often.
POST_ATTEMPTS = 10
RETRY_PAUSE = 0.3
# Every client pauses this long between requests, so that a bounded count spans the fault.
PACE = 0.05
# Todos in the export the worker is killed in: big enough to be caught mid-task.
EXPORT_TODOS = 10_000


# --- the stack, driven through its command line ------------------------------------------------
@dataclass
class FaultStack:
    """A stack started with `python -m deploy.local.stack` (what `make stack` runs)."""

    dir: Path
    env: dict[str, str]

    @classmethod
    def start(cls, base: Path, *, replicas: int = 3) -> FaultStack:
        env = {
            **os.environ,
            "STACK_DIR": str(base / "stack"),
            "REPLICAS": str(replicas),
            "PORT": str(free_port()),
            # The load is one user from one IP; a 429 would be the rate limiter at work.
            "RATE_LIMIT_USER": "off",
            "RATE_LIMIT_IP": "off",
        }
        stack = cls(base / "stack", env)
        result = stack.command("start")
        if result.returncode != 0:
            stack.command("down")
            raise RuntimeError(f"stack start failed\n{result.stdout}{result.stderr}")
        return stack

    def command(self, *args: str) -> subprocess.CompletedProcess:
        return stack_command(self.env, *args)

    def down(self) -> None:
        self.command("down")

    @property
    def state(self) -> dict:
        return read_state(self.dir / STATE_FILE)

    def stack(self) -> Stack:
        return Stack(self.dir).load()

    @property
    def port(self) -> int:
        return self.state["port"]

    @property
    def token(self) -> str:
        return self.state["token"]

    def status(self) -> dict:
        """`stack status --json`: {"processes": {name: row}, "down": [names]}."""
        result = self.command("status", "--json")
        document = json.loads(result.stdout)
        return {
            "processes": {row["name"]: row for row in document["processes"]},
            "down": document["down"],
        }

    def status_text(self) -> str:
        return self.command("status").stdout

    def revive(self) -> str:
        result = self.command("revive")
        if result.returncode != 0:
            raise RuntimeError(f"stack revive failed\n{result.stdout}{result.stderr}")
        return result.stdout

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.state["database_url"], autocommit=True) as conn:
            return conn.execute(query, params).fetchall()


# --- the load ----------------------------------------------------------------------------------
def request(
    port: int, method: str, path: str, token: str, body: dict | None = None, key: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request on a connection of its own; raises OSError when nothing answered."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_TIMEOUT)
    headers = {"Authorization": f"Token {token}"}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if key is not None:
        headers["Idempotency-Key"] = key
    try:
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    except http.client.HTTPException as exc:
        raise OSError(repr(exc)) from exc
    finally:
        connection.close()


@dataclass
class Tally:
    """What the clients saw during one scenario."""

    sent: int = 0  # requests on the wire, POST retries included
    gets: int = 0
    gets_failed: int = 0  # a GET answered by anything but 200, or not at all (no client retry)
    posts: int = 0  # distinct POSTs (keys)
    posts_failed: int = 0  # no 201 after every attempt
    posts_retried: int = 0  # needed more than one attempt
    answers_5xx: int = 0  # every 5xx answer, retried or not
    connection_errors: int = 0
    keys: list[str] = field(default_factory=list, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class Load:
    """`clients` threads, each sending at most `per_client` requests (at least `least` of them,
    the rest until the block ends), through nginx as the demo user."""

    def __init__(
        self, stack: FaultStack, prefix: str, *, clients: int, per_client: int, least: int
    ):
        self.port, self.token, self.prefix = stack.port, stack.token, prefix
        self.clients, self.per_client, self.least = clients, per_client, least
        self.tally = Tally()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(n,)) for n in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def wait_sent(self, more: int, timeout: float = 60.0) -> None:
        """Wait until `more` requests more than now were sent (or every client is done)."""
        target = self.tally.sent + more
        wait_until(
            lambda: self.tally.sent >= target or not self.running,
            timeout=timeout,
            what=f"{more} more requests",
        )

    def _client(self, number: int) -> None:
        for count in range(self.per_client):
            if self._stop.is_set() and count >= self.least:
                return
            if count % 3 == 2:
                self._post(f"{self.prefix}-{number}-{count}")
            else:
                self._get()
            time.sleep(PACE)

    def _get(self) -> None:
        try:
            status, _, _ = request(self.port, "GET", "/api/todos?limit=5", self.token)
        except OSError:
            self.tally.add(sent=1, gets=1, gets_failed=1, connection_errors=1)
            return
        self.tally.add(
            sent=1, gets=1, gets_failed=int(status != 200), answers_5xx=int(status >= 500)
        )

    def _post(self, key: str) -> None:
        self.tally.add(posts=1)
        for attempt in range(POST_ATTEMPTS):
            if attempt == 1:
                self.tally.add(posts_retried=1)
            try:
                status, _, _ = request(
                    self.port, "POST", "/api/todos", self.token, {"title": key}, key
                )
            except OSError:
                self.tally.add(sent=1, connection_errors=1)
            else:
                self.tally.add(sent=1, answers_5xx=int(status >= 500))
                if status == 201:
                    with self.tally.lock:
                        self.tally.keys.append(key)
                    return
                if status < 500:
                    break
            time.sleep(RETRY_PAUSE)
        self.tally.add(posts_failed=1)


# --- the scenarios -----------------------------------------------------------------------------
@dataclass
class Outcome:
    """One fault's figures."""

    fault: str
    sent: int
    gets: int
    gets_failed: int
    posts: int
    posts_failed: int
    posts_retried: int
    answers_5xx: int
    connection_errors: int
    during_fault: int  # requests sent while the fault was being injected
    load_spanned_fault: bool  # the clients were still sending when the injection was over
    duplicated: int  # keys with more than one todo
    missing: int  # keys answered 201 with no todo
    reported_down: list[str]  # what `stack status` named DOWN after the fault
    revived: list[str]  # what `stack revive` started again
    recovered: bool  # every process alive and ready afterwards
    extra: dict = field(default_factory=dict)  # the fault's own figures (tasks, cache hits)


@dataclass
class Sizes:
    """Client threads, and the most and the least requests each sends per fault."""

    clients: int = 4
    per_client: int = 150
    least: int = 60


def _counts(stack: FaultStack, prefix: str, keys: list[str]) -> tuple[int, int]:
    rows = stack.sql(
        "SELECT title, count(*) FROM todos_todo WHERE title LIKE %s GROUP BY title",
        (f"{prefix}-%",),
    )
    found = dict(rows)
    duplicated = sum(1 for count in found.values() if count > 1)
    missing = sum(1 for key in keys if key not in found)
    return duplicated, missing


def _recovered(stack: FaultStack) -> bool:
    processes = stack.status()["processes"]
    return all(row["alive"] and row["ready"] for row in processes.values())


def _wait_recovered(stack: FaultStack, timeout: float = 60.0) -> bool:
    """Ready again within `timeout` (a revived worker reconnects, a standby catches up)."""
    try:
        wait_until(lambda: _recovered(stack), timeout=timeout, what="the stack to be ready")
    except TimeoutError:
        return False
    return True


def scenario(
    stack: FaultStack,
    name: str,
    sizes: Sizes,
    inject: Callable[[Load], dict | None],
    *,
    revive: bool = True,
) -> Outcome:
    """Run the load, `inject` the fault while it runs; then note what status names down,
    revive it, and count."""
    prefix = f"{name}-{time.monotonic_ns()}"
    reported, revived = [], []
    load = Load(
        stack, prefix, clients=sizes.clients, per_client=sizes.per_client, least=sizes.least
    )
    with load:
        load.wait_sent(sizes.clients * 3)
        before = load.tally.sent
        extra = inject(load) or {}
        during, spanned = load.tally.sent - before, load.running
        # The load goes on a while with the fault in place.
        load.wait_sent(sizes.clients * 5)
        if revive:
            reported = stack.status()["down"]
            text = stack.status_text()
            if reported:
                if f"DOWN: {', '.join(reported)}" not in text:
                    raise RuntimeError(f"stack status did not name {reported} down\n{text}")
                revived = next(
                    line.removeprefix("revived: ").split(", ")
                    for line in stack.revive().splitlines()
                    if line.startswith("revived: ")
                )
    after = extra.pop("after", None)
    if after is not None:
        extra.update(after())
    tally = load.tally
    duplicated, missing = _counts(stack, prefix, tally.keys)
    return Outcome(
        fault=name,
        sent=tally.sent,
        gets=tally.gets,
        gets_failed=tally.gets_failed,
        posts=tally.posts,
        posts_failed=tally.posts_failed,
        posts_retried=tally.posts_retried,
        answers_5xx=tally.answers_5xx,
        connection_errors=tally.connection_errors,
        during_fault=during,
        load_spanned_fault=spanned,
        duplicated=duplicated,
        missing=missing,
        reported_down=reported,
        revived=revived,
        recovered=_wait_recovered(stack),
        extra=extra,
    )


def rolling_restart(stack: FaultStack, sizes: Sizes) -> Outcome:
    before = {}

    def inject(load: Load) -> dict:
        processes = stack.status()["processes"]
        before.update({name: processes[name]["pid"] for name in stack.state["web"]})
        result = stack.command("restart")
        if result.returncode != 0:
            raise RuntimeError(f"stack restart failed\n{result.stdout}{result.stderr}")
        processes = stack.status()["processes"]
        return {"replaced": sum(processes[n]["pid"] != pid for n, pid in before.items())}

    return scenario(stack, "rolling restart", sizes, inject)


def kill_group(pid: int) -> None:
    """`kill -9` of a process and its group (the stack starts each in a session of its own)."""
    os.killpg(pid, signal.SIGKILL)


def web_kill(stack: FaultStack, sizes: Sizes) -> Outcome:
    def inject(load: Load) -> dict:
        web = stack.status()["processes"]["web2"]
        kill_group(web["pid"])
        return {"killed": f"web2 (pid {web['pid']})"}

    return scenario(stack, "web replica kill -9", sizes, inject)


def redis_kill(stack: FaultStack, sizes: Sizes) -> Outcome:
    port, token = stack.port, stack.token

    def hits() -> dict:
        # Redis came back empty, and each worker skips it for REDIS_COOLDOWN (5 s) after a
        # failure: the same list read again must be a hit once it is back in use.
        seen = []

        def hit() -> bool:
            status, headers, _ = request(port, "GET", "/api/todos?limit=3", token)
            seen.append(status)
            return status == 200 and headers.get("x-cache") == "hit"

        try:
            wait_until(hit, timeout=30, what="a cache hit", interval=0.2)
            resumed = True
        except TimeoutError:
            resumed = False
        return {"hits_resumed": resumed, "reads_until_hit": len(seen)}

    def inject(load: Load) -> dict:
        redis = stack.status()["processes"]["redis"]
        os.kill(redis["pid"], signal.SIGKILL)
        return {"after": hits}

    return scenario(stack, "Redis kill -9", sizes, inject)


def standby_stop(stack: FaultStack, sizes: Sizes) -> Outcome:
    def inject(load: Load) -> dict:
        PostgresCluster.load(stack.stack().service_dir("postgres")).stop_replica(0)
        return {}

    return scenario(stack, "standby stopped", sizes, inject)


def _wait_exports(stack: FaultStack, ids: list[str], timeout: float) -> int:
    def done() -> int:
        rows = stack.sql(
            "SELECT count(*) FROM todos_export WHERE id::text = ANY(%s) AND status = 'done'",
            (ids,),
        )
        return rows[0][0]

    with contextlib.suppress(TimeoutError):
        wait_until(lambda: done() == len(ids), timeout=timeout, what="the exports", interval=0.5)
    return done()


def _request_export(stack: FaultStack, token: str) -> str:
    status, _, body = request(stack.port, "POST", "/api/exports", token, {"format": "json"})
    if status != 202:
        raise RuntimeError(f"export answered {status}: {body[:200]!r}")
    return str(json.loads(body)["id"])


def broker_stop(stack: FaultStack, sizes: Sizes, exports: int = 3) -> Outcome:
    ids: list[str] = []

    def lost() -> dict:
        # Asked for while the broker was down: the relay publishes them once it is back.
        done = _wait_exports(stack, ids, timeout=90)
        return {"tasks_requested": len(ids), "tasks_done": done, "tasks_lost": len(ids) - done}

    def inject(load: Load) -> dict:
        RabbitMQNode.load(stack.stack().service_dir("rabbitmq")).stop()
        ids.extend(_request_export(stack, stack.token) for _ in range(exports))
        return {"after": lost}

    return scenario(stack, "broker stopped", sizes, inject)


def worker_kill(stack: FaultStack, sizes: Sizes, todos: int = EXPORT_TODOS) -> Outcome:
    token = seed_user(stack.stack().app_env(), f"exporter-{time.monotonic_ns()}", todos)
    export: dict = {}

    def status() -> str:
        return stack.sql("SELECT status FROM todos_export WHERE id::text = %s", (export["id"],))[0][
            0
        ]

    def done_once() -> dict:
        _wait_exports(stack, [export["id"]], timeout=120)
        ((deliveries,),) = stack.sql(
            "SELECT coalesce(sum(d.deliveries), 0) FROM todos_taskdelivery d "
            "JOIN todos_outboxmessage m ON d.task_id = m.task_id::text "
            "WHERE m.kwargs->>'export_id' = %s",
            (export["id"],),
        )
        ((count, chunks, distinct),) = stack.sql(
            "SELECT e.todo_count, count(c.id), count(DISTINCT c.index) FROM todos_export e "
            "LEFT JOIN todos_exportchunk c ON c.export_id = e.id WHERE e.id::text = %s "
            "GROUP BY e.todo_count",
            (export["id"],),
        )
        return {
            "killed_while": export["killed_while"],
            "export_status": status(),
            "deliveries": deliveries,
            "exported_todos": count,
            "chunks": chunks,
            "duplicated_chunks": chunks - distinct,
        }

    def blocked_on_chunks() -> bool:
        # The task's transaction waits for the lock below: it has claimed the export and is
        # about to write its file.
        rows = stack.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query ILIKE %s",
            ("%todos_exportchunk%",),
        )
        return rows[0][0] > 0

    def inject(load: Load) -> dict:
        worker = stack.status()["processes"]["worker"]
        # An export of 10,000 todos takes well under a second: to kill the worker while it
        # builds one, and not a moment after, its chunk writes wait for a lock this holds
        # until the worker is dead. What the kill interrupts is the same as without the lock:
        # an open transaction holding the export's row lock.
        with psycopg.connect(stack.state["database_url"]) as hold:
            hold.execute("LOCK TABLE todos_exportchunk IN SHARE MODE")
            export["id"] = _request_export(stack, token)
            wait_until(blocked_on_chunks, timeout=60, what="the export to start", interval=0.02)
            export["killed_while"] = status()
            kill_group(worker["pid"])
            hold.rollback()
        return {"after": done_once}

    return scenario(stack, "worker kill -9 mid-task", sizes, inject)


SCENARIOS = (rolling_restart, web_kill, redis_kill, standby_stop, broker_stop, worker_kill)


# --- the report ----------------------------------------------------------------------------------
def markdown(outcomes: list[Outcome], meta: dict) -> str:
    lines = [
        "# Faults on the running stack",
        "",
        f"{meta['date']}, {meta['cores']} cores, loopback. `python -m bench.faults`: one "
        f"`make stack` with {meta['replicas']} web replicas behind nginx; per fault "
        f"{meta['clients']} client threads send at most {meta['per_client']} requests each "
        "(2 GETs of the list, then 1 POST with an Idempotency-Key, retried by the client with "
        f"the same key after a connection error or a 5xx, at most {POST_ATTEMPTS} attempts). "
        "Counts, not timings: the box is shared.",
        "",
        "| fault | requests (during the fault) | GETs failed | POSTs failed | POSTs retried "
        "| 5xx seen | conn. errors | duplicated | status showed DOWN | revived | recovered |",
        "| --- |" + " ---: |" * 7 + " --- | --- | --- |",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.fault} | {o.sent} ({o.during_fault}) | {o.gets_failed}/{o.gets} "
            f"| {o.posts_failed}/{o.posts} "
            f"| {o.posts_retried} | {o.answers_5xx} | {o.connection_errors} | {o.duplicated} "
            f"| {', '.join(o.reported_down) or '-'} | {', '.join(o.revived) or '-'} "
            f"| {'yes' if o.recovered else 'NO'} |"
        )
    lines += ["", "## Per fault", ""]
    for o in outcomes:
        details = ", ".join(f"{k} {v}" for k, v in o.extra.items()) or "-"
        lines.append(f"- **{o.fault}**: {details}; todos missing after a 201: {o.missing}")
    lines += [
        "",
        "GETs are not retried by the client: a GET that failed is one nginx could not place on "
        "another replica (`proxy_next_upstream`). Duplicated counts idempotency keys with more "
        "than one todo in Postgres. 'status showed DOWN' is what `make stack-status` named dead "
        "after the fault; `make stack-revive` started those again, and 'recovered' means every "
        "process was alive and ready afterwards. See docs/failure-modes.md.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=Sizes.clients)
    parser.add_argument(
        "--requests", type=int, default=Sizes.per_client, help="at most, per client and fault"
    )
    parser.add_argument("--replicas", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = Sizes(clients=args.clients, per_client=args.requests)

    base = Path(tempfile.mkdtemp(prefix="faults-"))
    outcomes = []
    try:
        stack = FaultStack.start(base, replicas=args.replicas)
        try:
            for run in SCENARIOS:
                print(f"{run.__name__} ...", flush=True)
                outcomes.append(run(stack, sizes))
                print(f"  {outcomes[-1]}", flush=True)
        finally:
            stack.down()
    finally:
        shutil.rmtree(base, ignore_errors=True)

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": os.cpu_count(),
        "replicas": args.replicas,
        "clients": sizes.clients,
        "per_client": sizes.per_client,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "faults": [asdict(o) for o in outcomes]}
    (RESULTS / "faults.json").write_text(json.dumps(document, indent=2) + "\n")
    text = markdown(outcomes, meta)
    (RESULTS / "faults.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make stack` end to end: the whole one-box stack from local binaries, driven through nginx.

One stack (2 web replicas) serves every test in this module, in order: the API through nginx,
the cache and the read replica, an export run by the real worker, a rolling restart under load,
and `down`. Plain pytest: no database fixtures; the stack brings its own services.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.faults import stack_command
from deploy.local._proc import ServiceError, cmdline, pid_alive
from deploy.local.ports import free_port, port_open
from deploy.local.postgres import bindir
from deploy.local.stack.environment import MARK_ENV
from tests.servers import AppServer, Reply

pytestmark = [pytest.mark.stack]

REPLICAS = 2
# Start, restart and down each take seconds; a minute means one of them hangs.
COMMAND_TIMEOUT = 120


@dataclass
class RunningStack:
    dir: Path
    env: dict[str, str]
    api: AppServer
    token: str
    start_output: str
    data_dir: Path | None = None

    def command(self, *args: str) -> subprocess.CompletedProcess:
        return stack_command(self.env, *args, timeout=COMMAND_TIMEOUT)

    def status(self) -> dict[str, dict]:
        result = self.command("status", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        return {row["name"]: row for row in json.loads(result.stdout)["processes"]}

    def replicas(self) -> list[AppServer]:
        status = self.status()
        return [AppServer(f"http://127.0.0.1:{status[f'web{n}']['port']}") for n in (1, 2)]


def require_services() -> None:
    for binary in ("nginx", "redis-server", "rabbitmq-server"):
        if shutil.which(binary) is None:
            pytest.skip(f"`{binary}` is not installed; the stack needs it")
    try:
        bindir()
    except ServiceError:
        pytest.skip("the Postgres binaries are not installed; the stack needs them")


def processes_of(stack_dir: Path) -> list[tuple[int, str]]:
    """Live processes naming the directory on their command line or carrying the stack's mark."""
    mark = f"{MARK_ENV}={stack_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            environ = []
        line = cmdline(pid)
        if (str(stack_dir) in line or mark in environ) and pid_alive(pid):
            found.append((pid, line))
    return found


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    require_services()
    # A checkout-like folder the postgres, rabbitmq and nobody users cannot enter (mkdtemp makes
    # it 0700, like root's home): the stack keeps the services' data elsewhere.
    base = Path(tempfile.mkdtemp(prefix="stack-test-"))
    port = free_port()
    env = {
        **os.environ,
        "STACK_DIR": str(base / "stack"),
        "REPLICAS": str(REPLICAS),
        "PORT": str(port),
        # The load during the restart sends over a thousand requests a minute as one user and
        # one IP; a 429 there would be the rate limiter doing its job, not a failed request.
        "RATE_LIMIT_USER": "off",
        "RATE_LIMIT_IP": "off",
    }
    started = RunningStack(base / "stack", env, AppServer(f"http://127.0.0.1:{port}"), "", "")
    try:
        result = started.command("start")
        assert result.returncode == 0, result.stdout + result.stderr
        started.start_output = result.stdout
        started.token = re.search(r"export TOKEN=(\w+)", result.stdout).group(1)
        started.data_dir = Path(json.loads(started.command("status", "--json").stdout)["data_dir"])
        yield started
    finally:
        started.command("down")
        shutil.rmtree(base, ignore_errors=True)


def header(reply: Reply, name: str) -> str | None:
    return next((v for k, v in reply.headers.items() if k.lower() == name.lower()), None)


def test_start_prints_the_url_the_token_and_the_commands(stack):
    assert stack.api.base in stack.start_output
    assert "make stack-status" in stack.start_output
    assert "stack-down" in stack.start_output
    status = stack.status()
    assert {"web1", "web2", "nginx", "worker", "beat", "relay", "redis", "rabbitmq"} <= set(status)
    assert {"postgres-primary", "postgres-replica1"} <= set(status)
    assert all(row["ready"] for row in status.values()), status


def test_a_checkout_the_service_users_cannot_enter_keeps_their_data_in_a_folder_of_its_own(
    stack,
):
    assert stat.S_IMODE(stack.dir.parent.stat().st_mode) == 0o700
    assert stack.data_dir.parent == Path(tempfile.gettempdir())
    assert stack.data_dir.name.startswith("todo-scale-stack-")
    assert (stack.data_dir / "postgres" / "primary" / "PG_VERSION").exists()
    assert str(stack.data_dir) in stack.start_output
    shown = stack.command("status")
    assert f"Services' data in {stack.data_dir}" in shown.stdout


def test_the_api_answers_through_nginx_with_urls_on_nginx(stack):
    created = stack.api.request("POST", "/api/todos", token=stack.token, body={"title": "via"})

    assert created.status == 201, created.body
    # Proxy headers are trusted, so the URL names nginx's address, not a replica's.
    assert created.json()["url"].startswith(f"{stack.api.base}/api/todos/")
    listed = stack.api.request("GET", "/api/todos", token=stack.token)
    assert listed.status == 200
    assert "via" in [todo["title"] for todo in listed.json()]


def test_reads_are_cached_and_served_by_the_streaming_replica(stack):
    stack.api.request("POST", "/api/todos", token=stack.token, body={"title": "read me"})

    # given a list read twice: the second comes from the response cache
    stack.api.request("GET", "/api/todos?limit=7", token=stack.token)
    again = stack.api.request("GET", "/api/todos?limit=7", token=stack.token)
    assert header(again, "X-Cache") == "hit"

    # then distinct (uncached) reads reach the standby, on one replica or the other
    def replica_reads() -> float:
        return sum(
            server.metric("todo_scale_db_reads_total", alias="replica1")
            for server in stack.replicas()
        )

    deadline = time.monotonic() + 15
    limit = 10
    while replica_reads() == 0:
        assert time.monotonic() < deadline, "no read reached the replica"
        limit += 1
        reply = stack.api.request("GET", f"/api/todos?limit={limit}", token=stack.token)
        assert reply.status == 200
        time.sleep(0.1)


def test_an_export_is_run_by_the_real_worker(stack):
    stack.api.request("POST", "/api/todos", token=stack.token, body={"title": "exported"})

    accepted = stack.api.request("POST", "/api/exports", token=stack.token, body={"format": "json"})

    assert accepted.status == 202, accepted.body
    path = header(accepted, "Location").removeprefix(stack.api.base)
    deadline = time.monotonic() + 30
    while (export := stack.api.request("GET", path, token=stack.token).json())["status"] != "done":
        assert export["status"] in ("pending", "running"), export
        assert time.monotonic() < deadline, export
        time.sleep(0.1)
    download = export["download_url"].removeprefix(stack.api.base)
    todos = stack.api.request("GET", download, token=stack.token).json()
    assert "exported" in [todo["title"] for todo in todos]

    # The worker counted the run, and the relay reports no backlog, on their metrics ports.
    status = stack.status()
    worker = AppServer(f"http://127.0.0.1:{status['worker']['port']}")
    relay = AppServer(f"http://127.0.0.1:{status['relay']['port']}")
    succeeded = {"outcome": "succeeded", "task": "tasks.exports.export_run_task"}
    deadline = time.monotonic() + 10
    while worker.metric("todo_scale_celery_tasks_total", **succeeded) < 1:
        assert time.monotonic() < deadline, "the worker did not count the export"
        time.sleep(0.1)
    assert worker.metric("todo_scale_celery_tasks_total", **succeeded) == 1
    assert worker.metric("todo_scale_celery_task_duration_seconds_count") >= 1
    assert relay.metric("todo_scale_outbox_unsent") == 0


def test_prometheus_is_announced_and_status_shows_its_scrape_targets_up(stack):
    if shutil.which("prometheus") is None:
        pytest.skip("`prometheus` is not installed; the stack runs without it")
    port = stack.status()["prometheus"]["port"]
    assert f"Prometheus   http://127.0.0.1:{port}" in stack.start_output

    # Prometheus scrapes every 15 s: each target is up by its second scrape at the latest.
    deadline = time.monotonic() + 45
    while True:
        result = stack.command("status", "--json")
        targets = json.loads(result.stdout)["prometheus_targets"] or []
        if targets and all(target["health"] == "up" for target in targets):
            break
        assert time.monotonic() < deadline, targets
        time.sleep(1)

    assert sorted(target["job"] for target in targets) == sorted(
        ["web"] * REPLICAS + ["worker", "outbox-relay"]
    )
    text = stack.command("status")
    assert text.returncode == 0, text.stdout + text.stderr
    assert "Prometheus scrape targets" in text.stdout
    assert re.search(r"^  worker\s+127\.0\.0\.1:\d+\s+up$", text.stdout, re.M), text.stdout


def test_a_rolling_restart_under_load_fails_no_request(stack):
    before = stack.status()
    served, failures = [0], []
    stop = threading.Event()

    def load(number: int) -> None:
        count = 0
        while not stop.is_set():
            count += 1
            try:
                if count % 3 == 0:
                    body = {"title": f"load {number}-{count}"}
                    reply = stack.api.request("POST", "/api/todos", token=stack.token, body=body)
                else:
                    reply = stack.api.request("GET", "/api/todos?limit=5", token=stack.token)
            except OSError as exc:
                failures.append(repr(exc))
                continue
            if 200 <= reply.status < 300:
                served[0] += 1
            else:
                failures.append(reply.status)

    # given four clients keeping requests in flight through nginx the whole time
    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        # when every replica is restarted, one after the other
        began = time.monotonic()
        result = stack.command("restart")
        took = time.monotonic() - began
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    # then no request failed, and every replica runs a new process
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"rolling restart: {took:.1f} s, {served[0]} requests served, {len(failures)} failed")
    assert failures == []
    assert served[0] > 0
    after = stack.status()
    for name in ("web1", "web2"):
        assert after[name]["pid"] != before[name]["pid"]
        assert after[name]["ready"]
        assert not pid_alive(before[name]["pid"])


def test_down_leaves_nothing_running_and_keeps_the_logs(stack):
    result = stack.command("down")

    assert result.returncode == 0, result.stdout + result.stderr
    assert processes_of(stack.dir) == []
    assert processes_of(stack.data_dir) == []
    assert not port_open(int(stack.env["PORT"]))
    assert not (stack.dir / "stack.json").exists()
    assert not stack.data_dir.exists()
    assert (stack.dir / "logs" / "web1.log").exists()
    # The services' logs outlive their data directory.
    assert (stack.dir / "logs" / "postgres" / "primary.log").exists()

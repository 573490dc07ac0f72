"""Benchmark: exports of 100,000 todos by a real worker, wall time and the worker's peak memory.

Starts a private Postgres (no standby) and RabbitMQ (deploy/local, as the tests do), migrates and
seeds one user with `--todos` todos. Then, for each format and round, it starts a fresh
`celery -A config worker` (prefork, one child process, as deployed), asks for an export exactly as
`POST /api/exports` does (the service; the outbox fast path publishes it after the commit) and
waits until it is done. Reported per run:
- wall: from the export's creation (the request's commit) to `done`: publishing, delivery, build;
- task: the worker's own time, `started_at` to `finished_at`;
- the file's size and chunk count;
- the worker child's peak resident memory (VmHWM in /proc) when idle and after the export.
Results go to bench/results/exports.md and .json. Run `.venv/bin/python -m bench.exports`.
"""

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from bench.processes import RESULTS, children, manage, project_env
from deploy.local._proc import spawn, stop_group
from deploy.local.celery_worker import STOP_TIMEOUT, worker_argv
from deploy.local.postgres import start_cluster
from deploy.local.rabbitmq import start_rabbitmq

CREATE_EXPORT = """
from django.contrib.auth import get_user_model
from todos import services
owner = get_user_model().objects.get(username="seed-user-000000")
export = services.export_create(
    owner=owner, export_format="{fmt}", todo_url_prefix="http://bench.local/api/todos/"
)
print(export.pk)
"""


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def start_worker(env: dict, log: Path) -> tuple[subprocess.Popen, int]:
    worker = spawn(worker_argv(quick_start=True), env=env, log=log)
    wait(lambda: b"ready." in log.read_bytes(), 60, "the worker")
    (child,) = wait(lambda: children(worker.pid), 10, "the worker's child")
    return worker, child


def stop_worker(worker: subprocess.Popen) -> None:
    """A warm shutdown: SIGTERM to the main process, SIGKILL for the group if it lingers."""
    stop_group(worker.pid, timeout=STOP_TIMEOUT, proc=worker, leader_only=True)


def run_export(env: dict, db_url: str, fmt: str, log: Path) -> dict:
    worker, child = start_worker(env, log)
    try:
        idle = vm_hwm_kib(child)
        export_id = int(
            manage(env, "shell", "-v", "0", "-c", CREATE_EXPORT.format(fmt=fmt)).split()[-1]
        )
        with psycopg.connect(db_url, autocommit=True) as conn:

            def finished():
                return conn.execute(
                    "SELECT status, created_at, started_at, finished_at, size_bytes,"
                    " (SELECT count(*) FROM todos_exportchunk WHERE export_id = e.id)"
                    " FROM todos_export e WHERE id = %s AND status IN ('done', 'failed')",
                    [export_id],
                ).fetchone()

            status, created, started, ended, size, chunks = wait(finished, 600, "the export")
        peak = vm_hwm_kib(child)
    finally:
        stop_worker(worker)
    if status != "done":
        raise RuntimeError(f"export {export_id} {status}; see {log}")
    return {
        "format": fmt,
        "wall_s": round((ended - created).total_seconds(), 2),
        "task_s": round((ended - started).total_seconds(), 2),
        "size_mb": round(size / 1e6, 1),
        "chunks": chunks,
        "worker_idle_peak_rss_mib": round(idle / 1024, 1),
        "worker_peak_rss_mib": round(peak / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--todos", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-exports-"))
    cluster = start_cluster(replicas=0)
    broker = start_rabbitmq()
    try:
        env = project_env(DATABASE_URL=cluster.primary_url, CELERY_BROKER_URL=broker.url)
        manage(env, "migrate", "--noinput")
        manage(env, "seed_todos", "--users", "1", "--per-user", str(args.todos))
        runs = [
            run_export(env, cluster.primary_url, fmt, workdir / f"worker-{fmt}-{i}.log")
            for i in range(args.rounds)
            for fmt in ("json", "csv")
        ]
    finally:
        broker.close()
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "exports.json").write_text(
        json.dumps({"todos": args.todos, "runs": runs}, indent=2) + "\n"
    )
    header = ["format", "wall_s", "task_s", "size_mb", "chunks", "worker_idle_peak_rss_mib",
              "worker_peak_rss_mib"]  # fmt: skip
    lines = [
        f"# Export of {args.todos:,} todos by one worker process (`python -m bench.exports`)",
        "",
        "wall: creation (the request's commit) to done; task: the worker's build time; RSS: the",
        "worker child's VmHWM when idle and after the export. 2 cores, everything on one box.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(str(run[key]) for key in header) + " |" for run in runs),
    ]
    (RESULTS / "exports.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Benchmark: what the read-your-writes check adds to a read, in microseconds.

Starts a private Postgres primary with two streaming standbys (the start itself is timed) and a
Redis (deploy/local), migrates, seeds one user with 100 todos, and then times, in this process,
each part of the per-request routing decision (config/replicas/read_routing.py) many times over:

- mark lookup: the Redis GET of the user's LSN mark, made by every signed-in request;
- decision: the whole choice of a read alias with the standbys' positions cached (the mark
  lookup included), what a request pays when nothing is due;
- check: one health check (the primary's position and each standby's, one round trip each),
  paid once per `DATABASE_REPLICA_CHECK_INTERVAL` per process, so divided by the reads made in
  that interval;
- fresh position: one standby asked for its replay position, paid by a user whose mark is newer
  than the cached position (right after their own write);
- for scale, the API's list query for 100 todos on the primary and on a standby.

Results go to bench/results/replica_routing.md and .json. Run with
`.venv/bin/python -m bench.replica_routing [--repeat N]`.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from deploy.local.postgres import start_cluster
from deploy.local.redis import start_redis
from deploy.local.seed import seed_todos

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Reads per process per check interval used to spread the check's cost: 100 reads/s is a
# gunicorn sync worker at moderate load; the table shows the cost at other rates too.
READS_PER_INTERVAL = (10, 100, 1000)


def timed(call, repeat: int, warmup: int = 200) -> dict:
    """Median, p90 and p99 of `call()` in microseconds."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return {
        "median_us": round(statistics.median(samples), 1),
        "p90_us": round(samples[int(len(samples) * 0.9)], 1),
        "p99_us": round(samples[int(len(samples) * 0.99)], 1),
        "n": repeat,
    }


def measure(repeat: int) -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import RequestFactory

    from config.replicas import read_routing, sticking
    from config.replicas.health import primary_write_location, replica_health
    from todos.models import Todo

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(username="bench")
    seed_todos(user, 100)
    health = replica_health()
    health.refresh(force=True)
    # Every standby in the cached answer, and no further check due while the decision is timed.
    settings.DATABASE_REPLICA_CHECK_INTERVAL = 3600
    request = RequestFactory().get("/api/todos")
    request.user = user

    def decision():
        with read_routing.routing_for(request) as routing:
            routing.read_alias()

    def fresh_position():
        health.states["replica1"].replay_lsn = 0
        health.caught_up("replica1", 1)

    def list_on(alias):
        return lambda: list(Todo.objects.using(alias).filter(owner=user).order_by("id")[:100])

    results = {
        "mark_lookup": timed(lambda: sticking.write_location(user.pk), repeat),
        "decision": timed(decision, repeat),
        "check": timed(lambda: health.refresh(force=True), max(repeat // 10, 100)),
        "fresh_position": timed(fresh_position, repeat),
        "primary_position": timed(primary_write_location, repeat),
        "list_100_primary": timed(list_on("default"), max(repeat // 10, 100)),
        "list_100_replica": timed(list_on("replica1"), max(repeat // 10, 100)),
    }
    # With a mark the decision also compares it with the cached positions.
    sticking.stick(user.pk)
    time.sleep(0.05)
    health.refresh(force=True)
    assert health.states["replica1"].replay_lsn >= sticking.write_location(user.pk)
    results["decision_with_mark"] = timed(decision, repeat)
    return results


def report(results: dict, startup: dict) -> str:
    decision = results["decision"]["median_us"]
    check = results["check"]["median_us"]
    lines = [
        "# Read routing: the cost of the read-your-writes check",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} "
        "cores, loopback, one process (`python -m bench.replica_routing`).",
        "",
        f"Private primary + 2 streaming standbys started in {startup['cluster_2_replicas_s']} s "
        f"(Redis in {startup['redis_s']} s).",
        "",
        "| step | paid | median µs | p90 µs | p99 µs |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    rows = [
        ("mark lookup (Redis GET)", "every signed-in read request", "mark_lookup"),
        ("whole decision, positions cached", "every signed-in read request", "decision"),
        ("whole decision, user has a mark", "same, user wrote recently", "decision_with_mark"),
        ("health check (primary + 2 standbys)", "once per second per process", "check"),
        ("a standby asked afresh", "read right after the user's write", "fresh_position"),
        ("primary's WAL position", "after a request that wrote", "primary_position"),
        ("for scale: list of 100 todos, primary", "-", "list_100_primary"),
        ("for scale: list of 100 todos, standby", "-", "list_100_replica"),
    ]
    for label, paid, key in rows:
        r = results[key]
        lines.append(f"| {label} | {paid} | {r['median_us']} | {r['p90_us']} | {r['p99_us']} |")
    lines += [
        "",
        "Extra cost per read request (median decision + the check spread over the reads of one "
        "interval):",
        "",
        "| reads per second per process | extra µs per read |",
        "| ---: | ---: |",
    ]
    for reads in READS_PER_INTERVAL:
        lines.append(f"| {reads} | {decision + check / reads:.1f} |")
    lines += [
        "",
        "A request pays the decision once, however many queries it makes. A user who has just "
        'written pays one more standby round trip ("a standby asked afresh") on the next read '
        "only when the cached position is older than their write; a request that wrote pays "
        "one primary round trip for the mark plus a Redis SET.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5000)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    cluster = start_cluster(replicas=2)
    startup = {"cluster_2_replicas_s": round(time.perf_counter() - started, 2)}
    try:
        started = time.perf_counter()
        redis_server = start_redis()
        startup["redis_s"] = round(time.perf_counter() - started, 3)
        try:
            cluster.create_database("bench")
            os.environ.update(
                DJANGO_SETTINGS_MODULE="config.settings",
                # A throwaway key: this process and its data live for the benchmark only.
                DJANGO_SECRET_KEY="benchmark-secret-key-not-for-production",
                DATABASE_URL=cluster.url(dbname="bench"),
                DATABASE_REPLICA_URLS=",".join(
                    cluster.url(port, "bench") for port in cluster.replica_ports
                ),
                REDIS_URL=f"{redis_server.url}/0",
            )
            results = measure(args.repeat)
        finally:
            redis_server.close()
    finally:
        cluster.stop()

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "replica_routing.json").write_text(
        json.dumps({"startup": startup, "results": results}, indent=2) + "\n"
    )
    text = report(results, startup)
    (RESULTS / "replica_routing.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

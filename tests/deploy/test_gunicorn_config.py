"""The shipped gunicorn config: how often it recycles workers at full load, and its worker count."""

import os
import runpy
from pathlib import Path

import pytest

GUNICORN_CONF = Path(__file__).resolve().parents[2] / "deploy" / "gunicorn.conf.py"
# The most requests per second the box served on the cheapest path (the cached list, recycling
# off, 2 cores shared with wrk, Postgres and Redis): 3,030-3,957 req/s, rounded up.
MEASURED_CAPACITY_RPS = 4000
# ... on this many cores. One worker runs Python on one core at a time (the GIL), so no worker
# serves more than its core's share, however few workers there are.
MEASURED_CORES = 2
# A restart boots Django on the cores that serve requests; at most one per worker this often.
RESTART_INTERVAL_FLOOR_SECONDS = 600


def load_config(monkeypatch, tmp_path, **env: str) -> dict:
    """Execute the config file as gunicorn does, in this process, with only `env` set."""
    for name in ("PORT", "WEB_CONCURRENCY", "GUNICORN_ACCESS_LOG", "GUNICORN_CONTROL_SOCKET"):
        monkeypatch.delenv(name, raising=False)
    # A given metrics directory: the config then creates none and changes no variable.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


def restarts_per_worker(config: dict, seconds: float) -> float:
    """Restarts of one worker in `seconds` at the measured capacity, spread over every worker."""
    if not config["max_requests"]:
        return 0.0
    per_worker_rps = MEASURED_CAPACITY_RPS / max(config["workers"], MEASURED_CORES)
    # The jitter only ever adds requests; the smallest bound is the worst case.
    return per_worker_rps * seconds / config["max_requests"]


def test_workers_restart_less_than_once_per_ten_minutes_at_full_load(monkeypatch, tmp_path):
    config = load_config(monkeypatch, tmp_path)

    assert restarts_per_worker(config, RESTART_INTERVAL_FLOOR_SECONDS) < 1
    # The bound is a guard, not off: a leak a change might add is still capped.
    assert config["max_requests"] > 0
    assert 0 < config["max_requests_jitter"] < config["max_requests"]


@pytest.mark.parametrize("workers", ["1", "2", "7"])
def test_recycling_stays_rare_whatever_web_concurrency_says(monkeypatch, tmp_path, workers):
    config = load_config(monkeypatch, tmp_path, WEB_CONCURRENCY=workers)

    # Fewer workers means more requests each, up to a core's share.
    assert restarts_per_worker(config, RESTART_INTERVAL_FLOOR_SECONDS) < 1


def test_web_concurrency_sets_the_worker_count(monkeypatch, tmp_path):
    config = load_config(monkeypatch, tmp_path, WEB_CONCURRENCY="7")

    assert config["workers"] == 7
    assert config["threads"] == 4


def test_default_is_one_threaded_worker_per_usable_core(monkeypatch, tmp_path):
    config = load_config(monkeypatch, tmp_path)

    assert config["worker_class"] == "deploy.balanced_worker.BalancedThreadWorker"
    assert config["workers"] == config["_available_cores"]()
    assert 1 <= config["workers"] <= len(os.sched_getaffinity(0))
    assert config["threads"] == 4


def test_a_cpu_quota_caps_the_worker_count(monkeypatch, tmp_path):
    config = load_config(monkeypatch, tmp_path)
    available = config["_available_cores"]

    # A pod limited to 500m on a many-core node: the quota, not the node, sets the workers.
    real_open = open

    def quota_open(path, *args, **kwargs):
        if path == "/sys/fs/cgroup/cpu.max":
            return real_open(tmp_path / "cpu.max", *args, **kwargs)
        return real_open(path, *args, **kwargs)

    (tmp_path / "cpu.max").write_text("50000 100000\n")
    monkeypatch.setattr("builtins.open", quota_open)

    assert available() == 1


@pytest.mark.parametrize("workers", ["1", "2", "16"])
def test_the_backlog_holds_whatever_nginx_lets_a_replica_hold(monkeypatch, tmp_path, workers):
    config = load_config(monkeypatch, tmp_path, WEB_CONCURRENCY=workers)
    capacity = config["_capacity"]
    bound = capacity.upstream_max_conns(config["workers"], config["threads"])

    # The figures nginx's bound is rendered from are the ones gunicorn runs with.
    assert (config["workers"], config["threads"]) == (int(workers), capacity.THREADS)
    # Nothing nginx may send waits for room in the kernel's queue, with as much again spare.
    assert config["backlog"] >= 2 * bound
    assert config["backlog"] >= 64

"""One measured round of load: wrk against a URL, and the CPU every party spent meanwhile.

wrk drives the load (a Lua script when requests vary); the CPU figures come from /proc: the
server's process tree, the data stores (Postgres postmasters with their backends, Redis), wrk
itself, and what the rest of the machine used (the noise of a shared box).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.processes import children

# A request slower than this counts as a socket error and drops out of wrk's latencies. wrk's
# default (2 s) is within reach of a loaded 2-core box at c=64, so its p99 would hide the slowest
# requests; 10 s keeps them in the figures and stays below gunicorn's 30 s worker timeout.
WRK_TIMEOUT = "10s"


@dataclass
class Load:
    """What wrk sends: one URL, a header, and optionally a Lua script that varies requests."""

    url: str
    token: str | None = None
    script: str | None = None  # Lua source, see bench/scenarios.py
    threads: int = 2  # wrk -t: 2, one per core, unless each connection must be a client


def process_tree(pid: int) -> list[int]:
    return [pid, *children(pid)]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of processes, from /proc (clock ticks)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def stores_cpu(postmasters: list[int], redis_pid: int) -> float:
    """CPU seconds of Postgres (each postmaster, its live children, and the backends it reaped)
    and Redis: the work a server hands to its data stores."""
    ticks = os.sysconf("SC_CLK_TCK")
    reaped = 0.0
    for postmaster in postmasters:
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
        reaped += (int(fields[13]) + int(fields[14])) / ticks
    trees = [pid for postmaster in postmasters for pid in process_tree(postmaster)]
    return cpu_seconds([*trees, redis_pid]) + reaped


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


def wrk(load: Load, seconds: float, connections: int) -> dict:
    """Run wrk once; its figures, with every socket error and the script's own counters."""
    command = ["wrk", f"-t{load.threads}", f"-c{connections}", f"-d{seconds}s"]
    command += ["--timeout", WRK_TIMEOUT, "--latency"]
    if load.token:
        command += ["-H", f"Authorization: Token {load.token}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if load.script:
            script.write(load.script)
            script.flush()
            command += ["-s", script.name]
        done = subprocess.run([*command, load.url], capture_output=True, text=True)
    out = done.stdout
    if done.returncode or "requests in" not in out:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{out}\n{done.stderr}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    counters = {name: int(value) for name, value in re.findall(r"^counter (\w+) (\d+)$", out, re.M)}
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(n) for n in sockets.groups()) if sockets else 0,
        "p50_ms": milliseconds(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99_ms": milliseconds(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
        **counters,
    }


def measure_round(
    load: Load,
    pids: Callable[[], list[int]],
    stores: Callable[[], float],
    *,
    warm: float,
    seconds: float,
    connections: int,
) -> dict:
    """A warm-up, then one measured wrk run with the CPU each party spent over it."""
    if warm:
        wrk(load, warm, connections)  # opens the connections, fills caches and pools
    server, store = cpu_seconds(pids()), stores()
    busy, loader = machine_busy(), load_generator_cpu()
    started = time.monotonic()
    result = wrk(load, seconds, connections)
    elapsed = time.monotonic() - started
    server = cpu_seconds(pids()) - server
    store = stores() - store
    loader = load_generator_cpu() - loader
    busy = machine_busy() - busy
    served = max(result["requests"], 1)
    result.update(
        cpu_ms_per_request=server * 1000 / served,
        stores_cpu_ms_per_request=store * 1000 / served,
        wrk_cores=loader / elapsed,
        # Whatever else ran on the box meanwhile (tests, other stacks): the noise.
        other_cores=max(busy - server - store - loader, 0.0) / elapsed,
    )
    return result


def summarize(rounds: list[dict]) -> dict:
    """Medians over the rounds; errors and the script's counters summed."""
    keys = ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request", "stores_cpu_ms_per_request")
    summary = {key: statistics.median(r[key] for r in rounds) for key in keys}
    summary["other_cores"] = statistics.median(r["other_cores"] for r in rounds)
    summary["wrk_cores"] = statistics.median(r["wrk_cores"] for r in rounds)
    summary["rps_min"] = min(r["rps"] for r in rounds)
    summary["rps_max"] = max(r["rps"] for r in rounds)
    for key in ("non_2xx", "socket_errors", "stale_reads", "checked_reads"):
        if any(key in r for r in rounds):
            summary[key] = sum(r.get(key, 0) for r in rounds)
    return {**summary, "rounds": rounds}

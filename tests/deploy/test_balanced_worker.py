"""The shipped worker class spreads a replica's kept-alive connections evenly over its workers
(deploy/balanced_worker.py), and never waits on a worker that cannot accept."""

import os
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deploy.balanced_worker import Slots
from deploy.local.gunicorn import start_gunicorn
from tests.servers import clean_env

# A burst as a connection pool or a load generator opens it, and enough rounds that plain
# gthread (whichever worker accepts first takes it) fails at least one: its split of a burst is
# left to the scheduler.
BURST = 48
BURSTS = 3
WORKERS = 2


def test_a_worker_sees_the_fewest_connections_of_its_live_siblings():
    slots = Slots(count=8)
    mine, other, third = (slots.claim(pid) for pid in (101, 102, 103))

    assert len({mine, other, third}) == 3
    slots.beat(mine, 9)
    slots.beat(other, 4)
    slots.beat(third, 6)
    assert slots.fewest_others(mine) == 4
    assert slots.fewest_others(other) == 6

    # A stopping worker releases its slot: it no longer holds the others back.
    slots.release(other)
    assert slots.fewest_others(mine) == 6
    slots.release(third)
    assert slots.fewest_others(mine) is None


def test_a_worker_whose_loop_stopped_beating_does_not_count():
    slots = Slots(count=8, stale_ns=50_000_000, free_ns=200_000_000)
    mine, stuck = slots.claim(201), slots.claim(202)
    slots.beat(stuck, 0)
    assert slots.fewest_others(mine) == 0

    time.sleep(0.1)
    slots.beat(mine, 30)
    # 0 connections, but stale: waiting on it would leave the connections unaccepted.
    assert slots.fewest_others(mine) is None
    # Long gone, its slot is free for a new worker.
    time.sleep(0.15)
    assert slots.claim(203) == stuck


def test_every_slot_taken_leaves_a_new_worker_unbalanced_not_stuck():
    slots = Slots(count=2)
    assert slots.claim(301) is not None
    assert slots.claim(302) is not None
    assert slots.claim(303) is None


def test_forked_workers_share_the_table():
    slots = Slots(count=8)
    mine = slots.claim(os.getpid())
    ready_read, ready_write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's exit code is the assertion)
        try:
            slot = slots.claim(os.getpid())
            slots.beat(slot, 17)
            os.write(ready_write, b"x")
            time.sleep(1)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_read, 1) == b"x"
        assert slots.fewest_others(mine) == 17
    finally:
        os.waitpid(child, 0)
        os.close(ready_read)
        os.close(ready_write)


def established_per_worker(port: int, workers: list[int]) -> dict[int, int]:
    """Established connections to `port`, by the worker process that holds them (/proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # TCP_ESTABLISHED
                inodes.add(fields[9])
    counts = {}
    for pid in workers:
        held = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except FileNotFoundError:  # closed meanwhile
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held += 1
        counts[pid] = held
    return counts


def kept_alive(port: int) -> socket.socket:
    """A connection that has had one keep-alive request answered, left open."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = conn.recv(4096)
        assert chunk, "the server closed the connection"
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:100]
    return conn


@pytest.fixture
def two_workers():
    with tempfile.TemporaryDirectory(prefix="balanced-") as directory:
        log = Path(directory) / "gunicorn.log"
        server = start_gunicorn(env=clean_env(), workers=WORKERS, log=log, ready_path="/healthz")
        with server:
            deadline = time.monotonic() + 30
            while len(workers := children(server.pid)) < WORKERS:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            # Every worker has loaded the app and beats (the first answered /healthz already).
            time.sleep(1.5)
            yield server, workers


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


def test_a_burst_of_keepalive_connections_is_spread_evenly_over_the_workers(two_workers):
    server, workers = two_workers
    opened = []
    try:
        for _ in range(BURSTS):
            with ThreadPoolExecutor(max_workers=BURST) as pool:
                opened += list(pool.map(lambda _: kept_alive(server.port), range(BURST)))
            counts = established_per_worker(server.port, workers)

            assert sum(counts.values()) == len(opened), counts
            # Each worker publishes its count once per turn of its loop, so two accepting at
            # once may pass each other by one.
            assert max(counts.values()) - min(counts.values()) <= 2, counts
    finally:
        for conn in opened:
            conn.close()


def test_connections_are_served_while_a_sibling_is_stopped(two_workers):
    server, (stopped, running) = two_workers
    os.kill(stopped, 19)  # SIGSTOP: its loop no longer beats, nor accepts
    opened = []
    try:
        started = time.monotonic()
        # More than one worker's fair share: the running one must not hold back for long.
        with ThreadPoolExecutor(max_workers=8) as pool:
            opened = list(pool.map(lambda _: kept_alive(server.port), range(8)))
        waited = time.monotonic() - started

        counts = established_per_worker(server.port, [stopped, running])
        assert counts == {stopped: 0, running: 8}
        # Held back at most until the stopped worker's heartbeat went stale (3 s).
        assert waited < 10
    finally:
        os.kill(stopped, 18)  # SIGCONT
        for conn in opened:
            conn.close()

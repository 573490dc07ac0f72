"""gunicorn's gthread worker, with kept-alive connections spread evenly over a replica's workers.

Every worker of a replica listens on the one socket the arbiter opened, and each new connection
goes to whichever worker's main loop calls `accept()` first. A client that opens its connections
in a burst (a connection pool, nginx's upstream keepalive, a load generator) can land most of
them on one worker; they then stay there for their whole keep-alive life, queueing behind that
worker's threads and its one GIL while the other workers idle. With 64 connections on two
workers, a split of 64/0 halved a round's throughput and 40/24 doubled its slowest requests.

`BalancedThreadWorker` accepts only while it holds no more connections than the least loaded
live worker of its replica: a worker one connection ahead stops listening until the others catch
up, so the connections of a burst alternate between workers and a replica's workers stay within
one connection of each other. Everything else is gthread's own (threads, keep-alive, graceful
stop, the timeouts).

How the workers see each other: the arbiter maps one shared page before it forks (at import of
this module, which gunicorn does when it reads `worker_class`), and each worker claims a slot of
it, where its main loop writes its open connections and a heartbeat on every turn (at least once
a second, gunicorn's own loop period). A slot whose heartbeat is older than `STALE_NS` (a worker
still booting, stopping, killed, or stuck) does not count, so no worker ever waits on one that
cannot accept: the least loaded live worker always accepts, exactly as plain gthread would.

Standard library and gunicorn only: the arbiter imports this module without loading the project.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import tempfile
import time

from gunicorn.workers.gthread import ThreadWorker

# More workers than one replica runs (one per core, or WEB_CONCURRENCY): a worker that finds no
# free slot serves as a plain gthread worker, unbalanced.
SLOTS = 128
# Per slot: the worker's pid, its open connections, its last heartbeat (time.monotonic_ns(),
# the same clock in every process of the machine).
SLOT = struct.Struct("qqq")
# A worker's loop beats at least once a second; three missed beats and it no longer counts.
STALE_NS = 3_000_000_000
# A worker held back looks again this often (seconds): a sibling that took the lead stops
# accepting, and nothing else wakes this one to take over (gthread's own loop sleeps up to 1 s).
# While its siblings' counts change (connections arriving) it looks every 2 ms; while they stay
# put the interval doubles up to 20 ms, so an idle held-back worker wakes 50 times a second.
HELD_BACK_POLL = 0.002
HELD_BACK_POLL_MAX = 0.02
# A slot unclaimed for this long may be taken by a new worker (its owner is gone).
FREE_NS = 10_000_000_000


class Slots:
    """The shared table of a replica's workers, mapped before the fork and inherited by each."""

    def __init__(self, count: int = SLOTS, stale_ns: int = STALE_NS, free_ns: int = FREE_NS):
        # A file only for its lock: fcntl locks belong to a process, so forked workers exclude
        # each other while claiming (flock's would be shared through the inherited descriptor).
        # In memory where the machine has it (like gunicorn's heartbeat files), so the page's
        # writes never go to a disk.
        shm = "/dev/shm"  # noqa: S108
        where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
        # Open for the life of the arbiter and its workers; the OS removes it when all exit.
        self.file = tempfile.TemporaryFile(prefix="gunicorn-balance-", dir=where)  # noqa: SIM115
        # The slots, then one value: how many slots have ever been claimed (the scan's bound).
        size = count * SLOT.size + 8
        self.file.truncate(size)
        self.memory = mmap.mmap(self.file.fileno(), size)
        self.values = memoryview(self.memory).cast("q")
        self.count = count
        self.used = count * 3
        self.stale_ns = stale_ns
        self.free_ns = free_ns

    def claim(self, pid: int) -> int | None:
        """A free slot for `pid`, marked live now; None when every slot is taken."""
        fcntl.lockf(self.file, fcntl.LOCK_EX)
        try:
            now = time.monotonic_ns()
            for slot in range(self.count):
                base = slot * 3
                if self.values[base] == 0 or now - self.values[base + 2] > self.free_ns:
                    self.values[base : base + 3] = memoryview(SLOT.pack(pid, 0, now)).cast("q")
                    self.values[self.used] = max(self.values[self.used], slot + 1)
                    return slot
            return None
        finally:
            fcntl.lockf(self.file, fcntl.LOCK_UN)

    def beat(self, slot: int, connections: int) -> None:
        base = slot * 3
        self.values[base + 1] = connections
        self.values[base + 2] = time.monotonic_ns()

    def release(self, slot: int) -> None:
        base = slot * 3
        self.values[base : base + 3] = memoryview(SLOT.pack(0, 0, 0)).cast("q")

    def fewest_others(self, slot: int) -> int | None:
        """The fewest connections a live worker other than `slot` holds; None if none is live."""
        values, now, fewest = self.values, time.monotonic_ns(), None
        for other in range(values[self.used]):
            base = other * 3
            if other == slot or values[base] == 0 or now - values[base + 2] > self.stale_ns:
                continue
            if fewest is None or values[base + 1] < fewest:
                fewest = values[base + 1]
        return fewest


# Mapped in the arbiter, before any worker forks; shared by all of this replica's workers.
SHARED = Slots()


class BalancedThreadWorker(ThreadWorker):
    """gthread, accepting only while no live sibling holds fewer connections."""

    slot: int | None = None
    # The held-back poll interval now, and the siblings' fewest connections when last looked.
    poll = HELD_BACK_POLL
    seen_fewest: int | None = None

    def run(self):
        self.slot = SHARED.claim(os.getpid())
        if self.slot is None:
            self.log.warning("no free balancing slot: this worker accepts unbalanced")
        try:
            super().run()
        finally:
            if self.slot is not None:
                SHARED.release(self.slot)

    def balanced(self) -> bool:
        """Whether this worker may take the next connection: no live sibling holds fewer."""
        if self.slot is None:
            return True
        fewest = SHARED.fewest_others(self.slot)
        if fewest != self.seen_fewest:
            self.seen_fewest, self.poll = fewest, HELD_BACK_POLL
        return fewest is None or self.nr_conns <= fewest

    def notify(self):
        """Each turn of the main loop: the heartbeat, and stop accepting if now ahead."""
        super().notify()
        if self.slot is None:
            return
        if not self.alive:
            # Stopping: it accepts nothing more, so the others must not wait on it.
            SHARED.release(self.slot)
            self.slot = None
            return
        SHARED.beat(self.slot, self.nr_conns)
        if self._accepting and not self.balanced():
            super().set_accept_enabled(False)

    def wait_for_and_dispatch_events(self, timeout):
        if self.slot is not None and not self._accepting and self.alive:
            timeout = min(timeout, self.poll)
            self.poll = min(self.poll * 2, HELD_BACK_POLL_MAX)
        super().wait_for_and_dispatch_events(timeout)

    def set_accept_enabled(self, enabled):
        # gthread's loop asks to accept whenever it is below worker_connections; accept only
        # while balanced too. Re-asked every turn, so a worker the others caught up with
        # listens again on its next turn.
        super().set_accept_enabled(enabled and self.balanced())

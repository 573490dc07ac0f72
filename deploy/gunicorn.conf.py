"""gunicorn settings for every web replica.

Run as `gunicorn -c deploy/gunicorn.conf.py config.wsgi:application`.

Everything a deployment varies comes from the environment (`PORT`, `WEB_CONCURRENCY`,
`GUNICORN_ACCESS_LOG`, `PROMETHEUS_MULTIPROC_DIR`, `LOG_FORMAT`, `LOG_LEVEL`); see the settings
reference at
https://docs.gunicorn.org/en/stable/settings.html
"""

import glob
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from gunicorn.glogging import Logger

_MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Set when this file created the metrics directory itself, so the master that created it (and a
# HUP reload, which re-reads this file with the variable already set) knows to delete it on exit.
_OWNED_MULTIPROC_DIR_ENV = "GUNICORN_OWNS_PROMETHEUS_MULTIPROC_DIR"


def _sibling_module(name: str, relative: str):
    """A file of the project read by its path, not imported as part of its package: importing
    `config.log_format` would load the config package, and with it Celery and Django's
    settings, into the master, where a HUP reload would keep that old code for every new
    worker."""
    path = Path(__file__).resolve().parent.parent / relative
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The sizing nginx's bound in front of each replica is derived from (deploy/capacity.py).
_capacity = _sibling_module("todo_scale_capacity", "deploy/capacity.py")
_available_cores = _capacity.available_cores


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


bind = f"0.0.0.0:{os.environ.get('PORT') or '8000'}"

# Measured on a 2-core box (wrk -t2 -c64, 100-todo list, private Postgres primary + standby and
# Redis on the same cores; medians of 3 interleaved rounds on a machine busy with other work, so
# only the ratios count): gthread, one worker per core with 4 threads, served the cached list at
# 1,159 req/s against 639 for 5 sync workers and 592 for 3; create at 85 against 24 and 68;
# patch at 57 against 36 and 27. Threads overlap a request's Postgres and Redis round trips
# (where most of its time goes) without a process each, and keep-alive connections skip a TCP
# accept and close per request (sync workers answer `Connection: close`, so nginx's upstream
# keepalive never applied). 4 workers x 4 threads (1,023 hit) was slower; 2 x 8 was slower on
# the cached list (943) and create (74), faster only on the uncached list (75 against 36).
workers = _capacity.workers(os.environ)
# gthread, with a replica's kept-alive connections spread evenly over its workers
# (deploy/balanced_worker.py). Plain gthread leaves the spread to whichever worker calls
# accept() first: over 4 interleaved rounds of 64 connections on 2 workers, the balanced worker
# cut the p99 of creates from 165 to 124 ms and of the item GET from 43 to 31 ms, at the same
# req/s (918 against 895 creates/s) and CPU per request; single rounds of plain gthread fell to
# half the throughput when a burst put (nearly) all 64 connections on one worker.
worker_class = "deploy.balanced_worker.BalancedThreadWorker"
threads = _capacity.THREADS

# No recycling in practice: with max_requests = 1000 and 5 workers at ~1,600 req/s each worker
# was replaced every few seconds, each replacement booting Django on the same cores, and the
# cached list did 596 req/s (p99 177 ms, 64 client timeouts) against 1,484-1,707 (p99 72-94 ms)
# with recycling off or bounded at 100,000. Worker RSS over 35,000 cached-list requests with
# recycling off: 79.6 MB after start, 85.7 MB once every code path had run (~600 requests per
# worker), then 85.7-86.2 MB to the end, so nothing grows per request. The bound stays as a
# guard against a leak a future change might add: 2,000,000 requests is over 16 minutes of one
# worker serving 2,000 req/s (half the box's measured cached-list capacity), and the jitter
# (10%) keeps workers that started together from restarting together.
max_requests = 2_000_000
max_requests_jitter = 200_000

# Load is shed in front of the replicas, not here: nginx lets each replica hold at most
# `max_conns` requests (deploy/capacity.py: workers x threads running + half as many waiting, 12
# for 2 x 4) and answers the rest at once with 503 and Retry-After. Nothing this file could set
# refuses quickly instead: gthread accepts every connection it can (up to worker_connections,
# 1,000 per worker) and queues it for a thread inside the worker, and a full listen backlog does
# not refuse either (Linux drops the handshake unanswered, the client retries a second later).
# So the backlog only has to hold what nginx can have connecting at once, which its bound caps:
# twice `max_conns`, at least 64 (64 for 2 workers, was gunicorn's default of 2048). Without
# nginx in front (Kubernetes' Service) nothing bounds the queue inside the workers; the
# ingress-nginx controller has no per-pod max_conns.
backlog = _capacity.listen_backlog(workers)

# A gthread worker's main loop reports to the arbiter every second whatever its threads do, so
# this kills a worker that hangs as a whole (stuck in C code holding the GIL) after 30 s; it does
# not time out a request. A slow request is cut by nginx's proxy_read_timeout (35 s, longer, so a
# hung worker is replaced first and nginx sees its connection close): nginx answers 504 and frees
# the replica's max_conns slot, while the request's thread runs on to its end. No API request
# legitimately takes that long (every list is paginated and capped).
timeout = 30
# On SIGTERM in-flight requests get 30 s to finish, within Kubernetes' 40 s grace period (5 s
# preStop sleep + 30 s + slack) so nothing is cut off by SIGKILL.
graceful_timeout = 30
# Longer than nginx's upstream keepalive_timeout (4 s): the proxy must always be the side that
# closes an idle connection, or it may send a request on a socket gunicorn is closing and get an
# error. Idle keep-alive connections hold no thread while they wait (gthread parks them on a
# poller), so 5 s costs only a socket each.
keepalive = 5

# Worker heartbeats are a file touched on every request; on an overlay or disk-backed /tmp a
# slow fsync can stall workers until the arbiter kills them, /dev/shm is memory.
_SHARED_MEMORY_DIR = "/dev/shm"  # noqa: S108 (only heartbeat files, as gunicorn's docs advise)
if os.path.isdir(_SHARED_MEMORY_DIR) and os.access(_SHARED_MEMORY_DIR, os.W_OK):
    worker_tmp_dir = _SHARED_MEMORY_DIR

# Each worker imports the app after the fork: no database, Redis or broker socket is opened in
# the master and then shared by every child (interleaved bytes on one socket corrupt both
# streams), and a recycled worker or a HUP reload picks up new code. Preloading measured no faster
# (cached list 1,548 req/s against 1,484 without, within the rounds' spread) once workers are no
# longer recycled every few seconds, which is the only time the saved import would count.
# Tracing relies on it too: config/wsgi.py starts it, and its span export thread, in each worker.
preload_app = False

# The control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl), so several
# replicas on one machine would fight over it; it is opt-in with a per-replica path.
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")
if not control_socket_disable:
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]

errorlog = "-"
if _env_flag("GUNICORN_ACCESS_LOG"):
    accesslog = "-"


_log_format = _sibling_module("todo_scale_log_format", "config/log_format.py")
# The master's lines in the format of every other process; each worker then applies Django's
# LOGGING, the same configuration with the request id filter, which needs the project.
logconfig_dict = _log_format.logging_config(
    fmt=_log_format.log_format(os.environ.get("LOG_FORMAT")),
    level=os.environ.get("LOG_LEVEL") or "INFO",
    request_ids=False,
)


class AccessLogOptIn(Logger):
    """gunicorn's logger with the access log only when `accesslog` is set.

    gunicorn turns the access log on for any `logconfig_dict` and then builds its line for every
    request; each request already has its own line (config/edge/request_telemetry.py).
    """

    def _compute_access_log_enabled(self):
        return bool(self.cfg.accesslog)


logger_class = AccessLogOptIn

# prometheus_client decides at import time whether metrics are per-process or shared through
# files, so the directory must be in the environment before any worker imports it. Without one
# given, each master gets its own directory: two replicas on one machine must never sum each
# other's counters.
if not os.environ.get(_MULTIPROC_DIR_ENV):
    os.environ[_MULTIPROC_DIR_ENV] = tempfile.mkdtemp(prefix="todo-scale-metrics-")
    os.environ[_OWNED_MULTIPROC_DIR_ENV] = "1"


def on_starting(server):
    """Start from an empty metrics directory.

    Files left by a previous master (a restarted container keeps its Kubernetes emptyDir) would
    otherwise be added to this one's counters and keep dead workers' gauges alive.
    """
    for path in glob.glob(os.path.join(os.environ[_MULTIPROC_DIR_ENV], "*.db")):
        os.remove(path)


def child_exit(server, worker):
    """Drop a dead worker's live gauges; its counters stay so totals never go backwards.

    Each recycled worker leaves its counter files behind by design, so the directory grows with
    the replica's uptime; a restart of the replica starts it empty again.
    """
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if os.environ.get(_OWNED_MULTIPROC_DIR_ENV):
        shutil.rmtree(os.environ[_MULTIPROC_DIR_ENV], ignore_errors=True)

"""Granian serving config.wsgi: the opt-in alternative to gunicorn (`SERVER=granian`).

Run as `python -m deploy.granian_server` from the project's root (`PORT` as for gunicorn;
`--bind HOST:PORT` overrides the config's bind, as gunicorn's `-b` does).
Granian (https://github.com/emmett-framework/granian) parses HTTP and manages connections in
Rust and hands each request to one of a worker's Python threads, where gunicorn's gthread worker
does both in Python: on this project's uncached reads it served about a quarter more requests
per second on the same cores (bench/results/performance.md has the rows side by side).

Its sizing is deploy/gunicorn.conf.py's, read from that file so one place holds the figures:
the port, one worker per available core, `threads` blocking threads per worker, the backlog,
the graceful timeout, the log format, and the Prometheus multiprocess directory (a fresh one
per server unless PROMETHEUS_MULTIPROC_DIR is given, emptied at the start, removed at the exit
when it was made here).

What gunicorn does that this does not: recycling a worker after `max_requests` (granian can
recycle on RSS or age instead; neither is set, as for gunicorn, whose bound is a leak guard
measured never to trigger), a HUP reload, and marking a dead worker's live gauges dead (granian
respawns a failed worker; its gauges stay until the server restarts).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import shutil
from pathlib import Path
from types import ModuleType

from granian import Granian
from granian.constants import Interfaces

ROOT = Path(__file__).resolve().parent.parent
APPLICATION = "config.wsgi:application"


def gunicorn_settings() -> ModuleType:
    """deploy/gunicorn.conf.py as a module (it also puts the metrics directory in the
    environment, before any worker imports prometheus_client)."""
    path = ROOT / "deploy" / "gunicorn.conf.py"
    spec = importlib.util.spec_from_file_location("todo_scale_gunicorn_conf", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def server(settings: ModuleType, bind: str) -> Granian:
    host, _, port = bind.rpartition(":")
    return Granian(
        APPLICATION,
        address=host,
        port=int(port),
        interface=Interfaces.WSGI,
        workers=settings.workers,
        blocking_threads=settings.threads,
        backlog=settings.backlog,
        websockets=False,
        respawn_failed_workers=True,
        workers_kill_timeout=settings.graceful_timeout,
        log_dictconfig=settings.logconfig_dict,
        working_dir=ROOT,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", help="HOST:PORT (default: deploy/gunicorn.conf.py's bind)")
    args = parser.parse_args(argv)
    settings = gunicorn_settings()
    directory = os.environ[settings._MULTIPROC_DIR_ENV]
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)
    try:
        server(settings, args.bind or settings.bind).serve()
    finally:
        if os.environ.get(settings._OWNED_MULTIPROC_DIR_ENV):
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()

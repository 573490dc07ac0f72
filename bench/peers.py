"""The source tutorial's two servers, run beside Todo Scale: installed, seeded, started, stopped.

The peers are kept as written in a directory outside this repository, which the user names with
`--peers DIR` or `BENCH_PEERS=DIR` (its README describes them): express-seed (Node cluster, todos
in memory) and fastapi-seed (uvicorn, sync SQLAlchemy on Postgres). They are copied into a
temporary directory and installed there (`npm install`; a throwaway venv for fastapi-seed's
requirements), so nothing of theirs reaches this project's venv.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.load import process_tree
from deploy.local._proc import spawn, stop_group
from deploy.local.ports import free_port

# How long a peer may take to answer its first request: Node and uvicorn start in about 1 s.
START_TIMEOUT = 30
# SIGTERM, then this long before SIGKILL: neither peer holds anything worth draining.
STOP_TIMEOUT = 10


@dataclass
class Peer:
    """A started peer: where its list is, and its process tree."""

    url: str  # the collection, `/todos`
    list_query: str  # what makes GET of `url` the benchmark's list
    pids: Callable[[], list[int]]


def request(url: str, body: dict | None = None) -> bytes:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    # Only http:// URLs of the servers this run started.
    req = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310
    with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
        return response.read()


@contextlib.contextmanager
def started(argv: list[str], cwd: Path, env: dict, ready_url: str) -> Iterator[Peer]:
    log = cwd / f"server-{free_port()}.log"
    process = spawn(argv, env=env, log=log, cwd=cwd)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                request(ready_url)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[0]} did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield lambda: process_tree(process.pid)
    finally:
        # Every member of the group: a Node cluster's workers must not outlive their master.
        stop_group(process.pid, timeout=STOP_TIMEOUT, proc=process)


def copy_peer(source: Path, destination: Path) -> Path:
    """Copy a peer's files, not their read-only modes: installing writes beside them."""
    destination.mkdir()
    for path in source.iterdir():
        shutil.copyfile(path, destination / path.name)
    return destination


def install(peers: Path, work: Path) -> dict:
    """npm install express-seed, and fastapi-seed's requirements into a venv of its own; return
    the versions that ran."""
    express = copy_peer(peers / "express-seed", work / "express-seed")
    quiet = ["--no-audit", "--no-fund", "--loglevel=error"]
    subprocess.run(["npm", "install", *quiet], cwd=express, check=True, stdout=subprocess.DEVNULL)
    fastapi = copy_peer(peers / "fastapi-seed", work / "fastapi-seed")
    python = shutil.which("python3") or sys.executable
    subprocess.run([python, "-m", "venv", str(work / "fastapi-venv")], check=True)
    pip = [str(work / "fastapi-venv" / "bin" / "python"), "-m", "pip"]
    installed = subprocess.run(
        [*pip, "install", "--quiet", "--disable-pip-version-check", "-r", "requirements.txt"],
        cwd=fastapi,
        capture_output=True,
        text=True,
    )
    # pip's warnings (an unreachable find-links in a global config, say) only matter on failure.
    if installed.returncode:
        raise RuntimeError(f"pip install for fastapi-seed failed:\n{installed.stderr}")
    frozen = subprocess.run([*pip, "freeze"], capture_output=True, text=True, check=True).stdout
    wanted = {"fastapi", "uvicorn", "sqlalchemy", "psycopg2-binary"}
    versions = dict(
        line.split("==") for line in frozen.split() if line.split("==")[0].lower() in wanted
    )
    versions["node"] = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    versions["express"] = json.loads(
        (express / "node_modules" / "express" / "package.json").read_text()
    )["version"]
    return versions


@contextlib.contextmanager
def express_seed(work: Path, body: bytes) -> Iterator[Peer]:
    """express-seed with `body` (Todo Scale's list response) as its in-memory list, as the peers'
    README starts it: one worker per core."""
    app = work / "express-seed"
    (app / "todos.json").write_bytes(body)
    port = free_port()
    url = f"http://127.0.0.1:{port}/todos"
    env = {**os.environ, "PORT": str(port), "TODOS_JSON": "todos.json"}
    with started(["node", "server.js"], app, env, url) as pids:
        yield Peer(url, "", pids)


@contextlib.contextmanager
def fastapi_seed(work: Path, cluster, database: str, todos: int) -> Iterator[Peer]:
    """fastapi-seed on its own database holding `todos` rows, `uvicorn --workers 2` as the peers'
    README starts it."""
    app = work / "fastapi-seed"
    cluster.create_database(database)
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql+psycopg2://postgres@127.0.0.1:{cluster.primary_port}/{database}",
    }
    python = str(work / "fastapi-venv" / "bin" / "python")
    # Its own create_all makes the table, once: two workers importing it at the same moment
    # would race to create it.
    subprocess.run([python, "-c", "import main"], cwd=app, env=env, check=True)
    cluster.execute(
        "INSERT INTO todos (title, completed) SELECT 'todo ' || i, 'false' "
        "FROM generate_series(0, %s) AS i",
        [todos - 1],
        dbname=database,
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}/todos"
    argv = [python, "-m", "uvicorn", "main:app", "--workers", "2", "--port", str(port)]
    with started([*argv, "--no-access-log"], app, env, f"{url}?limit=1") as pids:
        yield Peer(url, f"?limit={todos}", pids)

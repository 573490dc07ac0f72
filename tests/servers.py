"""The project served by real gunicorn processes, and a small HTTP client for tests."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deploy.local.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body) if self.body else None


@dataclass
class AppServer:
    base: str

    def request(self, method: str, path: str, *, token=None, body=None, headers=None) -> Reply:
        request = urllib.request.Request(self.base + path, method=method)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if token:
            request.add_header("Authorization", f"Token {token}")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, data=data, timeout=15) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, dict(error.headers), error.read())

    def metric(self, name: str, **labels) -> float:
        """The sum of one Prometheus metric's samples with these labels (0 when absent)."""
        text = self.request("GET", "/metrics").body.decode()
        wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (not wanted or "{" + wanted + "}" in line):
                total += float(line.rsplit(" ", 1)[1])
        return total


@contextmanager
def gunicorn(env: dict, workers: int = 2) -> Iterator[AppServer]:
    """gunicorn with deploy/gunicorn.conf.py serving config.wsgi, as `make run` and every web
    replica run it; stopped (and its workers with it) when the block ends."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
         "-b", f"127.0.0.1:{port}", "config.wsgi:application"],
        cwd=ROOT, env={**env, "WEB_CONCURRENCY": str(workers)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    server = AppServer(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if server.request("GET", "/healthz").status == 200:
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError(process.stderr.read().decode()[-3000:]) from None
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)

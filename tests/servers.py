"""The project as child processes: `manage.py` commands and gunicorn servers with a clean
environment, and a small HTTP client for tests."""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deploy.local.gunicorn import start_gunicorn

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def clean_env(**extra: str) -> dict:
    """The process environment without any of the project's variables."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CORS_ALLOWED_ORIGINS", "TEST_DATABASE_URL"):
        keep.pop(name, None)
    keep["DJANGO_SETTINGS_MODULE"] = "config.settings"
    keep.update(extra)
    return keep


def replica_env(**extra: str) -> dict:
    """`clean_env` for a web replica on this test run's own database (the one pytest-django
    made), with a secret key of the tests', plus `extra` (which may give another DATABASE_URL:
    a pooler in front of that database)."""
    from django.db import connection

    db = connection.settings_dict
    return clean_env(
        **{
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "DJANGO_SECRET_KEY": "test-secret-key-for-a-test-replica",
            **extra,
        }
    )


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
    # Where the server's stdout and stderr go.
    log: Path | None = None

    def log_records(self) -> list[dict]:
        """The JSON log lines written so far, decoded (other lines are skipped)."""
        records = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
        return records

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
    replica run it (deploy/local/gunicorn.py); stopped (and its workers with it) when the block
    ends."""
    with tempfile.TemporaryDirectory(prefix="gunicorn-") as directory:
        log = Path(directory) / "gunicorn.log"
        with start_gunicorn(env=env, workers=workers, log=log, ready_path="/healthz") as server:
            yield AppServer(server.url, log)

"""The embedded default: with no environment set, the project runs on SQLite, a local-memory
cache and eager Celery, served by gunicorn exactly as `make run` serves it."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from deploy.local.ports import free_port
from tests.test_platform import ROOT, clean_env, run_manage


def http(method: str, url: str, token: str | None = None, body: dict | None = None):
    request = urllib.request.Request(url, method=method)
    if token:
        request.add_header("Authorization", f"Token {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, data=data, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), error.headers


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict:
    # Only the SQLite file moves to a temporary directory, so the project's own stays untouched.
    return clean_env(DJANGO_SQLITE_PATH=str(tmp_path / "db.sqlite3"))


def test_settings_default_to_sqlite_locmem_and_eager_celery(embedded_env):
    code = (
        "from django.conf import settings as s; import json; print(json.dumps(["
        "s.DATABASES['default']['ENGINE'], s.CACHES['default']['BACKEND'],"
        " s.CELERY_TASK_ALWAYS_EAGER, s.DEBUG, s.ALLOWED_HOSTS]))"
    )
    result = run_manage("shell", "--verbosity", "0", "-c", code, env=embedded_env)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        "django.db.backends.sqlite3",
        "django.core.cache.backends.locmem.LocMemCache",
        True,
        False,
        ["localhost", "127.0.0.1"],
    ]
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_gunicorn_serves_the_api_on_sqlite(embedded_env):
    assert run_manage("migrate", "--noinput", env=embedded_env).returncode == 0
    created = run_manage("create_api_user", "demo", env=embedded_env)
    token = created.stdout.strip()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
         "-b", f"127.0.0.1:{port}", "config.wsgi:application"],
        cwd=ROOT,
        env={**embedded_env, "WEB_CONCURRENCY": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if http("GET", f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)

        status, body, headers = http("POST", f"{base}/api/todos", token, {"title": "it works"})
        assert status == 201
        assert headers["Location"] == f"{base}/api/todos/{body['id']}"
        status, listing, _ = http("GET", f"{base}/api/todos", token)
        assert status == 200
        assert [todo["title"] for todo in listing] == ["it works"]
        assert http("GET", f"{base}/api/todos")[0] == 401
    finally:
        server.terminate()
        server.wait(timeout=30)

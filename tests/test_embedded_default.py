"""The embedded default: with no environment set, the project runs on SQLite, a local-memory
cache and eager Celery, served by gunicorn exactly as `make run` serves it."""

import json
from pathlib import Path

import pytest

from tests.servers import clean_env, gunicorn, run_manage


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
    token = run_manage("create_api_user", "demo", env=embedded_env).stdout.strip()

    with gunicorn(embedded_env) as server:
        created = server.request("POST", "/api/todos", token=token, body={"title": "it works"})
        item = f"/api/todos/{created.json()['id']}"
        # SQLite's UPDATE ... RETURNING, its dates converted as a read converts them.
        patched = server.request(
            "PATCH", item, token=token, body={"due_at": "2027-01-02T03:04:05Z", "order": 2}
        )
        fetched = server.request("GET", item, token=token)
        listing = server.request("GET", "/api/todos", token=token)
        anonymous = server.request("GET", "/api/todos")

    assert created.status == 201
    assert created.headers["Location"] == f"{server.base}/api/todos/{created.json()['id']}"
    assert patched.status == 200
    assert patched.json() == fetched.json()
    assert (patched.json()["due_at"], patched.json()["order"]) == ("2027-01-02T03:04:05Z", 2)
    assert patched.headers["ETag"] == fetched.headers["ETag"]
    assert listing.status == 200
    assert [todo["title"] for todo in listing.json()] == ["it works"]
    assert anonymous.status == 401

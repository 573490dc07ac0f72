"""The one-box stack's wiring: its fixed names and numbers, and its Django processes' env."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

STATE_FILE = "stack.json"
SECRET_FILE = "secret_key"  # noqa: S105 (a file name, not a secret)
LOGS = "logs"
# The services' data directory, made with mkdtemp under the system's temporary directory.
DATA_DIR_PREFIX = "todo-scale-stack-"
# Set in the environment of every process the stack starts (workers and forks inherit it), so
# `down` recognises them even when their command line does not name the stack directory.
MARK_ENV = "TODO_SCALE_STACK_DIR"

DATABASE_NAME = "todo_scale"
# The same demo account `make demo-user` creates.
DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"  # noqa: S105 (a published demo password on a loopback stack)
# The worker's node name; the broker is private to the stack, so it cannot clash.
WORKER_NAME = "worker1@todo-scale"

# N replicas on one box share its cores: gunicorn's default of 2 x cores + 1 workers each would
# start N times too many processes. WEB_CONCURRENCY still overrides it.
DEFAULT_WEB_CONCURRENCY = 2
# Two task processes run an export while another is queued, and leave the cores to the web tier.
WORKER_CONCURRENCY = 2

# Variables that must not leak from the caller's environment into the stack's processes: a test
# run's settings module and private servers, another gunicorn's metrics directory or control
# socket. (What the stack sets itself is overwritten anyway.)
_NOT_INHERITED = ("TEST_", "PYTEST_")
_NOT_INHERITED_NAMES = {
    "DJANGO_SETTINGS_MODULE",
    "PROMETHEUS_MULTIPROC_DIR",
    "GUNICORN_OWNS_PROMETHEUS_MULTIPROC_DIR",
    "GUNICORN_CONTROL_SOCKET",
}


def secret_key(stack_dir: Path) -> str:
    """The stack's DJANGO_SECRET_KEY: made on first use, then read from its 0600 file."""
    path = stack_dir / SECRET_FILE
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


def app_env(stack_dir: Path, state: dict) -> dict[str, str]:
    """The environment of every Django process: the caller's, plus the stack's wiring.

    Tuning variables the caller sets (WEB_CONCURRENCY, RATE_LIMIT_*, LOG_LEVEL, ...) pass
    through; everything that says where a service is comes from the stack.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_NOT_INHERITED) and name not in _NOT_INHERITED_NAMES
    }
    origins = f"http://127.0.0.1:{state['port']},http://localhost:{state['port']}"
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_SECRET_KEY": secret_key(stack_dir),
            "DJANGO_DEBUG": "false",
            # nginx sets X-Forwarded-Host/-Proto, so `url`s name nginx's address.
            "DJANGO_TRUST_PROXY_HEADERS": "true",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            # Admin forms posted through nginx come from these origins.
            "DJANGO_CSRF_TRUSTED_ORIGINS": origins,
            "DATABASE_URL": state["database_url"],
            "DATABASE_REPLICA_URLS": ",".join(state["replica_urls"]),
            # Those URLs name PgBouncer in transaction mode when the stack runs one.
            "DATABASE_TRANSACTION_POOLING": "true" if state.get("pgbouncer") else "false",
            # Cache in database 0, task failures in 1; rate limits keep their default, 2.
            "REDIS_URL": f"{state['redis_url']}/0",
            "CELERY_RESULT_BACKEND": f"{state['redis_url']}/1",
            "CELERY_BROKER_URL": state["broker_url"],
            # The stack's relay publishes every outbox row within its one-second poll, so a web
            # request skips the broker round trips of publishing its own rows after commit.
            "OUTBOX_PUBLISH_ON_COMMIT": "false",
            MARK_ENV: str(stack_dir),
        }
    )
    return env

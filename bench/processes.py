"""What the benchmarks share: the project's environment, manage.py, and process bookkeeping."""

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from deploy.local._proc import ROOT
from deploy.local.nginx import Nginx
from deploy.local.ports import free_port

RESULTS = ROOT / "bench" / "results"


def project_env(**extra: str) -> dict:
    """This environment without the project's variables, plus `extra`: each benchmark says
    exactly which services it uses."""
    # The project's settings, and gunicorn's tuning (deploy/gunicorn.conf.py reads
    # WEB_CONCURRENCY and GUNICORN_*): a benchmark measures the shipped defaults unless it says.
    project = ("DJANGO_", "DATABASE_", "GUNICORN_", "TODO_", "RATE_LIMIT_", "PROMETHEUS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(project)}
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "WEB_CONCURRENCY"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        # A key of its own for each run: the processes and their data live for the run only.
        DJANGO_SECRET_KEY=secrets.token_urlsafe(32),
        **extra,
    )
    return env


def manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    return result.stdout.strip()


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def seed_user(env: dict, username: str, count: int) -> str:
    """Create `username` with `count` todos titled "todo 0".. (order = index); return its token."""
    token = manage(env, "create_api_user", username)
    manage(env, "shell", "-c", (
        "from django.contrib.auth.models import User; from deploy.local.seed import seed_todos;"
        f"seed_todos(User.objects.get(username={username!r}), {count})"
    ))  # fmt: skip
    return token


SEED_USERS = """
import json
from django.contrib.auth import get_user_model
from deploy.local.seed import seed_todos
from todos.models import Todo
from todos.services import user_token_issue
users = {}
for name, count in json.loads(SPEC):
    user = get_user_model().objects.create_user(username=name)
    seed_todos(user, count)
    first = Todo.objects.filter(owner=user).order_by("order", "id").first()
    users[name] = [user_token_issue(user=user).key, first.pk if first else None]
print(json.dumps(users))
"""


def seed_users(env: dict, spec: dict[str, int]) -> dict[str, tuple[str, int | None]]:
    """Create each user of `spec` with that many todos (as seed_user), all in one process; return
    each user's token and the id of its first todo (the shell's last line of output: it may
    announce its automatic imports before)."""
    script = SEED_USERS.replace("SPEC", repr(json.dumps(list(spec.items()))))
    return {
        name: tuple(pair)
        for name, pair in json.loads(manage(env, "shell", "-c", script).splitlines()[-1]).items()
    }


@contextlib.contextmanager
def nginx(prefix: Path, port: int, config: str) -> Iterator[Nginx]:
    """nginx running `config` as `prefix`/nginx.conf (listening on `port`) until the block ends."""
    with Nginx(prefix, port, error_log="error.log") as server:
        server.prepare()
        server.configure(config)
        server.start(log=prefix / "nginx.log")
        server.wait_ready()
        yield server


@contextlib.contextmanager
def static_nginx(body: bytes) -> Iterator[tuple[str, Nginx]]:
    """nginx (2 workers, one per core) answering every path with `body` from a file."""
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "todos.json").write_bytes(body)
        (root / "todos.json").chmod(0o644)
        port = free_port()
        config = (
            f"worker_processes 2; pid {root}/nginx.pid; error_log {root}/error.log;"
            f"events {{ worker_connections 1024; }}"
            f"http {{ access_log off; server {{ listen 127.0.0.1:{port}; root {root};"
            f"location / {{ default_type application/json; try_files /todos.json =404; }} }} }}"
        )
        with nginx(root, port, config) as server:
            yield f"http://127.0.0.1:{port}/", server

"""The Todo API's own tests, and the routing tests, pass unchanged with two replicas.

A child pytest starts its own cluster with `TEST_REPLICAS=2` (and its own Redis); the routing
tests there pick between two standbys and pause both.
"""

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from config.replicas.health import replica_aliases

pytestmark = []

REPO = Path(__file__).resolve().parents[3]
# Starting a cluster and running the modules takes about 15 s here; a hung child must not hang
# the suite.
TIMEOUT = 180


def test_this_run_has_the_replicas_it_was_asked_for():
    wanted = int(os.environ.get("TEST_REPLICAS") or 1)
    if settings.TEST_CLUSTER is not None:
        assert replica_aliases() == [f"replica{n}" for n in range(1, wanted + 1)]
        assert settings.DATABASE_ROUTERS == ["config.db_router.PrimaryReplicaRouter"]


def test_api_and_routing_tests_pass_with_two_replicas():
    if os.environ.get("TEST_REPLICAS") == "2":
        return  # already the two-replica run
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"TEST_DATABASE_URL", "TEST_DATABASE_REPLICA_URLS", "TEST_REDIS_URL"}
    }
    env["TEST_REPLICAS"] = "2"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/todos/test_api.py",
            "tests/config/replicas/test_read_your_writes.py",
            "tests/config/replicas/test_two_replicas.py::test_this_run_has_the_replicas_it_was_asked_for",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert " passed" in proc.stdout
    assert "failed" not in proc.stdout

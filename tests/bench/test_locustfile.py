"""bench/locustfile.py, the journey `make load` runs, against a real gunicorn on the suite's own
Postgres (reads from its standby), Redis (response cache, rate limits as shipped) for a few
seconds: every step is taken and none fails, so its read-your-writes checks hold.

Locust runs as a child process, as `make load` runs it: importing it here would monkey-patch this
process with gevent."""

import csv
import os
import subprocess
import sys

import pytest
from django.db import connections

from tests.servers import ROOT, gunicorn, replica_env

pytestmark = pytest.mark.django_db(transaction=True)

# The request names of bench/locustfile.py: sign-up and the journey's every step.
STEPS = (
    "sign up",
    "list",
    "create",
    "read after create",
    "complete",
    "read after complete",
    "list next page",
    "delete",
    "read after delete",
)


def standby_url() -> str | None:
    """The URL of the test database on the suite's standby, if it has one."""
    if "replica1" not in connections.databases:
        return None
    db = connections["replica1"].settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def test_every_step_of_the_journey_runs_without_a_failure(tmp_path):
    # given: a web replica as deployed, with the cache, the standby and the default rate limits
    env = replica_env(
        REDIS_URL=os.environ["TEST_REDIS_URL"], DATABASE_REPLICA_URLS=standby_url() or ""
    )
    with gunicorn(env) as server:
        # when: three users go through the journey for five seconds, with short pauses
        result = subprocess.run(
            [
                os.path.join(os.path.dirname(sys.executable), "locust"),
                "--headless", "-f", str(ROOT / "bench" / "locustfile.py"),
                "--host", server.base, "-u", "3", "-r", "3", "--run-time", "5s",
                "--think-time", "0.1", "--csv", str(tmp_path / "load"),
                "--html", str(tmp_path / "load.html"),
            ],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip

    # then: requests on every step, and no failure among them
    output = result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / "load_stats.csv", newline="") as stats:
        rows = {row["Name"]: row for row in csv.DictReader(stats)}
    assert rows["Aggregated"]["Failure Count"] == "0", output
    counts = {step: int(rows[step]["Request Count"]) if step in rows else 0 for step in STEPS}
    assert all(counts.values()), (counts, output)
    assert result.returncode == 0, output
    assert (tmp_path / "load.html").stat().st_size > 0

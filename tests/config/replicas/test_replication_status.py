"""`manage.py replication_status` against the real standbys: paused, caught up, and stopped."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from config.replicas.health import parse_lsn, replica_aliases
from tests.config.replicas.conftest import pause_replay
from tests.factories import TodoFactory

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def status(*args) -> str:
    out = StringIO()
    call_command("replication_status", *args, stdout=out)
    return out.getvalue()


def test_a_caught_up_replica_shows_no_lag(cluster):
    cluster.wait_for_replay()

    report = json.loads(status("--json"))

    assert [row["alias"] for row in report["replicas"]] == replica_aliases()
    for row in report["replicas"]:
        assert row["reachable"] is True
        assert row["lag_bytes"] == 0
        assert row["lag_seconds"] == 0
        assert row["replay_paused"] is False
        # The primary's position is read first: a record it writes a moment later (a standby
        # snapshot every 15 s) may already be replayed when the standby is asked.
        assert parse_lsn(row["replay_lsn"]) >= parse_lsn(report["primary_lsn"])


def test_a_paused_replica_shows_its_lag_in_bytes_and_seconds(cluster):
    pause_replay(cluster)
    TodoFactory.create_batch(3)

    table = status()

    lines = table.splitlines()
    assert lines[0].split() == [
        "replica", "reachable", "replay_lsn", "lag_bytes", "lag_seconds", "replay",
    ]  # fmt: skip
    for line in lines[1:]:
        _alias, reachable, _lsn, lag_bytes, lag_seconds, replay = line.split()
        assert reachable == "yes"
        assert int(lag_bytes) > 0
        assert float(lag_seconds) >= 0
        assert replay == "paused"


def test_a_stopped_replica_is_reported_unreachable_with_a_failing_exit(cluster):
    cluster.stop_replica(0)
    out = StringIO()

    with pytest.raises(CommandError, match="replica1"):
        call_command("replication_status", stdout=out)

    first = out.getvalue().splitlines()[1].split()
    assert first[:2] == ["replica1", "no"]

"""Faults on the running stack (`make stack`, 3 replicas) under a bounded load: the scenarios of
bench/faults.py with small counts, each asserting what the clients saw and that the stack
recovered. One stack serves every test, in order; the asserts are counts, not timings."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import faults
from tests.deploy.local.test_stack import require_services

pytestmark = [pytest.mark.stack]

# At most 3 x 300 requests per fault, at least 3 x 15; the clients stop soon after the fault.
SIZES = faults.Sizes(clients=3, per_client=300, least=15)


@pytest.fixture(scope="module")
def stack() -> Iterator[faults.FaultStack]:
    require_services()
    base = Path(tempfile.mkdtemp(prefix="faults-test-"))
    started = None
    try:
        started = faults.FaultStack.start(base, replicas=3)
        yield started
    finally:
        if started is not None:
            started.down()
        shutil.rmtree(base, ignore_errors=True)


def assert_served(outcome: faults.Outcome) -> None:
    print(outcome)
    # The fault was injected under load, and the load outlasted it.
    assert outcome.load_spanned_fault
    assert outcome.gets > 0
    assert outcome.posts > 0
    assert outcome.gets_failed == 0
    assert outcome.posts_failed == 0
    assert outcome.duplicated == 0
    assert outcome.missing == 0
    assert outcome.recovered


def test_a_rolling_restart_fails_no_request(stack):
    outcome = faults.rolling_restart(stack, SIZES)

    assert_served(outcome)
    assert outcome.answers_5xx == 0
    assert outcome.extra["replaced"] == 3
    assert outcome.during_fault > 0
    assert outcome.reported_down == []


def test_a_killed_replica_fails_no_get_and_duplicates_no_post_and_is_revived(stack):
    outcome = faults.web_kill(stack, SIZES)

    assert_served(outcome)
    assert outcome.reported_down == ["web2"]
    assert outcome.revived == ["web2"]


def test_a_killed_redis_fails_no_request_and_the_cache_hits_again_once_it_is_back(stack):
    outcome = faults.redis_kill(stack, SIZES)

    assert_served(outcome)
    # Writes went on without Redis: every POST answered 201 at its first attempt.
    assert outcome.posts_retried == 0
    assert outcome.reported_down == ["redis"]
    assert outcome.revived == ["redis"]
    assert outcome.extra["hits_resumed"]


def test_a_stopped_standby_fails_no_request(stack):
    outcome = faults.standby_stop(stack, SIZES)

    assert_served(outcome)
    assert outcome.reported_down == ["postgres-replica1"]
    assert outcome.revived == ["postgres-replica1"]


def test_a_stopped_broker_loses_no_task(stack):
    outcome = faults.broker_stop(stack, SIZES, exports=2)

    assert_served(outcome)
    assert outcome.reported_down == ["rabbitmq"]
    assert outcome.extra["tasks_lost"] == 0


def test_a_worker_killed_mid_task_has_it_redelivered_and_done_once(stack):
    outcome = faults.worker_kill(stack, SIZES)

    assert_served(outcome)
    assert outcome.reported_down == ["worker"]
    assert outcome.extra["killed_while"] == "running"
    assert outcome.extra["export_status"] == "done"
    assert outcome.extra["deliveries"] == 2
    assert outcome.extra["exported_todos"] == faults.EXPORT_TODOS
    assert outcome.extra["duplicated_chunks"] == 0

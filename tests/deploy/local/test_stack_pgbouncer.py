"""`make stack STACK_PGBOUNCER=1`'s wiring, without starting a stack: what the Django processes
are told, and that a mistyped switch starts nothing (tests/deploy/local/test_stack.py runs the
default stack; tests/config/test_transaction_pooling.py the project behind a real PgBouncer)."""

import pytest

from deploy.local.pgbouncer import database_entries, render_config
from deploy.local.stack.__main__ import main
from deploy.local.stack.environment import app_env

STATE = {
    "port": 8000,
    "database_url": "postgres://postgres@127.0.0.1:6432/todo_scale",
    "replica_urls": ["postgres://postgres@127.0.0.1:6432/todo_scale_replica1"],
    "redis_url": "redis://127.0.0.1:6379",
    "broker_url": "amqp://guest:guest@127.0.0.1:5672//",
}


@pytest.mark.parametrize(
    ("pgbouncer", "pooling"), [(True, "true"), (False, "false"), (None, "false")]
)
def test_django_processes_pool_transactions_exactly_when_the_stack_runs_pgbouncer(
    tmp_path, monkeypatch, pgbouncer, pooling
):
    # A caller's own setting never decides it: the stack says where Postgres is, and how.
    monkeypatch.setenv("DATABASE_TRANSACTION_POOLING", "true" if pooling == "false" else "false")
    state = STATE if pgbouncer is None else {**STATE, "pgbouncer": pgbouncer}

    env = app_env(tmp_path, state)

    assert env["DATABASE_TRANSACTION_POOLING"] == pooling
    assert env["DATABASE_URL"] == STATE["database_url"]
    assert env["DATABASE_REPLICA_URLS"] == STATE["replica_urls"][0]


def test_a_mistyped_switch_starts_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STACK_PGBOUNCER", "ture")

    code = main(["--dir", str(tmp_path / "stack"), "start", "--port", "1"])

    assert code == 1
    assert "STACK_PGBOUNCER must be 1/true/yes/on or 0/false/no/off, not 'ture'" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "stack").exists()


def test_each_standby_entry_sets_the_standby_statement_timeout(tmp_path):
    entries = database_entries(
        primary_port=5432, dbname="todo_scale", standby_ports=[5433, 5434], statement_timeout=2000
    )

    config = render_config(
        port=6432, base_dir=tmp_path, databases=entries, pool_size=10, query_wait_timeout=5
    )

    assert "todo_scale = host=127.0.0.1 port=5432 dbname=todo_scale\n" in config
    for number, port in ((1, 5433), (2, 5434)):
        assert (
            f"todo_scale_replica{number} = host=127.0.0.1 port={port} dbname=todo_scale "
            "connect_query='SET statement_timeout = 2000'\n"
        ) in config
    assert "pool_mode = transaction\n" in config
    assert "query_wait_timeout = 5\n" in config

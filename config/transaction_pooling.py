"""Database settings for a pooler in transaction mode (PgBouncer's `pool_mode = transaction`).

Such a pooler lends a server connection to a client for one transaction only; the client's next
statement may run on another one. So nothing a client does may outlive its transaction on the
server (docs/postgres.md "Connection pooling (PgBouncer)"), and three things Django could do would:

- Server-side cursors. `QuerySet.iterator()` declares a cursor `WITH HOLD` in autocommit and
  fetches from it in later statements, which may reach a server connection where the cursor does
  not exist. With DISABLE_SERVER_SIDE_CURSORS the driver reads the whole result at once and
  `chunk_size` only bounds how many model instances are built at a time (Django's "Transaction
  pooling and server-side cursors").
- Prepared statements. psycopg prepares a statement on the server once it ran `prepare_threshold`
  times, then executes it by name, on whatever server connection the pooler picked; PgBouncer
  tracks prepared statements only from 1.21 on, with `max_prepared_statements` (Debian bookworm
  ships 1.18). Django 5.2 already passes `prepare_threshold=None` (never prepare) unless OPTIONS
  names one; it is forced here, so that no OPTIONS can turn it back on.
- Startup options. `OPTIONS["options"]` (the standby aliases' `-c statement_timeout=...`) is a
  startup parameter PgBouncer refuses ("unsupported startup parameter: options") unless it
  ignores it, and the server connections it opens would not carry it anyway. It is dropped; the
  pooler sets the standby's statement timeout on each server connection it opens instead (the
  `connect_query` of the standby's `[databases]` entry: deploy/local/pgbouncer.py,
  deploy/compose/pgbouncer.ini, deploy/k8s/components/pgbouncer/).

What needs nothing: PgBouncer tracks client_encoding, DateStyle, TimeZone,
standard_conforming_strings and application_name per client and sets them on whichever server
connection the client gets, so Django's `SET TIME ZONE` on a new connection holds. `SET LOCAL`
(todos/admin.py) ends with its transaction. The project takes no session-level advisory lock and
LISTENs to nothing; the replica health queries (config/replicas/health.py) are single statements.
"""

from django.core.exceptions import ImproperlyConfigured

from config.databases import POSTGRES_BACKEND

# Django's backend, and the project's subclass of it (config/postgres_backend/base.py).
POSTGRES = ("django.db.backends.postgresql", POSTGRES_BACKEND)


def for_transaction_pooling(databases: dict[str, dict]) -> dict[str, dict]:
    """`databases` (Django's DATABASES) changed to run through a transaction-mode pooler."""
    pooled = {}
    for alias, config in databases.items():
        if config["ENGINE"] not in POSTGRES:
            raise ImproperlyConfigured(
                f"DATABASE_TRANSACTION_POOLING needs Postgres databases, not {config['ENGINE']}"
            )
        options = {**config.get("OPTIONS", {})}
        if "assume_role" in options:
            # Django runs SET ROLE once per connection: session state the pooler would lose.
            raise ImproperlyConfigured(
                f"the {alias!r} database's assume_role cannot work through a transaction pooler"
            )
        options.pop("options", None)
        options["prepare_threshold"] = None
        pooled[alias] = {**config, "OPTIONS": options, "DISABLE_SERVER_SIDE_CURSORS": True}
    return pooled

"""The database router: writes, migrations and transactions on the primary, reads on replicas.

Deliberately tiny (as Saleor's is): which standby a read goes to, and whether it may go to one
at all, is decided per request by config/replicas/read_routing.py. Installed by
`DATABASE_ROUTERS` only when `DATABASE_REPLICA_URLS` names at least one replica.
"""

from django.db import DEFAULT_DB_ALIAS

from config.replicas.read_routing import read_alias


class PrimaryReplicaRouter:
    def db_for_read(self, model, **hints) -> str:
        return read_alias()

    def db_for_write(self, model, **hints) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        # Every alias holds the same data: an object read from a standby may point at one
        # read from the primary.
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool:
        # Standbys receive the schema by streaming; they are read-only anyway.
        return db == DEFAULT_DB_ALIAS

"""Test settings: the project's settings on a private Postgres started for this test run.

The suite never depends on the state of a Postgres already running on the machine: importing
this module starts a private primary with `TEST_REPLICAS` streaming replicas (default 1;
deploy/local/postgres.py, the same code `make stack` uses) on free ports in a temporary
directory, and stops it when the test process exits. `TEST_DATABASE_URL` (and
`TEST_DATABASE_REPLICA_URLS`, a comma list) point the suite at existing servers instead; a
private Redis is started the same way unless `TEST_REDIS_URL` names one.

Every replica is a real database alias with the replica router installed. Tests in Django's
`TestCase` run inside a transaction, and reads inside a transaction go to the primary, so they
see their own uncommitted rows; tests/config/replicas/ uses transactional tests to route reads to
the standbys for real.
"""

import atexit
import os

# A private Redis for the cache, rate limits and read-your-writes marks, started before the
# project's settings are read because they build CACHES from REDIS_URL.
if not os.environ.get("TEST_REDIS_URL"):
    from deploy.local.redis import start_redis

    TEST_REDIS = start_redis()
    atexit.register(TEST_REDIS.close)
    os.environ["TEST_REDIS_URL"] = f"{TEST_REDIS.url}/0"
else:
    TEST_REDIS = None
os.environ["REDIS_URL"] = os.environ["TEST_REDIS_URL"]

from config.databases import database_from_url, replica_databases
from config.settings import *  # noqa: F403
from config.settings import CONN_MAX_AGE, DATABASE_REPLICA_STATEMENT_TIMEOUT, env

_url = os.environ.get("TEST_DATABASE_URL")
if not _url:
    from deploy.local.postgres import start_cluster

    TEST_CLUSTER = start_cluster(replicas=env.int("TEST_REPLICAS", default=1))
    atexit.register(TEST_CLUSTER.stop)
    _url = TEST_CLUSTER.primary_url
    _replica_urls = TEST_CLUSTER.replica_urls
    # Child processes a test starts (manage.py, gunicorn) reuse these servers instead of
    # starting their own.
    os.environ["TEST_DATABASE_URL"] = _url
    os.environ["TEST_DATABASE_REPLICA_URLS"] = ",".join(_replica_urls)
else:
    TEST_CLUSTER = None
    _replica_urls = env.list("TEST_DATABASE_REPLICA_URLS", default=[])

DATABASES = {
    "default": database_from_url(_url, conn_max_age=CONN_MAX_AGE),
    **replica_databases(
        _replica_urls,
        conn_max_age=CONN_MAX_AGE,
        statement_timeout=DATABASE_REPLICA_STATEMENT_TIMEOUT,
    ),
}
DATABASE_ROUTERS = ["config.db_router.PrimaryReplicaRouter"] if _replica_urls else []

# Hashing with PBKDF2's full work factor would dominate a suite that creates many users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

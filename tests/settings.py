"""Test settings: the project's settings on a private Postgres started for this test run.

The suite never depends on the state of a Postgres already running on the machine: importing
this module starts a private primary with a streaming replica (deploy/local/postgres.py, the same
code `make stack` uses) on free ports in a temporary directory, and stops it when the test
process exits. `TEST_DATABASE_URL` points the suite at an existing server instead.
"""

import atexit
import os

from config.settings import *  # noqa: F403
from config.settings import database_from_url

_url = os.environ.get("TEST_DATABASE_URL")
if not _url:
    from deploy.local.postgres import start_cluster

    TEST_CLUSTER = start_cluster(replicas=1)
    atexit.register(TEST_CLUSTER.stop)
    _url = TEST_CLUSTER.primary_url
    # Child processes a test starts (manage.py, gunicorn) reuse this server instead of
    # starting their own.
    os.environ["TEST_DATABASE_URL"] = _url
else:
    TEST_CLUSTER = None

DATABASES = {"default": database_from_url(_url)}

# Hashing with PBKDF2's full work factor would dominate a suite that creates many users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

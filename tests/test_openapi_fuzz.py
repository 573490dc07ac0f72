"""Every operation of the OpenAPI schema, fuzzed by schemathesis against a real gunicorn: no
input makes a 5xx, and every answer (status, headers, body) is one the schema documents."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import TokenFactory, UserFactory
from tests.servers import gunicorn, replica_env

pytestmark = pytest.mark.django_db(transaction=True)

# Every check schemathesis has, among them `negative_data_rejection` (a request the schema
# forbids must be refused) and `unsupported_method`, `ignored_auth`, `use_after_free`. Left out:
# `positive_data_acceptance`, which wants every schema-valid request accepted, and a valid
# request can still be refused for what the schema cannot say (a cursor from another ordering,
# a stale ETag in If-Match, a todo id that does not exist).
EXCLUDED_CHECKS = "positive_data_acceptance"


# Logging out revokes the token the fuzzer sends (logout-all: every token of its user): fuzzed
# among the others, it would leave every later operation a 401. So each logout operation is
# fuzzed in a run of its own, after the others, with a user and token of its own.
RUNS = [
    ("--exclude-path-regex", "^/api/auth/logout"),
    ("--include-path-regex", "^/api/auth/logout/$"),
    ("--include-path-regex", "^/api/auth/logout-all/$"),
]


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(tmp_path):
    env = replica_env(
        REDIS_URL=os.environ["TEST_REDIS_URL"],
        # Limits would turn most generated requests into documented 429s and test nothing.
        RATE_LIMIT_USER="off",
        RATE_LIMIT_IP="off",
        RATE_LIMIT_AUTH="off",
    )
    with gunicorn(env) as server:
        results = [
            schemathesis(
                server.base,
                TokenFactory(user=UserFactory(username=f"fuzzer{n}")).key,
                tmp_path / str(n),
                operations,
            )
            for n, operations in enumerate(RUNS)
        ]

    for result in results:
        assert result.returncode == 0, result.stdout[-6000:]
        assert " passed" in result.stdout
        # every operation answered with the token at least once (a logout: the first time)
        assert "Authentication failed" not in result.stdout, result.stdout[-6000:]
    assert [operations_tested(result.stdout) for result in results[1:]] == ["1", "1"]


def operations_tested(stdout: str) -> str:
    return stdout.rsplit("Tested: ", 1)[-1].split()[0]


def schemathesis(base: str, token: str, report: Path, operations: tuple[str, str]):
    """`st run` against the server's schema, on the `operations` (an --include-path-regex or
    --exclude-path-regex option and its pattern)."""
    return subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "st"),
            "run", f"{base}/api/schema", "--url", base,
            "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS, *operations,
            # Enough to reach every operation's error paths in about a minute and a half on
            # two cores; the stateful phase (chains of calls) would triple the time for little
            # more.
            "--max-examples", "15", "--seed", "1", "--phases", "coverage,fuzzing",
            "-H", f"Authorization: Token {token}",
            "--report-dir", str(report),
        ],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )  # fmt: skip

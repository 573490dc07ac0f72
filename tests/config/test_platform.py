"""Cross-cutting endpoints and settings: probes, schema, docs, metrics, deploy checks."""

import json
import os
from pathlib import Path

import pytest
from django.test import Client

from tests.servers import clean_env, run_manage

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def test_probes_answer_any_host_without_redirect(client: Client, settings):
    settings.SECURE_SSL_REDIRECT = True

    for path in ("/healthz", "/readyz"):
        response = client.get(path, HTTP_HOST="10.1.2.3:8000")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


def test_other_paths_still_check_the_host(client: Client):
    response = client.get("/api/todos", HTTP_HOST="evil.example.com")

    assert response.status_code == 400


def test_openapi_schema_and_docs_are_public(client: Client):
    schema = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = client.get("/api/docs")

    assert schema.status_code == 200
    spec = schema.json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {
        "/api/todos/",
        "/api/todos/{id}/",
        "/api/auth/register/",
        "/api/auth/token/",
        "/api/auth/logout/",
        "/api/auth/logout-all/",
        "/api/exports/",
        "/api/exports/{id}/",
        "/api/exports/{id}/download/",
        "/api/stats/",
    }
    assert set(spec["paths"]["/api/todos/"]) == {"get", "post", "delete"}
    for path in ("/api/auth/logout/", "/api/auth/logout-all/"):
        # a POST without a body, with a token only: 204, or refused before it does anything
        (operation,) = spec["paths"][path].values()
        assert set(spec["paths"][path]) == {"post"}
        assert "requestBody" not in operation
        assert operation["security"] == [{"tokenAuth": []}]
        assert set(operation["responses"]) == {"204", "400", "401", "413", "429"}
    assert "401" not in spec["paths"]["/api/auth/token/"]["post"]["responses"]
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


def test_metrics_are_served_to_a_scraper_by_pod_ip(client: Client):
    response = client.get("/metrics", HTTP_HOST="10.1.2.3:8000")  # scraped by pod IP

    assert response.status_code == 200
    # Counted by the outermost WSGI layer, which the test client skips: declared here, counted
    # in tests/config/edge/test_request_telemetry.py.
    assert b"# TYPE todo_scale_http_requests_total counter" in response.content


def test_metrics_need_the_token_when_one_is_configured(client: Client, settings):
    settings.METRICS_TOKEN = "scrape-secret"

    anonymous = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer guess")
    scraper = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")

    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous["WWW-Authenticate"] == "Bearer"
    assert scraper.status_code == 200
    assert b"todo_scale_http_requests" in scraper.content


def test_production_settings_pass_check_deploy():
    env = clean_env(
        DJANGO_SECRET_KEY="x" * 20 + "production-secret-key-with-enough-entropy-1234567890",
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS="api.example.com",
        DJANGO_SECURE_SSL_REDIRECT="true",
        DJANGO_TRUST_PROXY_HEADERS="true",
        DATABASE_URL=os.environ["TEST_DATABASE_URL"],
    )

    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_secret_key_is_required_with_a_real_database():
    env = clean_env(DATABASE_URL=os.environ["TEST_DATABASE_URL"])

    result = run_manage("check", env=env)

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_bad_boolean_variable_is_a_clear_configuration_error():
    result = run_manage("check", env=clean_env(DJANGO_DEBUG="maybe"))

    assert result.returncode != 0
    assert "DJANGO_DEBUG must be true or false" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        # A typo of a boolean must not quietly switch HTTPS redirects off.
        ("DJANGO_SECURE_SSL_REDIRECT", "ture", "must be true or false, not 'ture'"),
        ("EMAIL_USE_TLS", "ok", "must be true or false, not 'ok'"),
        ("DATABASE_CONN_MAX_AGE", "10m", "must be an integer, not '10m'"),
        ("TODO_PAGE_SIZE", "1.5", "must be an integer, not '1.5'"),
        ("REDIS_COOLDOWN", "5s", "must be a number, not '5s'"),
        ("LOG_FORMAT", "xml", "must be json or plain, not 'xml'"),
        # A token lifetime of nothing would log every client out as it logs in.
        ("API_TOKEN_TTL", "0", "must be a positive number of seconds, not 0"),
        ("API_TOKEN_TTL", "30d", "must be an integer, not '30d'"),
    ],
)
def test_bad_typed_variable_stops_the_process_naming_it(variable, value, message):
    result = run_manage("check", env=clean_env(**{variable: value}))

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{variable} {message}" in result.stderr


def test_empty_means_unset_and_values_are_read_as_written():
    code = (
        "from django.conf import settings as s; import json; print(json.dumps(["
        "s.DEBUG, s.TODO_PAGE_SIZE, s.REDIS_COOLDOWN, s.ALLOWED_HOSTS, s.EMAIL_HOST_PASSWORD]))"
    )
    env = clean_env(
        DJANGO_DEBUG="",
        TODO_PAGE_SIZE="",
        REDIS_COOLDOWN="",
        DJANGO_ALLOWED_HOSTS=" api.example.com, ,localhost,",
        # Not a reference to a variable named "HOME": a password is taken as written.
        EMAIL_HOST_PASSWORD="$HOME",
    )

    result = run_manage("shell", "--verbosity", "0", "-c", code, env=env)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        False,
        100,
        5.0,
        ["api.example.com", "localhost"],
        "$HOME",
    ]


def test_cache_and_rate_limits_may_not_share_a_redis_database():
    result = run_manage("check", env=clean_env(REDIS_URL="redis://127.0.0.1:6379/2"))

    assert result.returncode != 0
    assert "REDIS_URL, REDIS_RATELIMIT_DB must each use a Redis database of their own" in (
        result.stderr
    )

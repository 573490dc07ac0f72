"""The data migration from DRF's authtoken: an old key keeps working, and no plain key is left."""

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import UserFactory
from todos.models import ApiToken

pytestmark = pytest.mark.django_db

migration = importlib.import_module("todos.migrations.0008_apitokens_from_authtoken")

OLD_KEY = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"  # what DRF's Token.generate_key() makes


def authtoken_table_with(rows) -> None:
    """`authtoken_token` as DRF's migrations made it, and one record of them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamp with time zone NOT NULL, user_id integer NOT NULL UNIQUE)"
        )
        for key, user_id, created in rows:
            cursor.execute(
                "INSERT INTO authtoken_token VALUES (%s, %s, %s)", [key, created, user_id]
            )
    MigrationRecorder(connection).record_applied("authtoken", "0001_initial")


def migrate_forward() -> None:
    with connection.schema_editor() as editor:
        migration.tokens_from_authtoken(apps, editor)


def test_an_old_drf_key_authenticates_after_the_migration_and_the_plain_keys_are_gone():
    # given: a client's DRF token, issued a year ago
    user = UserFactory(username="old-client")
    created = timezone.now() - timedelta(days=365)
    authtoken_table_with([(OLD_KEY, user.pk, created)])

    # when
    migrate_forward()

    # then: the same key works, by its digest
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {OLD_KEY}")
    assert client.get("/api/todos").status_code == 200
    token = ApiToken.objects.get()
    assert token.digest == ApiToken.for_key(OLD_KEY).digest
    assert (token.user, token.name, token.created) == (user, "migrated", created)
    # expiring a TTL from now, not from its creation (which would log it out at once)
    expected = timezone.now() + settings.API_TOKEN_TTL
    assert abs(token.expires_at - expected) < timedelta(minutes=1)
    # and no plain key is left: the old table and its app's migration records are gone
    assert "authtoken_token" not in connection.introspection.table_names()
    assert not MigrationRecorder(connection).migration_qs.filter(app="authtoken").exists()


def test_many_tokens_are_converted_in_batches(monkeypatch):
    monkeypatch.setattr(migration, "BATCH", 2)
    users = UserFactory.create_batch(5)
    keys = [f"{n:040x}" for n in range(5)]
    authtoken_table_with(
        [(key, user.pk, timezone.now()) for key, user in zip(keys, users, strict=True)]
    )

    migrate_forward()

    digests = {ApiToken.for_key(key).digest: user.pk for key, user in zip(keys, users, strict=True)}
    assert dict(ApiToken.objects.values_list("digest", "user_id")) == digests


def test_a_database_without_the_old_table_has_nothing_to_convert():
    migrate_forward()

    assert not ApiToken.objects.exists()

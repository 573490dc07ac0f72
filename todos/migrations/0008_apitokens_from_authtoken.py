"""DRF's authtoken keys become API tokens by their digest, and its table of plain keys goes.

A client keeps using the key it has (`Authorization: Token <key>`): the new row holds the
SHA-256 of that key, the same `token_digest` authentication looks up, and expires
`API_TOKEN_TTL` after this migration (not after the old token's creation, which would log out
every client of more than that age at once). Then `authtoken_token` is dropped, so no key is
left in the database in plain text, and the records of `rest_framework.authtoken`'s migrations
go with it: the app is no longer installed, and re-installing it must create its table again.

The old table is read with SQL: the app is not installed, so its model is in no migration
state. A database that never had it (a new one) has nothing to convert. Not reversible: the
plain keys are gone, which is the point; migrating back leaves the old table absent.
"""

from datetime import UTC

from django.conf import settings
from django.db import migrations
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from config.edge.response_cache import token_digest

OLD_TABLE = "authtoken_token"
BATCH = 1000


def aware(value):
    """The old row's `created` as an aware datetime (SQLite hands back text)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value or timezone.now()


def tokens_from_authtoken(apps, schema_editor):
    connection = schema_editor.connection
    if OLD_TABLE not in connection.introspection.table_names():
        return
    api_token = apps.get_model("todos", "ApiToken")
    expires_at = timezone.now() + settings.API_TOKEN_TTL
    quote = schema_editor.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote('key')}, {quote('user_id')}, {quote('created')} "  # noqa: S608
            f"FROM {quote(OLD_TABLE)}"
        )
        while rows := cursor.fetchmany(BATCH):
            api_token.objects.using(connection.alias).bulk_create(
                api_token(
                    digest=token_digest(key),
                    user_id=user_id,
                    name="migrated",
                    created=aware(created),
                    expires_at=expires_at,
                )
                for key, user_id, created in rows
            )
    schema_editor.execute(schema_editor.sql_delete_table % {"table": quote(OLD_TABLE)})
    MigrationRecorder(connection).migration_qs.filter(app="authtoken").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("todos", "0007_apitoken"),
    ]

    operations = [
        migrations.RunPython(tokens_from_authtoken, migrations.RunPython.noop, elidable=True),
    ]

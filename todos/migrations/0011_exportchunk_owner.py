"""Export chunks carry their export's owner, copied from the export here and when each chunk is
written, so that every statement on the chunks can name the owner (docs/scaling.md). Nullable
for the copy; 0010 makes it required."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_owners(apps, schema_editor):
    Export = apps.get_model("todos", "Export")
    ExportChunk = apps.get_model("todos", "ExportChunk")
    ExportChunk.objects.using(schema_editor.connection.alias).update(
        owner_id=Subquery(Export.objects.filter(pk=OuterRef("export_id")).values("owner_id")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("todos", "0010_idempotencykey_todo_unlinked_by_services"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="exportchunk",
            name="owner",
            field=models.ForeignKey(
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(copy_owners, migrations.RunPython.noop),
    ]

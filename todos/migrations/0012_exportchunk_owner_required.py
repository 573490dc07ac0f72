"""Every export chunk has its owner (0009 copied it), and an export's chunks are unique per
(owner, export, index): the unique constraint holds the owner, as a table distributed by owner
needs, and is the index the download reads the chunks with."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("todos", "0011_exportchunk_owner"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="exportchunk",
            name="owner",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddConstraint(
            model_name="exportchunk",
            constraint=models.UniqueConstraint(
                fields=("owner", "export", "index"), name="export_chunk_owner_index"
            ),
        ),
        migrations.RemoveConstraint(
            model_name="exportchunk",
            name="export_chunk_index",
        ),
    ]

"""A user's statistics are keyed by their owner: one row per owner already, and the owner's id
in the primary key is what a table distributed by owner needs (docs/scaling.md)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("todos", "0008_apitokens_from_authtoken"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveField(
            model_name="userstats",
            name="id",
        ),
        migrations.AlterField(
            model_name="userstats",
            name="owner",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.CASCADE,
                primary_key=True,
                related_name="todo_stats",
                serialize=False,
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]

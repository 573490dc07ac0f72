"""An idempotency key's todo is unlinked by the services that delete todos, by owner, instead of
by Django's SET_NULL, which updates the keys by todo id alone. No change to the schema: the
foreign key stays, checked at commit."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("todos", "0009_userstats_owner_primary_key"),
    ]

    operations = [
        migrations.AlterField(
            model_name="idempotencykey",
            name="todo",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="todos.todo",
            ),
        ),
    ]

"""Outbox rows carry the id of the request that wrote them, for the published task's logs."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("todos", "0004_taskdelivery_moved_to_tasks"),
    ]

    operations = [
        migrations.AddField(
            model_name="outboxmessage",
            name="request_id",
            field=models.CharField(blank=True, max_length=128, null=True),
        ),
    ]

"""Outbox rows carry the W3C trace context of the span that wrote them, for the task's span."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("todos", "0005_outboxmessage_request_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="outboxmessage",
            name="traceparent",
            field=models.CharField(blank=True, max_length=55, null=True),
        ),
        migrations.AddField(
            model_name="outboxmessage",
            name="tracestate",
            field=models.CharField(blank=True, max_length=512, null=True),
        ),
    ]

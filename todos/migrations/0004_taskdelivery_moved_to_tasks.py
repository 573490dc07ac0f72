"""`TaskDelivery` leaves the todos app for `tasks` (tasks 0001): removed from Django's state
only, so its table and rows stay where they are."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("todos", "0003_outbox_exports_stats"),
        # tasks 0001 takes the model over first, so no state ever lacks it.
        ("tasks", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="TaskDelivery")],
            database_operations=[],
        ),
    ]

"""`TaskDelivery` joins the `tasks` app on the table the todos app created (todos 0003): in
Django's state only, so no row moves and existing databases migrate without a schema change."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        # The table exists from here on; todos 0004 then drops the model from todos' state.
        ("todos", "0003_outbox_exports_stats"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="TaskDelivery",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("task_id", models.CharField(max_length=255)),
                        ("retries", models.PositiveIntegerField()),
                        ("deliveries", models.PositiveIntegerField(default=0)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        "db_table": "todos_taskdelivery",
                        "ordering": ("created_at", "id"),
                        "indexes": [
                            models.Index(fields=["created_at"], name="task_delivery_created")
                        ],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("task_id", "retries"), name="task_delivery_once"
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]

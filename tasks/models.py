"""The tasks' own bookkeeping rows: how often each task message was started."""

from django.db import models


class TaskDelivery(models.Model):
    """How many times workers started one task message (a task id at one retry count).

    A message that kills the worker running it is redelivered (acks_late); this count lets
    tasks/base.py give up on it after a few deliveries instead of looping forever.
    """

    task_id = models.CharField(max_length=255)
    retries = models.PositiveIntegerField()
    deliveries = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # The table the todos app created before these rows moved here: kept, so no data moves.
        db_table = "todos_taskdelivery"
        ordering = ("created_at", "id")
        constraints = [
            # The upsert that counts a delivery conflicts on it.
            models.UniqueConstraint(fields=["task_id", "retries"], name="task_delivery_once")
        ]
        indexes = [
            # Housekeeping deletes counts older than a week.
            models.Index(fields=["created_at"], name="task_delivery_created"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id}#{self.retries}: {self.deliveries}"

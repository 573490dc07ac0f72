"""Housekeeping: expired idempotency keys and API tokens, old exports and spent bookkeeping rows
are deleted."""

import logging

from celery import shared_task
from django.utils import timezone

from tasks.base import ReliableTask
from tasks.deliveries import task_deliveries_purge
from todos import services

logger = logging.getLogger(__name__)


@shared_task(base=ReliableTask)
def housekeeping_purge_task() -> dict[str, int]:
    """Delete what has expired (see `services.housekeeping_purge`, and the tasks' own delivery
    counts, `task_deliveries_purge`); returns the counts. Idempotent by nature."""
    now = timezone.now()
    purged = services.housekeeping_purge(now=now)
    purged["task_deliveries"] = task_deliveries_purge(now=now)
    logger.info("housekeeping: %s", purged)
    return purged

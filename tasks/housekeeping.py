"""Housekeeping: expired idempotency keys, old exports and spent bookkeeping rows are deleted."""

import logging

from celery import shared_task
from django.utils import timezone

from tasks.base import ReliableTask
from todos import services

logger = logging.getLogger(__name__)


@shared_task(base=ReliableTask)
def housekeeping_purge_task() -> dict[str, int]:
    """Delete what has expired (see `services.housekeeping_purge`). Idempotent by nature."""
    purged = services.housekeeping_purge(now=timezone.now())
    logger.info("housekeeping: %s", purged)
    return purged

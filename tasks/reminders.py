"""Due-date reminders: beat scans every minute for todos coming due and emails each owner once."""

import logging
from smtplib import SMTPException

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from tasks.base import ReliableTask
from todos import selectors, services

logger = logging.getLogger(__name__)

# Todos reminded per scan. At 0.2 s for a slow mail server's send, 200 take 40 s, within the
# 60 s time limit; a larger backlog drains over the next scans, one a minute.
REMINDER_SCAN_LIMIT = 200


@shared_task(base=ReliableTask)
def reminders_scan_task() -> int:
    """Remind every todo that comes due within `REMINDER_LEAD`; returns how many were sent.

    Idempotent: each todo is claimed by a conditional UPDATE, so two scans at once (two beats,
    a redelivered message) send each reminder once.
    """
    now = timezone.now()
    todo_ids = selectors.todo_ids_due_for_reminder(
        now=now,
        lead=settings.REMINDER_LEAD,
        grace=services.REMINDER_GRACE,
        limit=REMINDER_SCAN_LIMIT,
    )
    sent = 0
    for todo_id in todo_ids:
        try:
            sent += services.todo_remind(todo_id=todo_id, now=now)
        except (SMTPException, OSError):
            # The mail server is failing: the claim rolled back, and the next scan tries again
            # rather than this one timing out on every remaining todo.
            logger.exception("reminder for todo %s not sent; the next scan retries", todo_id)
            break
    if sent:
        logger.info("reminders: sent %d", sent)
    return sent

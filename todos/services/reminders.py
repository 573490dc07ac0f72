"""Due-date reminders: email a todo's owner once as it comes due."""

from datetime import datetime, timedelta

from django.core.mail import send_mail
from django.db import transaction

from todos.models import Todo

# Reminders are sent for todos overdue by at most this much (after beat or the workers were
# down); later than a day, a reminder is noise.
REMINDER_GRACE = timedelta(hours=24)


def todo_remind(*, todo_id: int, now: datetime) -> bool:
    """Email `todo_id`'s owner that it comes due, once; True if this call sent the reminder.

    The claim (`reminded_at` set by a conditional UPDATE) and the send share one transaction:
    of two scans racing for a todo, the second waits on the row lock and then claims nothing;
    if the send fails, the claim rolls back and the next scan tries again. The one window for
    a second mail is a crash after the mail server accepted it and before the commit: at least
    once, never lost, chosen over at most once.
    """
    with transaction.atomic():
        claimed = Todo.objects.filter(pk=todo_id, reminded_at__isnull=True, completed=False).update(
            reminded_at=now
        )
        if not claimed:
            return False
        todo = Todo.objects.select_related("owner").get(pk=todo_id)
        if todo.owner.email:
            send_mail(
                subject=f"Reminder: {todo.title[:100]}",
                message=f"Your todo “{todo.title}” is due at {todo.due_at:%Y-%m-%d %H:%M} UTC.",
                from_email=None,
                recipient_list=[todo.owner.email],
            )
    return True

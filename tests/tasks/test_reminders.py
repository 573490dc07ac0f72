"""Due-date reminders on a real broker and worker: however many scans run, and however they
overlap (two beats, a redelivered message), each due todo is emailed once."""

import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connections
from django.utils import timezone

from tasks.reminders import reminders_scan_task
from tests.factories import TodoFactory, UserFactory
from todos import services
from todos.models import Todo

pytestmark = pytest.mark.django_db(transaction=True)


def in_own_connection(function):
    """`function` for a thread of its own, closing that thread's database connection after."""

    def run():
        try:
            function()
        finally:
            connections.close_all()

    return run


def make_todos():
    """Todos around the one-hour lead; returns the titles that must be reminded."""
    now = timezone.now()
    alice = UserFactory(username="alice", email="alice@example.com")
    bob = UserFactory(username="bob", email="bob@example.com")
    due = [
        TodoFactory(owner=alice, title="due in 10 min", due_at=now + timedelta(minutes=10)),
        TodoFactory(owner=alice, title="due in 59 min", due_at=now + timedelta(minutes=59)),
        TodoFactory(owner=bob, title="overdue by an hour", due_at=now - timedelta(hours=1)),
        TodoFactory(owner=bob, title="due now", due_at=now),
    ]
    TodoFactory(owner=alice, title="due in 2 h", due_at=now + timedelta(hours=2))
    TodoFactory(owner=alice, title="no due date")
    TodoFactory(owner=alice, title="done", completed=True, due_at=now + timedelta(minutes=5))
    TodoFactory(owner=bob, title="reminded", due_at=now, reminded_at=now - timedelta(minutes=5))
    TodoFactory(owner=bob, title="overdue by 2 days", due_at=now - timedelta(days=2))
    return {todo.title for todo in due}


def test_due_todos_get_exactly_one_email_across_repeated_and_overlapping_scans(worker):
    # given
    expected = make_todos()

    # when: four scans on two worker threads (two beats a minute apart, a redelivery...)
    for _ in range(4):
        reminders_scan_task.apply_async()
    worker.runs.wait(4)
    # ...and two more scans racing in this process
    racers = [
        threading.Thread(target=in_own_connection(reminders_scan_task.apply)) for _ in range(2)
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()

    # then
    subjects = sorted(message.subject for message in mail.outbox)
    assert subjects == sorted(f"Reminder: {title}" for title in expected)
    assert {tuple(message.to) for message in mail.outbox} == {
        ("alice@example.com",),
        ("bob@example.com",),
    }
    reminded = set(Todo.objects.filter(reminded_at__isnull=False).values_list("title", flat=True))
    assert reminded == expected | {"reminded"}


def test_racing_claims_of_one_todo_send_one_email():
    todo = TodoFactory(
        owner=UserFactory(email="carol@example.com"), due_at=timezone.now() + timedelta(minutes=1)
    )
    barrier = threading.Barrier(4)
    results = []

    def claim():
        barrier.wait()
        results.append(services.todo_remind(todo_id=todo.pk, now=timezone.now()))

    threads = [threading.Thread(target=in_own_connection(claim)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False, False, False, True]
    assert len(mail.outbox) == 1

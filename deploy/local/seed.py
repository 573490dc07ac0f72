"""A user's todos in one bulk insert: the data the benchmarks and the suite's worker tests load.

Needs Django set up (it uses the ORM); a process without it runs
`manage.py shell -c "from deploy.local.seed import seed_todos; ..."`.
"""

from __future__ import annotations

from datetime import timedelta

# Titles that a CSV or JSON writer must escape: commas, quotes, newlines, non-ASCII.
AWKWARD_TITLES = ("plain", 'say "hi", then leave', "line one\nline two", "café ☕ 東京", "=1+2")
# Rows per INSERT: keeps one statement under a few MB while amortising the round trip.
BATCH_SIZE = 5000


def seed_todos(owner, count: int, *, varied: bool = False) -> None:
    """`count` todos for `owner`: "todo 0", "todo 1", ... with order = index.

    `varied` varies every field instead: awkward titles, a third completed, every seventh
    without an order, every other with a due date.
    """
    from django.utils import timezone

    from todos.models import Todo

    now = timezone.now()

    def todo(i: int) -> Todo:
        if not varied:
            return Todo(owner=owner, title=f"todo {i}", order=i)
        return Todo(
            owner=owner,
            title=f"{AWKWARD_TITLES[i % len(AWKWARD_TITLES)]} #{i}",
            completed=i % 3 == 0,
            order=None if i % 7 == 0 else i - 5000,
            due_at=None if i % 2 else now + timedelta(days=i % 40, microseconds=i),
        )

    Todo.objects.bulk_create([todo(i) for i in range(count)], batch_size=BATCH_SIZE)

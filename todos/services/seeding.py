"""Seed data: users with generated todos, for benchmarks and demos (`manage.py seed_todos`)."""

import random
from collections.abc import Callable
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from todos.cache import todos_changed
from todos.models import Todo

SEED_USERNAME_PREFIX = "seed-user-"
SEED_WORDS = (
    "buy milk", "call mom", "write report", "water plants", "book flights", "pay rent",
    "fix bike", "read book", "clean desk", "plan sprint", "walk dog", "renew passport",
)  # fmt: skip


def todos_seed(
    *,
    users: int,
    per_user: int,
    seed: int = 0,
    batch_size: int = 5000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Make sure `users` seed users exist with `per_user` todos each; returns todos created.

    Idempotent: users are found by name and only the missing todos are added, so running it
    twice leaves the same data. Rows go in with `bulk_create` in batches of `batch_size`
    (5,000 rows keep one INSERT under a few MB while amortising the round trip).
    """
    user_model = get_user_model()
    names = [f"{SEED_USERNAME_PREFIX}{index:06d}" for index in range(users)]
    existing = set(user_model.objects.filter(username__in=names).values_list("username", flat=True))
    user_model.objects.bulk_create(
        [
            user_model(username=name, password=make_password(None))
            for name in names
            if name not in existing
        ],
        batch_size=batch_size,
    )
    owners = dict(user_model.objects.filter(username__in=names).values_list("username", "id"))
    have = dict(
        Todo.objects.filter(owner_id__in=owners.values())
        .values("owner_id")
        .annotate(n=Count("id"))
        .values_list("owner_id", "n")
    )
    wanted = sum(max(per_user - have.get(owner_id, 0), 0) for owner_id in owners.values())
    created = 0
    batch: list[Todo] = []
    now = timezone.now()
    for name in names:
        owner_id = owners[name]
        rng = random.Random(f"{seed}:{name}")
        for index in range(have.get(owner_id, 0), per_user):
            batch.append(
                Todo(
                    owner_id=owner_id,
                    title=f"{rng.choice(SEED_WORDS)} #{index + 1}",
                    completed=rng.random() < 0.3,
                    order=index,
                    due_at=now + timedelta(hours=rng.randint(1, 24 * 30))
                    if rng.random() < 0.2
                    else None,
                )
            )
            if len(batch) >= batch_size:
                created += _bulk_insert(batch)
                batch = []
                if progress:
                    progress(created, wanted)
    if batch:
        created += _bulk_insert(batch)
        if progress:
            progress(created, wanted)
    return created


def _bulk_insert(todos: list[Todo]) -> int:
    with transaction.atomic():
        Todo.objects.bulk_create(todos)
        todos_changed(owner_ids=[todo.owner_id for todo in todos])
    return len(todos)

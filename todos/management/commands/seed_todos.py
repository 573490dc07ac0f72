"""`manage.py seed_todos --users N --per-user M [--seed S]`: bulk, idempotent test data."""

import time

from django.core.management.base import BaseCommand, CommandError

from todos.services import SEED_USERNAME_PREFIX, todos_seed


class Command(BaseCommand):
    help = (
        f"Create N users named {SEED_USERNAME_PREFIX}NNNNNN with M todos each. Running it again "
        "adds only what is missing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, required=True)
        parser.add_argument("--per-user", type=int, required=True)
        parser.add_argument("--seed", type=int, default=0, help="makes titles reproducible")
        parser.add_argument("--batch-size", type=int, default=5000)

    def handle(self, *args, users, per_user, seed, batch_size, **options):
        if users < 0 or per_user < 0 or batch_size < 1:
            raise CommandError("--users and --per-user must be >= 0, --batch-size >= 1")
        started = time.monotonic()

        def report(done: int, total: int) -> None:
            rate = done / max(time.monotonic() - started, 1e-6)
            self.stdout.write(f"  {done}/{total} todos ({rate:,.0f} rows/s)")

        created = todos_seed(
            users=users,
            per_user=per_user,
            seed=seed,
            batch_size=batch_size,
            progress=report,
        )
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"{users} users x {per_user} todos present; "
                f"{created} todos created in {elapsed:.1f}s"
            )
        )

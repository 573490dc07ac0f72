"""`manage.py seed_todos --users N --per-user M [--seed S]`: bulk, idempotent test data.

On a terminal, a bar on stderr counts the todos inserted, with their rate and the time left
(config/progress.py); it moves once per batch, so it costs nothing next to the COPY. stdout
gets only the summary line.
"""

import time

from django.core.management.base import BaseCommand, CommandError

from config.progress import bar_total, progress_bar
from todos.services import SEED_USERNAME_PREFIX, todos_seed
from todos.services.seeding import COPY_WRITERS


class Command(BaseCommand):
    help = (
        f"Create N users named {SEED_USERNAME_PREFIX}NNNNNN with M todos each. Running it again "
        "adds only what is missing. On Postgres the todos go in with COPY."
    )

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, required=True)
        parser.add_argument("--per-user", type=int, required=True)
        parser.add_argument("--seed", type=int, default=0, help="makes titles reproducible")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help="todos per transaction (default 50,000 with COPY, 5,000 with INSERT)",
        )
        parser.add_argument(
            "--writers",
            type=int,
            default=COPY_WRITERS,
            help=f"connections writing at once with COPY (default {COPY_WRITERS})",
        )
        parser.add_argument(
            "--no-progress",
            action="store_true",
            help="no progress bar on a terminal (there is none when stderr is not one)",
        )

    def handle(self, *args, users, per_user, seed, batch_size, writers, no_progress, **options):
        if users < 0 or per_user < 0 or (batch_size is not None and batch_size < 1) or writers < 1:
            raise CommandError(
                "--users and --per-user must be >= 0, --batch-size and --writers >= 1"
            )
        started = time.monotonic()
        with progress_bar(
            self.stderr, desc="seeding", unit="todos", enabled=not no_progress
        ) as bar:

            def report(done: int, total: int) -> None:
                bar_total(bar, total)
                bar.update(done - bar.n)

            created = todos_seed(
                users=users,
                per_user=per_user,
                seed=seed,
                batch_size=batch_size,
                writers=writers,
                progress=report,
            )
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"{users} users x {per_user} todos present; "
                f"{created} todos created in {elapsed:.1f}s"
            )
        )

"""Seed data: users with generated todos, for benchmarks and demos (`manage.py seed_todos`)."""

import functools
import queue
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import connections, router, transaction
from django.db.models import Count
from django.utils import timezone

from todos.cache import todos_changed
from todos.models import Todo

SEED_USERNAME_PREFIX = "seed-user-"
SEED_WORDS = (
    "buy milk", "call mom", "write report", "water plants", "book flights", "pay rent",
    "fix bike", "read book", "clean desk", "plan sprint", "walk dog", "renew passport",
)  # fmt: skip
# Due dates fall 1 hour to 30 days after the run's start.
DUE_HOURS = range(1, 24 * 30 + 1)
# Rows per transaction. With INSERT, 5,000 rows keep one statement under a few MB while
# amortising the round trip. COPY streams, so its batch only bounds how much one transaction
# holds and how often progress is reported: 50,000 rows (about 3 MB of COPY text) make the
# commits negligible (20 per million rows) and still report every second or so.
INSERT_BATCH_ROWS = 5_000
COPY_BATCH_ROWS = 50_000
# Bytes of COPY text handed to the driver at a time: large enough that the per-call cost
# vanishes, small enough that the server starts on a batch while the rest is generated.
COPY_CHUNK_BYTES = 1 << 20
# COPYs at once, each on its own connection: a backend checks the foreign key and updates the
# primary key and six other indexes of every row on one core, which makes it the bottleneck
# (about 17 s of server CPU per million rows against 3.5 s of Python); two use both cores of a
# 2-core box.
COPY_WRITERS = 2
COPY_COLUMNS = ("owner_id", "title", "completed", "order", "due_at", "created_at", "updated_at")

# (owner_id, index, title, completed, hours until due or None): one todo to seed.
SeedRow = tuple[int, int, str, bool, int | None]


def todos_seed(
    *,
    users: int,
    per_user: int,
    seed: int = 0,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    copy: bool | None = None,
    writers: int = COPY_WRITERS,
    now: datetime | None = None,
) -> int:
    """Make sure `users` seed users exist with `per_user` todos each; returns todos created.

    Idempotent: users are found by name and only the missing todos are added, so running it
    twice leaves the same data. The todos of one `seed` are the same whichever way they are
    written: titles, completion, order and due dates come from a generator seeded by `seed`
    and the username, due dates counted from `now` (default: the current time).

    On Postgres rows go in with `COPY ... FROM STDIN` (`copy=None` or `True`), elsewhere (or
    with `copy=False`) with `bulk_create`; `batch_size` rows per transaction (default
    `COPY_BATCH_ROWS` or `INSERT_BATCH_ROWS`), each transaction bumping the cache generations
    of the owners it wrote once it commits. A user's todos are committed in order, so an
    interrupted run leaves each user a prefix that the next run tops up. With COPY, `writers`
    connections write at once, each for its own range of users, unless the caller holds a
    transaction open (then everything goes into it, on its connection); every row's
    `created_at` and `updated_at` is `now`. With `bulk_create` they are the moment the row's
    batch was written. `progress(done, total)` is called once with `done=0` before the first
    batch (so a progress bar has its total from the start) and then after each batch, in the
    caller's thread.
    """
    if writers < 1:
        raise ValueError("writers must be >= 1")
    user_model = get_user_model()
    alias = router.db_for_write(Todo)
    connection = connections[alias]
    if copy is None:
        copy = connection.vendor == "postgresql"
    elif copy and connection.vendor != "postgresql":
        raise ValueError("COPY needs Postgres")
    if batch_size is None:
        batch_size = COPY_BATCH_ROWS if copy else INSERT_BATCH_ROWS
    if not copy or connection.in_atomic_block:
        writers = 1
    now = now or timezone.now()

    names = [f"{SEED_USERNAME_PREFIX}{index:06d}" for index in range(users)]
    existing = set(user_model.objects.filter(username__in=names).values_list("username", flat=True))
    user_model.objects.bulk_create(
        [
            user_model(username=name, password=make_password(None))
            for name in names
            if name not in existing
        ],
        batch_size=INSERT_BATCH_ROWS,
    )
    owners = dict(user_model.objects.filter(username__in=names).values_list("username", "id"))
    have = dict(
        Todo.objects.filter(owner_id__in=owners.values())
        .values("owner_id")
        .annotate(n=Count("id"))
        .values_list("owner_id", "n")
    )
    starts = [(owners[name], name, have.get(owners[name], 0)) for name in names]
    wanted = sum(max(per_user - start, 0) for _, _, start in starts)
    write = functools.partial(
        _write_batches,
        write=_copy_batch if copy else _insert_batch,
        per_user=per_user,
        seed=seed,
        batch_size=batch_size,
        alias=alias,
        now=now,
    )
    created = 0
    if progress:
        progress(0, wanted)

    def report(rows: int) -> None:
        nonlocal created
        created += rows
        if progress:
            progress(created, wanted)

    ranges = _ranges(starts, per_user=per_user, parts=writers)
    if len(ranges) > 1:
        _write_in_parallel(write, ranges, report)
    else:
        write(starts, report=report)
    return created


def _ranges(
    starts: list[tuple[int, str, int]], *, per_user: int, parts: int
) -> list[list[tuple[int, str, int]]]:
    """`starts` cut into at most `parts` consecutive runs of users with about as many missing
    todos each: each writer's index entries then land in its own part of each index."""
    missing = [max(per_user - start, 0) for _, _, start in starts]
    share = sum(missing) / parts
    ranges: list[list[tuple[int, str, int]]] = [[]]
    total = 0
    for user, rows in zip(starts, missing, strict=True):
        if not rows:
            continue
        if total >= share * len(ranges) and len(ranges) < parts:
            ranges.append([])
        ranges[-1].append(user)
        total += rows
    return [users for users in ranges if users]


def _write_in_parallel(
    write: Callable[..., None],
    ranges: list[list[tuple[int, str, int]]],
    report: Callable[[int], None],
) -> None:
    """Run `write` for each range in a thread of its own; report batches in this thread."""
    done: queue.Queue[int | None] = queue.Queue()
    stop = threading.Event()

    def run(users: list[tuple[int, str, int]]) -> None:
        try:
            write(users, report=done.put, stop=stop)
        except BaseException:
            stop.set()
            raise
        finally:
            # Each thread has its own connection; closing it here leaves none behind.
            connections.close_all()
            done.put(None)

    with ThreadPoolExecutor(max_workers=len(ranges)) as pool:
        futures = [pool.submit(run, users) for users in ranges]
        running = len(futures)
        while running:
            rows = done.get()
            if rows is None:
                running -= 1
            else:
                report(rows)
    for future in futures:
        future.result()


def _write_batches(
    starts: list[tuple[int, str, int]],
    *,
    write: Callable[..., int],
    per_user: int,
    seed: int,
    batch_size: int,
    alias: str,
    now: datetime,
    report: Callable[[int], None],
    stop: threading.Event | None = None,
) -> None:
    """Write the missing todos of `starts` in transactions of `batch_size` rows, in order."""
    batch: list[SeedRow] = []
    for row in _seed_rows(starts, per_user=per_user, seed=seed):
        batch.append(row)
        if len(batch) >= batch_size:
            if stop is not None and stop.is_set():
                return
            report(write(batch, alias=alias, now=now))
            batch = []
    if batch:
        report(write(batch, alias=alias, now=now))


def _seed_rows(
    starts: list[tuple[int, str, int]], *, per_user: int, seed: int
) -> Iterator[SeedRow]:
    """The missing todos of each (owner_id, username, todos it has), in username order."""
    for owner_id, name, start in starts:
        rng = random.Random(f"{seed}:{name}")
        for index in range(start, per_user):
            # The draws are made in this order (title, completed, due) so that one seed gives
            # the same data as it always has.
            title = f"{rng.choice(SEED_WORDS)} #{index + 1}"
            completed = rng.random() < 0.3
            due = rng.randint(DUE_HOURS.start, DUE_HOURS.stop - 1) if rng.random() < 0.2 else None
            yield owner_id, index, title, completed, due


def _insert_batch(rows: list[SeedRow], *, alias: str, now: datetime) -> int:
    with transaction.atomic(using=alias):
        Todo.objects.using(alias).bulk_create(
            [
                Todo(
                    owner_id=owner_id,
                    title=title,
                    completed=completed,
                    order=index,
                    due_at=None if due is None else now + timedelta(hours=due),
                )
                for owner_id, index, title, completed, due in rows
            ]
        )
        todos_changed(owner_ids={row[0] for row in rows})
    return len(rows)


def _copy_batch(rows: list[SeedRow], *, alias: str, now: datetime) -> int:
    """Write `rows` with one `COPY todos_todo (...) FROM STDIN` in text format."""
    stamp = _copy_text(now.isoformat())
    due_at = {hours: _copy_text((now + timedelta(hours=hours)).isoformat()) for hours in DUE_HOURS}
    due_at[None] = r"\N"
    columns = ", ".join(connections[alias].ops.quote_name(column) for column in COPY_COLUMNS)
    statement = f"COPY {Todo._meta.db_table} ({columns}) FROM STDIN"
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        with cursor.cursor.copy(statement) as copy:
            lines: list[str] = []
            size = 0
            for owner_id, index, title, completed, due in rows:
                line = (
                    f"{owner_id}\t{_copy_text(title)}\t{'t' if completed else 'f'}\t{index}\t"
                    f"{due_at[due]}\t{stamp}\t{stamp}\n"
                )
                lines.append(line)
                size += len(line)
                if size >= COPY_CHUNK_BYTES:
                    copy.write("".join(lines).encode())
                    lines, size = [], 0
            if lines:
                copy.write("".join(lines).encode())
        todos_changed(owner_ids={row[0] for row in rows})
    return len(rows)


def _copy_text(value: str) -> str:
    """`value` as a field of COPY's text format: backslash, tab and line breaks escaped."""
    if "\\" not in value and "\t" not in value and "\n" not in value and "\r" not in value:
        return value
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )

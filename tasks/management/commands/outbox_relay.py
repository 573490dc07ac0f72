"""`manage.py outbox_relay [--once]`: publish outbox rows to the broker (tasks/outbox.py)."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tasks.outbox import POLL_INTERVAL, outbox_relay, outbox_relay_forever


class Command(BaseCommand):
    help = "Publish committed outbox rows to the broker, polling until SIGTERM (or once)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="publish the backlog and exit")
        parser.add_argument(
            "--interval", type=float, default=POLL_INTERVAL, help="seconds between polls"
        )

    def handle(self, *args, once: bool, interval: float, **options):
        if not settings.CELERY_BROKER_URL:
            raise CommandError("CELERY_BROKER_URL is not set: tasks run eagerly, nothing to relay")
        if once:
            result = outbox_relay()
            self.stdout.write(f"published {result.sent}")
            if result.error:
                raise CommandError(f"broker unavailable: {result.error}")
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(f"relaying outbox rows every {interval:g} s; SIGTERM stops")
        outbox_relay_forever(stop=stop, poll_interval=interval)

"""`manage.py outbox_relay [--once]`: publish outbox rows to the broker (tasks/outbox.py).

With `OUTBOX_METRICS_PORT` set, the polling relay also serves the backlog to Prometheus
(tasks/metrics.py). With `OTEL_EXPORTER_OTLP_ENDPOINT` set, each publish is a span in the trace
of the request that wrote the row (config/tracing.py).

With `--once` on a terminal, a bar on stderr counts the rows published out of the backlog
counted at the start (config/progress.py), one step per batch; stdout gets only the
`published N` line. The count is made only when the bar is shown.
"""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.progress import bar_total, progress_bar
from config.tracing import tracing_start
from tasks.metrics import relay_metrics_serve
from tasks.outbox import POLL_INTERVAL, outbox_relay, outbox_relay_forever
from todos import selectors


class Command(BaseCommand):
    help = "Publish committed outbox rows to the broker, polling until SIGTERM (or once)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="publish the backlog and exit")
        parser.add_argument(
            "--interval", type=float, default=POLL_INTERVAL, help="seconds between polls"
        )
        parser.add_argument(
            "--no-progress",
            action="store_true",
            help="with --once, no progress bar on a terminal (none when stderr is not one)",
        )

    def handle(self, *args, once: bool, interval: float, no_progress: bool, **options):
        if not settings.CELERY_BROKER_URL:
            raise CommandError("CELERY_BROKER_URL is not set: tasks run eagerly, nothing to relay")
        tracing_start()
        if once:
            with progress_bar(
                self.stderr, desc="publishing", unit="rows", enabled=not no_progress
            ) as bar:
                if not bar.disable:
                    # Counted once: rows committed while the backlog drains are published too
                    # (the count then ends past the total), and a relay running beside this one
                    # takes its share (it ends short of it).
                    bar_total(bar, selectors.outbox_unsent().count())
                result = outbox_relay(progress=bar.update)
            self.stdout.write(f"published {result.sent}")
            if result.error:
                raise CommandError(f"broker unavailable: {result.error}")
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        metrics = None
        if settings.OUTBOX_METRICS_PORT:
            metrics = relay_metrics_serve(port=settings.OUTBOX_METRICS_PORT)
            self.stdout.write(f"outbox metrics on port {settings.OUTBOX_METRICS_PORT}")
        self.stdout.write(f"relaying outbox rows every {interval:g} s; SIGTERM stops")
        try:
            outbox_relay_forever(stop=stop, poll_interval=interval)
        finally:
            if metrics is not None:
                metrics.shutdown()

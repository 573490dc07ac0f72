"""`manage.py outbox_relay [--once]`: publish outbox rows to the broker (tasks/outbox.py).

With `OUTBOX_METRICS_PORT` set, the polling relay also serves the backlog to Prometheus
(tasks/metrics.py). With `OTEL_EXPORTER_OTLP_ENDPOINT` set, each publish is a span in the trace
of the request that wrote the row (config/tracing.py).
"""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.tracing import tracing_start
from tasks.metrics import relay_metrics_serve
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
        tracing_start()
        if once:
            result = outbox_relay()
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

"""WSGI entry point for gunicorn (`config.wsgi:application`).

Django's handler sits behind the gateway (config/edge/gateway.py), which answers rate-limited
requests and cached reads itself; both sit behind the request telemetry
(config/edge/request_telemetry.py), which gives every response its request id, metric and log
line, whichever of the two answered.

With `OTEL_EXPORTER_OTLP_ENDPOINT` set, tracing starts here (config/tracing.py): gunicorn imports
this module in each worker after the fork, and Django's tracing middleware must be in place
before the handler below loads the middleware. Its server span is then the outermost layer of
an API request, around the gateway's Redis round trip and Django's own span.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config import tracing

tracing.tracing_start()
django_application = get_wsgi_application()

# Both need the settings configured above.
from config.edge.gateway import Gateway  # noqa: E402
from config.edge.request_telemetry import RequestTelemetry  # noqa: E402

application = tracing.wsgi_traced(RequestTelemetry(Gateway(django_application)))

"""WSGI entry point for gunicorn (`config.wsgi:application`).

Django's handler sits behind the gateway (config/edge/gateway.py), which answers rate-limited
requests and cached reads itself; both sit behind the request telemetry
(config/edge/request_telemetry.py), which gives every response its request id, metric and log
line, whichever of the two answered.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django_application = get_wsgi_application()

# Both need the settings configured above.
from config.edge.gateway import Gateway  # noqa: E402
from config.edge.request_telemetry import RequestTelemetry  # noqa: E402

application = RequestTelemetry(Gateway(django_application))

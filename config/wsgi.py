"""WSGI entry point for gunicorn (`config.wsgi:application`).

Django's handler sits behind the gateway (config/edge/gateway.py), which answers rate-limited
requests and cached reads itself.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django_application = get_wsgi_application()

from config.edge.gateway import Gateway  # noqa: E402  (needs the settings configured above)

application = Gateway(django_application)

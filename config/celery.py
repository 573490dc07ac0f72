"""The Celery application: `celery -A config worker` / `celery -A config beat`.

Settings come from Django's settings under the `CELERY_` prefix. With no `CELERY_BROKER_URL`,
tasks run eagerly in the calling process (the embedded default).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")

"""The Celery application: `celery -A config worker` / `celery -A config beat`.

Settings come from Django's settings under the `CELERY_` prefix (config/settings.py, "Celery").
The task modules are listed there in `CELERY_IMPORTS` and imported explicitly in every process
(tasks/apps.py): autodiscovery would look only for `<app>.tasks` modules. With no
`CELERY_BROKER_URL`, tasks run eagerly in the calling process (the embedded default).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")

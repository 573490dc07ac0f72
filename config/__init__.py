"""The project package: settings, URLs, WSGI entry point, the Celery app and cross-cutting
middleware."""

# Loaded with Django so that `shared_task` binds to this app in every process.
from config.celery import app as celery_app

__all__ = ("celery_app",)

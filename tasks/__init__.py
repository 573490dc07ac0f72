"""Celery tasks, one module per topic; each task loads by id and calls a service in todos/."""

"""Celery tasks, one module per topic; each task takes ids, loads, and calls a service in todos/.

Also a Django app (tasks/apps.py), so that every process registers the same tasks and the
outbox relay hears about committed outbox rows.
"""

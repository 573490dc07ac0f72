"""Django's PostgreSQL backend, checking a persistent connection only when it sat idle.

See base.py.
"""

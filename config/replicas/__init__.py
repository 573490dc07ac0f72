"""Reads on streaming replicas: read routing per request and per task, read-your-writes marks
(sticking), each standby's health as a worker process sees it, and the guard that catches a
misrouted query.

The router Django calls (`DATABASE_ROUTERS`) is config/db_router.py; it asks read_routing here.
"""

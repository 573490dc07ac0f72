"""Liveness and readiness probes and the metrics endpoint, answered before host checks,
redirects and sessions.

A probe comes from the kubelet or the load balancer with the pod's IP as Host and over plain
HTTP: it must not be refused by ALLOWED_HOSTS or redirected to HTTPS, and must not touch the
session store. Prometheus likewise scrapes each replica by its IP. nginx refuses `/metrics` from
outside, so only the scraper on the internal network reaches it.
"""

import hmac
import logging

from django.conf import settings
from django.db import DatabaseError, connections
from django.http import JsonResponse
from django_prometheus.exports import ExportToDjangoView

from config.migration_metrics import unapplied_migrations_refresh

logger = logging.getLogger(__name__)


def database_ready() -> bool:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        logger.warning("readiness probe: the primary database is unreachable", exc_info=True)
        return False


def metrics_allowed(request) -> bool:
    """With `METRICS_TOKEN` set, only a scraper sending `Authorization: Bearer <token>` may read
    the metrics: a Kubernetes LoadBalancer Service exposes the pods' port, /metrics included."""
    token = settings.METRICS_TOKEN
    if not token:
        return True
    sent = request.headers.get("Authorization", "")
    return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())


class HealthCheckMiddleware:
    """Answer `/healthz` (the process is up), `/readyz` (it can reach the primary) and
    `/metrics` (Prometheus exposition, summed over the replica's worker processes)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/healthz":
            return JsonResponse({"status": "ok"})
        if request.path == "/readyz":
            if database_ready():
                return JsonResponse({"status": "ok"})
            return JsonResponse({"status": "unavailable", "database": "unreachable"}, status=503)
        if request.path == "/metrics":
            if not metrics_allowed(request):
                response = JsonResponse({"detail": "Metrics need the scraper's token."}, status=401)
                response["WWW-Authenticate"] = "Bearer"
                return response
            unapplied_migrations_refresh()
            return ExportToDjangoView(request)
        return self.get_response(request)

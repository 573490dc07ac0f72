"""Every response's request id, metric and log line, taken at the outermost WSGI layer.

`RequestTelemetry` wraps the gateway (config/wsgi.py), so whichever layer answers (a cached
hit, a 304 or a 429 from the gateway, or Django), the response passes through it once:

- its request id, from a valid `X-Request-ID` or made (config/request_id.py), is current while
  the request is served and echoed on the response;
- it is counted in `todo_scale_http_requests_total{route, method, status, outcome}` and timed in
  `todo_scale_http_request_duration_seconds{route, method, outcome}`;
- it is logged in one line with its id, user, route, status, time, outcome and the database that
  served its reads.

The time runs from the request's arrival until the answering layer returns its response: the
bytes of a streamed download are sent after that, at the client's pace, which is not the
server's latency. The layers below leave what only they know in the WSGI environ (`ROUTE`,
`OUTCOME`, `USER_ID`; config/replicas/read_routing.py's `READ_ALIAS`): the gateway for its own
answers, `RouteMiddleware` for Django's.
"""

import functools
import logging
import time

from django.db import DEFAULT_DB_ALIAS
from django.urls import Resolver404, resolve
from prometheus_client import Counter, Histogram

from config.replicas.read_routing import READ_ALIAS, authenticated_user_id
from config.request_id import ENVIRON_KEY, HEADER, bind, request_id_from, unbind

logger = logging.getLogger(__name__)

# Keys of the WSGI environ the answering layer fills in.
ROUTE = "todo_scale.route"
OUTCOME = "todo_scale.outcome"
USER_ID = "todo_scale.user_id"
DJANGO = "django"
# The gateway's outcomes that no database took part in.
REDIS_ONLY = frozenset({"hit", "not_modified", "rate_limited"})

# Seconds. A gateway hit takes a few hundred microseconds and an uncached list some 5-50 ms;
# the latency alert's threshold (0.5 s) must be a bound, and gunicorn kills a request at 30 s.
# Finer below 10 ms (where hits and 304s sit), coarser above a second (only the broken is there).
BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

REQUESTS = Counter(
    "todo_scale_http_requests",
    "Responses, whichever layer answered them, by route, method, status class and outcome",
    ["route", "method", "status", "outcome"],
)
DURATION = Histogram(
    "todo_scale_http_request_duration_seconds",
    "Time to answer a request, whichever layer answered it",
    ["route", "method", "outcome"],
    buckets=BUCKETS,
)

# Any other method is "other": a label value a client chooses would grow the metric without end.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Paths config.health answers before URL resolution, by the route name they are counted under.
PROBES = {"/healthz": "healthz", "/readyz": "readyz", "/metrics": "metrics"}
OTHER = "other"


@functools.cache
def _series(route: str, method: str, status_class: str, outcome: str) -> tuple:
    """The request counter's and the duration histogram's series of one kind of response, each
    looked up once per process: `labels()` validates and locks on every call. The label values
    are bounded (URL names, METHODS, status classes, outcomes), and so is this cache."""
    return (
        REQUESTS.labels(route, method, f"{status_class}xx", outcome),
        DURATION.labels(route, method, outcome),
    )


def url_name(path: str) -> str:
    """The URL name `path` resolves to, else "other" (never the path: it holds ids)."""
    if path in PROBES:
        return PROBES[path]
    try:
        return resolve(path).url_name or OTHER
    except Resolver404:
        return OTHER


class RequestTelemetry:
    """The outermost WSGI layer: the request id, the request metrics and the request log line."""

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        request_id = request_id_from(environ.get(ENVIRON_KEY))
        statuses = []

        def start_with_id(status, headers, exc_info=None):
            statuses.append(status)
            return start_response(status, [*headers, (HEADER, request_id)], exc_info)

        token = bind(request_id)
        try:
            try:
                response = self.application(environ, start_with_id)
            except BaseException:
                self.record(environ, "500", started)
                raise
            # Every layer here starts its response before returning it.
            self.record(environ, statuses[-1] if statuses else "500", started)
            return response
        finally:
            unbind(token)

    def record(self, environ: dict, status: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        method = environ.get("REQUEST_METHOD", "")
        method = method if method in METHODS else OTHER
        outcome = environ.get(OUTCOME, DJANGO)
        route = environ.get(ROUTE) or url_name(environ.get("PATH_INFO", ""))
        counted, timed = _series(route, method, status[0], outcome)
        counted.inc()
        timed.observe(elapsed)
        if not logger.isEnabledFor(logging.INFO):
            return
        code = int(status[:3])
        duration_ms = round(elapsed * 1000, 3)
        # None when no database served it: the gateway answered from Redis.
        alias = None if outcome in REDIS_ONLY else environ.get(READ_ALIAS, DEFAULT_DB_ALIAS)
        logger.info(
            "%s %s %d %s %.3f ms",
            method,
            environ.get("PATH_INFO", ""),
            code,
            outcome,
            duration_ms,
            extra={
                "method": method,
                "path": environ.get("PATH_INFO", ""),
                "route": route,
                "status": code,
                "duration_ms": duration_ms,
                "outcome": outcome,
                "user_id": environ.get(USER_ID),
                "db_alias": alias,
            },
        )


class RouteMiddleware:
    """Note in the environ the route Django resolved and the user it authenticated, for the
    request's metric and log line. Place it before the probes' middleware, so that it sees
    their responses too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        match = request.resolver_match
        meta = request.META
        meta[ROUTE] = (match.url_name if match else None) or PROBES.get(request.path_info, OTHER)
        meta[USER_ID] = authenticated_user_id(request)
        return response

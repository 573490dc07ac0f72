"""The WSGI front of every web replica: rate limits, cached reads, and reads and creates
performed without Django.

For each request under /api/ it makes one Redis round trip (config/response_cache.gate) that
counts the request against its rate limits, resolves the token (and, with read replicas, reads
the user's read-your-writes mark) and, for a GET of the todo list or a todo when the response
cache is on, fetches the caller's cached response. Then:
- over a limit → 429 with `Retry-After` and `X-RateLimit-*`, before Django or Postgres;
- a cached response → written out at once: no Django request, no middleware, no DRF, no ORM;
- an uncached GET of the list or a todo, or a JSON POST of a todo, for a known token → rendered
  or created here without Django's middleware or DRF (config/edge/direct_reads.py and
  direct_writes.py), when the app's function takes it;
- otherwise → Django handles it, with the gate's result in `environ["todo_scale.gate"]` so
  neither the token authentication nor the view nor the read routing asks again.
When Redis is unavailable, the breaker skips it and every request goes to Django (rate limits
fail open, logged and counted). For its own answers it notes in the environ the outcome, the
user and (for a hit) the route, for the request's metric and log line
(config/edge/request_telemetry.py, the layer around this one).
"""

import json

from django.conf import settings
from prometheus_client import Counter

from config.edge import cacheable_routes, direct_reads, direct_writes, ratelimit, response_cache
from config.edge.http_cache import CachedResponse
from config.edge.redis_breaker import redis_call
from config.edge.request_telemetry import OUTCOME, ROUTE, USER_ID
from config.replicas import sticking
from config.replicas.health import replica_aliases

GATEWAY_RESPONSES = Counter(
    "todo_scale_gateway_responses",
    "Requests answered by the gateway itself, by outcome",
    ["outcome"],
)
# Each outcome's series, made once: `labels()` on every request validated and locked each time,
# and a series that exists from the start reads 0 rather than missing until its first request.
ANSWERED = {
    outcome: GATEWAY_RESPONSES.labels(outcome)
    for outcome in ("hit", "not_modified", "rate_limited")
}

STATUS_TEXT = {
    200: "200 OK",
    201: "201 Created",
    304: "304 Not Modified",
    429: "429 Too Many Requests",
    503: "503 Service Unavailable",
}


def bearer_token(environ: dict) -> str | None:
    """The key of an `Authorization: Token <key>` header, as DRF's TokenAuthentication reads it."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "token" or not key or " " in key.strip():
        return None
    return key.strip()


def accepts_json(environ: dict) -> bool:
    """The browsable API (text/html) is rendered by Django; JSON clients may get cached bytes."""
    accept = environ.get("HTTP_ACCEPT", "")
    return "text/html" not in accept


class Gateway:
    def __init__(self, application):
        self.application = application
        self.static_headers = security_headers()
        self.rates = ratelimit.rates()
        # Without replicas there is no mark to read.
        self.mark_prefix = sticking.mark_key("") if replica_aliases() else ""

    def __call__(self, environ, start_response):
        if (
            not environ.get("PATH_INFO", "").startswith("/api/")
            or not response_cache.gate_enabled()
        ):
            return self.application(environ, start_response)
        token = bearer_token(environ)
        method = environ.get("REQUEST_METHOD")
        signature = route = write_route = None
        if (
            method == "GET"
            and token
            and (route := cacheable_routes.route_name(environ["PATH_INFO"]))
            and accepts_json(environ)
        ):
            if response_cache.enabled():
                signature = response_cache.request_signature(environ)
        else:
            route = None
            if token and method != "GET":
                write_route = cacheable_routes.route_name(environ["PATH_INFO"])
        digest = response_cache.token_digest(token) if token else None
        limits = ratelimit.limits_for(environ, digest, self.rates)
        gate = redis_call(
            "gate",
            lambda: response_cache.gate(digest, signature, limits, self.mark_prefix),
            fallback=None,
        )
        if gate is None:
            return self.application(environ, start_response)
        verdict = ratelimit.verdict(limits, gate.limits)
        if not verdict.allowed:
            ANSWERED["rate_limited"].inc()
            environ[OUTCOME] = "rate_limited"
            environ[USER_ID] = gate.user_id
            body = json.dumps(
                {"detail": f"Too many requests: try again in {verdict.retry_after} s."}
            ).encode()
            return self.respond(start_response, environ, 429, body, verdict.headers)
        if gate.entry is not None:
            cached = CachedResponse.unpack(gate.entry)
            headers = [*cached.headers("hit"), *verdict.headers]
            environ[ROUTE] = route
            environ[USER_ID] = gate.user_id
            if cached.not_modified(environ.get("HTTP_IF_NONE_MATCH")):
                ANSWERED["not_modified"].inc()
                environ[OUTCOME] = "not_modified"
                return self.respond(start_response, environ, 304, b"", headers)
            ANSWERED["hit"].inc()
            environ[OUTCOME] = "hit"
            return self.respond(start_response, environ, 200, cached.body, headers)
        environ["todo_scale.gate"] = gate
        if (
            write_route is not None
            and gate.user_id is not None
            and direct_writes.registered(write_route, method)
        ):
            written = direct_writes.answer(environ, write_route, gate.user_id, gate)
            if written is not None:
                environ[ROUTE] = write_route
                environ[USER_ID] = gate.user_id
                environ[OUTCOME] = "direct"
                headers = [*written.headers, *verdict.headers]
                return self.respond(start_response, environ, written.status, written.body, headers)
        if route is not None and gate.user_id is not None and direct_reads.registered(route):
            answered = direct_reads.answer(environ, route, gate.user_id, gate)
            if answered is not None:
                cached, outcome = answered
                environ[ROUTE] = route
                environ[USER_ID] = gate.user_id
                environ[OUTCOME] = outcome
                headers = [*cached.headers(outcome), *verdict.headers]
                if cached.not_modified(environ.get("HTTP_IF_NONE_MATCH")):
                    return self.respond(start_response, environ, 304, b"", headers)
                return self.respond(start_response, environ, 200, cached.body, headers)

        def start_with_limits(status, headers, exc_info=None):
            return start_response(status, [*headers, *verdict.headers], exc_info)

        return self.application(environ, start_with_limits)

    def respond(self, start_response, environ, status: int, body: bytes, headers: list):
        headers = [*headers, *self.static_headers, *cors_headers(environ)]
        if status != 304:
            headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(STATUS_TEXT[status], headers)
        return [body]


def security_headers() -> list[tuple[str, str]]:
    """The headers Django's middleware adds to an API response, for responses made here."""
    headers = [("Vary", "Accept, Origin"), ("X-Content-Type-Options", "nosniff")]
    if settings.X_FRAME_OPTIONS:
        headers.append(("X-Frame-Options", settings.X_FRAME_OPTIONS))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    if settings.SECURE_REFERRER_POLICY:
        headers.append(("Referrer-Policy", settings.SECURE_REFERRER_POLICY))
    if settings.SECURE_HSTS_SECONDS:
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            hsts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            hsts += "; preload"
        headers.append(("Strict-Transport-Security", hsts))
    return headers


def cors_headers(environ: dict) -> list[tuple[str, str]]:
    """What django-cors-headers would add to this response, for an allowed Origin."""
    origin = environ.get("HTTP_ORIGIN")
    if not origin:
        return []
    if settings.CORS_ALLOW_ALL_ORIGINS:
        allowed = "*"
    elif origin in settings.CORS_ALLOWED_ORIGINS:
        allowed = origin
    else:
        return []
    return [
        ("Access-Control-Allow-Origin", allowed),
        ("Access-Control-Expose-Headers", ", ".join(settings.CORS_EXPOSE_HEADERS)),
    ]

"""OpenTelemetry tracing, off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

Off, this module imports nothing of OpenTelemetry and instruments nothing: every function here
returns at once, and a process pays one check per outbox row. On, `tracing_start` installs a
tracer provider that batches spans to the OTLP/HTTP endpoint and instruments Django, psycopg,
redis and Celery. It runs where a process starts its work, after any fork: the batching
processor's export thread, and the exporter's HTTP connection, belong to the process that made
them, never to a parent that forks its workers:

- a web worker: config/wsgi.py, which gunicorn imports in each worker after the fork
  (`preload_app = False`) and `manage.py runserver` imports too;
- a Celery pool child: `worker_process_init` (config/celery.py);
- the outbox relay: `manage.py outbox_relay`.

A request's trace continues into the tasks it enqueues, through the outbox: the row keeps the
W3C trace context of the span active when it was written (`trace_context`), and whoever
publishes it later, the request's own commit or the relay process, makes that context current
again (`trace_context_attached`) and sends it as the message's `traceparent` header, from which
the worker's Celery instrumentation starts the task's span. A relay without tracing still
passes the header on as stored. The relay's own polls run `untraced()`: no request caused them.

The standard variables configure the rest, read by the SDK itself: `OTEL_SERVICE_NAME` (here
defaulting to "todo-scale"), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and
`OTEL_TRACES_SAMPLER_ARG`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from config.environment import StrictEnv

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
SERVICE_NAME_ENV = "OTEL_SERVICE_NAME"
DEFAULT_SERVICE_NAME = "todo-scale"
# The W3C Trace Context header names, also the task message headers the context travels in.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# A version-00 traceparent is exactly 55 characters, the only version the SDK writes.
TRACEPARENT_MAX_LENGTH = 55
# W3C asks to propagate at least 512 characters of tracestate; a longer one may be dropped.
TRACESTATE_MAX_LENGTH = 512
# Probes and scrapes, every few seconds from every kubelet and Prometheus: no traces of them
# unless OTEL_PYTHON_DJANGO_EXCLUDED_URLS (or OTEL_PYTHON_EXCLUDED_URLS) says otherwise.
DEFAULT_EXCLUDED_URLS = "/healthz,/readyz,/metrics"
# The paths the gateway (config/edge/gateway.py) works on before Django sees the request.
GATEWAY_PATHS = "/api/"

# The installed tracer provider, None while tracing is off.
_state: dict[str, object] = {"provider": None}


def tracing_endpoint() -> str:
    """Where spans go (the OTLP/HTTP base URL); empty means tracing is off."""
    return StrictEnv().str(ENDPOINT_ENV, default="")


def tracing_enabled() -> bool:
    """True once `tracing_start` installed a tracer provider in this process."""
    return _state["provider"] is not None


def tracing_start() -> bool:
    """Install the tracer provider and the instrumentations, if the endpoint is set; returns
    whether tracing is on. Idempotent; call it after any fork, before the work starts."""
    if tracing_enabled():
        return True
    if not tracing_endpoint():
        return False
    _state["provider"] = _provider_install()
    _instrument()
    return True


def tracing_stop() -> None:
    """Export the spans still batched and stop: for a process that exits without running
    `atexit` handlers (a Celery pool child)."""
    provider = _state["provider"]
    if provider is not None:
        provider.shutdown()
        _state["provider"] = None


def _provider_install():
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    service = StrictEnv().str(SERVICE_NAME_ENV, default="") or DEFAULT_SERVICE_NAME
    # No sampler given: the SDK reads OTEL_TRACES_SAMPLER (parent-based always-on by default).
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    # The exporter reads the endpoint (adding /v1/traces), headers and timeout from OTEL_*.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def _instrument() -> None:
    """Django's requests (its middleware goes first in MIDDLEWARE, so this runs before the WSGI
    handler loads it), every psycopg query, every Redis command, Celery publishes and runs."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    env = StrictEnv()
    excluded = None
    if not (
        env.str("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", default="")
        or env.str("OTEL_PYTHON_EXCLUDED_URLS", default="")
    ):
        excluded = DEFAULT_EXCLUDED_URLS
    DjangoInstrumentor().instrument(excluded_urls=excluded)
    PsycopgInstrumentor().instrument()
    RedisInstrumentor().instrument()
    CeleryInstrumentor().instrument()


def wsgi_traced(application):
    """`application` with a server span around each request to the gateway's paths, or
    `application` itself while tracing is off.

    The gateway makes its Redis round trip (rate limits, the response cache) before Django
    starts its span, and answers cached reads and 429s without Django at all: under this span
    they belong to the request's trace, with Django's span as its child, instead of each Redis
    call starting a trace of its own. Other paths (admin, docs, probes) go straight to Django,
    whose span is then the root.
    """
    if not tracing_enabled():
        return application
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    traced = OpenTelemetryMiddleware(application, response_hook=_server_span_complete)

    def dispatch(environ, start_response):
        if environ.get("PATH_INFO", "").startswith(GATEWAY_PATHS):
            return traced(environ, start_response)
        return application(environ, start_response)

    return dispatch


def _server_span_complete(span, environ: dict, status: str, headers: list) -> None:
    """Name the server span by method and route (`POST export-list`), as the request metric
    is labelled, not by the path, which holds ids; note which layer answered and the request id,
    which finds the request's log lines (config/edge/request_telemetry.py)."""
    from config.edge.request_telemetry import DJANGO, OUTCOME, ROUTE, url_name
    from config.request_id import current_request_id

    if not span.is_recording():
        return
    route = environ.get(ROUTE) or url_name(environ.get("PATH_INFO", ""))
    span.update_name(f"{environ.get('REQUEST_METHOD', '')} {route}")
    span.set_attribute("todo_scale.outcome", environ.get(OUTCOME, DJANGO))
    if request_id := current_request_id():
        span.set_attribute("todo_scale.request_id", request_id)


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """No spans inside the block, but for publishes under `trace_context_attached`: for the
    work of a poller (the relay's polls, a scrape's queries), which no request caused and which
    would otherwise start a trace of a query or two every second."""
    if not tracing_enabled():
        yield
        return
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        yield


def _propagator():
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def trace_context() -> dict[str, str]:
    """The W3C trace context of the span active now, `{"traceparent": …, "tracestate": …}`
    (tracestate only when there is one); empty with tracing off or no span active.

    A traceparent longer than its column is none at all; an oversized tracestate is dropped,
    as W3C allows, and the trace still continues.
    """
    if not tracing_enabled():
        return {}
    carrier: dict[str, str] = {}
    _propagator().inject(carrier)
    traceparent = carrier.get(TRACEPARENT)
    if not traceparent or len(traceparent) > TRACEPARENT_MAX_LENGTH:
        return {}
    if len(carrier.get(TRACESTATE, "")) > TRACESTATE_MAX_LENGTH:
        del carrier[TRACESTATE]
    return carrier


@contextlib.contextmanager
def trace_context_attached(carrier: Mapping[str, str | None]) -> Iterator[None]:
    """Make the trace context in `carrier` (its `traceparent` and `tracestate`) current inside
    the block, so spans started there are its children; nothing with tracing off or none given.

    The block is traced also inside `untraced()`: the context is made anew, not on top of the
    current one.
    """
    if not tracing_enabled() or not carrier.get(TRACEPARENT):
        yield
        return
    from opentelemetry import context

    sent = {name: carrier[name] for name in (TRACEPARENT, TRACESTATE) if carrier.get(name)}
    token = context.attach(_propagator().extract(sent, context=context.Context()))
    try:
        yield
    finally:
        context.detach(token)

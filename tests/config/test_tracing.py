"""Tracing: one trace from an HTTP request to the task it enqueued, through the outbox.

A real gunicorn, a real prefork Celery worker and (in one case) the outbox relay export their
spans over OTLP/HTTP to a receiver in this process, which decodes them with opentelemetry-proto;
the test then follows the parent links. Without `OTEL_EXPORTER_OTLP_ENDPOINT`, a process loads
no tracer provider and no instrumentation.
"""

import gzip
import json
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from tests.factories import TodoFactory, TokenFactory, UserFactory
from tests.servers import clean_env, gunicorn, run_manage
from tests.services import celery_worker_argv, child_database_url, wait_for
from todos.models import Export, OutboxMessage

pytestmark = pytest.mark.django_db(transaction=True)

EXPORT_TASK = "tasks.exports.export_run_task"


# --- an OTLP/HTTP receiver -----------------------------------------------------------------------
@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    scope: str
    service: str
    attributes: dict


def attribute_value(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def decoded_spans(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: attribute_value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Span(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        kind=ProtoSpan.SpanKind.Name(span.kind),
                        scope=scope_spans.scope.name,
                        service=resource.get("service.name"),
                        attributes={a.key: attribute_value(a.value) for a in span.attributes},
                    )
                )
    return spans


class OtlpReceiver:
    """Accepts `POST /v1/traces` (protobuf, gzipped or not) and keeps every span it was sent."""

    def __init__(self):
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with receiver.lock:
                    receiver.spans.extend(decoded_spans(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def received(self) -> list[Span]:
        with self.lock:
            return list(self.spans)

    def trace(self, trace_id: str) -> dict[str, Span]:
        """The spans of one trace received so far, by span id."""
        return {s.span_id: s for s in self.received() if s.trace_id == trace_id}


@pytest.fixture
def otlp():
    receiver = OtlpReceiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def ancestors(span: Span, spans: dict[str, Span]) -> list[Span]:
    """The parent, grandparent, … up to the root; fails on a parent that never arrived."""
    chain = []
    while span.parent_id is not None:
        assert span.parent_id in spans, f"{span.name}: parent {span.parent_id} was not exported"
        span = spans[span.parent_id]
        chain.append(span)
    return chain


def tracing_env(otlp: OtlpReceiver, **extra: str) -> dict[str, str]:
    # Export every 100 ms instead of every 5 s, so the test waits for spans a short time.
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url, "OTEL_BSP_SCHEDULE_DELAY": "100", **extra}


# --- the trace of a request and its task ---------------------------------------------------------
@pytest.mark.parametrize("publisher", ["request", "relay"])
def test_one_trace_runs_from_the_request_to_the_task_it_enqueued(broker, spawn, otlp, publisher):
    # given: a worker and a web replica exporting spans (and, for "relay", the relay process
    # publishing the row instead of the request's commit); the web replica has no
    # OTEL_SERVICE_NAME, so it is "todo-scale"
    user = UserFactory()
    token = TokenFactory(user=user).key
    TodoFactory.create_batch(3, owner=user)
    spawn(
        celery_worker_argv("otel"),
        CELERY_BROKER_URL=broker.url,
        **tracing_env(otlp, OTEL_SERVICE_NAME="todo-scale-worker"),
    )
    env = clean_env(
        DATABASE_URL=child_database_url(),
        DJANGO_SECRET_KEY="test-secret-key-for-the-tracing-tests",
        # With Redis the gateway makes its round trip (rate limits, token) before Django.
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=broker.url,
        OUTBOX_PUBLISH_ON_COMMIT=str(publisher == "request").lower(),
        **tracing_env(otlp),
    )

    # when: a request asks for an export, which enqueues its task through the outbox
    with gunicorn(env, workers=1) as server:
        reply = server.request("POST", "/api/exports", token=token, body={"format": "json"})
        assert reply.status == 202, reply.body
        if publisher == "relay":
            spawn(
                [sys.executable, "manage.py", "outbox_relay", "--interval", "0.2"],
                CELERY_BROKER_URL=broker.url,
                **tracing_env(otlp, OTEL_SERVICE_NAME="todo-scale-relay"),
            )
        export_id = reply.json()["id"]
        wait_for(
            lambda: Export.objects.filter(pk=export_id, status="done").exists(),
            timeout=60,
            what="the export to finish",
        )
        (message,) = OutboxMessage.objects.filter(task_name=EXPORT_TASK)
        assert message.traceparent is not None
        trace_id = message.traceparent.split("-")[1]
        (run,) = wait_for(
            lambda: [
                s
                for s in otlp.trace(trace_id).values()
                if s.name == f"run/{EXPORT_TASK}" and s.parent_id in otlp.trace(trace_id)
            ],
            timeout=30,
            what="the task's span and its parent",
        )
    spans = otlp.trace(trace_id)

    # then: the request's server span is the root, Django's span its child, and the gateway's
    # Redis call and the view's queries are inside it
    (root,) = [s for s in spans.values() if s.parent_id is None]
    assert (root.kind, root.scope) == ("SPAN_KIND_SERVER", "opentelemetry.instrumentation.wsgi")
    assert root.name == "POST export-list"
    assert root.service == "todo-scale"
    assert root.attributes["todo_scale.request_id"] == reply.headers["X-Request-ID"]
    (django,) = [s for s in spans.values() if s.scope == "opentelemetry.instrumentation.django"]
    assert django.parent_id == root.span_id
    assert django.attributes["http.route"].startswith("api/exports")
    web = [s for s in spans.values() if s.service == "todo-scale"]
    redis = [s for s in web if s.scope == "opentelemetry.instrumentation.redis"]
    queries = [s for s in web if s.scope == "opentelemetry.instrumentation.psycopg"]
    assert redis
    assert all(root in ancestors(s, spans) for s in redis)
    assert any(s.attributes.get("db.system") == "redis" for s in redis)
    assert queries
    assert all(django in ancestors(s, spans) for s in queries)
    assert any(s.name.startswith("INSERT") for s in queries)
    # and: the task's run is in the same trace, its parent the publish, which is a child of the
    # span that wrote the outbox row, in the request
    publisher_service = {"request": "todo-scale", "relay": "todo-scale-relay"}[publisher]
    assert (run.kind, run.service) == ("SPAN_KIND_CONSUMER", "todo-scale-worker")
    publish = spans[run.parent_id]
    assert (publish.name, publish.kind) == (f"apply_async/{EXPORT_TASK}", "SPAN_KIND_PRODUCER")
    assert publish.service == publisher_service
    chain = ancestors(run, spans)
    assert chain[-1] == root
    assert django in chain
    assert message.traceparent.split("-")[2] in {s.span_id for s in chain}
    # and: the relay's polls start no traces of their own, only its publishes are spans
    assert [s for s in otlp.received() if s.service == "todo-scale-relay" and not s.parent_id] == []
    # and: the task's own queries are its children
    assert any(
        run in ancestors(s, spans)
        for s in spans.values()
        if s.scope == "opentelemetry.instrumentation.psycopg" and s.service == "todo-scale-worker"
    )


# --- off -----------------------------------------------------------------------------------------
PROBE = """
import json, sys
import psycopg
import config.wsgi
from django.conf import settings
from config import celery, tracing
celery.worker_tracing_start()  # what each Celery pool child runs as it starts
loaded = sorted(m for m in sys.modules if m.startswith(
    ("opentelemetry.instrumentation", "opentelemetry.exporter", "opentelemetry.sdk.trace")))
report = {
    "enabled": tracing.tracing_enabled(),
    "loaded": loaded,
    "middleware": [m for m in settings.MIDDLEWARE if "opentelemetry" in m],
    "connect_wrapped": hasattr(psycopg.connect, "__wrapped__"),
    "context": tracing.trace_context(),
}
from opentelemetry import trace
report["provider"] = type(trace.get_tracer_provider()).__name__
print(json.dumps(report))
"""


def probe(**env: str) -> dict:
    result = run_manage(
        "shell",
        "--verbosity",
        "0",
        "-c",
        PROBE,
        env=clean_env(DJANGO_SECRET_KEY="tracing-test", LOG_LEVEL="WARNING", **env),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_without_an_endpoint_no_tracer_provider_is_installed_and_nothing_instrumented(otlp):
    off = probe()
    # The same probe with an endpoint, to show that it sees tracing when it is there.
    on = probe(OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url)

    assert off == {
        "enabled": False,
        "loaded": [],
        "middleware": [],
        "connect_wrapped": False,
        "context": {},
        "provider": "ProxyTracerProvider",
    }
    assert on["enabled"] is True
    assert on["provider"] == "TracerProvider"
    assert on["middleware"] != []
    assert on["connect_wrapped"] is True
    assert "opentelemetry.instrumentation.psycopg" in on["loaded"]

"""Writes the gateway performs itself, without Django's middleware or DRF.

The write-side twin of config/edge/direct_reads.py. For a JSON request of a registered route and
method, by a caller the gateway has already resolved from the token, an app's function gets a
plain Django request (its body read), the user id and the URL's arguments, and returns the
answer, or None to leave the request to Django. It must return None before it writes anything:
then Django gets the request with its body intact and answers it as it answers any other, so
every refusal (a body that does not parse or validate, a reused `Idempotency-Key`) is Django's
own response, byte for byte. todos/apps.py registers the todo create (todos/writes.py), which
the viewset performs through the same function.

Around that function this module gives the write what Django's handler would: the request
signals, read routing (writes on the primary, the user stuck to its position after the commit,
as `ReadReplicaMiddleware` does), the environ notes of the request's log line, and the
security and CORS headers of config/edge/gateway.py. Only a JSON body with a Content-Length
within `DATA_UPLOAD_MAX_MEMORY_SIZE` and an `Accept` that DRF would answer with JSON are taken;
anything else goes to Django. A database error once the write has begun cannot be handed on (the
write may have happened): it is logged and answered 503 with `Retry-After`, and a client that
sent an `Idempotency-Key` retries it safely.
"""

import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.db import DatabaseError
from django.urls import Resolver404

from config.edge.cacheable_routes import resolved
from config.edge.direct_reads import served
from config.replicas.read_routing import stick_if_written

logger = logging.getLogger(__name__)

# Media ranges of `Accept` for which DRF's negotiation picks its JSON renderer (the first one).
JSON_RANGES = frozenset({"*/*", "application/*", "application/json"})

UNAVAILABLE = json.dumps({"detail": "The database did not answer: try again."}).encode()


@dataclass
class Written:
    """A write's answer: its status, its own headers, and the body."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


# (request, user id, URL kwargs) → the answer, or None: Django answers.
Write = Callable[[WSGIRequest, int, dict], Written | None]

_writers: dict[tuple[str, str], Write] = {}


def register(url_name: str, method: str, write: Write) -> None:
    """Let the gateway perform `method` requests of the route `url_name` with `write`."""
    _writers[(url_name, method)] = write


def registered(url_name: str | None, method: str) -> bool:
    return (url_name, method) in _writers


def json_body_length(environ: dict) -> int | None:
    """The Content-Length of a JSON body within the upload limit, else None."""
    media_type, _, params = environ.get("CONTENT_TYPE", "").partition(";")
    if media_type.strip().lower() != "application/json":
        return None
    charset = params.strip().lower()
    if charset and charset not in ("charset=utf-8", 'charset="utf-8"'):
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if length <= 0 or (limit is not None and length > limit):
        return None
    return length


def accepts_json_only(environ: dict) -> bool:
    """True when DRF would render the response as JSON: no `Accept`, or one that names JSON or
    a wildcard for it, and not HTML (the browsable API)."""
    accept = environ.get("HTTP_ACCEPT", "")
    if not accept.strip():
        return True
    ranges = {part.partition(";")[0].strip().lower() for part in accept.split(",")}
    return "text/html" not in ranges and bool(ranges & JSON_RANGES)


def answer(environ: dict, url_name: str, user_id: int, gate) -> Written | None:
    """Perform the write of `url_name` for `user_id`, or None for Django to answer it."""
    method = environ["REQUEST_METHOD"]
    length = json_body_length(environ)
    if length is None or not accepts_json_only(environ):
        return None
    body = environ["wsgi.input"].read(length)
    # Django reads the body from here if it answers after all.
    environ["wsgi.input"] = io.BytesIO(body)
    if len(body) != length:
        return None
    request = WSGIRequest(environ)
    request._body = body
    try:
        match = resolved(request.path_info)
        # Raises DisallowedHost for a host outside ALLOWED_HOSTS, before anything is written.
        request.get_host()
    except (Resolver404, DisallowedHost):
        return None
    routing = None
    try:
        with served(environ, user_id, gate) as routing:
            written = _writers[(url_name, method)](request, user_id, match.kwargs)
            stick_if_written(routing, user_id)
        return written
    except DatabaseError:
        if routing is not None and not routing.wrote:
            logger.warning("direct write failed before writing; Django answers", exc_info=True)
            return None
        logger.exception("direct write failed: %s %s", method, request.path_info)
        return Written(503, UNAVAILABLE, [("Retry-After", "1")])

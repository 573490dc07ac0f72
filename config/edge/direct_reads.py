"""Reads the gateway renders itself on a cache miss, without Django's middleware or DRF.

A JSON GET of a registered route whose caller the gateway has already resolved from the token
(config/edge/response_cache.gate) needs none of the request machinery that costs most of an
uncached read: no URL dispatch through the middleware stack, no DRF request, authentication,
content negotiation or renderer. An app registers, per URL name, a function that takes a plain
Django request, the user id and the URL's arguments and returns the response and its cache
outcome, or None to leave the request to Django (todos/apps.py registers todos/reads.py's list
and item; the viewset renders through the same functions, so both answers are byte-equal).

Around that function this module gives the read what Django's handler would: the
`request_started`/`request_finished` signals (stale connections closed, the health check run
again on first use), read routing with read-your-writes (config/replicas/read_routing.py, the
standby chosen by the mark the gateway already holds, failing over to the primary) and the
environ notes the request's log line reads. A host outside ALLOWED_HOSTS or a database error
hands the request to Django as well, which answers it as it answers any other.
"""

import contextlib
import logging
from collections.abc import Callable, Iterator

from django.core import signals
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.db import DEFAULT_DB_ALIAS, DatabaseError
from django.urls import Resolver404

from config.edge.cacheable_routes import resolved
from config.edge.http_cache import CachedResponse
from config.replicas.read_routing import READ_ALIAS, routing_for_user

logger = logging.getLogger(__name__)

# (request, user id, URL kwargs) → (response, cache outcome), or None: Django answers.
Render = Callable[[WSGIRequest, int, dict], tuple[CachedResponse, str] | None]

_renderers: dict[str, Render] = {}


def register(url_name: str, render: Render) -> None:
    """Let the gateway answer GETs of the route `url_name` with `render` on a cache miss."""
    _renderers[url_name] = render


def registered(url_name: str | None) -> bool:
    return url_name in _renderers


def answer(environ: dict, url_name: str, user_id: int, gate) -> tuple[CachedResponse, str] | None:
    """Render the read of `url_name` for `user_id`, or None for Django to answer it."""
    request = WSGIRequest(environ)
    try:
        match = resolved(request.path_info)
    except Resolver404:
        return None
    try:
        with served(environ, user_id, gate):
            return _renderers[url_name](request, user_id, match.kwargs)
    except DisallowedHost:
        return None
    except DatabaseError:
        logger.warning("direct read failed; Django answers the request", exc_info=True)
        return None


@contextlib.contextmanager
def served(environ: dict, user_id: int, gate) -> Iterator[object]:
    """What Django's handler gives a request, for one the gateway answers itself: the request
    signals, read routing for `user_id` with the mark in `gate` (yielded: None without
    replicas), and the database that served the reads noted in the environ."""
    signals.request_started.send(sender=__name__, environ=environ)
    try:
        with routing_for_user(user_id, gate) as routing:
            yield routing
        environ[READ_ALIAS] = (routing.alias if routing else None) or DEFAULT_DB_ALIAS
    finally:
        signals.request_finished.send(sender=__name__)

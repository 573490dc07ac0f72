"""The request id: taken from `X-Request-ID` or made, and current for the work it causes.

The outermost WSGI layer (config/edge/request_telemetry.py) makes a request's id current for the
whole request; the outbox row a request writes carries it (todos/services/outbox.py), the relay
publishes it as a task header (tasks/outbox.py), and a worker makes it current again while that
task runs (config/celery.py). Every log line written meanwhile carries it (config/log_format.py).
"""

import contextlib
import contextvars
import logging
import re
import uuid

HEADER = "X-Request-ID"
ENVIRON_KEY = "HTTP_X_REQUEST_ID"
# The task header the id travels in.
TASK_HEADER = "request_id"
# 128 characters: a made id is 32 (uuid4 hex), nginx's `$request_id` 32, a trace id with a span
# some 55; anything longer is not an id a proxy or client meant, and it lands in every log line
# and outbox row of the request.
MAX_LENGTH = 128
# Printable ASCII only: the id is echoed in a header and written to logs as given.
_VALID = re.compile(rf"[\x20-\x7e]{{1,{MAX_LENGTH}}}")

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def request_id_from(sent: str | None) -> str:
    """The id a client or proxy sent, if it is a valid one; else a new one."""
    if sent and _VALID.fullmatch(sent):
        return sent
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    """The id of the request (or of the task it caused) being served now, if any."""
    return _current.get()


@contextlib.contextmanager
def bound(request_id: str | None):
    """Make `request_id` current inside the block (None: no request id)."""
    token = _current.set(request_id)
    try:
        yield request_id
    finally:
        _current.reset(token)


def bind(request_id: str | None) -> contextvars.Token:
    """Make `request_id` current until `unbind(token)`: for signal pairs like a task's pre- and
    post-run, where no block spans the work."""
    return _current.set(request_id)


def unbind(token: contextvars.Token) -> None:
    _current.reset(token)


class RequestIdFilter(logging.Filter):
    """Give every log record the current request id (`request_id`, None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _current.get()
        return True

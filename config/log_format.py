"""How every process writes its log: one JSON object a line, or plain text for a terminal.

`logging_config` is the one `logging.config.dictConfig` of the project: Django's `LOGGING`
(web workers, the Celery worker and beat, the outbox relay and every management command) and
gunicorn's `logconfig_dict` (deploy/gunicorn.conf.py, for the master's own lines) are both made
by it, so every line has the same fields. `LOG_FORMAT` picks the format: `json`, `plain`, or
unset for JSON unless stderr is a terminal. Records go to stderr, where gunicorn's error log
has always gone: a command's output on stdout (a token, a status table) stays parseable, and
a container runtime collects both streams.

Only the standard library is imported here: gunicorn's master reads this file by path, without
loading the project (see deploy/gunicorn.conf.py). The request id filter is named by dotted path
and resolved where the configuration is applied.
"""

import logging
import sys

FORMATS = ("json", "plain")
# The JSON fields every line has, in this order; a request's line adds its own (the request
# telemetry's `extra`), and the filter adds `request_id`.
JSON_FIELDS = "%(levelname)s %(name)s %(process)d %(message)s"
JSON_RENAMED = {"levelname": "level", "name": "logger", "process": "pid"}
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def log_format(value: str | None, error: type[Exception] = ValueError) -> str:
    """`LOG_FORMAT` as given, or the default: plain on a terminal, JSON everywhere else; raises
    `error` for any other value."""
    value = (value or "").strip().lower()
    if not value:
        return "plain" if sys.stderr.isatty() else "json"
    if value not in FORMATS:
        raise error(f"LOG_FORMAT must be json or plain, not {value!r}")
    return value


def lean_records() -> None:
    """Stop collecting what no line of either format shows: the calling thread's name, the
    multiprocessing process name and the caller's file and line (a walk up the stack). The
    logging HOWTO's "Optimization" names these three switches; together they took some 10 us of
    CPU off each request's line, measured in-process (see docs/operating.md "Logs")."""
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None


def logging_config(*, fmt: str, level: str, request_ids: bool = True) -> dict:
    """The dictConfig for format `fmt` ("json" or "plain") at root level `level`.

    `request_ids`: give each record the current request id, which needs the project importable
    (gunicorn's master does without; its workers apply Django's LOGGING, which has it).
    Records stop collecting what no line shows (`lean_records`).
    """
    lean_records()
    if fmt == "json":
        formatter = {
            "()": "pythonjsonlogger.orjson.OrjsonFormatter",
            "fmt": JSON_FIELDS,
            "rename_fields": JSON_RENAMED,
            # ISO 8601 in UTC with microseconds, like every timestamp of the API.
            "timestamp": "time",
        }
    else:
        formatter = {"format": PLAIN_FORMAT}
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
    filters = {}
    if request_ids:
        filters = {"request_id": {"()": "config.request_id.RequestIdFilter"}}
        handler["filters"] = ["request_id"]
    # gunicorn's loggers write through the same handler and not again through the root's.
    gunicorn_logger = {"handlers": ["console"], "level": "INFO", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": filters,
        "formatters": {"main": formatter},
        "handlers": {"console": handler},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "INFO"},
            "gunicorn.error": gunicorn_logger,
            "gunicorn.access": gunicorn_logger,
        },
    }

"""Settings for every environment, read from environment variables only (12-factor).

With nothing set, the project runs on the embedded default: SQLite, a local-memory cache and
Celery tasks run eagerly in-process. README.md lists every variable; config/environment.py says
how a value is read, and that a bad one stops the process at start-up.
"""

import warnings
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.databases import POSTGRES_BACKEND, database_from_url, replica_databases
from config.environment import StrictEnv
from config.log_format import log_format, logging_config
from config.redis_databases import refuse_shared_databases
from config.transaction_pooling import for_transaction_pooling

BASE_DIR = Path(__file__).resolve().parent.parent
env = StrictEnv()

DEBUG = env.bool("DJANGO_DEBUG", default=False)
DATABASE_URL = env.str("DATABASE_URL", default="")

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG and DATABASE_URL:
        # A shared database means a real deployment: sessions and password-reset tokens signed
        # with a published key could be forged.
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DATABASE_URL is set")
    warnings.warn("DJANGO_SECRET_KEY is not set: using an insecure development key", stacklevel=1)
    SECRET_KEY = "django-insecure-embedded-default-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django_prometheus",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "todos",
    "tasks",
]

# No django-prometheus request middleware: every response is counted in
# todo_scale_http_requests_total (config/edge/request_telemetry.py), and its ten metric updates
# a request cost 0.45 ms of a write's 3 ms of worker CPU.
MIDDLEWARE = [
    # Outermost: notes the route and user of every response (a 413, a 404) for its log line.
    "config.edge.request_telemetry.RouteMiddleware",
    "config.health.HealthCheckMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "config.edge.body_limit.RequestBodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Reads go to a replica that has the user's last write; inert without replicas.
    "config.replicas.read_routing.ReadReplicaMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

# Every API path answers with and without the trailing slash in its own URL pattern: an
# APPEND_SLASH redirect would break CORS preflights and turn a POST into a GET.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "config" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Databases ---------------------------------------------------------------------------------
# Persistent connections: opening a Postgres connection per request costs more than the request
# (throughput fell to 0.4x without them). Health checks drop a connection the server closed.
# https://docs.djangoproject.com/en/5.2/ref/databases/#persistent-connections
CONN_MAX_AGE = env.int("DATABASE_CONN_MAX_AGE", default=600)


# Milliseconds for any statement on a standby: two seconds, where API reads take milliseconds. A
# standby can hold a lock replayed from the primary (a migration, a TRUNCATE) while its replay is
# paused or slow, and a read would wait on it indefinitely. Cancelled, the read is taken over by
# the primary (config/replicas/read_routing.py).
DATABASE_REPLICA_STATEMENT_TIMEOUT = env.int("DATABASE_REPLICA_STATEMENT_TIMEOUT", default=2000)


if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL, conn_max_age=CONN_MAX_AGE)}
else:
    _sqlite_path = env.str("DJANGO_SQLITE_PATH", default="") or BASE_DIR / "db.sqlite3"
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _sqlite_path}}

# Read replicas (docs/read-replicas.md): reads go to a standby that has replayed the user's last
# write, everything else to the primary. config/db_router.py is the router.
DATABASE_REPLICA_URLS = env.list("DATABASE_REPLICA_URLS", default=[])
if DATABASE_REPLICA_URLS and DATABASES["default"]["ENGINE"] != POSTGRES_BACKEND:
    raise ImproperlyConfigured("DATABASE_REPLICA_URLS needs a Postgres DATABASE_URL")
DATABASES.update(
    replica_databases(
        DATABASE_REPLICA_URLS,
        conn_max_age=CONN_MAX_AGE,
        statement_timeout=DATABASE_REPLICA_STATEMENT_TIMEOUT,
    )
)
if env.bool("DATABASE_TRANSACTION_POOLING", default=False):  # PgBouncer, pool_mode=transaction
    DATABASES = for_transaction_pooling(DATABASES)
DATABASE_ROUTERS = ["config.db_router.PrimaryReplicaRouter"] if DATABASE_REPLICA_URLS else []
# Bytes of WAL a standby may be behind the primary before it is taken out: 16 MiB is one WAL
# segment, far more than any burst of API writes, so only a standby that is really stuck (replay
# paused, a long conflicting query, a broken stream) trips it. Bytes rather than seconds: the
# replay timestamp ages while the primary is idle, so "seconds behind" lies exactly then.
DATABASE_REPLICA_MAX_LAG = env.int("DATABASE_REPLICA_MAX_LAG", default=16 * 1024 * 1024)
# Seconds a failed or lagging standby is left out before it is tried again (circuit breaker).
DATABASE_REPLICA_COOLDOWN = env.float("DATABASE_REPLICA_COOLDOWN", default=10.0)
# Seconds each worker process reuses a standby's replay position and health before asking it
# again: the check then costs one round trip per standby per second per process, not per read.
DATABASE_REPLICA_CHECK_INTERVAL = env.float("DATABASE_REPLICA_CHECK_INTERVAL", default=1.0)
# Seconds a user's write position is kept in the cache (GitLab uses 30 s). A standby that has not
# replayed what the primary had written this long ago is taken out, so an expired mark never lets
# a read miss the write it stood for.
DATABASE_STICKING_TTL = env.int("DATABASE_STICKING_TTL", default=30)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, response cache and rate limits (Redis) ---------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if REDIS_URL:
    CACHES["default"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {
            # https://github.com/jazzband/django-redis#pluggable-parsers
            "PARSER_CLASS": "redis.connection._HiredisParser",
            # Half a second: a Redis that does not answer by then is treated as down, and the
            # request goes on from Postgres instead of waiting out a long timeout.
            "SOCKET_CONNECT_TIMEOUT": 0.5,
            "SOCKET_TIMEOUT": 0.5,
            # Per worker process: a sync worker uses one connection at a time; the headroom
            # covers threads (the replica health checks) without an unbounded pool.
            "CONNECTION_POOL_KWARGS": {"max_connections": 20},
        },
    }

# After a Redis failure, skip Redis for this many seconds (config/edge/redis_breaker.py): a dead
# Redis then costs one failed connect per worker per cool-down; caching resumes once it is back.
REDIS_COOLDOWN = env.float("REDIS_COOLDOWN", default=5.0)
# Rate-limit state (GCRA arrival times) lives in its own database of the cache's Redis, so
# flushing or evicting the cache never resets a limit (and never the other way round).
REDIS_RATELIMIT_DB = env.int("REDIS_RATELIMIT_DB", default=2)

# Cached API responses need a cache every web process shares: with the local-memory cache of
# the embedded default, one gunicorn worker could serve a list another worker just changed.
TODO_RESPONSE_CACHE = env.bool("TODO_RESPONSE_CACHE", default=bool(REDIS_URL))
# A minute: entries of an old generation are unreachable at once; the TTL only bounds memory
# and how long an entry survives a bump lost while Redis was unreachable.
TODO_RESPONSE_CACHE_TTL = env.int("TODO_RESPONSE_CACHE_TTL", default=60)

# "N/second", "N/minute", "N/hour" or "off"; counted in Redis, shared by every replica.
RATE_LIMIT_USER = env.str("RATE_LIMIT_USER", default="1200/minute")
RATE_LIMIT_IP = env.str("RATE_LIMIT_IP", default="3000/minute")
# Sign-up and token endpoints, per client IP: a password-guessing guard.
RATE_LIMIT_AUTH = env.str("RATE_LIMIT_AUTH", default="20/minute")

# --- Password hashing and validation -----------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files (admin, browsable API, Swagger UI), served by whitenoise --------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Serve straight from the app directories when collectstatic has not run (make run, tests).
WHITENOISE_USE_FINDERS = not STATIC_ROOT.exists()
if WHITENOISE_USE_FINDERS:
    warnings.filterwarnings("ignore", message="No directory at")
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

# --- Request limits ----------------------------------------------------------------------------
# 1 MiB: a todo is at most a few hundred bytes; anything larger is a mistake or an attack.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# --- Proxy and security ------------------------------------------------------------------------
# Trust X-Forwarded-Host/-Proto only when a proxy we run (nginx, the Kubernetes ingress) sets
# them; otherwise any client could make the API build URLs on a host of its choosing.
TRUST_PROXY_HEADERS = env.bool("DJANGO_TRUST_PROXY_HEADERS", default=False)
USE_X_FORWARDED_HOST = TRUST_PROXY_HEADERS
if TRUST_PROXY_HEADERS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
if SECURE_SSL_REDIRECT:
    # Behind TLS: the browser must never send the session cookie in clear, and should remember
    # to use HTTPS (one year, the value preload lists ask for).
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31_536_000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = True
    # Probes arrive over plain HTTP from the kubelet.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
# When set, /metrics answers only `Authorization: Bearer <METRICS_TOKEN>` (config/health.py).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# --- CORS (Todo-Backend contract: any origin may call the API with a token) -------------------
_cors_origins = env.list("CORS_ALLOWED_ORIGINS", default=["*"])
CORS_ALLOW_ALL_ORIGINS = _cors_origins == ["*"]
CORS_ALLOWED_ORIGINS = [] if CORS_ALLOW_ALL_ORIGINS else _cors_origins
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Named one by one: a wildcard is ignored by browsers for the Authorization header.
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "if-match",
    "if-none-match",
    "idempotency-key",
    "x-request-id",
    "x-requested-with",
)
# Every header of ours a browser client may need to read: the cache and paging headers, the
# retry and rate-limit headers, the idempotent replay flag and the request id to quote.
CORS_EXPOSE_HEADERS = (
    "etag",
    "link",
    "location",
    "retry-after",
    "idempotent-replayed",
    "x-cache",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-request-id",
)
# A day: browsers cap it lower anyway; it saves a preflight per request.
CORS_PREFLIGHT_MAX_AGE = 86_400

# --- Django REST framework ---------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Reads the token from the primary: see todos/authentication.py.
        "todos.authentication.PrimaryTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's JSON parser with limits on the body's shape (nesting, sizes): see todos/parsers.py.
    "DEFAULT_PARSER_CLASSES": ["todos.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
API_TOKEN_TTL = env.seconds("API_TOKEN_TTL", default=30 * 86_400)  # README "Accounts and tokens"

SPECTACULAR_SETTINGS = {
    "TITLE": "Todo Scale API",
    "DESCRIPTION": "Per-user todo lists, served by many identical stateless replicas.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.openapi.add_error_responses",
        "todos.schema.allow_empty_list_parameters",
    ],
}

# --- Todo API knobs ----------------------------------------------------------------------------
TODO_PAGE_SIZE = env.int("TODO_PAGE_SIZE", default=100)
TODO_MAX_PAGE_SIZE = env.int("TODO_MAX_PAGE_SIZE", default=1000)

# --- Celery: deferred work (docs/deferred-work.md) --------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
# Task results record failures only (below), in a Redis database of their own.
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None

# Cache, broker and results never share one Redis database: a full cache evicts keys, and a
# queued task or a failure record must never be the key it evicts.
refuse_shared_databases(
    cache_url=REDIS_URL,
    ratelimit_db=REDIS_RATELIMIT_DB,
    broker_url=CELERY_BROKER_URL,
    result_backend=CELERY_RESULT_BACKEND,
)

# No broker configured: run tasks in-process so the embedded default works with one command.
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
# Task modules, imported by name in every process (tasks/apps.py): autodiscovery looks only for
# `<app>.tasks` modules and would miss tasks/reminders.py and its siblings.
CELERY_IMPORTS = (
    "tasks.outbox",
    "tasks.reminders",
    "tasks.exports",
    "tasks.housekeeping",
    "tasks.stats",
)
# JSON only: a message is data; accepting pickle would let anyone who can publish run code.
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Acknowledge a message once its task has run, not when a worker takes it: a worker that dies
# mid-task leaves the message unacknowledged and the broker gives it to another worker
# (at-least-once delivery; every task is idempotent).
CELERY_TASK_ACKS_LATE = True
# ...also when the process running it is killed (OOM killer, SIGKILL, a node lost): requeue
# instead of recording a failure. tasks/base.py caps redeliveries, so a message that kills
# every worker it reaches is recorded as failed after a few tries instead of looping forever.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A worker process reserves one message at a time: exports run for seconds to minutes, and a
# message prefetched behind one would wait while other workers sit idle.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# When the broker connection drops, running acks_late tasks are cancelled: the broker has
# already requeued their messages, so finishing them would only run them twice.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Time limits for every task that sets none of its own (exports do): the soft one raises inside
# the task so it can record the failure, the hard one kills a process that ignores it. The
# reminder scan and the relay take well under a second; a minute means something is stuck.
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
# A worker process is replaced after this many tasks, so memory an export left fragmented (or a
# slow leak) is given back.
CELERY_WORKER_MAX_TASKS_PER_CHILD = 200
# The worker keeps trying to reach the broker at start-up (a pod may start before RabbitMQ).
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Seconds to open a broker connection: milliseconds on a LAN; a broker that takes longer is
# treated as down, so a publish after a request's commit never holds the request for long.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
if CELERY_BROKER_URL.startswith(("redis", "rediss")):
    # A Redis broker redelivers an unacknowledged message only after this many seconds; it must
    # outlast the longest task (an export's 10-minute hard limit) or that task runs twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 15 * 60}
else:
    # RabbitMQ publisher confirms: a publish returns only once the broker has the message, so
    # the outbox marks a row sent only after that.
    # https://docs.celeryq.dev/projects/kombu/en/stable/reference/kombu.transport.pyamqp.html
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
# Prometheus endpoints of deferred work (tasks/metrics.py): the worker's task counts and run times,
# and the outbox relay's backlog. Off unless set, so that two workers or relays on one machine
# (`make worker` twice, the test suite) never fight over one fixed port; every deployment here sets
# them (9808 and 9809: in the 9xxx range of Prometheus exporters, clear of the web port 8000).
CELERY_METRICS_PORT = env.int("CELERY_METRICS_PORT", default=0)
OUTBOX_METRICS_PORT = env.int("OUTBOX_METRICS_PORT", default=0)
# Publish a request's outbox rows right after its commit (tasks/outbox.py, the fast path); off,
# they wait for the relay process (at most its poll interval, a second). Off saved a quarter of
# the web CPU of a PATCH of `completed` with RabbitMQ (18.6 -> 14.2 ms a request, medians of 3
# interleaved rounds); leave it on wherever no relay process runs.
OUTBOX_PUBLISH_ON_COMMIT = env.bool("OUTBOX_PUBLISH_ON_COMMIT", default=True)
# Only failures are stored, for operators (`AsyncResult(id).state`); status a client sees lives
# in Postgres (exports). A day is long enough to look one up after an alert.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_STORE_ERRORS_EVEN_IF_IGNORED = True
CELERY_RESULT_EXPIRES = 24 * 60 * 60
# Run by exactly one `celery beat` per deployment. `expires`: a scan still queued when the next
# one is due is dropped, so a backlog never piles up copies of it.
CELERY_BEAT_SCHEDULE = {
    "reminders-scan": {
        "task": "tasks.reminders.reminders_scan_task",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "outbox-relay": {
        # A safety net behind the relay process (tasks/outbox.py explains both).
        "task": "tasks.outbox.outbox_relay_task",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "housekeeping-purge": {
        "task": "tasks.housekeeping.housekeeping_purge_task",
        "schedule": 60.0 * 60,
        "options": {"expires": 55 * 60},
    },
}

# --- Email (due-date reminders) ----------------------------------------------------------------
# The console backend prints mails to the worker's log; production sets the SMTP backend.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default="") or None
# Seconds: a mail server that does not answer fails the send, and the reminder is tried again at
# the next scan, instead of holding a worker (and the todo's row lock) indefinitely.
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Todo Scale <todo-scale@localhost>")
# A todo with `due_at` is reminded once, this long before it comes due.
REMINDER_LEAD = timedelta(seconds=env.int("REMINDER_LEAD_SECONDS", default=60 * 60))

# --- Logging: one line per record on stderr, collected by the platform ------------------------
# `json` (what a log pipeline parses) or `plain` (a terminal); unset: JSON unless stderr is a
# terminal. config/log_format.py has the fields and the reasons.
LOG_FORMAT = log_format(env.str("LOG_FORMAT", default=""), error=ImproperlyConfigured)
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = logging_config(fmt=LOG_FORMAT, level=LOG_LEVEL)

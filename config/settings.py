"""Settings for the order back office, read from environment variables.

Production is the default: ``DEBUG`` is off unless the environment turns it on, and then
``SECRET_KEY`` must come from the environment. ``make run`` and ``make test`` export
``DEBUG=true`` for local work. docs/configuration.md lists every variable.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from infrastructure import runtime
from infrastructure.client_address import parse_networks
from infrastructure.logs import logging_config
from privacy import kek


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean environment variable ("1", "true", "yes", "on" are true)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw is None or raw.strip() == "" else int(raw)


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw is None or raw.strip() == "" else float(raw)


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


BASE_DIR = Path(__file__).resolve().parent.parent

# Off unless the environment turns it on: never from a file a development run left behind, so a
# production process started without DEBUG cannot come up with the development key.
DEBUG = env_bool("DEBUG", False)
TESTING = env_bool("BACKOFFICE_TESTING", False)

_DEV_SECRET_KEY = "dev-only-insecure-key-never-used-when-DEBUG-is-off-0123456789abcdef"  # noqa: S105
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured(
            "SECRET_KEY must be set in the environment when DEBUG is off "
            "(make run and make test set DEBUG=true for local work; a manage.py beside "
            "make run needs DEBUG=true in its environment too)."
        )
    SECRET_KEY = _DEV_SECRET_KEY

# The key-encryption key wrapping every customer's data key (privacy): 32 bytes, URL-safe
# base64 (`python -c "from privacy.kek import new_key; print(new_key())"`). Required when
# DEBUG is off; local runs and tests use one generated once into .local/.
PERSONAL_DATA_KEY = os.environ.get("PERSONAL_DATA_KEY", "").strip()
if not PERSONAL_DATA_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured(
            "PERSONAL_DATA_KEY must be set in the environment when DEBUG is off: it encrypts "
            "customers' personal data (docs/configuration.md)."
        )
    PERSONAL_DATA_KEY = kek.dev_key(BASE_DIR / ".local")
# Retired key-encryption keys, comma-separated: read during a rotation
# (`manage.py rotate_personal_data_key`), never used to wrap.
PERSONAL_DATA_PREVIOUS_KEYS = [
    k.strip() for k in os.environ.get("PERSONAL_DATA_PREVIOUS_KEYS", "").split(",") if k.strip()
]
for _key in (PERSONAL_DATA_KEY, *PERSONAL_DATA_PREVIOUS_KEYS):
    try:
        kek.parse_key(_key)
    except kek.InvalidKey as _error:
        raise ImproperlyConfigured(
            f"PERSONAL_DATA_KEY and PERSONAL_DATA_PREVIOUS_KEYS hold 32 bytes in URL-safe "
            f"base64; one is {_error}."
        ) from None

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"] if DEBUG or TESTING else []
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# --- Security (tested in tests/security/) ------------------------------------------------------
# Production defaults pass `manage.py check --deploy` with no warnings: HTTPS only, secure
# cookies, HSTS. Local http work (DEBUG or tests) turns them off; each one can be set from the
# environment either way (docs/configuration.md).
_PRODUCTION = not (DEBUG or TESTING)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _PRODUCTION)
# Load balancers probe health over plain http inside the network.
SECURE_REDIRECT_EXEMPT = env_list("SECURE_REDIRECT_EXEMPT", [r"^api/health/$"])
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (only then: a client could fake it).
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", _PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", _PRODUCTION)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if _PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", _PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", _PRODUCTION)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# The reverse proxies whose X-Forwarded-For is believed (addresses and CIDR networks); the
# admin login lockout and the API throttles count the client it names
# (infrastructure/client_address.py). Empty: the header is ignored, REMOTE_ADDR is the client.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
try:
    parse_networks(TRUSTED_PROXIES)
except ValueError as error:
    raise ImproperlyConfigured(f"TRUSTED_PROXIES: {error}") from error
# Admin login throttling (backoffice/security.py): failures per username and client address
# within the window before the login is refused until the window passes, and failures from one
# client address across all usernames (password spraying) before that address is refused.
ADMIN_LOGIN_MAX_FAILURES = env_int("ADMIN_LOGIN_MAX_FAILURES", 5)
ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS = env_int("ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS", 30)
ADMIN_LOGIN_LOCKOUT_SECONDS = env_int("ADMIN_LOGIN_LOCKOUT_SECONDS", 900)
# --- end of Security ----------------------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # API tokens stored as digests, with an expiry (the REST_KNOX settings below).
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "eventstore",
    "sagas",
    "inventory",
    "payments",
    "privacy",
    "orders",
    "webhooks",
    "backoffice",
]

MIDDLEWARE = [
    # First: the request id is bound, and the request counted, whatever answers it.
    "infrastructure.logs.RequestLogContextMiddleware",
    "infrastructure.metrics.HttpMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Errors under /api/ are JSON even with DEBUG on (no traceback page).
    "infrastructure.api.errors.ApiErrorsMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

WSGI_APPLICATION = "config.wsgi.application"

# --- Database -----------------------------------------------------------------------------

_database_url = runtime.database_url()
if not _database_url:
    raise ImproperlyConfigured(
        "No database: set DATABASE_URL (postgres://user@host:port/name), or start the "
        "embedded servers with `make run`, which records their URLs in .local/runtime.json."
    )
DATABASES = {
    # Persistent connections with health checks: after a PostgreSQL restart the first query
    # on a dead connection is retried on a fresh one instead of failing the request.
    "default": dj_database_url.parse(
        _database_url, conn_max_age=env_int("CONN_MAX_AGE", 60), conn_health_checks=True
    ),
}
DATABASES["default"].setdefault("OPTIONS", {})
# Let psycopg prepare a statement after 5 runs on a connection (Django's default: never).
# Only server-binding cursors can prepare: the hot paths use one (infrastructure/db.py: the event
# store's append and loads, the saga engine's claim, outcome and start, an order's POST and
# worker steps); the ORM's cursors bind on the client and are unaffected.
# A transaction-mode pooler (pgbouncer) needs it off: DATABASE_PREPARE_THRESHOLD=none.
_prepare_threshold = os.environ.get("DATABASE_PREPARE_THRESHOLD", "5").strip().lower()
DATABASES["default"]["OPTIONS"].setdefault(
    "prepare_threshold", None if _prepare_threshold in {"", "none"} else int(_prepare_threshold)
)
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME") or None}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth, i18n, static ---------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    # Hashing test users' passwords with full-strength PBKDF2 costs seconds per test run.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG or TESTING
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Bodies over 1 MB are refused (DESIGN.md: 413).
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# --- REST framework -----------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "infrastructure.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["infrastructure.api.parsers.DepthLimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "infrastructure.api.schema.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "infrastructure.api.pagination.StandardPagination",
    "EXCEPTION_HANDLER": "infrastructure.api.errors.api_exception_handler",
    # Throttling is on by default; the rates are per client, counted in the shared cache.
    "DEFAULT_THROTTLE_CLASSES": [
        "infrastructure.api.throttling.AnonThrottle",
        "infrastructure.api.throttling.UserThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("API_THROTTLE_ANON", "120/min"),
        "user": os.environ.get("API_THROTTLE_USER", "6000/min"),
    },
}

# API tokens (django-rest-knox): the database keeps a SHA-512 digest of each token, never the
# token; clients send `Authorization: Token <token>` as before. `create_api_token` issues one,
# `revoke_api_tokens` and the admin revoke them.
API_TOKEN_TTL_DAYS = env_int("API_TOKEN_TTL_DAYS", 90)
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=API_TOKEN_TTL_DAYS),
    "AUTH_HEADER_PREFIX": "Token",
    # A client's token lasts its lifetime, then the operator issues a new one: a stolen token
    # that kept being used must not renew itself.
    "AUTO_REFRESH": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Order back office API",
    "DESCRIPTION": (
        "Orders placed here run as sagas (reserve stock, charge payment, confirm) on Celery "
        "workers; the order's state is rebuilt from its event stream."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's files are served from the sidecar package: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "infrastructure.api.schema.add_common_rules",
    ],
}

# --- Celery ---------------------------------------------------------------------------------
# The saga's state lives in PostgreSQL; the broker (Redis, or RabbitMQ with
# CELERY_BROKER_URL=amqp://...) only carries "run this step now" messages.
# These settings make sure a message is not lost on the way, and when one is, the saga
# sweeper re-sends it from PostgreSQL.

_broker_url = runtime.broker_url()
if not _broker_url:
    raise ImproperlyConfigured(
        "No broker: set REDIS_URL (redis://host:port/db) or CELERY_BROKER_URL, or start the "
        "embedded servers with `make run`, which records their URLs in .local/runtime.json."
    )
# Redis also holds the cache; with RabbitMQ as the broker it is still needed for that.
REDIS_URL = runtime.redis_url() or _broker_url
# The cache (API throttling counts, admin login attempts) lives in the same Redis, under its
# own key prefix, so every web process shares the counts.
CACHES = {
    "default": {
        "BACKEND": "infrastructure.cache.RedisCache",
        "LOCATION": os.environ.get("CACHE_URL", REDIS_URL),
        "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "backoffice"),
        "TIMEOUT": 300,
        # Short timeouts: a cache that does not answer is treated as absent, not waited for.
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}
CELERY_BROKER_URL = _broker_url
# Ack only after the task body returns, so a worker that dies mid-step leaves the message to
# be delivered again instead of silently dropping the step.
CELERY_TASK_ACKS_LATE = True
# A child killed by the OS (OOM, SIGKILL) counts as "not done": requeue the message.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Take one message at a time: a prefetched message held by a busy or dying worker is a
# message nobody else can run.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# JSON only: task arguments are ids and keywords, never pickled objects.
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# No result backend: the saga's outcome is in PostgreSQL, not in Celery results.
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Redis redelivers an unacked message after the visibility timeout. Every time limit below
# stays well under it, so a slow task is killed before a second copy of it starts.
CELERY_BROKER_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT,
    # Keep trying while Redis restarts instead of failing the publish at once.
    "max_retries": 5,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 2,
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
    "retry_on_timeout": True,
    "health_check_interval": 10,
}
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
# Reconnect to the broker on start-up and after it goes away, for as long as it takes.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A step message (infrastructure.broker) waits this long for the broker to connect and to
# answer, once: the saga row is committed before it is sent, and the sweeper sends again what
# was not sent, so a hung broker costs a POST about this long instead of timeouts times
# retries.
BROKER_PUBLISH_TIMEOUT_SECONDS = env_float("BROKER_PUBLISH_TIMEOUT_SECONDS", 1.0)
# What apply_async does on another transport (infrastructure.broker sends on Redis itself).
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 1,
}
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Queues. Each saga step goes to its participant's queue (SAGA_QUEUE_ROUTES: participant ->
# queue; SAGA_QUEUE_ROUTES="payments=payments-eu" in the environment moves one), and every
# other task (the sweeper, projections) to the maintenance queue. A worker started with
# `-Q payments` serves only that; one without -Q serves them all (CELERY_TASK_QUEUES).
# CELERY_QUEUE_PREFIX keeps several deployments (or test sessions) on one broker apart.
# CELERY_QUEUE names one queue for every task instead (the benchmarks and the lab use it).
CELERY_QUEUE_PREFIX = os.environ.get("CELERY_QUEUE_PREFIX", "")
_SINGLE_QUEUE = os.environ.get("CELERY_QUEUE", "")
SAGA_QUEUE_ROUTES: dict[str, str] = (
    {}
    if _SINGLE_QUEUE
    else {
        participant: CELERY_QUEUE_PREFIX + queue
        for participant, queue in {
            "orders": "orders",
            "inventory": "inventory",
            "payments": "payments",
            **dict(
                entry.split("=", 1) for entry in env_list("SAGA_QUEUE_ROUTES", []) if "=" in entry
            ),
        }.items()
    }
)
CELERY_TASK_DEFAULT_QUEUE = _SINGLE_QUEUE or CELERY_QUEUE_PREFIX + "maintenance"
CELERY_TASK_QUEUES = tuple(
    Queue(name) for name in sorted({*SAGA_QUEUE_ROUTES.values(), CELERY_TASK_DEFAULT_QUEUE})
)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # Read models inline with appends still get a catch-up pass, so a rebuild or an event
    # missed by a crash heals without anyone stepping in.
    "eventstore-catch-up-projections": {
        "task": "eventstore.catch_up_projections",
        "schedule": env_int("PROJECTION_CATCH_UP_SECONDS", 5),
        "options": {"expires": 30},
    },
}

# --- The back office's own settings ----------------------------------------------------------

# --- Event store: the projections, in one place (eventstore/projections.py).
EVENTSTORE_PROJECTORS: list[str] = [
    "orders.projections.OrderProjector",
    # The webhooks' outbox relay: its "read model" is the deliveries (webhooks/relay.py).
    "webhooks.relay.WebhookRelay",
]
# "postgres"; tests may set "memory": services on the in-memory store (eventstore/factory.py).
EVENTSTORE_BACKEND = "postgres"

# Fault injection: off unless turned on (it is in dev and tests).
FAULT_INJECTION_ENABLED = env_bool("FAULT_INJECTION_ENABLED", DEBUG or TESTING)

# --- Sagas (owned by sagas/) ----------------------------------------------------------------
# The saga types, in one explicit place: dotted paths to SagaDefinition objects.
SAGA_DEFINITIONS: list[str] = [
    "orders.sagas.PLACE_ORDER_SAGA",
    "orders.sagas.CANCEL_ORDER_SAGA",
]
# Test and benchmark sagas (no-op steps, steps recording their effects in a test-only table)
# exist only when testing or benchmarking: their app brings that table to those databases only.
SAGA_TESTING = TESTING or env_bool("SAGA_TESTING", False)
if SAGA_TESTING:
    INSTALLED_APPS.append("sagas.testing")
    SAGA_DEFINITIONS += [
        "sagas.testing.noop.NOOP4",
        "sagas.testing.sagas.EFFECTS",
        "sagas.testing.sagas.DUPLICATED",
        "sagas.testing.sagas.LOCAL",
        "sagas.testing.sagas.TIMEOUT",
        "sagas.testing.sagas.LONG_BACKOFF",
        "sagas.testing.sagas.FORWARD",
        "sagas.testing.sagas.HOSTS",
        # Version 1 only: the version-change test adds version 2 (sagas/testing/sagas.py).
        "sagas.testing.sagas.VERSIONED_V1",
    ]
# How long a saga of a type may take before it waits in the admin's "needs attention" queue,
# in seconds, by saga type; a type not listed has its definition's deadline (30 minutes by
# default). SAGA_DEADLINES="place_order=600,cancel_order=900" in the environment.
SAGA_DEADLINES: dict[str, float] = {
    saga_type: float(seconds)
    for saga_type, seconds in (
        entry.split("=", 1) for entry in env_list("SAGA_DEADLINES", []) if "=" in entry
    )
}
# The recovery sweeper runs this often (Celery beat). A due step whose message has not run
# after the grace period is sent again (a message that was merely slow becomes a no-op).
SAGA_SWEEP_INTERVAL_SECONDS = env_int("SAGA_SWEEP_INTERVAL_SECONDS", 5)
SAGA_SWEEP_GRACE_SECONDS = env_int("SAGA_SWEEP_GRACE_SECONDS", 15)
# Backoffs up to this long wait in the broker as a countdown; longer ones wait in PostgreSQL
# for the sweeper (a countdown lives in one worker's memory until it runs).
SAGA_COUNTDOWN_MAX_SECONDS = env_int("SAGA_COUNTDOWN_MAX_SECONDS", 5)
# Poison guard: an attempt is taken over at most this many times after its worker process
# died; the next loss fails the step for good.
SAGA_MAX_REDELIVERIES = env_int("SAGA_MAX_REDELIVERIES", 3)
# From a step's timeout (soft time limit: a transient failure) to the hard kill of its process.
SAGA_HARD_TIME_LIMIT_GRACE_SECONDS = env_int("SAGA_HARD_TIME_LIMIT_GRACE_SECONDS", 5)
# A step's phase logs at most this many attempts (one retrying forward would grow its log
# without end): the first half and the latest ones are kept (sagas/recorder.py).
SAGA_STEP_LOG_MAX = env_int("SAGA_STEP_LOG_MAX", 20)
# Celery's Django fixup closes the database connection before and after every task unless
# this is set: a new PostgreSQL connection per saga step would cost more than the step
# itself. Connections are recycled every N tasks; each saga task first drops
# one that broke or outlived CONN_MAX_AGE, as Django does per request (sagas/tasks.py).
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_BEAT_SCHEDULE["sagas-sweep"] = {
    "task": "sagas.sweep",
    "schedule": SAGA_SWEEP_INTERVAL_SECONDS,
    # A pass that could not start in time is replaced by the next one.
    "options": {"expires": SAGA_SWEEP_INTERVAL_SECONDS * 2},
}
# --- end of Sagas ----------------------------------------------------------------------------

# --- Webhooks (owned by webhooks/) -----------------------------------------------------------
# Public event type → (stored event type, function building the delivery's "data").
WEBHOOK_EVENT_TYPES: dict[str, tuple[str, str]] = {
    "order.created": ("OrderCreated", "orders.webhooks.order_payload"),
    "order.confirmed": ("OrderConfirmed", "orders.webhooks.order_payload"),
    "order.cancelled": ("OrderCancelled", "orders.webhooks.order_payload"),
    "saga.compensation_failed": ("SagaCompensationFailed", "sagas.webhooks.saga_payload"),
}
# Signing secrets are encrypted under a key derived from this (SECRET_KEY when unset).
WEBHOOK_SECRET_KEY = os.environ.get("WEBHOOK_SECRET_KEY", "")
# URLs resolving to loopback, private or link-local addresses are refused unless this is on.
WEBHOOK_ALLOW_PRIVATE_TARGETS = env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", DEBUG)
# The first retry comes about this long after a failure; each next one waits twice as long
# (jittered, at most an hour), until the window has passed and the delivery is FAILED.
WEBHOOK_RETRY_BASE_SECONDS = float(os.environ.get("WEBHOOK_RETRY_BASE_SECONDS", "5"))
WEBHOOK_RETRY_WINDOW_SECONDS = env_int("WEBHOOK_RETRY_WINDOW_SECONDS", 24 * 3600)
# An endpoint is disabled after this many failed attempts in a row (re-enable in the admin).
WEBHOOK_DISABLE_AFTER_FAILURES = env_int("WEBHOOK_DISABLE_AFTER_FAILURES", 50)
# The relay and the senders run on their own queue (under CELERY_QUEUE_PREFIX, beside the
# participants'); a worker without -Q, `make run`'s, consumes it with the others.
WEBHOOK_QUEUE = _SINGLE_QUEUE or CELERY_QUEUE_PREFIX + os.environ.get("WEBHOOK_QUEUE", "webhooks")
# The relay queues the sends of the deliveries it writes as soon as they commit (off: they
# wait for the dispatch's next pass; tests that play the worker's part by hand turn it off).
WEBHOOK_SEND_ON_RELAY = env_bool("WEBHOOK_SEND_ON_RELAY", True)
# How often the dispatch queues the sends that are due (retries, and events that waited
# behind an earlier one of their order).
WEBHOOK_INTERVAL_SECONDS = float(os.environ.get("WEBHOOK_INTERVAL_SECONDS", "1"))
# How often the relay reads the log for new events: the wait between an event's commit and
# its first send is up to this long. A pass that finds nothing costs one short read.
WEBHOOK_RELAY_INTERVAL_SECONDS = float(os.environ.get("WEBHOOK_RELAY_INTERVAL_SECONDS", "0.25"))
CELERY_TASK_ROUTES = {"webhooks.*": {"queue": WEBHOOK_QUEUE}}
CELERY_TASK_QUEUES = tuple(
    Queue(name) for name in sorted({*(q.name for q in CELERY_TASK_QUEUES), WEBHOOK_QUEUE})
)
CELERY_BEAT_SCHEDULE["webhooks-relay"] = {
    "task": "webhooks.relay",
    "schedule": WEBHOOK_RELAY_INTERVAL_SECONDS,
    "options": {"expires": 10},
}
CELERY_BEAT_SCHEDULE["webhooks-dispatch-due"] = {
    "task": "webhooks.dispatch_due",
    "schedule": WEBHOOK_INTERVAL_SECONDS,
    "options": {"expires": 10},
}
# --- end of Webhooks --------------------------------------------------------------------------

# --- Retention (backoffice/retention.py) -----------------------------------------------------
# An Idempotency-Key's record answers replays this long; after it the key is a new request,
# and the daily purge deletes the record.
IDEMPOTENCY_TTL_HOURS = env_int("IDEMPOTENCY_TTL_HOURS", 24)
CELERY_BEAT_SCHEDULE["purge-expired"] = {
    "task": "backoffice.purge_expired",
    # Daily, at a quiet hour (UTC): idempotency records, saga attempt logs, API tokens.
    "schedule": crontab(
        hour=env_int("PURGE_EXPIRED_HOUR", 3), minute=env_int("PURGE_EXPIRED_MINUTE", 17)
    ),
    "options": {"expires": 3600},
}
# --- end of Retention ------------------------------------------------------------------------

# --- Inventory and payments (owned by inventory/ and payments/) ------------------------------
# The currency of the catalogue's prices (ISO 4217).
BACKOFFICE_CURRENCY = os.environ.get("BACKOFFICE_CURRENCY", "EUR")
# The payment gateway: a dotted path to a class implementing payments.gateway.PaymentGateway.
# The default simulates a card processor in this database (tok_visa, tok_chargeDeclined, ...).
PAYMENT_GATEWAY = os.environ.get("PAYMENT_GATEWAY", "payments.simulated.SimulatedGateway")
# --- end of Inventory and payments ------------------------------------------------------------

# GET /metrics: open with DEBUG; otherwise this bearer token, and a 404 while it is unset.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

# The admin dashboard's charts: each web process reuses a chart it drew for this long, so
# staff reloading the index do not run the charts' aggregate queries every time.
DASHBOARD_CHARTS_CACHE_SECONDS = 30.0

# LOG_FORMAT=json (the default when DEBUG is off): one JSON object a line, with the ids bound for
# the request or the task (infrastructure/logs.py); text: the same, readable.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text" if DEBUG else "json").strip().lower()
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}.")
LOGGING = logging_config(log_format=LOG_FORMAT, level=os.environ.get("LOG_LEVEL", "INFO"))

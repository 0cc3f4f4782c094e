"""Django settings, read only from the environment (12-factor). Bad values fail loudly at start.

Two modes:
  development  (the default when nothing is set: a fresh clone, ``make run``, ``make test``,
               ``manage.py <anything>``) DEBUG on, a development SECRET_KEY and credential key, localhost
               only, plain HTTP, SQLite under var/ and an embedded Redis unless DATABASE_URL / REDIS_URL say
               otherwise.
  production   asked for by DJANGO_ENV=production or by an explicit DEBUG=0. Nothing is defaulted that
               matters: SECRET_KEY, ALLOWED_HOSTS and CREDENTIAL_KEYS are required, DEBUG=1 is refused,
               HTTPS-only cookies, HSTS and the SSL redirect are on.

Environment:
  DJANGO_ENV        "development" or "production" (default: production when DEBUG=0, else development).
  DEBUG             "1"/"0". Development: default 1 (DEBUG=0 alone selects production; with an explicit
                    DJANGO_ENV=development it only turns DEBUG off). Production: 0 (1 is refused).
  SECRET_KEY        required in production; a fixed development key otherwise.
  ALLOWED_HOSTS     comma-separated (required in production; development: localhost, 127.0.0.1, [::1]).
  CSRF_TRUSTED_ORIGINS  comma-separated origins (e.g. https://mm.example.com).
  DATABASE_URL      default: SQLite file var/db.sqlite3.
  REDIS_URL         Celery broker + results, Channels layer, cache. Unset: an embedded real Redis
                    server is started and owned by this process (see mmplatform/embedded_redis.py).
  CREDENTIAL_KEYS   comma-separated Fernet keys; the first encrypts, all decrypt (rotation).
                    Required in production; in development a key is derived from SECRET_KEY.
  SECURE_SSL        "1" (default in production): HTTPS-only cookies, HSTS, SSL redirect.
  MMPLATFORM_VAR_DIR  where SQLite, the embedded Redis and collected static files live (default var/).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from mmplatform.embedded_redis import ensure_embedded_redis
from mmplatform.queues import alerts_queue_for, background_queue_for
from mmplatform.redis_config import redis_settings

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MMPLATFORM_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0/true/false), got {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


ENVIRONMENTS = ("development", "production")
_debug_given = os.environ.get("DEBUG", "") != ""
ENVIRONMENT = os.environ.get("DJANGO_ENV", "").strip().lower()
if not ENVIRONMENT:
    ENVIRONMENT = "production" if _debug_given and not env_bool("DEBUG", True) else "development"
if ENVIRONMENT not in ENVIRONMENTS:
    raise ImproperlyConfigured(f"DJANGO_ENV must be one of {', '.join(ENVIRONMENTS)}, got {ENVIRONMENT!r}")
PRODUCTION = ENVIRONMENT == "production"
DEBUG = env_bool("DEBUG", not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG=1 is not allowed with DJANGO_ENV=production")

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY is required in production (DJANGO_ENV=production or DEBUG=0)")
    SECRET_KEY = "dev-insecure-" + "x" * 50

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]"])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is required in production (DJANGO_ENV=production or DEBUG=0)")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# --- credential encryption (exchanges.crypto) ---------------------------------------------------
CREDENTIAL_KEYS = env_list("CREDENTIAL_KEYS", [])
if not CREDENTIAL_KEYS:
    if PRODUCTION:
        raise ImproperlyConfigured("CREDENTIAL_KEYS (comma-separated Fernet keys) is required in production "
                                   "(DJANGO_ENV=production or DEBUG=0)")
    CREDENTIAL_KEYS = [base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_celery_beat",
    "mmplatform",
    "mmplatform.tenancy",
    "exchanges",
    "strategies",
    "risk",
    "bots",
    "alerts",
    "liquidity",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "mmplatform.tenancy.middleware.TenantMiddleware",
]

ROOT_URLCONF = "mmplatform.urls"

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
                "mmplatform.tenancy.context_processors.tenancy",
                "liquidity.context_processors.client",
            ],
        },
    },
]

WSGI_APPLICATION = "mmplatform.wsgi.application"
ASGI_APPLICATION = "mmplatform.asgi.application"

# --- database -----------------------------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is malformed: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_PREPARED_STATEMENTS", True):
    # Parameters bound by the server and a statement run often on a connection prepared there (psycopg's
    # prepare_threshold): the server parses and plans it once per connection, and the client sends the values
    # instead of quoting them into the text. Measured (python -m bench.bench_db_binding, README rows "db binding"):
    # Postgres's CPU per engine-shaped statement 97 -> 70 us, the client's 58 -> 54 us. Off
    # (DB_PREPARED_STATEMENTS=0) behind a transaction-mode connection pooler that cannot keep a session's prepared
    # statements.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=env_int("DB_PREPARE_THRESHOLD", 5, minimum=0))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis: celery, channels, cache -------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if not REDIS_URL:
    REDIS_URL = ensure_embedded_redis(VAR_DIR)
    os.environ["REDIS_URL"] = REDIS_URL  # child processes (worker, beat, web) share the server

# One URL, every consumer in its own spelling (Celery needs redis+socket:// for a unix socket).
_redis = redis_settings(REDIS_URL)
CACHES = _redis["CACHES"]
CHANNEL_LAYERS = _redis["CHANNEL_LAYERS"]
CELERY_BROKER_URL = _redis["CELERY_BROKER_URL"]
CELERY_RESULT_BACKEND = _redis["CELERY_RESULT_BACKEND"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 90
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(env_float("CELERY_VISIBILITY_TIMEOUT_SECS", 3600))}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Celery's Django fixup closes a worker process's database sessions before and after every task unless this is set;
# then only every this-many tasks. The tasks call close_old_connections() first (CONN_MAX_AGE, the health check), so
# a session is still dropped when old or broken; what goes is a new Postgres session per task (a backend started,
# its caches and prepared statements built again): at active N=1,000 past the machine's edge, a flood of small alert
# tasks opened 940 sessions in 40 s, with Postgres at 0.37-0.45 cores instead of ~0.29.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "mmplatform")
# the alerts queue and the background queue beside the default one (mmplatform/queues.py says which task
# goes where and who consumes which); a worker without -Q consumes all three
CELERY_ALERTS_QUEUE = os.environ.get("CELERY_ALERTS_QUEUE") or alerts_queue_for(CELERY_TASK_DEFAULT_QUEUE)
CELERY_BACKGROUND_QUEUE = os.environ.get("CELERY_BACKGROUND_QUEUE", "")  # empty: "<default queue>-background"
CELERY_TASK_QUEUES = [Queue(name, Exchange(name), routing_key=name)  # each its own exchange and key
                      for name in (CELERY_TASK_DEFAULT_QUEUE, CELERY_ALERTS_QUEUE,
                                   CELERY_BACKGROUND_QUEUE or background_queue_for(CELERY_TASK_DEFAULT_QUEUE))]
CELERY_TASK_ROUTES = ("mmplatform.queues.route_task",)

# --- auth, i18n, static -------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True

# --- security (production) ----------------------------------------------------------------------
SECURE_SSL = env_bool("SECURE_SSL", PRODUCTION)
SESSION_COOKIE_SECURE = SECURE_SSL
CSRF_COOKIE_SECURE = SECURE_SSL
SECURE_SSL_REDIRECT = SECURE_SSL
SECURE_HSTS_SECONDS = 31536000 if SECURE_SSL else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_SSL
SECURE_HSTS_PRELOAD = SECURE_SSL
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- platform -----------------------------------------------------------------------------------
EXCHANGE_HTTP_TIMEOUT_SECS = env_float("EXCHANGE_HTTP_TIMEOUT_SECS", 10.0)
BOT_WATCHDOG_INTERVAL_SECS = env_float("BOT_WATCHDOG_INTERVAL_SECS", 10.0)
MARKET_DATA_CACHE_SECS = env_float("MARKET_DATA_CACHE_SECS", 0.5)
STALE_BOOK_SECS = env_float("STALE_BOOK_SECS", 5.0)
# The engine driver (bots/engine/driver.py): one per Celery worker process runs the bots of its shards.
ENGINE_DRIVER_ENABLED = env_bool("ENGINE_DRIVER_ENABLED", True)
ENGINE_SHARDS = env_int("ENGINE_SHARDS", 16)
ENGINE_CYCLE_THREADS = env_int("ENGINE_CYCLE_THREADS", 16)
"""Pool threads per worker process for the cycles the driver's checks hand over (bots/engine/pool.py), started as
work arrives; each holds a database connection of its own. 16: a noise order fills the ~20 bots quoting a symbol's
top at once, and their fill syncs are mostly waits (the quote guard, statements, the venue), so 8 threads left the
burst queued (active N=1,000: p99 1.29-1.46 s in four runs with 8; with 16 five runs of six at 0.55-0.99 s, one
at 1.54 s; docs/performance.md). Postgres needs
``max_connections`` above workers x processes x (this + BOT_START_THREADS + ~4)."""
ENGINE_FULL_CYCLE_SECS = env_float("ENGINE_FULL_CYCLE_SECS", 300.0)
BOT_START_THREADS = env_int("BOT_START_THREADS", 8, minimum=0)
"""Threads per worker process that run bot starts (bots/engine/starts.py); 0: each start on its task's thread."""
_gc_thresholds = env_list("ENGINE_GC_THRESHOLDS", ["50000", "20", "100"])
if len(_gc_thresholds) != 3 or not all(v.isdigit() for v in _gc_thresholds) or int(_gc_thresholds[0]) < 1:
    raise ImproperlyConfigured("ENGINE_GC_THRESHOLDS must be three whole numbers separated by commas, the first at "
                               f"least 1, got {os.environ.get('ENGINE_GC_THRESHOLDS')!r}")
ENGINE_GC_THRESHOLDS = tuple(int(v) for v in _gc_thresholds)
"""``gc.set_threshold`` of an engine worker process (Python's default: 700, 10, 10); bots/engine/gc_timer.py says
why and what was measured."""
ENGINE_GC_FULL_SECS = env_float("ENGINE_GC_FULL_SECS", 900.0)
"""An engine worker's driver runs a full collection this often (the thresholds above leave it to that)."""
ENGINE_GC_THAW_PASSES = env_int("ENGINE_GC_THAW_PASSES", 96)
"""Each periodic full collection freezes what survived it, so the next walks only the objects made since; every this
many passes (96: a day at 900 s) everything is unfrozen and walked (a reference cycle among frozen objects is freed
then; bots/engine/gc_timer.py has the figures); 1: every pass walks everything."""
ENGINE_QUIET_REUSE_SECS = env_float("ENGINE_QUIET_REUSE_SECS", 10.0)
"""A quiet check whose inputs did not change since the bot's last quiet decision (the same books, the same
account data, no cycle of the bot between) reuses that verdict instead of deciding again, for at most this
long after the decision (then it decides in full again); 0: every check decides in full."""
ENGINE_BOOK_STREAMS = env_bool("ENGINE_BOOK_STREAMS", True)
ENGINE_ORDER_STREAMS = env_bool("ENGINE_ORDER_STREAMS", True)
"""The engine driver keeps its account views from the venue's pushed order updates (Binance's user-data
stream, ccxt.pro ``watch_orders``) and reads open orders by REST only every ENGINE_ACCOUNT_RECONCILE_SECS
and whenever the stream (re)subscribes (a fill sync hands the view the balances it read); a fill sync of such an account
takes the listing and the ended orders' fate from the view and books the pushed trades when they account for every
fill the venue reports (else, and every 60 s, it reads the trades by REST). Off (or a venue without them): views
read every ~0.9 monitoring interval, fill syncs read everything by REST."""
ENGINE_ACCOUNT_RECONCILE_SECS = env_float("ENGINE_ACCOUNT_RECONCILE_SECS", 15.0)
ENGINE_CANCEL_REPLACE = env_bool("ENGINE_CANCEL_REPLACE", True)
"""Re-quotes on a venue that cancels and places in one request (Binance's order/cancelReplace) move each quote with
one such request (``bots/engine/acts.py``); off: place first or cancel first."""
ENGINE_PLACE_FIRST = env_bool("ENGINE_PLACE_FIRST", True)
"""Re-quotes place the new quotes before cancelling the old ones when the free balances allow
(``strategies.requote_order``), so no side stands empty; off: cancel first, then place."""
ENGINE_PLACE_FIRST_MARGIN = env_float("ENGINE_PLACE_FIRST_MARGIN", 3.0)
"""Placing first needs this many times the new orders' cost free on the account (the free balances
are a little old and shared with the account's other bots)."""
# Storage retention (bots/retention.py, beat's hourly `storage-retention`): days before a kind is
# pruned, 0 = never. Fills, orders with fills, positions, non-routine events and risk events are kept.
SLA_MINUTE_RETENTION_DAYS = env_int("SLA_MINUTE_RETENTION_DAYS", 40, minimum=0)  # liquidity minute rows

RETENTION_ORDERS_DAYS = env_int("RETENTION_ORDERS_DAYS", 7, minimum=0)  # ended with nothing filled
RETENTION_ROUTINE_EVENTS_DAYS = env_int("RETENTION_ROUTINE_EVENTS_DAYS", 30, minimum=0)  # OrdersAdjusted summaries
RETENTION_SNAPSHOTS_FULL_DAYS = env_int("RETENTION_SNAPSHOTS_FULL_DAYS", 7, minimum=0)  # then one per hour
RETENTION_SNAPSHOTS_DAYS = env_int("RETENTION_SNAPSHOTS_DAYS", 365, minimum=0)  # then deleted
RETENTION_BATCH_SIZE = env_int("RETENTION_BATCH_SIZE", 5000)  # rows per DELETE statement
RETENTION_MAX_BATCHES = env_int("RETENTION_MAX_BATCHES", 200)  # per kind per run; the rest next run
# The local exchange emulator's admin token (accounts opened on it from the Django admin).
EMULATOR_ADMIN_TOKEN = os.environ.get("EMULATOR_ADMIN_TOKEN", "")
EMULATOR_DEMO_BALANCES = os.environ.get("EMULATOR_DEMO_BALANCES", "BTC=1,ETH=20,USDT=60000")
# Alerts (alerts/): delivery by email and signed webhooks, through Celery (never on the engine's thread).
ALERTS_ALLOWED_PRIVATE_NETWORKS = env_list("ALERTS_ALLOWED_PRIVATE_NETWORKS", [])  # CIDRs webhooks may reach
for _cidr in ALERTS_ALLOWED_PRIVATE_NETWORKS:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"ALERTS_ALLOWED_PRIVATE_NETWORKS: {_cidr!r} is not a network (e.g. "
                                   "127.0.0.0/8)") from None
ALERTS_WEBHOOK_TIMEOUT_SECS = env_float("ALERTS_WEBHOOK_TIMEOUT_SECS", 5.0)
ALERTS_MAX_ATTEMPTS = env_int("ALERTS_MAX_ATTEMPTS", 6)  # then the delivery is a dead letter
ALERTS_RETRY_BASE_SECS = env_float("ALERTS_RETRY_BASE_SECS", 2.0)  # 2, 4, 8, ... seconds between attempts
ALERTS_RETRY_MAX_SECS = env_float("ALERTS_RETRY_MAX_SECS", 600.0)
ALERTS_VENUE_DOWN_SECS = env_float("ALERTS_VENUE_DOWN_SECS", 15.0)  # unreadable this long = disconnected
# Email (alerts, scheduled SLA reports): Django's email backend, SMTP in production, the console in development.
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT_SECS", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "alerts@mmplatform.localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"redact": {"()": "mmplatform.logging.RedactSecretsFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "ccxt": {"level": "WARNING"},
    },
}

"""Cloakroom settings, read from the environment.

Every setting is listed, with its default, in the README's settings table. Secrets have no default
outside DEBUG: a production process without ``SECRET_KEY`` or ``CLOAKROOM_DATA_KEYS`` refuses to
start rather than run with a guessable key.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_decimal, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("CLOAKROOM_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
if env_str("DATABASE_URL") is None:
    # The zero-setup default keeps its SQLite file here.
    VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment (make demo writes one to var/demo.env)."
        )
    SECRET_KEY = "insecure-development-only-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "marketplace",
    "compute",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response, static files and error pages included (config/middleware.py).
    "config.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Failed web and admin sign-ins lock the client out for a while (accounts/throttling.py).
    "accounts.throttling.LoginThrottleMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

# Database: SQLite under var/ is the zero-setup default; DATABASE_URL points at PostgreSQL for real.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'cloakroom.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo's web workers, Celery worker and beat share one SQLite file. WAL lets readers run
    # beside the one writer; a busy timeout makes a writer wait for the lock instead of failing;
    # IMMEDIATE transactions take the write lock when they begin, so two transactions that read
    # and then write never deadlock into "database is locked" (SQLite cannot upgrade a read lock
    # held by two connections at once).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

# The cache holds the throttling counters, which every web process must share: Redis when there is
# one, else files under var/ (the embedded default); CLOAKROOM_CACHE_URL picks another (locmem://
# for one process, as the unit tests do).
_CACHE_URL = env_str("CLOAKROOM_CACHE_URL", env_str("REDIS_URL") or f"file://{VAR_DIR / 'cache'}")
if _CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _CACHE_URL,
            "KEY_PREFIX": env_str("CLOAKROOM_CACHE_PREFIX", "cloakroom"),
            # An unreachable cache costs a request at most this long (throttling then steps aside).
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
elif _CACHE_URL.startswith("file://"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": _CACHE_URL[7:]}}
elif _CACHE_URL.startswith("locmem://"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    raise ImproperlyConfigured(f"CLOAKROOM_CACHE_URL must be redis://, file:// or locmem://, not {_CACHE_URL!r}")

# Lockouts after failed sign-ins (web, admin, HTTP Basic: per address and per user name) and failed
# API-key guesses (per address), each counted in windows of that many seconds.
CLOAKROOM_LOGIN_FAILURE_LIMIT = env_int("CLOAKROOM_LOGIN_FAILURE_LIMIT", 10)
CLOAKROOM_LOGIN_FAILURE_WINDOW = env_int("CLOAKROOM_LOGIN_FAILURE_WINDOW", 300)
CLOAKROOM_API_KEY_FAILURE_LIMIT = env_int("CLOAKROOM_API_KEY_FAILURE_LIMIT", 20)
CLOAKROOM_API_KEY_FAILURE_WINDOW = env_int("CLOAKROOM_API_KEY_FAILURE_WINDOW", 60)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "catalogue"
LOGOUT_REDIRECT_URL = "catalogue"

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

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    # Uploaded datasets live in a private folder that no URL maps to; see marketplace/storage.py.
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(Path(env_str("CLOAKROOM_PRIVATE_ROOT", str(VAR_DIR / "private"))))},
    },
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# No MEDIA_URL is routed: stored files are never served, to anyone.
MEDIA_ROOT = STORAGES["default"]["OPTIONS"]["location"]

# Upload limits. Django's own memory limit is kept low so large uploads spool to a temporary file.
CLOAKROOM_MAX_UPLOAD_BYTES = env_int("CLOAKROOM_MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
# The table a dataset upload may describe, checked before its data is parsed (marketplace/ingest/limits.py,
# docs/RELIABILITY.md): a small compressed file can declare millions of rows or columns.
CLOAKROOM_MAX_UPLOAD_ROWS = env_int("CLOAKROOM_MAX_UPLOAD_ROWS", 1_000_000)
CLOAKROOM_MAX_UPLOAD_COLUMNS = env_int("CLOAKROOM_MAX_UPLOAD_COLUMNS", 1_000)
CLOAKROOM_MAX_UPLOAD_UNCOMPRESSED_BYTES = env_int("CLOAKROOM_MAX_UPLOAD_UNCOMPRESSED_BYTES", 256 * 1024 * 1024)
CLOAKROOM_MAX_CSV_HEADER_BYTES = env_int("CLOAKROOM_MAX_CSV_HEADER_BYTES", 128 * 1024)
# Request bodies (other than uploaded files) larger than this are answered 413 (config/errors.py).
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# Seconds the New dataset page keeps a chosen file across failed submits (marketplace/pending_uploads.py).
CLOAKROOM_PENDING_UPLOAD_SECONDS = env_int("CLOAKROOM_PENDING_UPLOAD_SECONDS", 3600)
# HE bundles: the largest single file (context or ciphertext) an owner may upload, and the largest whole
# bundle (all files its manifest declares together), in bytes.
CLOAKROOM_MAX_BUNDLE_FILE_BYTES = env_int("CLOAKROOM_MAX_BUNDLE_FILE_BYTES", 64 * 1024 * 1024)
CLOAKROOM_MAX_BUNDLE_BYTES = env_int("CLOAKROOM_MAX_BUNDLE_BYTES", 2 * 1024 * 1024 * 1024)
# Sandboxed TenSEAL readers: seconds (wall clock and CPU) and address space (RLIMIT_AS, bytes) of the HE
# bundle checker (past them the bundle is rejected) and of a prediction's scorer (it fails and is refunded).
CLOAKROOM_BUNDLE_CHECK_TIMEOUT = env_int("CLOAKROOM_BUNDLE_CHECK_TIMEOUT", 120)
CLOAKROOM_BUNDLE_CHECK_MEMORY_BYTES = env_int("CLOAKROOM_BUNDLE_CHECK_MEMORY_BYTES", 3 * 1024 * 1024 * 1024)
CLOAKROOM_SCORING_TIMEOUT = env_int("CLOAKROOM_SCORING_TIMEOUT", 300)
CLOAKROOM_SCORING_MEMORY_BYTES = env_int("CLOAKROOM_SCORING_MEMORY_BYTES", 3 * 1024 * 1024 * 1024)

# Keys for encryption at rest (Fernet, comma-separated, newest first).
CLOAKROOM_DATA_KEYS = env_list("CLOAKROOM_DATA_KEYS", [])
if not CLOAKROOM_DATA_KEYS and not DEBUG:
    raise ImproperlyConfigured(
        "CLOAKROOM_DATA_KEYS is not set. Generate one with "
        "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
    )

CLOAKROOM_SIGNUP_CREDITS = env_decimal("CLOAKROOM_SIGNUP_CREDITS", "0")

# Celery. The embedded default is Kombu's filesystem transport under var/, so the demo needs no
# broker server; CELERY_BROKER_URL (or REDIS_URL) selects Redis.
REDIS_URL = env_str("REDIS_URL")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        # Kombu's default is "control" relative to the working directory; keep it under var/ too.
        "control_folder": str(_broker_dir / "control"),
        # Seconds an idle consumer sleeps before looking at the folder again (Kombu's default is 1).
        "polling_interval": float(env_str("CLOAKROOM_FILESYSTEM_POLL_SECONDS", "0.1")),
    }
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
else:
    # With Redis, a task not acknowledged within this window is delivered again. Tasks are
    # idempotent (they check the job's status first), so a second delivery is harmless.
    # Every connection and call to Redis gives up after CELERY_BROKER_SOCKET_TIMEOUT seconds, so a
    # broker that is down or hangs costs a job submission seconds, not the web worker's whole
    # timeout (docs/RELIABILITY.md).
    _broker_timeout = float(env_decimal("CELERY_BROKER_SOCKET_TIMEOUT", "2"))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
        "socket_timeout": _broker_timeout,
        "socket_connect_timeout": _broker_timeout,
    }
    # Kombu's bound on retrying a connection before a channel is opened (its default is 4 s).
    CELERY_BROKER_CONNECTION_TIMEOUT = _broker_timeout
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
# One message reserved per worker process on Redis: a long job never holds others back. On the
# filesystem broker Celery runs its blocking loop, which hands a finished task's acknowledgement
# back only between 2-second waits for the next message; with one message reserved each job waited
# for the next wait (about 30 jobs a minute). Reserving several lets one wait serve many jobs.
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int(
    "CELERY_WORKER_PREFETCH_MULTIPLIER", 16 if CELERY_BROKER_URL.startswith("filesystem://") else 1
)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 570)
CELERY_TASK_DEFAULT_QUEUE = "default"
# A task is published at once or not at all: one retry, straight away, in case a pooled connection went
# stale; a job whose task could not be sent stays queued and the sweeper sends it later.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
# Workers and beat wait for a lost broker as long as it takes (Celery's default gives up after 100
# attempts, about 50 minutes, and the worker exits).
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
_sweep_seconds = env_int("CLOAKROOM_SWEEP_SECONDS", 60)
CELERY_BEAT_SCHEDULE = {
    # A sweep that waited past the next one (the workers were away) is dropped, not run in a burst.
    "sweep-stuck-jobs": {
        "task": "compute.sweep_jobs",
        "schedule": _sweep_seconds,
        "options": {"expires": _sweep_seconds},
    },
    # Kept uploads of the New dataset page past their lifetime (marketplace/pending_uploads.py).
    "sweep-pending-uploads": {"task": "marketplace.sweep_pending_uploads", "schedule": 600},
}

# A worker's claim on a job lasts this long (longer than the task time limit); past it the sweeper re-queues the job (or fails and
# refunds it after CLOAKROOM_JOB_MAX_ATTEMPTS). Longer than any job should take.
CLOAKROOM_JOB_LEASE_SECONDS = env_int("CLOAKROOM_JOB_LEASE_SECONDS", 660)
CLOAKROOM_JOB_MAX_ATTEMPTS = env_int("CLOAKROOM_JOB_MAX_ATTEMPTS", 3)
# A running DP job's task beats a heartbeat this often; three missed beats and the sweeper re-queues
# the job (a dead worker's jobs come back within about a minute, not after the lease).
CLOAKROOM_JOB_HEARTBEAT_SECONDS = float(env_decimal("CLOAKROOM_JOB_HEARTBEAT_SECONDS", "5"))
# A queued job sent but not started this long after, while its queue is empty (its message was lost
# or dropped), is sent again; after CLOAKROOM_JOB_MAX_DELIVERIES sends it is failed and refunded.
CLOAKROOM_JOB_REDELIVER_SECONDS = env_int("CLOAKROOM_JOB_REDELIVER_SECONDS", 30)
CLOAKROOM_JOB_MAX_DELIVERIES = env_int("CLOAKROOM_JOB_MAX_DELIVERIES", 5)
# The queues of DP jobs (-Q dp), of HE jobs and their parts (-Q he) and of PATE jobs (-Q ml: teachers
# trained in memory, votes, Confident-GNMax). Tests use queues of their own.
CLOAKROOM_DP_QUEUE = env_str("CLOAKROOM_DP_QUEUE", "dp")
CLOAKROOM_HE_QUEUE = env_str("CLOAKROOM_HE_QUEUE", "he")
CLOAKROOM_ML_QUEUE = env_str("CLOAKROOM_ML_QUEUE", "ml")
CLOAKROOM_KEYS_QUEUE = env_str("CLOAKROOM_KEYS_QUEUE", "keys")  # the escrow worker's, the only one opening keys
# HE jobs are split into parts of this many ciphertext chunks per column, run in parallel on the he queue.
CLOAKROOM_HE_PART_CHUNKS = env_int("CLOAKROOM_HE_PART_CHUNKS", 256)
# HE dot products: the most weights a job may send, and the largest |weight|.
CLOAKROOM_HE_MAX_WEIGHTS = env_int("CLOAKROOM_HE_MAX_WEIGHTS", 250_000)
CLOAKROOM_HE_MAX_WEIGHT = float(env_decimal("CLOAKROOM_HE_MAX_WEIGHT", "1000"))
# Key escrow: the platform's key-encryption key, X25519, base64 of the 32 raw bytes. The PRIVATE half
# belongs in the escrow worker's environment only (the worker consuming CLOAKROOM_KEYS_QUEUE); web and
# other workers need only the PUBLIC half, which owners fetch to seal their keys. Unset: no escrow.
CLOAKROOM_KEK_PRIVATE_KEY = env_str("CLOAKROOM_KEK_PRIVATE_KEY", "") or ""
CLOAKROOM_KEK_PUBLIC_KEY = env_str("CLOAKROOM_KEK_PUBLIC_KEY", "") or ""
# HE jobs wait this long for the owner's key agent before they fail and are refunded.
CLOAKROOM_HE_KEY_WAIT_SECONDS = env_int("CLOAKROOM_HE_KEY_WAIT_SECONDS", 7 * 24 * 3600)
# Fault injection for failure tests only (a worker sleeps this long after claiming a job): keep it 0.
CLOAKROOM_FAULT_JOB_DELAY_SECONDS = env_int("CLOAKROOM_FAULT_JOB_DELAY_SECONDS", 0)
CELERY_TIMEZONE = TIME_ZONE

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "accounts.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Rates per client (accounts/throttling.py): a 429 in the one error shape with Retry-After.
    "DEFAULT_THROTTLE_CLASSES": ["accounts.throttling.AnonThrottle", "accounts.throttling.UserThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("CLOAKROOM_RATE_ANON", "120/min"),
        "user": env_str("CLOAKROOM_RATE_USER", "1200/min"),
        "job_submit": env_str("CLOAKROOM_RATE_JOB_SUBMIT", "60/min"),
        "dummy_query": env_str("CLOAKROOM_RATE_DUMMY_QUERY", "30/min"),
    },
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # ?format= is ours (downloads as csv or json), not DRF's renderer override.
    "URL_FORMAT_OVERRIDE": None,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "Cloakroom API",
    "DESCRIPTION": "Privacy-preserving data marketplace: buy privacy budget, run DP and HE jobs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI is served from the vendored sidecar package, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Tag descriptions come from config/openapi/operations.py; enum names for the choice sets that share a field name.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "config.openapi.postprocess_schema"],
    "ENUM_NAME_OVERRIDES": {
        "JobKindEnum": ["query", "train"],
        "JobStatusEnum": ["queued", "running", "awaiting_key", "released", "failed", "cancelled"],
        "DatasetStatusEnum": ["draft", "published", "suspended"],
        "ColumnKindEnum": ["numeric", "categorical", "boolean"],
        "HeColumnKindEnum": ["numeric", "indicator", "boolean"],
        "LedgerEntryKindEnum": ["reserve", "commit", "refund"],
        "KeyCustodyEnum": ["owner", "escrow"],
        "NewKeyCustodyEnum": ["owner"],
    },
}

# Security. HTTPS=true turns on everything `manage.py check --deploy` asks of a site behind TLS.
HTTPS = env_bool("HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Content-Security-Policy (config/middleware.py): everything comes from this origin and nothing
# inline runs; Pico CSS draws its form icons as data: images.
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# Pages whose own inline script and style elements are allowed by hash, response by response: the
# Swagger UI page writes its start-up script inline, with the visitor's CSRF token in it.
CSP_HASH_INLINE_PATHS = ["/api/docs/"]
# true: send the policy as Content-Security-Policy-Report-Only (browsers report, block nothing).
CSP_REPORT_ONLY = env_bool("CSP_REPORT_ONLY", False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

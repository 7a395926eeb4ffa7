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
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
    # A busy timeout lets the web server and the worker share the demo's SQLite file.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20

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
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# HE bundles: the largest single file (context or ciphertext) an owner may upload, in bytes.
CLOAKROOM_MAX_BUNDLE_FILE_BYTES = env_int("CLOAKROOM_MAX_BUNDLE_FILE_BYTES", 64 * 1024 * 1024)
# HE bundles: the largest whole bundle (all files its manifest declares together), in bytes.
CLOAKROOM_MAX_BUNDLE_BYTES = env_int("CLOAKROOM_MAX_BUNDLE_BYTES", 2 * 1024 * 1024 * 1024)
# HE bundles: seconds the checker subprocess may run (wall clock, and its CPU limit) before the bundle is rejected.
CLOAKROOM_BUNDLE_CHECK_TIMEOUT = env_int("CLOAKROOM_BUNDLE_CHECK_TIMEOUT", 120)
# HE bundles: the checker subprocess's address-space limit (RLIMIT_AS), in bytes.
CLOAKROOM_BUNDLE_CHECK_MEMORY_BYTES = env_int("CLOAKROOM_BUNDLE_CHECK_MEMORY_BYTES", 3 * 1024 * 1024 * 1024)

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
    }
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
else:
    # With Redis, a task not acknowledged within this window is delivered again. Tasks are
    # idempotent (they check the job's status first), so a second delivery is harmless.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 570)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-jobs": {"task": "compute.sweep_jobs", "schedule": env_int("CLOAKROOM_SWEEP_SECONDS", 60)},
}

# A worker's claim on a job lasts this long (longer than the task time limit); past it the sweeper re-queues the job (or fails and
# refunds it after CLOAKROOM_JOB_MAX_ATTEMPTS). Longer than any job should take.
CLOAKROOM_JOB_LEASE_SECONDS = env_int("CLOAKROOM_JOB_LEASE_SECONDS", 660)
CLOAKROOM_JOB_MAX_ATTEMPTS = env_int("CLOAKROOM_JOB_MAX_ATTEMPTS", 3)
# The queue DP jobs go to (workers consume it with -Q dp). Tests use a queue of their own.
CLOAKROOM_DP_QUEUE = env_str("CLOAKROOM_DP_QUEUE", "dp")
# The queue HE jobs and their parts go to (workers consume it with -Q he).
CLOAKROOM_HE_QUEUE = env_str("CLOAKROOM_HE_QUEUE", "he")
# The queue of the escrow worker, the only process that ever opens an escrowed secret key.
CLOAKROOM_KEYS_QUEUE = env_str("CLOAKROOM_KEYS_QUEUE", "keys")
# HE jobs are split into parts of this many ciphertext chunks per column; parts run in parallel
# on whichever worker processes consume the he queue.
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
# Fault injection for failure tests only: a worker sleeps this long after claiming a job, so a
# test can kill it mid-job. Keep it 0 everywhere else.
CLOAKROOM_FAULT_JOB_DELAY_SECONDS = env_int("CLOAKROOM_FAULT_JOB_DELAY_SECONDS", 0)
CELERY_TIMEZONE = TIME_ZONE

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "accounts.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
